"""The Snakemake workflow: the paper's grid in a dry run, config validation, lint, and (slow) a real
run of the `ci` study checking the tables' and figures' content."""
from __future__ import annotations

import copy
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
SCHEMA = REPO / "schemas" / "config.schema.yaml"

PAPER_TABLES = [f"table{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 17)]
PAPER_FIGURES = ["fig4a", "fig4b", "fig5"]
PAPER_DATASETS = ("cifar10", "cifar100", "pets", "flowers102", "stl10", "food101", "dtd", "svhn", "eurosat", "imagenet")


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


def load_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def job_blocks(dry_run_output: str, rule: str) -> list:
    """The text of every job of ``rule`` in a dry run's listing."""
    blocks = re.split(r"\n(?=(?:local)?rule \w+:\n)", dry_run_output)
    return [b for b in blocks if re.match(rf"(?:local)?rule {rule}:\n", b.lstrip("\n"))]


# ------------------------------------------------------------------------------ dry run: the paper
@pytest.fixture(scope="module")
def paper_dry_run() -> str:
    if (REPO / "slurm" / "config.yaml").is_file():
        args = ["-n", "--profile", "slurm", "all"]  # the command users run, from the repository root
    else:
        args = ["-n", "--config", "study=paper", "all"]
    done = snakemake(*args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def outputs(dry_run_output: str, rule: str) -> list:
    return [re.search(r"output: ([^,\s]+)", b).group(1) for b in job_blocks(dry_run_output, rule)]


def test_paper_dry_run_lists_every_table_and_figure(paper_dry_run):
    tables = sorted(outputs(paper_dry_run, "table"))
    assert tables == sorted(f"results/tables/{t}.csv" for t in PAPER_TABLES)
    figures = set(outputs(paper_dry_run, "figure"))
    assert figures == {f"results/figures/{f}.png" for f in PAPER_FIGURES}
    curves = set(outputs(paper_dry_run, "figure_curves"))
    assert curves == {f"results/figures/fig3_{s}_{d}.png" for s in ("vit_t", "convnext_f") for d in PAPER_DATASETS}


def train_runs(dry_run_output: str) -> list:
    runs = []
    for block in job_blocks(dry_run_output, "train"):
        match = re.search(r"output: results/runs/(\w+)/(\w+)/(\w+)/seed(\d+)/final\.json", block)
        assert match, block
        runs.append(match.groups())
    return runs


def test_paper_dry_run_schedules_each_run_once_with_the_paper_grid(paper_dry_run):
    runs = train_runs(paper_dry_run)
    assert len(set(runs)) == len(runs), "a run is scheduled twice"
    table2 = {(s, d, v, str(seed)) for s in ("vit_t", "convnext_f") for d in PAPER_DATASETS
              for v in ("random", "ws_uniform") for seed in (0, 1, 2)}
    assert table2 <= set(runs)
    # Table 3's random selections: three draws, 3 seeds each
    draws = {r for r in runs if r[0] == "vit_t" and r[2].startswith("ws_random") and not r[2].startswith("ws_random_nocons")}
    assert {r[2] for r in draws} == {"ws_random", "ws_random_s1", "ws_random_s2"} and len(draws) == 9
    # Table 4: logit distillation on ImageNet, feature distillation on CIFAR-100, never the other way
    assert ("vit_t", "imagenet", "distill", "0") in runs and ("vit_t", "cifar100", "distill_feature", "0") in runs
    assert ("vit_t", "cifar100", "distill", "0") not in runs
    # Figure 4a's epoch budgets and 4b's pretrained students
    # (300 epochs is CIFAR-100's own budget: that point is Table 2's runs, not a run of its own)
    assert {r[2] for r in runs if r[2].startswith("ws_uniform_ep")} == {f"ws_uniform_ep{e}" for e in (50, 100, 200)}
    assert {("vit_t", "cifar100", v, "0") for v in ("random", "ws_uniform")} <= set(runs)
    assert {r[2] for r in runs if r[2].startswith("pretrained_imagenet_ep")} == \
        {f"pretrained_imagenet_ep{e}" for e in (10, 30, 60, 100, 300)}


def test_the_optional_beyond_activation_table_is_planned_only_when_asked(paper_dry_run):
    """`optional: true` keeps the paper study's beyond_activation table (and its calibrated
    selections) out of `all`; the `optional_tables` target plans exactly that table's cells, with
    the calibration set (CIFAR-100) downloaded before its selections."""
    assert "beyond_activation" not in paper_dry_run and "ws_activation" not in paper_dry_run
    done = snakemake("-n", "optional_tables", "--config", "study=paper")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert outputs(out, "table") == ["results/tables/beyond_activation.csv"]
    assert not job_blocks(out, "claims")  # results/claims.csv is the default tables' claims only
    runs = set(train_runs(out))
    variants = ("random", "ws_uniform", "ws_activation_cifar100", "l1")
    assert runs == {(s, "cifar100", v, str(seed)) for s in ("vit_t", "convnext_f") for v in variants
                    for seed in (0, 1, 2)}
    calibrated = job_blocks(out, "select_weights_calibrated")
    assert sorted(outputs(out, "select_weights_calibrated")) == [
        f"results/inits/{s}/ws_activation_cifar100.safetensors" for s in ("convnext_f", "vit_t")]
    assert all("results/datasets/cifar100.json" in b for b in calibrated)
    named = snakemake("-n", "results/tables/beyond_activation.csv", "--config", "study=paper")
    assert named.returncode == 0 and set(train_runs(named.stdout + named.stderr)) == runs


def test_paper_dry_run_fetches_the_paper_teachers(paper_dry_run):
    teachers = {re.search(r"output: results/teachers/(\w+)\.safetensors", b).group(1)
                for b in job_blocks(paper_dry_run, "fetch_hub_teacher")}
    assert teachers == {"vit_s_in21k", "convnext_t_in21k", "deit_vit_s_in1k", "vit_b_in21k", "vit_b_clip",
                        "vit_b_mae", "vit_b_dino", "vit_l_in21k", "vit_t_pretrained"}
    pretrained = {re.search(r"output: results/teachers/(\w+)\.safetensors", b).group(1)
                  for b in job_blocks(paper_dry_run, "pretrain_teacher")}
    assert pretrained == {f"vit_t_imagenet_ep{e}" for e in (10, 30, 60, 100, 300)}


def test_paper_training_jobs_ask_for_gpus_one_node_one_task(paper_dry_run):
    for block in job_blocks(paper_dry_run, "train"):
        gpus = int(re.search(r"\bgpu=(\d+)", block).group(1))
        runtime = int(re.search(r"\bruntime=(\d+)", block).group(1))
        assert gpus == (4 if "/imagenet/" in block else 1)
        assert re.search(r"\bnodes=1\b", block) and re.search(r"\btasks_per_gpu=0\b", block)
        assert runtime > 60  # minutes, from the run's epochs


def test_tables_and_figures_are_local_rules():
    """A dry run prints every job as `rule` (it executes nothing), so read the rule files."""
    local = (("tables.smk", ["table", "claims"]), ("figures.smk", ["figure_curves", "figure", "figure_claims"]))
    for name, rules in local:
        text = (REPO / "rules" / name).read_text()
        declared = re.search(r"^localrules:\n((?:    \w+,\n)+)", text, re.M).group(1).split()
        assert [d.rstrip(",") for d in declared] == rules


def test_every_rule_that_runs_a_job_has_a_benchmark_beside_its_log():
    """Rules with a script, shell or run block (local ones too) write a benchmark TSV under
    results/benchmarks/, at their log's path; only rules that just gather inputs (all, lm_all) have none."""
    checked = []
    for path in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule \w+:)", path.read_text()):
            name = re.match(r"rule (\w+):", block)
            if name is None or not re.search(r"^    (script|shell|run|notebook|wrapper):", block, re.M):
                continue
            log = re.search(r'^    log:\n\s+"results/logs/([^"]+)\.log"', block, re.M)
            bench = re.search(r'^    benchmark:\n\s+"results/benchmarks/([^"]+)\.tsv"', block, re.M)
            assert log and bench, f"{path.name}: rule {name.group(1)} has no benchmark (or log)"
            assert bench.group(1) == log.group(1), name.group(1)
            checked.append(name.group(1))
    assert {"train", "table", "figure", "prepare_dataset", "lm_report", "rehearsal_dataset"} <= set(checked)


# ------------------------------------------------------------------------------ config validation
def validation_error(cfg: dict) -> str:
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with pytest.raises(WorkflowError) as info:
        validate(cfg, str(SCHEMA))
    return str(info.value)


def test_config_is_valid_and_gets_defaults():
    from snakemake.utils import validate

    cfg = load_config()
    del cfg["studies"]["demo"]["download"]
    validate(cfg, str(SCHEMA))
    assert cfg["studies"]["demo"]["download"] is False  # the schema's default


def test_schema_rejects_an_unknown_key():
    cfg = load_config()
    cfg["studies"]["demo"]["epochs"] = 3
    assert "'epochs' was unexpected" in validation_error(cfg)


def test_schema_rejects_a_name_that_cannot_be_a_folder_or_wildcard():
    cfg = load_config()
    cfg["studies"]["demo"]["students"]["ViT-T"] = copy.deepcopy(cfg["studies"]["demo"]["students"]["vit_w64"])
    message = validation_error(cfg)
    assert "ViT-T" in message and "does not match" in message


def test_schema_rejects_a_variant_with_both_baseline_and_method():
    cfg = load_config()
    cfg["variants"]["ws_uniform"]["init"]["baseline"] = "random"
    validation_error(cfg)


def test_schema_rejects_an_unknown_selection_method():
    cfg = load_config()
    cfg["variants"]["ws_bad"] = {"init": {"method": "unifrom"}}
    validation_error(cfg)


def test_schema_requires_a_path_for_a_file_teacher():
    cfg = load_config()
    cfg["studies"]["paper"]["teachers"]["vit_s_in21k"]["source"] = "file"
    assert "'path' is a required property" in validation_error(cfg)


def test_schema_rejects_a_seed_outside_torchs_range():
    """A seed above 2**63 - 1 ended in Snakemake's PeriodicWildcardError, naming neither the seed nor the fix."""
    cfg = load_config()
    cfg["studies"]["demo"]["seeds"] = [10 ** 23]
    assert "is greater than the maximum of 9223372036854775807" in validation_error(cfg)


@pytest.mark.parametrize("where", ["variant", "study"])
def test_a_key_given_twice_in_a_config_file_is_refused_with_its_lines(tmp_path, where):
    """YAML keeps the last of two equal keys: a variant or a study defined twice lost one silently."""
    text = (REPO / "config.yaml").read_text()
    if where == "variant":
        old = "  random: {init: {baseline: random}}"
        text = text.replace(old, old + "\n  random: {init: {baseline: xavier}}", 1)
    else:
        old = "studies:\n"
        text = text.replace(old, old + "  ci:\n    description: a second ci study\n", 1)
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if ln.startswith("  random: {init: {baseline: xavier}}")
                or ln == "  ci:")
    done = snakemake("-n", "--configfile", str(path), cwd=tmp_path)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    key = "random" if where == "variant" else "ci"
    assert re.search(rf"twice\.yaml: key '{key}' is given twice \(lines \d+ and \d+\)", out), out[-2000:]
    assert f"and {line})" in out or f"lines {line} and" in out


def test_a_yaml_syntax_error_in_config_yaml_names_its_line(tmp_path):
    """Snakemake's own loader says only "not valid JSON or YAML"; the workflow names file, line and column."""
    copy = tmp_path / "wf"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", ".venv", "results", "rehearsal", ".snakemake",
                                                               "data", "__pycache__", ".pytest_cache"))
    with open(copy / "config.yaml", "a") as fh:
        fh.write("broken: [1\n")
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(copy / "Snakefile")],
                          cwd=copy, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert re.search(r"config\.yaml is not valid YAML \(.*line \d+, column \d+\); fix the file", done.stdout + done.stderr)


def write_config(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["studies"]["demo"]["students"]["vit_w64"].update(teacher="nobody"), "unknown teacher ['nobody']"),
        (lambda c: c["studies"]["demo"]["datasets"]["digits"]["recipe"].update(epohcs=3), "unknown recipe key"),
        (lambda c: c["studies"]["demo"]["tables"]["table3"].update(variants=["random", "ws_best"]),
         "unknown variant ['ws_best']"),
        (lambda c: c["studies"]["demo"]["students"]["vit_w64"]["model"]["kwargs"].update(embed_dim=256),
         "the student is wider (256) than the teacher (128)"),
        (lambda c: c["studies"]["demo"]["students"]["vit_w64"].update(teacher="convnext_letters"),
         "a vit student cannot be selected from a convnext teacher"),
        (lambda c: c.update(study="nosuchstudy"), "study 'nosuchstudy' is not in config.yaml"),
    ],
    ids=["teacher", "recipe", "variant", "wider", "family", "study"],
)
def test_inconsistent_config_fails_before_any_job(tmp_path, change, message):
    cfg = load_config()
    change(cfg)
    done = snakemake("-n", "--configfile", str(write_config(tmp_path, cfg)), cwd=tmp_path)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


def test_hub_teacher_offline_and_not_cached_fails_with_the_fix_in_its_log(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    target = "results/teachers/vit_s_in21k.safetensors"
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", target, "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path),
         "--cores", "1", "--config", "study=paper"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode != 0
    log = (tmp_path / "results" / "logs" / "teachers" / "vit_s_in21k.log").read_text()
    assert "HF_HUB_OFFLINE is set and it is not cached" in log
    assert "hf download" in log
    assert not (tmp_path / target).exists()


# ------------------------------------------------------------------------------ style
def test_lint_is_clean():
    done = snakemake("--lint")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Lints for" not in output


@pytest.mark.skipif(importlib.util.find_spec("snakefmt") is None, reason="snakefmt is not installed")
def test_snakefmt_check():
    files = [str(SNAKEFILE), *map(str, sorted((REPO / "rules").glob("*.smk")))]
    done = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_ci_study_end_to_end(ci_study):
    """The `ci` study with the real rules into a temporary folder (conftest.py, run once per
    session and shared with the report-view test): tables, figures, report, and a stray run."""
    results = ci_study.check()
    study = load_config()["studies"]["ci"]
    check_ci_tables(results, study)
    check_ci_figures_and_runs(results, study)
    assert (results / "report.html").stat().st_size > 10_000  # written by Snakemake (--report-after-run)
    check_stray_run_is_ignored(results.parent)


def check_ci_tables(results: Path, study: dict) -> None:
    students, datasets = list(study["students"]), list(study["datasets"])
    seeds = ",".join(str(s) for s in study["seeds"])
    t2 = pd.read_csv(results / "tables" / "table2.csv")
    assert list(t2["dataset"]) == datasets
    for student in students:
        for variant in ("random", "ws_uniform"):
            g = f"{student}_{variant}"
            assert t2[f"{g}_value"].between(0, 100).all() and (t2[f"{g}_std"] >= 0).all()
            assert (t2[f"{g}_n"] == len(study["seeds"])).all()
            assert (t2[f"{g}_seeds"].astype(str) == seeds).all()
            assert t2[f"{g}_missing_seeds"].isna().all()
            assert t2[f"{g}_paper"].isna().all()  # the ci students are not the paper's models
        change = t2[f"{student}_ws_uniform_value"] - t2[f"{student}_random_value"]
        assert (t2[f"{student}_ws_uniform_change"] - change).abs().max() < 1e-3  # CSV keeps 6 digits
        # weight selection beats random init on digits far above the seeds' spread of those two
        # cells, for every student
        on = t2.set_index("dataset").loc[datasets[0]]
        noise = max(float(on[f"{student}_random_std"]), float(on[f"{student}_ws_uniform_std"]))
        assert on[f"{student}_ws_uniform_change"] > max(4.0, 3 * noise), (student, on.to_dict())

    t3 = pd.read_csv(results / "tables" / "table3.csv")
    spec = study["tables"]["table3"]
    assert list(t3["variant"]) == spec["variants"]
    for student in students:
        assert t3[f"{student}_value"].between(0, 100).all()
        assert (t3[f"{student}_n"] == len(study["seeds"])).all()
    # Table 3's random and ws_uniform rows are the same runs as Table 2's on that dataset
    on = spec["datasets"][0]
    row = t3.set_index("variant")
    t2 = t2.set_index("dataset")
    assert row.loc["random", f"{students[0]}_value"] == pytest.approx(t2.loc[on, f"{students[0]}_random_value"])


def check_ci_figures_and_runs(results: Path, study: dict) -> None:
    import matplotlib.image

    figures = study["figures"]
    pngs = [results / "figures" / f"fig3_{s}_{d}.png" for s in figures["fig3"]["students"]
            for d in figures["fig3"]["datasets"]]
    pngs += [results / "figures" / f"{name}.png" for name, f in figures.items() if f["kind"] != "curves"]
    for png in pngs:
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # not a blank canvas
    from weightselect.study import Study

    plan = Study(load_config(), "ci")
    for student in study["students"]:
        for dataset in study["datasets"]:
            for variant in ("random", "ws_uniform"):
                for seed in study["seeds"]:
                    run = results / "runs" / student / dataset / variant / f"seed{seed}"
                    lines = (run / "metrics.jsonl").read_text().splitlines()
                    assert len(lines) == plan.epochs(student, dataset, variant)
                    assert (results / "logs" / "runs" / student / dataset / variant / f"seed{seed}.log").is_file()


def check_stray_run_is_ignored(workdir: Path) -> None:
    """Issue reproducer: a run folder outside the study (seed 3, top-1 99) must not enter Table 2."""
    student = next(iter(load_config()["studies"]["ci"]["students"]))
    runs = workdir / "results" / "runs" / student / "digits" / "random"
    shutil.copytree(runs / "seed0", runs / "seed3")
    final = runs / "seed3" / "final.json"
    final.write_text(re.sub(r'"final_top1": [0-9.]+', '"final_top1": 99.0', final.read_text()))
    table = workdir / "results" / "tables" / "table2.csv"
    before = table.read_text()
    table.unlink()
    done = snakemake("--cores", "1", "--config", "study=ci", "--directory", str(workdir), "results/tables/table2.csv")
    assert done.returncode == 0, done.stderr[-3000:]
    assert table.read_text() == before


# ------------------------------------------------------------------------------ SLURM requests
class _Resources(dict):
    __getattr__ = dict.__getitem__


def job_resources(block: str) -> tuple:
    """(threads, resources) of one job of a dry run's listing."""
    threads = int(re.search(r"\bthreads: (\d+)", block).group(1)) if "threads:" in block else None
    line = re.search(r"resources: (.*)", block).group(1)
    resources = {}
    for item in line.split(", "):
        key, value = item.split("=", 1)
        resources[key] = int(value) if value.isdigit() else value
    return threads, _Resources(resources)


@pytest.mark.parametrize("dataset, gpus", [("cifar100", 1), ("imagenet", 4)])
def test_sbatch_line_of_a_training_job_is_one_task_on_one_node_with_all_its_gpus(paper_dry_run, dataset, gpus):
    """The plugin's own submit-string code (snakemake-executor-plugin-slurm 2.8) on our train jobs."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    block = next(b for b in job_blocks(paper_dry_run, "train") if f"/vit_t/{dataset}/random/seed0/" in b)
    _, resources = job_resources(block)
    per_gpu = load_config()["studies"]["paper"]["resources"]["cpus_per_task"]
    job = SimpleNamespace(resources=resources, threads=per_gpu * gpus)  # the rule's threads (not listed by -n)
    params = dict(run_uuid="r", slurm_logfile="log", comment_str="c", account="", partition="", workdir="")
    call = get_submit_command(job, params) + set_gres_string(job)
    assert f" --gpus={gpus}" in call and " --nodes=1" in call
    assert "--ntasks-per-gpu" not in call and "--ntasks=" not in call  # sbatch's default: one task
    assert f" --cpus-per-task={per_gpu * gpus}" in call and "--gres" not in call
    assert f" --mem {resources['mem_mb']}" in call and f" -t {resources['runtime']}" in call
