"""Config validation, the chosen study as data (weightselect.study) and the rules' input/params functions."""

import math

from snakemake.utils import validate

from weightselect.study import Run, Study, StudyConfigError
from weightselect.training.recipe import RecipeError, resolve_recipe

validate(config, schema="../schemas/config.schema.yaml")

STUDY = Study(config, config.get("study", "demo"))
DATA_ROOT = STUDY.spec.get("data_root", "data")
DOWNLOAD = bool(STUDY.spec.get("download", False))
RESOURCES = STUDY.spec.get("resources", {})
TRAIN_THREADS = RESOURCES.get("threads", RESOURCES.get("cpus_per_task", 1))


def _check_recipe(model, dataset, overrides, mode, what):
    """The run's recipe as the trainer resolves it (recipes.yaml row + overrides, warm-up kept in
    ratio to an epochs override): keys, value types and warm-up < epochs (no torch, no timm).
    """
    try:
        resolve_recipe(model, dataset, overrides, mode=mode)
    except (RecipeError, KeyError, ValueError) as exc:
        raise StudyConfigError(f"study '{STUDY.name}', {what}: {exc}") from None


for _run in {(r.student, r.dataset, r.variant) for r in STUDY.runs()}:
    _check_recipe(
        STUDY.students[_run[0]]["model"],
        STUDY.source_dataset(_run[1]),
        STUDY.recipe(*_run),
        "probe" if STUDY.mode(_run[2]) == "probe" else "finetune",
        "run {}/{}/{}".format(*_run),
    )
for _name, _teacher in STUDY.teachers.items():
    if _teacher["source"] == "pretrain":
        _pre = _teacher["pretrain"]
        _check_recipe(
            _teacher["model"],
            _pre["dataset"],
            _pre.get("recipe", {}),
            "finetune",
            f"teacher {_name}",
        )


# ------------------------------------------------------------------------------ wildcard patterns
def alternatives(names):
    """A regex matching exactly these names (never matching when there are none)."""
    names = sorted(set(names), key=len, reverse=True)
    return "|".join(names) if names else "(?!)"


def teachers_from(source):
    return [t for t, spec in STUDY.teachers.items() if spec["source"] == source]


def figures_of(*kinds):
    return [f for f, spec in STUDY.figures.items() if spec["kind"] in kinds]


def _run(wildcards):
    return Run(
        wildcards.student, wildcards.dataset, wildcards.variant, int(wildcards.seed)
    )


# ------------------------------------------------------------------------------ teachers
def teacher_model(wildcards):
    return STUDY.teachers[wildcards.teacher]["model"]


def teacher_pretrain(wildcards):
    return STUDY.teachers[wildcards.teacher]["pretrain"]


def teacher_path(wildcards):
    return STUDY.teachers[wildcards.teacher]["path"]


def pretrain_runtime(wildcards):
    if "runtime" in RESOURCES:
        return int(RESOURCES["runtime"])
    return 24 * 60


# ------------------------------------------------------------------------------ inits
def selection_teacher(wildcards):
    teacher = STUDY.init_teacher(wildcards.student, wildcards.variant)
    return STUDY.teacher_file(teacher)


def selection_student(wildcards):
    return STUDY.students[wildcards.student]["model"]


def selection_spec(wildcards):
    return STUDY.init_of(wildcards.variant)[1]


# ------------------------------------------------------------------------------ training
def train_inputs(wildcards):
    """The init file (weight selection), the distillation teacher and the downloaded dataset."""
    run = _run(wildcards)
    inputs = {}
    init = STUDY.init_file(run.student, run.variant)
    if init:
        inputs["init"] = init
    teacher = STUDY.distill_teacher(run.variant)
    if teacher:
        inputs["teacher"] = STUDY.teacher_file(teacher)
    if DOWNLOAD:
        inputs["data"] = f"results/datasets/{STUDY.source_dataset(run.dataset)}.json"
    return inputs


def train_spec(wildcards):
    return STUDY.train_params(_run(wildcards))


GPU_REQUEST = config.get("gpu_request", "gpus")


def train_gpus(wildcards):
    """GPUs of a training job: the dataset's `gpus`, else the study's."""
    spec = STUDY.datasets[wildcards.dataset]
    return int(spec.get("gpus", RESOURCES.get("gpus", 0)))


def train_gpu_resource(wildcards):
    """The `gpu` resource (sbatch --gpus=N); 0 on the `gres` route, which asks with --gres instead."""
    return 0 if GPU_REQUEST == "gres" else train_gpus(wildcards)


def train_gres(wildcards):
    """`gpu:N` on the `gres` route (sbatch --gres=gpu:N), else empty (no --gres)."""
    gpus = train_gpus(wildcards)
    return f"gpu:{gpus}" if GPU_REQUEST == "gres" and gpus else ""


def train_threads(wildcards):
    """CPU threads of a training job: the study's per-GPU (or per-job) count, times its GPUs."""
    return TRAIN_THREADS * max(train_gpus(wildcards), 1)


def train_runtime(wildcards):
    """Minutes for one training job: the study's value, else the run's epochs x an estimate."""
    if "runtime" in RESOURCES:
        return int(RESOURCES["runtime"])
    epochs = STUDY.epochs(wildcards.student, wildcards.dataset, wildcards.variant)
    per_epoch = float(STUDY.datasets[wildcards.dataset].get("minutes_per_epoch", 1.0))
    return int(math.ceil(epochs * per_epoch * 1.25 + 15))


def train_mem_mb(wildcards):
    spec = STUDY.datasets[wildcards.dataset]
    return int(spec.get("mem_mb", RESOURCES.get("mem_mb", 4000)))


def train_tasks_per_gpu(wildcards):
    """0: the slurm plugin then asks for one task with all the job's GPUs (not one task per GPU)."""
    return 0


# ------------------------------------------------------------------------------ tables and figures
def table_inputs(wildcards):
    return [r.final for r in STUDY.table_runs(wildcards.table)]


def table_spec(wildcards):
    return STUDY.table_params(wildcards.table)


def table_caption(wildcards):
    return STUDY.tables[wildcards.table].get("title", wildcards.table)


def curve_inputs(wildcards):
    runs = STUDY.curve_runs(wildcards.figure, wildcards.student, wildcards.dataset)
    return [r.metrics for r in runs]


def curve_spec(wildcards):
    spec = STUDY.figures[wildcards.figure]
    return dict(spec, paper_model=STUDY.students[wildcards.student].get("paper_model"))


def figure_inputs(wildcards):
    """Sweeps: the runs' final.json files; attention maps: the teacher and the init file."""
    spec = STUDY.figures[wildcards.figure]
    if spec["kind"] == "attention":
        student, variant = spec["student"], spec["variant"]
        teacher = STUDY.init_teacher(student, variant)
        return {
            "teacher": STUDY.teacher_file(teacher),
            "init": STUDY.init_file(student, variant),
        }
    return {"finals": [r.final for r in STUDY.figure_runs(wildcards.figure)]}


def figure_spec(wildcards):
    spec = dict(STUDY.figures[wildcards.figure], name=wildcards.figure)
    if spec["kind"] == "attention":
        student = spec["student"]
        teacher = STUDY.init_teacher(student, spec["variant"])
        spec["student_model"] = STUDY.students[student]["model"]
        spec["teacher_model"] = STUDY.teachers[teacher]["model"]
    else:
        spec["seeds"] = STUDY.seeds
    return spec
