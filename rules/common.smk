"""Config validation, the chosen study as data (weightselect.study) and the rules' input/params functions."""

import math
import os
from types import SimpleNamespace

from snakemake.utils import validate

from weightselect.io import read_yaml
from weightselect.study import Run, Study, StudyConfigError, recipe_epochs
from weightselect.training.recipe import RecipeError, resolve_recipe

# YAML keeps the last of a key given twice (a variant or a study defined twice loses one silently);
# the Snakefile read the workflow's own config.yaml already
for _configfile in workflow.configfiles:
    if os.path.realpath(_configfile) != os.path.realpath(
        os.path.join(workflow.basedir, "config.yaml")
    ):
        read_yaml(
            _configfile
        )  # DuplicateKeyError names the file, the key and both lines
validate(config, schema="../schemas/config.schema.yaml")

REHEARSAL = config.get("rehearsal", False) in (
    True,
    "true",
)  # --config rehearsal=true gives the string
HUB_CACHE = None
if REHEARSAL:  # every job of the study at toy size, offline (weightselect.rehearsal)
    from weightselect import rehearsal as _rehearsal

    STUDY = _rehearsal.RehearsalStudy(
        config, config.get("study", "demo"), seeds=config.get("rehearsal_seeds")
    )
    HUB_CACHE = os.path.abspath(
        _rehearsal.HUB_CACHE
    )  # the jobs read the hub teachers from here, offline
    os.environ.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=HUB_CACHE)
else:
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


for _run in {(r.student, r.dataset, r.variant) for r in STUDY.runs(optional=True)}:
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


def rehearsal_hub_input(wildcards):
    """A rehearsal's hub teacher is written into its hub cache before the real fetch reads it."""
    return {"cache": f"hf_cache/.written/{wildcards.teacher}.json"} if REHEARSAL else {}


def rehearsal_data_input(wildcards):
    """A rehearsal's dataset is written in its real layout before prepare_dataset reads it."""
    return (
        {"toy": f"{DATA_ROOT}/{wildcards.source}.weightselect-toy.json"}
        if REHEARSAL
        else {}
    )


def pretrain_inputs(wildcards):
    """The pretraining set, downloaded once before the job (studies with download: true)."""
    dataset = STUDY.teachers[wildcards.teacher]["pretrain"]["dataset"]
    return {"data": f"results/datasets/{dataset}.json"} if DOWNLOAD else {}


# ------------------------------------------------------------------------------ inits
def selection_teacher(wildcards):
    teacher = STUDY.init_teacher(wildcards.student, wildcards.variant)
    return STUDY.teacher_file(teacher)


def selection_student(wildcards):
    return STUDY.student_model(wildcards.student, wildcards.variant)


def selection_spec(wildcards):
    return STUDY.init_of(wildcards.variant)[1]


def calibrated(variant):
    """Whether a selection variant ranks on data (its init has `calibration`: method activation)."""
    return "calibration" in STUDY.init_of(variant)[1]


def selection_calibration(wildcards):
    """What method activation runs the teacher on: its model spec and the calibration images."""
    init = STUDY.init_of(wildcards.variant)[1]
    if "calibration" not in init:
        return None
    teacher = STUDY.init_teacher(wildcards.student, wildcards.variant)
    cal = init["calibration"]
    return dict(
        cal,
        teacher_model=STUDY.teachers[teacher]["model"],
        data_root=_root_of(cal["dataset"]),
    )


def calibration_data(wildcards):
    """The calibration images' dataset, downloaded before the job (studies with download: true; a
    compute node may have no internet): {} otherwise, so other studies' inputs stay as they were.
    """
    init = STUDY.init_of(wildcards.variant)[1]
    sources = {STUDY.source_dataset(d) for d in STUDY.datasets}
    if not DOWNLOAD or init.get("calibration", {}).get("dataset") not in sources:
        return {}
    return {"data": f"results/datasets/{init['calibration']['dataset']}.json"}


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


def _root_of(source):
    """The data root of a source dataset: the `data_root` of a study dataset reading it, else the study's."""
    roots = [
        spec["data_root"]
        for name, spec in STUDY.datasets.items()
        if STUDY.source_dataset(name) == source and "data_root" in spec
    ]
    return roots[0] if roots else DATA_ROOT


def dataset_root(wildcards):
    """Where a job's dataset lives (prepare_dataset: {source}; train: {dataset}; pretrain: its set)."""
    if hasattr(wildcards, "source"):
        return _root_of(wildcards.source)
    if hasattr(
        wildcards, "teacher"
    ):  # a pretraining set is named as the library names it
        return _root_of(_job_dataset(wildcards))
    return _root_of(STUDY.source_dataset(wildcards.dataset))


def dataset_options(wildcards):
    """The library's dataset options of a source dataset (those of the study datasets reading it)."""
    found = [
        spec.get("options", {})
        for name, spec in STUDY.datasets.items()
        if STUDY.source_dataset(name) == wildcards.source
    ]
    return found[0] if found else {}


def train_spec(wildcards):
    """The run's spec; on GPUs with a declared memory, the recipe's update_freq from the batch plan."""
    spec = STUDY.train_params(_run(wildcards))
    plan = batch_plan(wildcards)
    if plan is not None:
        spec["recipe"] = dict(spec["recipe"], update_freq=plan.update_freq)
    return spec


# The cluster settings: config keys, else the environment (the slurm profile documents the
# variables), so that they survive a command-line `--config study=...` (which replaces the profile's
# whole `config:`), else the defaults.
GPU_REQUEST = (
    config.get("gpu_request")
    or os.environ.get("SLURM_GPU_REQUEST", "").strip()
    or "gpus"
)
GPU_MODEL = str(
    config.get("gpu_model") or os.environ.get("SLURM_GPU_MODEL", "")
).strip()
_CAP = (
    str(config.get("max_runtime") or os.environ.get("SLURM_MAX_RUNTIME", "")).strip()
    or "2880"
)
if not _CAP.isdigit() or int(_CAP) < 30:
    raise StudyConfigError(
        f"max_runtime (SLURM_MAX_RUNTIME) is '{_CAP}'; give the most minutes a job may ask for, at least 30"
    )
MAX_RUNTIME = int(_CAP)
SIGNAL_LEAD = 300  # seconds before the time limit that Slurm sends SIGUSR1 (the trainer checkpoints)
if GPU_REQUEST not in ("gpus", "gres"):
    raise StudyConfigError(
        f"gpu_request (SLURM_GPU_REQUEST) is '{GPU_REQUEST}'; use gpus or gres"
    )


def _job_dataset(wildcards):
    """The study dataset whose resources a GPU job takes: the run's, or the pretraining set's."""
    if hasattr(wildcards, "teacher"):
        return STUDY.teachers[wildcards.teacher]["pretrain"]["dataset"]
    return wildcards.dataset


def _job_epochs(wildcards):
    if hasattr(wildcards, "teacher"):
        teacher = STUDY.teachers[wildcards.teacher]
        pre = teacher["pretrain"]
        return recipe_epochs(teacher["model"], pre["dataset"], pre.get("recipe", {}))
    return STUDY.epochs(wildcards.student, wildcards.dataset, wildcards.variant)


def train_gpus(wildcards):
    """GPUs of a training (or pretraining) job: its dataset's `gpus`, else the study's."""
    spec = STUDY.datasets.get(_job_dataset(wildcards), {})
    return int(spec.get("gpus", RESOURCES.get("gpus", 0)))


def train_processes(wildcards):
    """Training processes of the job (torchrun's --nproc_per_node): the dataset's `processes`,
    else one per GPU (at least one)."""
    spec = STUDY.datasets.get(_job_dataset(wildcards), {})
    return int(spec.get("processes", max(train_gpus(wildcards), 1)))


def train_gpu_resource(wildcards):
    """The `gpu` resource (sbatch --gpus=[MODEL:]N); 0 on the `gres` route, which asks with --gres."""
    return 0 if GPU_REQUEST == "gres" else train_gpus(wildcards)


def train_gpu_model(wildcards):
    """The `gpu_model` resource on the `gpus` route (the plugin writes --gpus=MODEL:N); empty on the
    gres route (the model goes into --gres) and for jobs without GPUs."""
    return GPU_MODEL if GPU_REQUEST == "gpus" and train_gpus(wildcards) else ""


def train_gres(wildcards):
    """`gpu:[MODEL:]N` on the `gres` route (sbatch --gres=gpu:a100:4), else empty (no --gres)."""
    gpus = train_gpus(wildcards)
    if GPU_REQUEST != "gres" or not gpus:
        return ""
    return f"gpu:{GPU_MODEL}:{gpus}" if GPU_MODEL else f"gpu:{gpus}"


def train_threads(wildcards):
    """CPU threads of a training job: the study's per-GPU (or per-job) count, times its GPUs."""
    return TRAIN_THREADS * max(train_gpus(wildcards), 1)


def estimated_minutes(wildcards):
    """The job's whole training time: epochs x the dataset's minutes_per_epoch x 1.25 + 15."""
    if "runtime" in RESOURCES:
        return int(RESOURCES["runtime"])
    per_epoch = float(
        STUDY.datasets.get(_job_dataset(wildcards), {}).get("minutes_per_epoch", 1.0)
    )
    return int(math.ceil(_job_epochs(wildcards) * per_epoch * 1.25 + 15))


def train_runtime(wildcards):
    """Minutes for one job: the estimate, capped at max_runtime (SLURM_MAX_RUNTIME, default 48 h);
    a longer run checkpoints before the limit and the next attempt resumes (docs/slurm.md).
    """
    return min(estimated_minutes(wildcards), MAX_RUNTIME)


def train_slurm_extra(wildcards):
    """SIGUSR1 SIGNAL_LEAD seconds before the time limit: the trainer writes a checkpoint and stops."""
    return f"--signal=USR1@{SIGNAL_LEAD}" if train_gpus(wildcards) else ""


def attempts_needed(minutes):
    """Jobs a run of ``minutes`` needs under the cap (each job loses up to SIGNAL_LEAD to the stop)."""
    usable = max(MAX_RUNTIME - SIGNAL_LEAD / 60 - 15, 1)
    return int(math.ceil(minutes / usable))


def _retries(minutes):
    """Retries for the jobs of a rule, the longest taking ``minutes``: None (Snakemake's --retries, the
    profile's 2) when every job fits max_runtime, else the extra jobs it needs plus those 2.
    """
    extra = max([attempts_needed(m) - 1 for m in minutes] or [0])
    return extra + 2 if extra else None


TRAIN_RETRIES = _retries(
    estimated_minutes(
        SimpleNamespace(student=r.student, dataset=r.dataset, variant=r.variant)
    )
    for r in STUDY.runs(optional=True)
)
PRETRAIN_RETRIES = _retries(
    estimated_minutes(SimpleNamespace(teacher=t)) for t in teachers_from("pretrain")
)


# The memory of one GPU (GB) that per-device batches are planned for (weightselect.training.memory)
GPU_MEM_GB = float(
    config.get("gpu_mem_gb") or os.environ.get("SLURM_GPU_MEM_GB", "").strip() or 40
)


def _job_recipe(wildcards):
    """(model, resolved recipe) of a training or pretraining job, as the trainer resolves them."""
    if hasattr(wildcards, "teacher"):
        teacher = STUDY.teachers[wildcards.teacher]
        pre = teacher["pretrain"]
        return teacher["model"], resolve_recipe(
            teacher["model"]["name"], pre["dataset"], pre.get("recipe", {})
        )
    run = _run(wildcards)
    params = STUDY.train_params(run)
    mode = "probe" if params["mode"] == "probe" else "finetune"
    return params["model"], resolve_recipe(
        params["model"]["name"],
        STUDY.source_dataset(run.dataset),
        params["recipe"],
        mode=mode,
    )


def batch_plan(wildcards):
    """The per-device batch and accumulation of a GPU job (None for a CPU job): the recipe's total
    batch kept, the per-device batch capped to fit GPU_MEM_GB (weightselect.training.memory).
    """
    from weightselect.training.memory import plan_batch

    if not train_gpus(wildcards):
        return None
    model, recipe = _job_recipe(wildcards)
    return plan_batch(
        model,
        recipe.batch_size,
        train_processes(wildcards),
        GPU_MEM_GB,
        recipe.img_size,
        recipe.mode,
    )


def train_mem_mb(wildcards):
    """Host memory of a job: the dataset's (or study's) mem_mb, raised on GPU jobs to hold the data
    loaders' prefetched batches (workers x prefetch x per-device batch per process) and the processes.
    """
    from weightselect.training.memory import job_mem_mb

    spec = STUDY.datasets.get(_job_dataset(wildcards), {})
    declared = int(spec.get("mem_mb", RESOURCES.get("mem_mb", 4000)))
    plan = batch_plan(wildcards)
    if plan is None:
        return declared
    processes = train_processes(wildcards)
    workers = max(train_threads(wildcards) // processes - 1, 0)
    return job_mem_mb(
        declared, plan, workers, processes, _job_recipe(wildcards)[1].img_size
    )


def train_tasks_per_gpu(wildcards):
    """0: the slurm plugin then asks for one task with all the job's GPUs (not one task per GPU)."""
    return 0


# ------------------------------------------------------------------------------ tables and figures
def table_inputs(wildcards):
    return [r.final for r in STUDY.table_runs(wildcards.table)]


def table_spec(wildcards):
    return STUDY.table_params(wildcards.table)


def figure_claim_inputs(wildcards):
    """The runs the claims compare; attention maps: the teacher and the init file."""
    if STUDY.figures[wildcards.figure]["kind"] == "attention":
        return figure_inputs(wildcards)
    return {"finals": [r.final for r in STUDY.figure_claim_runs(wildcards.figure)]}


def figure_claim_spec(wildcards):
    return STUDY.figure_claim_params(wildcards.figure)


def claim_files(wildcards):
    """Every default table's claims (not the optional tables'), then every figure's that has claims."""
    return [f"results/tables/{t}.claims.csv" for t in STUDY.default_tables()] + [
        f"results/figures/{f}.claims.csv"
        for f, spec in STUDY.figures.items()
        if spec["claims"]
    ]


def curve_inputs(wildcards):
    """The runs' final.json (the train rule's one output); the figure reads each run's metrics.jsonl."""
    runs = STUDY.curve_runs(wildcards.figure, wildcards.student, wildcards.dataset)
    return [r.final for r in runs]


WATERMARK = _rehearsal.MARK if REHEARSAL else None  # on every figure of a rehearsal


def curve_spec(wildcards):
    spec = STUDY.figures[wildcards.figure]
    return dict(
        spec,
        paper_model=STUDY.students[wildcards.student].get("paper_model"),
        watermark=WATERMARK,
    )


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
    inputs = {"finals": [r.final for r in STUDY.figure_runs(wildcards.figure)]}
    if spec["kind"] == "pretraining":  # their manifests give the pretraining set's size
        teachers = {STUDY.init_teacher(spec["student"], v) for v in spec["sweep"]}
        inputs["teachers"] = [
            STUDY.teacher_file(t).replace(".safetensors", ".json")
            for t in sorted(teachers)
        ]
    return inputs


def figure_spec(wildcards):
    spec = dict(
        STUDY.figures[wildcards.figure], name=wildcards.figure, watermark=WATERMARK
    )
    if spec["kind"] == "attention":
        student = spec["student"]
        teacher = STUDY.init_teacher(student, spec["variant"])
        spec["student_model"] = STUDY.students[student]["model"]
        spec["teacher"] = teacher
        spec["teacher_model"] = STUDY.teachers[teacher]["model"]
    else:
        spec["seeds"] = STUDY.seeds
    return spec
