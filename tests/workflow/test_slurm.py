"""The SLURM profile (`slurm/config.yaml`): what it sets, and runs through a real Slurm cluster.

The cluster tests start a single-node Slurm on localhost for this module (`slurm_cluster.py`) and
skip with the reason when it cannot start (no Slurm installed, not root). They run Snakemake with
`--profile slurm` exactly as on a cluster, adding only what a test needs: the local partition
through the profile's environment variable `SLURM_PARTITION`, status polling with `squeue` (no
accounting database here), short polling intervals and kept job logs.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from slurm_cluster import LocalSlurm, SlurmUnavailable

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_FILES = (
    "Snakefile", "config.yaml", "rules", "schemas", "workflow_scripts", "envs", "report", "slurm"
)
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
FINISHED = re.compile(r"Finished jobid: (\d+) \(Rule: (\w+)\)")

# Only what differs between the test cluster and a real one; everything else is the profile's.
TEST_CLUSTER_ARGS = [
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-keep-successful-logs",
    "--jobs", "2",
]

SMOKE_SNAKEFILE = r'''
rule all:
    input:
        expand("out/{sample}.txt", sample=["a", "b"]),


rule hello:
    output:
        "out/{sample}.txt",
    resources:
        runtime=5,
        mem_mb=500,
    shell:
        'echo "study={config[study]} job=$SLURM_JOB_ID node=$SLURMD_NODENAME" > {output}'


rule resumable:
    output:
        "out/resumable.txt",
    params:
        # Undeclared, like a training checkpoint: it survives a requeue of the job.
        state="state/resumable.txt",
    resources:
        runtime=5,
        mem_mb=500,
    shell:
        """
        mkdir -p state
        echo "start job=$SLURM_JOB_ID" >> {params.state}
        if [ "$(grep -c start {params.state})" -lt 2 ]; then sleep 120; fi
        cp {params.state} {output}
        """


rule signalled:
    output:
        "out/signalled.txt",
    resources:
        runtime=5,
        mem_mb=500,
    # Stands for the trainer: on SIGUSR1 it takes a while to write its checkpoint, then exits 138.
    shell:
        """
        mkdir -p state
        python -c '
import os, signal, sys, time
log = open("state/signalled.txt", "a", buffering=1)
def stop(signum, frame):
    log.write("signal %d\\n" % signum)
    time.sleep(5)
    log.write("checkpoint written\\n")
    sys.exit(128 + signum)
signal.signal(signal.SIGUSR1, stop)
log.write("start\\n")
time.sleep(120)
'
        touch {output}
        """
'''


def snakemake(args, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        SNAKEMAKE + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def copy_profile(dest: Path) -> None:
    shutil.copytree(REPO / "slurm", dest / "slurm")


def submitted_jobs(log: str) -> dict[str, tuple[str, Path]]:
    """Snakemake job id -> (Slurm job id, Slurm log file), from the executor's messages."""
    return {m[1]: (m[2], Path(m[3])) for m in SUBMITTED.finditer(log)}


def scontrol_job(cluster: LocalSlurm, job_id: str) -> dict[str, str]:
    out = cluster.run(["scontrol", "show", "job", "--oneliner", job_id]).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), memory_mb=16000)
    try:
        cluster.start()
    except SlurmUnavailable as err:
        pytest.skip(f"local Slurm cluster did not start: {err}")
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_env(slurm):
    """Environment for Snakemake on the test cluster; the partition goes through the profile."""
    return dict(slurm.env, SLURM_PARTITION=slurm.partition)


@pytest.fixture
def workflow_copy(tmp_path):
    """The repository's workflow files in a temporary folder (results land there)."""
    if not (REPO / "Snakefile").exists():
        pytest.skip("the workflow (Snakefile) is not in the repository yet")
    for name in WORKFLOW_FILES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, tmp_path / name)
        elif (REPO / name).exists():
            shutil.copy2(REPO / name, tmp_path / name)
    return tmp_path


def study_config(name: str) -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if name not in config.get("studies", {}):
        pytest.skip(f"config.yaml has no study '{name}' yet")
    return config["studies"][name]


@pytest.fixture
def smoke_workdir(tmp_path):
    (tmp_path / "Snakefile").write_text(SMOKE_SNAKEFILE)
    copy_profile(tmp_path)
    return tmp_path


# -- the profile itself (no cluster needed) ----------------------------------------------------
PROFILE_VARIABLES = ("SLURM_PARTITION", "SLURM_ACCOUNT", "SLURM_GPU_PARTITION", "SLURM_GPU_MODEL",
                     "SLURM_GPU_REQUEST", "SLURM_MAX_RUNTIME")


def profile_env(**variables) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PROFILE_VARIABLES}
    return dict(env, **variables)


def planned_jobs(log: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run lists."""
    blocks = re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", log, re.M)
    return [(rule, dict(kv.split("=", 1) for kv in res.split(", "))) for rule, res in blocks]


def dry_run(workdir: Path, env: dict, target="all", timeout=300) -> str:
    result = snakemake(["-n", "-p", "--profile", "slurm", target], workdir, env, timeout)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "Using profile slurm" in log
    return log


def test_profile_selects_paper_study_and_reads_partition_and_account(smoke_workdir):
    env = profile_env(SLURM_PARTITION="gpu-a100", SLURM_ACCOUNT="proj42")
    log = dry_run(smoke_workdir, env, target="out/a.txt")
    assert "study=paper" in log  # the profile's `config: study: paper`
    ((rule, resources),) = planned_jobs(log)
    assert resources["slurm_partition"] == "gpu-a100"
    assert resources["slurm_account"] == "proj42"
    assert resources["mem_mb"] == "500" and resources["runtime"] == "5"  # the rule's own win


def test_profile_leaves_partition_and_account_to_slurm_when_unset(smoke_workdir):
    log = dry_run(smoke_workdir, profile_env(), target="out/a.txt")
    ((rule, resources),) = planned_jobs(log)
    assert "slurm_partition" not in resources and "slurm_account" not in resources
    assert resources["mem_mb"] == "500"


GPU_RULES = ("train", "pretrain_teacher")


def sbatch_line(rule: str, resources: dict, threads: int = 1) -> str:
    """The sbatch command line the installed Slurm executor plugin builds for a job with these
    resources (its own get_submit_command and set_gres_string), partition and account as given."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    typed = {k: int(v) if re.fullmatch(r"-?\d+", v) else v.strip("'") for k, v in resources.items()}
    typed.pop("tmpdir", None)

    class Resources(dict):
        __getattr__ = dict.__getitem__

    job = SimpleNamespace(resources=Resources(typed), threads=threads, name=rule, is_group=lambda: False)
    params = dict(run_uuid="u", slurm_logfile="log", comment_str=f"rule_{rule}", workdir=None,
                  account=f"-A {typed.get('slurm_account', '')}", partition=f"-p {typed.get('slurm_partition', '')}")
    return get_submit_command(job, params) + set_gres_string(job)


@pytest.mark.parametrize("route", [
    {"SLURM_GPU_MODEL": "a100"},
    {"SLURM_GPU_REQUEST": "gres", "SLURM_GPU_MODEL": "a100"},
    {"SLURM_GPU_REQUEST": "gres"},
], ids=["gpus-model", "gres-model", "gres"])
@pytest.mark.parametrize("cli_config", [False, True], ids=["profile", "cli-config"])
def test_repository_dry_run_plans_gpu_jobs_on_the_gpu_partition(workflow_copy, route, cli_config):
    """`snakemake -n --profile slurm all` from the repository, on both GPU routes, also with a
    command-line `--config study=paper` (which replaces the profile's config): every job that uses
    a GPU (training, Figure 4b's pretraining) on the GPU partition with the model, nothing else asks
    for a GPU, and no job asks for more than 48 hours; the sbatch line is built by the plugin."""
    env = profile_env(SLURM_PARTITION="cpu", SLURM_GPU_PARTITION="gpu", SLURM_ACCOUNT="x", **route)
    args = ["-n", "-p", "--profile", "slurm", "all"] + (["--config", "study=paper"] if cli_config else [])
    result = snakemake(args, workflow_copy, env, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    jobs = planned_jobs(log)
    gpu_jobs = [(rule, res) for rule, res in jobs if rule in GPU_RULES]
    assert {rule for rule, _ in gpu_jobs} == set(GPU_RULES)
    gres = route.get("SLURM_GPU_REQUEST") == "gres"
    for rule, res in gpu_jobs:
        line = sbatch_line(rule, res)
        assert "-p gpu" in line and "-A x" in line, line
        assert int(res["runtime"]) <= 48 * 60 and "--signal=USR1@300" in line, line
        model = route.get("SLURM_GPU_MODEL")
        if gres:
            assert "--gpus" not in line and re.search(rf"--gres=gpu:{model + ':' if model else ''}[1-9]", line), line
        else:
            assert re.search(rf"--gpus={model}:[1-9]", line) and "--gres" not in line, line
    for rule, res in jobs:
        if rule not in GPU_RULES and rule != "all":
            line = sbatch_line(rule, res)
            assert "-p cpu" in line and "--gpus" not in line and "--gres" not in line, (rule, line)
            assert int(res.get("runtime", 0)) <= 48 * 60


def test_a_lower_time_cap_caps_every_gpu_job(workflow_copy):
    """SLURM_MAX_RUNTIME caps every job (a longer run continues in the next attempt)."""
    env = profile_env(SLURM_PARTITION="cpu", SLURM_GPU_PARTITION="gpu", SLURM_MAX_RUNTIME="600")
    log = dry_run(workflow_copy, env, timeout=600)
    jobs = planned_jobs(log)
    assert max(int(res["runtime"]) for rule, res in jobs if rule in GPU_RULES) == 600
    runtimes = sorted(int(res["runtime"]) for rule, res in jobs if rule == "train")
    assert runtimes[0] < 600  # shorter runs keep their own estimate


# -- through the local Slurm cluster ---------------------------------------------------------
@pytest.mark.slurm
def test_jobs_run_through_slurm(slurm, cluster_env, smoke_workdir):
    start = time.monotonic()
    result = snakemake(
        ["--profile", "slurm", "--config", "study=slurm_smoke", *TEST_CLUSTER_ARGS],
        smoke_workdir,
        cluster_env,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:] + "\n" + slurm.logs()

    jobs = submitted_jobs(log)
    assert len(jobs) == 2, log[-4000:]
    slurm_ids = {slurm_id for slurm_id, _ in jobs.values()}
    for sample in ("a", "b"):
        fields = dict(
            kv.split("=", 1) for kv in (smoke_workdir / f"out/{sample}.txt").read_text().split()
        )
        assert fields["study"] == "slurm_smoke"  # --config overrides the profile's study
        assert fields["job"] in slurm_ids  # ran inside a job this run submitted
        assert fields["node"] == "localhost"
    for slurm_id, slurm_log in jobs.values():
        assert slurm_log.is_relative_to(smoke_workdir / ".snakemake" / "slurm_logs")
        assert slurm_log.exists() and "rule hello" in slurm_log.read_text()
        job = scontrol_job(slurm, slurm_id)  # what the profile put on the sbatch line
        assert job["JobState"] == "COMPLETED"
        assert job["Partition"] == slurm.partition
        assert job["Requeue"] == "1"  # slurm-requeue: true
        assert job["TimeLimit"] == "00:05:00"  # runtime=5
    print(f"two jobs through Slurm in {time.monotonic() - start:.1f} s")


def wait_for_start(cluster: LocalSlurm, proc, log_path: Path, state: Path, deadline: float) -> str:
    """Wait until the one job Snakemake (``proc``) submitted wrote "start" into ``state``; its Slurm id."""
    while not (state.exists() and "start" in state.read_text()):
        assert proc.poll() is None, log_path.read_text()[-4000:]
        assert time.monotonic() < deadline, "the job never started\n" + cluster.logs()
        time.sleep(0.5)
    ((slurm_id, _),) = submitted_jobs(log_path.read_text()).values()
    return slurm_id


@pytest.mark.slurm
def test_requeued_job_resumes_and_completes(slurm, cluster_env, smoke_workdir):
    """A requeue (what preemption does) kills the running job; Slurm runs it again under the
    same job id, Snakemake keeps waiting, and the job picks up its undeclared state."""
    log_path = smoke_workdir / "snakemake.log"
    args = ["--profile", "slurm", "--config", "study=slurm_smoke", *TEST_CLUSTER_ARGS]
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            SNAKEMAKE + args + ["out/resumable.txt"],
            cwd=smoke_workdir,
            env=cluster_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        slurm_id = wait_for_start(slurm, proc, log_path, smoke_workdir / "state/resumable.txt", deadline)
        slurm.run(["scontrol", "requeue", slurm_id])
        # A requeued job waits two minutes before it is eligible again; release it at once.
        while True:
            job = scontrol_job(slurm, slurm_id)
            if job["Restarts"] != "0" and job["JobState"] in ("RUNNING", "COMPLETED"):
                break
            assert time.monotonic() < deadline, f"requeued job stuck in {job['JobState']}"
            if job["JobState"] == "PENDING":
                slurm.run(["scontrol", "update", f"JobId={slurm_id}", "StartTime=now"], False)
            time.sleep(0.5)
        assert proc.wait(timeout=240) == 0, log_path.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = (smoke_workdir / "out/resumable.txt").read_text().splitlines()
    assert lines == [f"start job={slurm_id}"] * 2
    assert scontrol_job(slurm, slurm_id)["Restarts"] == "1"


@pytest.mark.slurm
def test_the_early_signal_reaches_the_job_and_lets_it_checkpoint(slurm, cluster_env, smoke_workdir):
    """The training jobs' `--signal=USR1@300` makes Slurm signal every job step (not the batch
    shell, which `B:` would pick) five minutes before the limit. The plugin runs the job in an
    `srun` step, so the job's own process gets SIGUSR1 and has time to write its checkpoint; the
    job then fails and Snakemake's retry resumes it. `scancel --signal=USR1` delivers it the same way."""
    log_path = smoke_workdir / "snakemake.log"
    args = ["--profile", "slurm", "--config", "study=slurm_smoke", *TEST_CLUSTER_ARGS, "--retries", "0"]
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(SNAKEMAKE + args + ["out/signalled.txt"], cwd=smoke_workdir, env=cluster_env,
                                stdout=log_file, stderr=subprocess.STDOUT)
    state = smoke_workdir / "state/signalled.txt"
    try:
        slurm_id = wait_for_start(slurm, proc, log_path, state, time.monotonic() + 120)
        slurm.run(["scancel", "--signal=USR1", slurm_id])
        assert proc.wait(timeout=240) != 0  # the job failed: Snakemake would submit it again
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert state.read_text().splitlines() == ["start", "signal 10", "checkpoint written"]
    assert not (smoke_workdir / "out/signalled.txt").exists()


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_smoke_study_runs_through_slurm(slurm, cluster_env, workflow_copy):
    """The workflow's `slurm_smoke` study end to end: every job but `all` is a Slurm job."""
    study = study_config("slurm_smoke")
    start = time.monotonic()
    result = snakemake(
        ["--profile", "slurm", "--config", "study=slurm_smoke", *TEST_CLUSTER_ARGS],
        workflow_copy,
        cluster_env,
        timeout=900,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:] + "\n" + slurm.logs()
    elapsed = time.monotonic() - start

    jobs = submitted_jobs(log)
    local_rules = set(re.findall(r"^localrule (\w+):", log, re.M))
    finished = {job: rule for job, rule in FINISHED.findall(log) if rule not in local_rules}
    assert finished and set(finished) <= set(jobs), "a job ran outside Slurm:\n" + log[-4000:]
    assert "train" in finished.values()
    for job, rule in finished.items():
        slurm_id, slurm_log = jobs[job]
        assert slurm_log.exists() and f"rule {rule}" in slurm_log.read_text()
        info = scontrol_job(slurm, slurm_id)
        assert info["JobState"] == "COMPLETED" and info["Partition"] == slurm.partition
        assert info["Requeue"] == "1"
        if rule == "train":  # the study's resources reach sbatch; no GPU asked on this node
            assert "gpu" not in info.get("TRES", "") + info.get("TresPerNode", "")
            if "runtime" in study.get("resources", {}):
                hours, minutes = divmod(int(study["resources"]["runtime"]), 60)
                assert info["TimeLimit"] == f"{hours:02d}:{minutes:02d}:00"

    results = workflow_copy / "results"
    variants = study["tables"]["table2"]["variants"]
    with open(results / "tables/table2.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == len(study["datasets"])
    for student in study["students"]:
        for row in rows:
            for variant in variants:
                # one column group per student; a one-student table has a `student` column instead
                column = f"{student}_{variant}_value" if len(study["students"]) > 1 else f"{variant}_value"
                assert len(study["students"]) > 1 or row["student"] == student
                value = float(row[column])
                assert math.isfinite(value) and 0 <= value <= 100
        for dataset in study["datasets"]:
            for variant in variants:
                for seed in study["seeds"]:
                    final = results / f"runs/{student}/{dataset}/{variant}/seed{seed}/final.json"
                    assert 0 <= json.loads(final.read_text())["final_top1"] <= 100
    for name, figure in study.get("figures", {}).items():
        if figure["kind"] == "curves":
            for student in figure["students"]:
                for dataset in figure["datasets"]:
                    png = results / f"figures/{name}_{student}_{dataset}.png"
                    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"slurm_smoke study through Slurm: {len(finished)} jobs in {elapsed:.0f} s")
