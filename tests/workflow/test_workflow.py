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

PAPER_STUDENTS = ("vit_t", "convnext_f")
PAPER_DATASETS = ("cifar10", "cifar100", "pets", "flowers102", "stl10", "food101", "dtd", "svhn", "eurosat", "imagenet")
TABLE3_ONLY = ("xavier", "kaiming", "ws_consecutive", "ws_random", "ws_random_nocons")
SEEDS = (0, 1, 2)


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


def load_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def paper_grid() -> set:
    table2 = {(s, d, v, seed) for s in PAPER_STUDENTS for d in PAPER_DATASETS for v in ("random", "ws_uniform") for seed in SEEDS}
    table3 = {(s, "cifar100", v, seed) for s in PAPER_STUDENTS for v in TABLE3_ONLY for seed in SEEDS}
    return table2 | table3


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


def test_paper_dry_run_lists_exactly_the_table2_and_table3_grid(paper_dry_run):
    runs = []
    for block in job_blocks(paper_dry_run, "train"):
        match = re.search(r"output: results/runs/(\w+)/(\w+)/(\w+)/seed(\d+)/final\.json", block)
        assert match, block
        s, d, v, seed = match.groups()
        runs.append((s, d, v, int(seed)))
    assert len(runs) == 150 == len(paper_grid())
    assert len(set(runs)) == len(runs), "a run is scheduled twice"
    assert set(runs) == paper_grid()


def test_paper_dry_run_other_jobs(paper_dry_run):
    counts = {rule: len(job_blocks(paper_dry_run, rule)) for rule in
              ("fetch_hub_teacher", "select_weights", "table2", "table3", "plot_curves", "pretrain_teacher")}
    assert counts == {"fetch_hub_teacher": 2, "select_weights": 8, "table2": 2, "table3": 1,
                      "plot_curves": 20, "pretrain_teacher": 0}
    teachers = {re.search(r"output: results/teachers/(\w+)\.safetensors", b).group(1)
                for b in job_blocks(paper_dry_run, "fetch_hub_teacher")}
    assert teachers == {"vit_s_in21k", "convnext_t_in22k"}


def test_paper_training_jobs_ask_for_gpus_and_imagenet_for_several(paper_dry_run):
    for block in job_blocks(paper_dry_run, "train"):
        gpus = int(re.search(r"\bgpu=(\d+)", block).group(1))
        runtime = int(re.search(r"\bruntime=(\d+)", block).group(1))
        if "/imagenet/" in block:
            assert gpus > 1
        else:
            assert gpus == 1
        assert runtime > 60  # minutes, from the recipe's epochs


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
    cfg["variants"]["ws_uniform"]["baseline"] = "random"
    validation_error(cfg)


def test_schema_requires_a_path_for_a_file_teacher():
    cfg = load_config()
    cfg["studies"]["paper"]["teachers"]["vit_s_in21k"]["source"] = "file"
    assert "'path' is a required property" in validation_error(cfg)


def write_config(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["studies"]["demo"]["students"]["vit_w64"].update(teacher="nobody"), "unknown teacher ['nobody']"),
        (lambda c: c["studies"]["demo"]["datasets"]["digits"]["recipe"].update(epohcs=3), "unknown recipe key"),
        (lambda c: c["studies"]["demo"]["table3"].update(variants=["random", "ws_best"]), "unknown variant ['ws_best']"),
        (lambda c: c.update(study="nosuchstudy"), "study 'nosuchstudy' is not in config.yaml"),
    ],
    ids=["teacher", "recipe", "variant", "study"],
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
         "--cores", "1", "--config", "study=paper", "report="],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode != 0
    log = (tmp_path / "results" / "logs" / "teachers" / "vit_s_in21k.log").read_text()
    assert "HF_HUB_OFFLINE is set and it is not cached" in log
    assert "huggingface-cli download" in log
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
    session and shared with the report-view test): tables, figures and report."""
    check_ci_outputs(ci_study.check(), load_config()["studies"]["ci"])


def check_ci_outputs(results: Path, study: dict) -> None:
    students, datasets = list(study["students"]), list(study["datasets"])
    seeds = ",".join(str(s) for s in study["seeds"])

    for student in students:
        t2 = pd.read_csv(results / "tables" / f"table2_{student}.csv")
        assert list(t2["dataset"]) == datasets and set(t2["student"]) == {student}
        for variant in ("random", "ws_uniform"):
            assert ((t2[f"{variant}_mean"] >= 0) & (t2[f"{variant}_mean"] <= 100)).all()
            assert (t2[f"{variant}_std"] >= 0).all()
            assert (t2[f"{variant}_n"] == len(study["seeds"])).all()
            assert (t2[f"{variant}_seeds"].astype(str) == seeds).all()
            assert t2[f"{variant}_missing_seeds"].isna().all()
            assert t2[f"{variant}_paper"].isna().all()  # the ci students are not the paper's models
        change = t2["ws_uniform_mean"] - t2["random_mean"]
        assert (t2["ws_uniform_change"] - change).abs().max() < 1e-3  # CSV keeps 6 digits

    t3 = pd.read_csv(results / "tables" / "table3.csv")
    assert list(t3["variant"]) == study["table3"]["variants"] and len(t3) >= 3
    for student in students:
        assert t3[f"{student}_mean"].between(0, 100).all()
        assert (t3[f"{student}_n"] == len(study["seeds"])).all()
    # Table 3's random and ws_uniform rows are the same runs as Table 2's on that dataset
    t2 = pd.read_csv(results / "tables" / f"table2_{students[0]}.csv").set_index("dataset")
    row = t3.set_index("variant")
    on = study["table3"]["dataset"]
    assert row.loc["random", f"{students[0]}_mean"] == pytest.approx(t2.loc[on, "random_mean"])

    import matplotlib.image

    for student in students:
        for dataset in datasets:
            png = results / "figures" / f"curves_{student}_{dataset}.png"
            image = matplotlib.image.imread(png)
            assert image.shape[0] > 200 and image.shape[1] > 300
            assert image[..., :3].std() > 0.05  # not a blank canvas

    for student in students:
        for dataset in datasets:
            for variant in ("random", "ws_uniform"):
                for seed in study["seeds"]:
                    run = results / "runs" / student / dataset / variant / f"seed{seed}"
                    lines = (run / "metrics.jsonl").read_text().splitlines()
                    assert len(lines) == study["datasets"][dataset]["recipe"]["epochs"]
                    assert (results / "logs" / "runs" / student / dataset / variant / f"seed{seed}.log").is_file()

    report = results / "report.html"
    assert report.is_file() and report.stat().st_size > 10_000
