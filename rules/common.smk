"""Config validation, the chosen study, target lists and input functions for every rule."""

import math
import os
import subprocess
import sys
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

from weightselect.training.recipe import RecipeError, resolve_recipe

validate(config, schema="../schemas/config.schema.yaml")


class StudyConfigError(ValueError):
    """config.yaml is valid against the schema but inconsistent (an unknown name, a bad recipe)."""


STUDY_NAME = config.get("study", "demo")
if STUDY_NAME not in config["studies"]:
    raise StudyConfigError(
        f"study '{STUDY_NAME}' is not in config.yaml; choose one of {sorted(config['studies'])} "
        "(--config study=NAME)"
    )
STUDY = config["studies"][STUDY_NAME]
VARIANTS = config["variants"]
TEACHERS = STUDY["teachers"]
STUDENTS = STUDY["students"]
DATASETS = STUDY["datasets"]
SEEDS = [int(s) for s in STUDY["seeds"]]
RESOURCES = STUDY.get("resources", {})
TRAIN_THREADS = RESOURCES.get("threads", RESOURCES.get("cpus_per_task", 1))
TABLE2 = STUDY["table2"]
TABLE2_VARIANTS = TABLE2.get("variants", ["random", "ws_uniform"])
TABLE2_DATASETS = TABLE2.get("datasets", list(DATASETS))
TABLE3 = STUDY.get("table3")
DATA_ROOT = STUDY.get("data_root", "data")
DOWNLOAD = bool(STUDY.get("download", False))


def _check_names(kind, names, known, where):
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise StudyConfigError(
            f"study '{STUDY_NAME}': {where} names unknown {kind} {unknown}; known: {sorted(known)}"
        )


for _name, _student in STUDENTS.items():
    _check_names("teacher", [_student["teacher"]], TEACHERS, f"student '{_name}'")
_check_names("variant", TABLE2_VARIANTS, VARIANTS, "table2")
_check_names("dataset", TABLE2_DATASETS, DATASETS, "table2")
if TABLE3:
    _check_names("variant", TABLE3["variants"], VARIANTS, "table3")
    _check_names("dataset", [TABLE3["dataset"]], DATASETS, "table3")


def source_dataset(dataset):
    """The library's name for a study dataset (a study may train on one set under two names)."""
    return DATASETS[dataset].get("dataset", dataset)


def dataset_arg(dataset):
    """What the trainer gets: the library's name, or {"name": ..., **options} (e.g. n_per_class)."""
    options = DATASETS[dataset].get("options", {})
    return (
        {"name": source_dataset(dataset), **options}
        if options
        else source_dataset(dataset)
    )


def run_recipe(student, dataset):
    """Recipe overrides of one run: the study's, then the dataset's, then the student's."""
    overrides = dict(STUDY.get("recipe", {}))
    overrides.update(DATASETS[dataset].get("recipe", {}))
    overrides.update(STUDENTS[student].get("recipe", {}))
    return overrides


def _resolved(model, dataset, overrides, what):
    try:
        return resolve_recipe(model, dataset, overrides)
    except (RecipeError, KeyError, ValueError) as exc:
        raise StudyConfigError(f"study '{STUDY_NAME}', {what}: {exc}") from None


# Every recipe is resolved once here, so that a bad key fails before the DAG is built.
RECIPES = {
    (s, d): _resolved(
        STUDENTS[s]["model"], source_dataset(d), run_recipe(s, d), f"student {s} on {d}"
    )
    for s in STUDENTS
    for d in DATASETS
}
for _name, _teacher in TEACHERS.items():
    if _teacher["source"] == "pretrain":
        _p = _teacher["pretrain"]
        _resolved(
            _teacher["model"], _p["dataset"], _p.get("recipe", {}), f"teacher {_name}"
        )


# ------------------------------------------------------------------------------ wildcard patterns
def alternatives(names):
    """A regex matching exactly these names (never matching when there are none)."""
    names = sorted(names, key=len, reverse=True)
    return "|".join(names) if names else "(?!)"


def teachers_from(source):
    return [t for t, spec in TEACHERS.items() if spec["source"] == source]


def selection_variants():
    return [v for v, spec in VARIANTS.items() if "method" in spec]


# ------------------------------------------------------------------------------ the study's runs
def run_dir(student, dataset, variant, seed):
    return f"results/runs/{student}/{dataset}/{variant}/seed{seed}"


def table2_grid(student):
    return [
        (student, d, v, s)
        for d in TABLE2_DATASETS
        for v in TABLE2_VARIANTS
        for s in SEEDS
    ]


def table3_grid():
    if not TABLE3:
        return []
    return [
        (st, TABLE3["dataset"], v, s)
        for st in STUDENTS
        for v in TABLE3["variants"]
        for s in SEEDS
    ]


def study_runs():
    """Every training run of the study, once (Table 3 shares runs with Table 2)."""
    runs = [r for st in STUDENTS for r in table2_grid(st)] + table3_grid()
    return list(dict.fromkeys(runs))


def curve_grid(student, dataset):
    variants = list(TABLE2_VARIANTS)
    return [(student, dataset, v, s) for v in variants for s in SEEDS]


def final_files(runs):
    return [f"{run_dir(*r)}/final.json" for r in runs]


def metric_files(runs):
    return [f"{run_dir(*r)}/metrics.jsonl" for r in runs]


def all_targets():
    targets = [f"results/tables/table2_{s}.csv" for s in STUDENTS]
    if TABLE3:
        targets.append("results/tables/table3.csv")
    if STUDY.get("figures", True):
        targets += [
            f"results/figures/curves_{s}_{d}.png"
            for s in STUDENTS
            for d in TABLE2_DATASETS
        ]
    return targets


# ------------------------------------------------------------------------------ input functions
def teacher_file(wildcards):
    return f"results/teachers/{STUDENTS[wildcards.student]['teacher']}.safetensors"


def init_input(wildcards):
    """The init file of a weight-selection variant; nothing for a named baseline."""
    if "method" in VARIANTS[wildcards.variant]:
        return [f"results/inits/{wildcards.student}/{wildcards.variant}.safetensors"]
    return []


def dataset_ready(wildcards):
    """With downloads on, every dataset is fetched once before its training jobs start."""
    if DOWNLOAD:
        return [f"results/datasets/{source_dataset(wildcards.dataset)}.json"]
    return []


def init_arg(wildcards, input):
    spec = VARIANTS[wildcards.variant]
    return input.init[0] if "method" in spec else spec["baseline"]


def train_gpus(wildcards):
    return int(DATASETS[wildcards.dataset].get("gpus", RESOURCES.get("gpus", 0)))


def train_threads(wildcards):
    """CPU threads of a training job: the study's per-GPU (or per-job) count, times its GPUs."""
    return TRAIN_THREADS * max(train_gpus(wildcards), 1)


def train_runtime(wildcards):
    """Minutes for one training job: the study's value, else the recipe's epochs x an estimate."""
    if "runtime" in RESOURCES:
        return int(RESOURCES["runtime"])
    epochs = RECIPES[(wildcards.student, wildcards.dataset)].epochs
    per_epoch = float(DATASETS[wildcards.dataset].get("minutes_per_epoch", 1.0))
    return int(math.ceil(epochs * per_epoch * 1.25 + 15))


def train_mem_mb(wildcards):
    return int(DATASETS[wildcards.dataset].get("mem_mb", RESOURCES.get("mem_mb", 4000)))


def pretrain_runtime(wildcards):
    if "runtime" in RESOURCES:
        return int(RESOURCES["runtime"])
    return 24 * 60


def runs_root(wildcards, input):
    """results/runs, from a run file's path (.../{student}/{dataset}/{variant}/seed{seed}/file)."""
    return str(Path(input[0]).parents[4])


def write_report():
    """After a successful run: the HTML report (`snakemake --report`), with this run's arguments."""
    path = config.get("report")  # `--config report=` turns it off
    if not path or str(path).lower() in ("null", "none") or "--report" in sys.argv:
        return
    command = [
        sys.executable,
        "-m",
        "snakemake",
        *sys.argv[1:],
        "--report",
        os.path.abspath(path),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        logger.warning(f"the report could not be written:\n{done.stderr[-2000:]}")
    else:
        logger.info(f"report: {path}")


def paper_models():
    return {
        s: spec["paper_model"] for s, spec in STUDENTS.items() if "paper_model" in spec
    }
