"""A study as data: its runs, tables and figures, from the workflow's ``config.yaml``.

A **run** is student x dataset x variant x seed (folder ``results/runs/{student}/{dataset}/
{variant}/seed{seed}``, :func:`weightselect.rundir.run_path`). A **variant** says everything that
makes a run differ: its init (a baseline, a weight selection from a teacher, or another variant's
init), its training mode (``finetune``, ``distill`` with kind, alpha and teacher, ``probe``) and
recipe overrides. A **table** names its rows, its column groups, the variants, students and
datasets whose runs fill its cells, the metric and the aggregation (mean +- std over training
seeds; Table 3's median over selection draws), and the paper table it reproduces. A **figure**
is the same idea for plots (curves, an epoch sweep, a pretraining sweep, attention maps).

This module imports nothing heavy (yaml only): the Snakefile builds a :class:`Study` at parse time.
Every name a study uses is checked here, so a bad config fails before any job starts
(:class:`StudyConfigError`, one line naming the key and the fix).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from weightselect.rundir import FINAL, METRIC_NAMES, METRICS, run_path

__all__ = [
    "Run", "Study", "StudyConfigError", "load_study", "AXES", "MODES", "model_shape", "RUNS_ROOT",
    "SELECTION_METHODS", "LAYER_METHODS", "BASELINES", "recipe_epochs",
]

RUNS_ROOT = "results/runs"
AXES = ("student", "dataset", "variant")
MODES = ("finetune", "distill", "probe")
# The selection library's names (weightselect.selection.METHODS / LAYER_METHODS / BASELINES),
# repeated here so that the parse imports no torch; tests/workflow checks they agree.
SELECTION_METHODS = ("uniform", "consecutive", "random", "random_nocons", "l1", "magnitude")
LAYER_METHODS = ("first", "uniform", "mid", "last")
BASELINES = ("random", "xavier", "kaiming", "mimetic")
AGGREGATIONS = ("mean", "median_of_draws")


class StudyConfigError(ValueError):
    """config.yaml is valid against the schema but inconsistent (an unknown name, a bad pair)."""


@dataclass(frozen=True, order=True)
class Run:
    """One training run: its keys are its folder (``results/runs/{student}/{dataset}/{variant}/seed{seed}``)."""

    student: str
    dataset: str
    variant: str
    seed: int

    @property
    def path(self) -> str:
        return run_path(RUNS_ROOT, self.student, self.dataset, self.variant, self.seed).as_posix()

    @property
    def final(self) -> str:
        return f"{self.path}/{FINAL}"

    @property
    def metrics(self) -> str:
        return f"{self.path}/{METRICS}"


# ------------------------------------------------------------------------------ model shapes by name
# (family, width, depth) of timm's named models, so that a student/teacher pair is checked from its
# names and kwargs without building a model. Width: ViT embed_dim, ConvNeXt dims[-1].
_TIMM_SHAPES = {
    "vit_tiny": ("vit", 192, 12), "vit_small": ("vit", 384, 12), "vit_base": ("vit", 768, 12),
    "vit_large": ("vit", 1024, 24), "vit_huge": ("vit", 1280, 32), "deit_tiny": ("vit", 192, 12),
    "deit_small": ("vit", 384, 12), "deit_base": ("vit", 768, 12),
    "convnext_atto": ("convnext", 320, 12), "convnext_femto": ("convnext", 384, 12),
    "convnext_pico": ("convnext", 512, 12), "convnext_nano": ("convnext", 640, 15),
    "convnext_tiny": ("convnext", 768, 18), "convnext_small": ("convnext", 768, 36),
    "convnext_base": ("convnext", 1024, 36), "convnext_large": ("convnext", 1536, 36),
}


def model_shape(model: Mapping[str, Any]) -> Tuple[Optional[str], Optional[int], Optional[int]]:
    """(family, width, depth) of ``{"name": timm_name, "kwargs": {...}}`` from names and kwargs.

    family: ``vit`` or ``convnext`` (None when the name is not one of these); width: ViT
    ``embed_dim`` or ConvNeXt ``dims[-1]``; depth: blocks in total. None where unknown.
    """
    name = model["name"].split(".")[0]
    kwargs = model.get("kwargs") or {}
    key = next((k for k in _TIMM_SHAPES if name.startswith(k)), None)
    family, width, depth = _TIMM_SHAPES[key] if key else (None, None, None)
    if family is None:
        family = "vit" if name.startswith(("vit_", "deit_")) else "convnext" if name.startswith("convnext") else None
    if "embed_dim" in kwargs:
        width = int(kwargs["embed_dim"])
    if "depth" in kwargs:
        depth = int(kwargs["depth"])
    if "dims" in kwargs:
        width = int(kwargs["dims"][-1])
    if "depths" in kwargs:
        depth = int(sum(kwargs["depths"]))
    return family, width, depth


@functools.lru_cache(maxsize=1)
def _recipe_tables() -> Dict[str, Any]:
    path = Path(__file__).parent / "training" / "recipes.yaml"
    with open(path) as fh:
        return yaml.safe_load(fh)


def recipe_rows(family: Optional[str], dataset: str) -> Dict[str, Any]:
    """The rows of ``recipes.yaml`` a run's recipe starts from (base, family, dataset), as data."""
    tables = _recipe_tables()
    fam = tables["families"].get(family or "", {})
    rows = fam.get("datasets", {})
    extra = tables.get("extra_datasets", {}).get(dataset)
    row = rows.get(dataset) or (rows.get(extra) if isinstance(extra, str) else extra) or rows.get("imagenet", {})
    return {"base": tables["base"], "family": {k: v for k, v in fam.items() if k != "datasets"}, "dataset": row}


def recipe_epochs(model: Mapping[str, Any], dataset: str, overrides: Mapping[str, Any]) -> int:
    """Epochs of a run or a pretraining of ``model`` on ``dataset`` (a library dataset name): the
    overrides' ``epochs``, else the recipes.yaml row's (read as data, no torch)."""
    if "epochs" in overrides:
        return int(overrides["epochs"])
    rows = recipe_rows(model_shape(model)[0], dataset)
    return int(rows["dataset"].get("epochs", rows["base"]["epochs"]))


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ the study
class Study:
    """One study of ``config.yaml`` with every variant, table and figure resolved and checked.

    ``config``: the whole config (validated against schemas/config.schema.yaml); ``name``: a key
    of ``config["studies"]``. Raises StudyConfigError on an unknown study, teacher, variant,
    dataset or student name, a selection between models of different families, a student wider
    or deeper than its teacher, or a table/figure that names nothing.
    """

    def __init__(self, config: Mapping[str, Any], name: str):
        studies = config["studies"]
        if name not in studies:
            raise StudyConfigError(
                f"study '{name}' is not in config.yaml; choose one of {sorted(studies)} (--config study=NAME)"
            )
        self.name = name
        spec = copy.deepcopy(studies[name])
        self.spec = spec
        self.teachers: Dict[str, dict] = spec["teachers"]
        self.students: Dict[str, dict] = spec["students"]
        self.datasets: Dict[str, dict] = spec["datasets"]
        self.seeds: List[int] = [int(s) for s in spec["seeds"]]
        self.variants: Dict[str, dict] = copy.deepcopy(config["variants"])
        self.figures: Dict[str, dict] = {}
        self._extra_runs: List[Run] = []
        self._figure_specs(spec.get("figures", {}))
        self.tables: Dict[str, dict] = {n: self._table_spec(n, t) for n, t in spec.get("tables", {}).items()}
        for n, f in self.figures.items():
            self._check_figure(n, f)
        self._check_pairs()

    # -------------------------------------------------------------------------- errors
    def _fail(self, where: str, message: str) -> None:
        raise StudyConfigError(f"study '{self.name}', {where}: {message}")

    def _known(self, kind: str, names: Sequence[str], known: Mapping, where: str) -> None:
        unknown = [n for n in names if n not in known]
        if unknown:
            self._fail(where, f"unknown {kind} {unknown}; known: {sorted(known)}")

    # -------------------------------------------------------------------------- variants
    def variant(self, name: str) -> dict:
        if name not in self.variants:
            raise StudyConfigError(f"unknown variant '{name}'; known: {sorted(self.variants)}")
        return self.variants[name]

    def init_of(self, variant: str) -> Tuple[str, dict]:
        """(the variant that owns the init, its init spec): ``init: NAME`` follows the reference."""
        seen = []
        name = variant
        while True:
            init = self.variant(name).get("init", {"baseline": "random"})
            if not isinstance(init, str):
                return name, init
            seen.append(name)
            if init in seen:
                raise StudyConfigError(f"variant '{variant}': init references form a loop {seen}")
            name = init

    def is_selection(self, variant: str) -> bool:
        return "method" in self.init_of(variant)[1]

    def selection_variants(self) -> List[str]:
        """Variants that own a weight-selection init (each gives results/inits/{student}/{variant})."""
        return [v for v, spec in self.variants.items() if isinstance(spec.get("init"), dict) and "method" in spec["init"]]

    def init_teacher(self, student: str, variant: str) -> Optional[str]:
        _, init = self.init_of(variant)
        if "method" not in init:
            return None
        return init.get("teacher", self.students[student]["teacher"])

    def student_model(self, student: str, variant: str) -> Dict[str, Any]:
        """The student's model spec for a variant: the study's, with the ``student_kwargs`` of the
        variant's selection merged in (a student built with its teacher's structural options, as
        the paper's release does for the CLIP teacher of Table 5)."""
        model = copy.deepcopy(self.students[student]["model"])
        extra = self.init_of(variant)[1].get("student_kwargs") or {}
        if extra:
            model["kwargs"] = {**(model.get("kwargs") or {}), **extra}
        return model

    def init_file(self, student: str, variant: str) -> Optional[str]:
        owner, init = self.init_of(variant)
        return f"results/inits/{student}/{owner}.safetensors" if "method" in init else None

    def init_expected(self, student: str, variant: str) -> Optional[Dict[str, Any]]:
        """What a run's init file must have been made from (None for a baseline): the owning
        variant, method, layers, seed, teacher file and student spec, as the select rule passes
        them (weightselect.selection.provenance.check_expected compares them with its manifest)."""
        owner, init = self.init_of(variant)
        if "method" not in init:
            return None
        return {"variant": owner, "method": init["method"], "layers": init.get("layers", "first"),
                "seed": init.get("seed", 0), "teacher": self.teacher_file(self.init_teacher(student, variant)),
                "student": self.student_model(student, variant)}

    def mode(self, variant: str) -> str:
        return self.variant(variant).get("mode", "finetune")

    def distill_teacher(self, variant: str) -> Optional[str]:
        spec = self.variant(variant)
        return spec["distill"]["teacher"] if self.mode(variant) == "distill" else None

    def teacher_file(self, teacher: str) -> str:
        return f"results/teachers/{teacher}.safetensors"

    # -------------------------------------------------------------------------- recipes
    def recipe(self, student: str, dataset: str, variant: str) -> Dict[str, Any]:
        """Recipe overrides of one run: the study's, the dataset's, the student's, the variant's."""
        out = dict(self.spec.get("recipe", {}))
        out.update(self.datasets[dataset].get("recipe", {}))
        out.update(self.students[student].get("recipe", {}))
        out.update(self.variant(variant).get("recipe", {}))
        return out

    def source_dataset(self, dataset: str) -> str:
        return self.datasets[dataset].get("dataset", dataset)

    def recipe_source(self, student: str, dataset: str) -> str:
        """A digest of the recipes.yaml rows a run starts from: an edit of them reruns the run."""
        family = model_shape(self.students[student]["model"])[0]
        return _digest(recipe_rows(family, self.source_dataset(dataset)))

    def epochs(self, student: str, dataset: str, variant: str) -> int:
        """The run's epochs: its overrides, else the recipes.yaml row (read as data, no torch)."""
        return recipe_epochs(self.students[student]["model"], self.source_dataset(dataset),
                             self.recipe(student, dataset, variant))

    # -------------------------------------------------------------------------- tables
    def _table_spec(self, name: str, table: Mapping[str, Any]) -> dict:
        where = f"table '{name}'"
        spec = dict(table)
        spec.setdefault("students", list(self.students))
        spec.setdefault("datasets", list(self.datasets))
        spec.setdefault("metric", "final_top1")
        spec.setdefault("median_of", {})
        spec.setdefault("substitute", {})
        rows = spec["rows"] if isinstance(spec["rows"], list) else [spec["rows"]]
        spec["rows"] = rows
        spec["columns"] = [a for a in AXES if a not in rows]
        if spec["metric"] not in METRIC_NAMES:
            self._fail(where, f"metric '{spec['metric']}' is not one of {list(METRIC_NAMES)}")
        self._known("student", spec["students"], self.students, where)
        self._known("dataset", spec["datasets"], self.datasets, where)
        self._known("variant", spec["variants"], self.variants, where)
        for shown, draws in spec["median_of"].items():
            if shown not in spec["variants"]:
                self._fail(where, f"median_of names '{shown}', which is not one of its variants")
            self._known("variant", draws, self.variants, f"{where}, median_of.{shown}")
        for dataset, swaps in spec["substitute"].items():
            self._known("dataset", [dataset], spec["datasets"], f"{where}, substitute")
            self._known("variant", list(swaps), spec["variants"], f"{where}, substitute.{dataset}")
            self._known("variant", list(swaps.values()), self.variants, f"{where}, substitute.{dataset}")
        base = spec.get("change_from")
        if base is not None and base not in spec["variants"]:
            self._fail(where, f"change_from '{base}' is not one of its variants {spec['variants']}")
        return spec

    def cell_variants(self, table: str, dataset: str, variant: str) -> List[str]:
        """The variants whose runs fill a cell: the variant (or its ``substitute`` on this dataset),
        or its draws (``median_of``)."""
        spec = self.tables[table]
        variant = spec["substitute"].get(dataset, {}).get(variant, variant)
        return list(spec["median_of"].get(variant, [variant]))

    def table_cells(self, table: str) -> List[dict]:
        """Every cell of a table: {student, dataset, variant, draws: [variants], runs: [Run]}."""
        spec = self.tables[table]
        cells = []
        for student, dataset, variant in itertools.product(spec["students"], spec["datasets"], spec["variants"]):
            draws = self.cell_variants(table, dataset, variant)
            runs = [Run(student, dataset, d, s) for d in draws for s in self.seeds]
            teacher = self.init_teacher(student, draws[0]) or self.distill_teacher(draws[0])
            cells.append(dict(student=student, dataset=dataset, variant=variant, draws=draws, runs=runs,
                              teacher=teacher))
        return cells

    def table_runs(self, table: str) -> List[Run]:
        return list(dict.fromkeys(r for c in self.table_cells(table) for r in c["runs"]))

    def table_params(self, table: str) -> dict:
        """What the generic table function needs besides the run files (plain data)."""
        spec = self.tables[table]
        return dict(
            name=table,
            title=spec.get("title", table),
            paper=spec.get("paper"),
            rows=spec["rows"],
            columns=spec["columns"],
            metric=spec["metric"],
            change_from=spec.get("change_from"),
            cells=[{k: c[k] for k in ("student", "dataset", "variant", "draws", "teacher")}
                   for c in self.table_cells(table)],
            seeds=self.seeds,
            paper_models={s: self.students[s].get("paper_model") for s in spec["students"]},
            paper_datasets={d: self.datasets[d].get("paper_dataset", d) for d in spec["datasets"]},
            paper_settings={v: self._paper_key(v) for v in spec["variants"]},
        )

    def _paper_key(self, variant: str) -> dict:
        spec = self.variant(variant)
        paper = dict(spec.get("paper", {}))
        paper.setdefault("setting", variant)
        return paper

    # -------------------------------------------------------------------------- figures
    def _figure_specs(self, figures: Mapping[str, Any]) -> None:
        for name, fig in figures.items():
            fig = dict(fig)
            if fig["kind"] == "epochs":
                self._known("student", [fig["student"]], self.students, f"figure '{name}'")
                self._known("variant", fig["variants"], self.variants, f"figure '{name}'")
                fig["sweep"] = {}
                for v in fig["variants"]:
                    for e in fig["epochs"]:
                        if int(e) == self.epochs(fig["student"], fig["dataset"], v):
                            fig["sweep"][v] = (v, int(e))  # the variant's own runs: no run of its own
                            continue
                        derived = f"{v}_ep{e}"
                        spec = self.variant(v)
                        init = spec.get("init", {"baseline": "random"})
                        if isinstance(init, dict) and "method" in init:
                            init = v  # share v's init file
                        recipe = dict(spec.get("recipe", {}), epochs=int(e))
                        self.variants[derived] = dict(spec, init=init, recipe=recipe)
                        fig["sweep"][derived] = (v, int(e))
                        self._extra_runs += [Run(fig["student"], fig["dataset"], derived, s) for s in self.seeds]
            elif fig["kind"] == "pretraining":
                self._pretraining_sweep(name, fig)
            self.figures[name] = fig

    def _pretraining_sweep(self, name: str, fig: dict) -> None:
        student, pre = fig["student"], fig["pretrain"]
        if student not in self.students:
            self._fail(f"figure '{name}'", f"unknown student '{student}'; known: {sorted(self.students)}")
        fig["sweep"] = {}
        for e in pre["epochs"]:
            teacher = f"{student}_{pre['dataset']}_ep{e}"
            self.teachers[teacher] = {
                "source": "pretrain", "model": self.students[student]["model"],
                "pretrain": {"dataset": pre["dataset"], "recipe": dict(pre.get("recipe", {}), epochs=int(e))},
            }
            variant = f"pretrained_{pre['dataset']}_ep{e}"
            self.variants[variant] = {"init": {"method": "uniform", "layers": "first", "teacher": teacher},
                                      "label": f"pretrained {e} epochs on {pre['dataset']}"}
            fig["sweep"][variant] = int(e)
            self._extra_runs += [Run(student, fig["dataset"], variant, s) for s in self.seeds]
        for v in (fig["reference"], fig["baseline"]):
            self._extra_runs += [Run(student, fig["dataset"], v, s) for s in self.seeds]

    def _check_figure(self, name: str, fig: dict) -> None:
        where = f"figure '{name}'"
        students = fig.get("students", [fig["student"]] if "student" in fig else [])
        self._known("student", students, self.students, where)
        datasets = fig.get("datasets", [fig["dataset"]] if "dataset" in fig else [])
        self._known("dataset", datasets, self.datasets, where)
        self._known("variant", fig.get("variants", []), self.variants, where)
        if fig["kind"] == "attention" and model_shape(self.students[fig["student"]]["model"])[0] != "vit":
            self._fail(where, f"attention maps need a ViT student, '{fig['student']}' is not one")

    def figure_outputs(self, name: str) -> List[str]:
        fig = self.figures[name]
        if fig["kind"] == "curves":
            return [f"results/figures/{name}_{s}_{d}.png" for s in fig["students"] for d in fig["datasets"]]
        return [f"results/figures/{name}.png"]

    def curve_runs(self, figure: str, student: str, dataset: str) -> List[Run]:
        fig = self.figures[figure]
        return [Run(student, dataset, v, s) for v in fig["variants"] for s in self.seeds]

    def figure_runs(self, name: str) -> List[Run]:
        fig = self.figures[name]
        if fig["kind"] == "curves":
            return [r for s in fig["students"] for d in fig["datasets"] for r in self.curve_runs(name, s, d)]
        if fig["kind"] == "epochs":
            return [Run(fig["student"], fig["dataset"], v, s) for v in fig["sweep"] for s in self.seeds]
        if fig["kind"] == "pretraining":
            variants = [*fig["sweep"], fig["reference"], fig["baseline"]]
            return [Run(fig["student"], fig["dataset"], v, s) for v in variants for s in self.seeds]
        return []

    # -------------------------------------------------------------------------- the whole study
    def runs(self) -> List[Run]:
        """Every run of the study, once (tables and figures share runs)."""
        runs = [r for t in self.tables for r in self.table_runs(t)]
        runs += [r for f in self.figures for r in self.figure_runs(f)]
        return list(dict.fromkeys(runs + self._extra_runs))

    def targets(self) -> List[str]:
        out = [f"results/tables/{t}.csv" for t in self.tables]
        return out + [p for f in self.figures for p in self.figure_outputs(f)]

    def _check_pairs(self) -> None:
        """Every teacher a run needs exists, and each selection pair fits (family, width, depth)."""
        for s, spec in self.students.items():
            self._known("teacher", [spec["teacher"]], self.teachers, f"student '{s}'")
        pairs = set()
        for run in self.runs():
            variant = self.variant(run.variant)
            mode = self.mode(run.variant)
            where = f"variant '{run.variant}'"
            if mode == "distill":
                if "distill" not in variant:
                    self._fail(where, "mode distill needs distill: {kind: logit|feature, alpha, teacher}")
                self._known("teacher", [variant["distill"]["teacher"]], self.teachers, where)
            _, init = self.init_of(run.variant)
            if "method" in init:
                pairs.add((run.student, self.init_teacher(run.student, run.variant), run.variant))
        for student, teacher, variant in sorted(pairs):
            self._known("teacher", [teacher], self.teachers, f"variant '{variant}'")
            self._check_pair(student, teacher, variant)

    def _check_pair(self, student: str, teacher: str, variant: str) -> None:
        s_fam, s_width, s_depth = model_shape(self.students[student]["model"])
        t_fam, t_width, t_depth = model_shape(self.teachers[teacher]["model"])
        where = f"student '{student}' from teacher '{teacher}' (variant '{variant}')"
        if s_fam and t_fam and s_fam != t_fam:
            self._fail(where, f"a {s_fam} student cannot be selected from a {t_fam} teacher; pick a {s_fam} teacher")
        if s_width and t_width and s_width > t_width:
            self._fail(where, f"the student is wider ({s_width}) than the teacher ({t_width}); pick a larger teacher")
        if s_depth and t_depth and s_depth > t_depth:
            self._fail(where, f"the student is deeper ({s_depth} blocks) than the teacher ({t_depth})")

    # -------------------------------------------------------------------------- what a train job gets
    def train_params(self, run: Run) -> dict:
        """Everything a training job passes to weightselect.training.train, as plain data."""
        variant = self.variant(run.variant)
        options = self.datasets[run.dataset].get("options", {})
        name = self.source_dataset(run.dataset)
        params = dict(
            model=self.student_model(run.student, run.variant),
            dataset={"name": name, **options} if options else name,
            recipe=self.recipe(run.student, run.dataset, run.variant),
            mode=self.mode(run.variant),
            init=None if self.is_selection(run.variant) else self.init_of(run.variant)[1]["baseline"],
            distill=None,
            teacher=None,
            recipe_source=self.recipe_source(run.student, run.dataset),
        )
        expected = self.init_expected(run.student, run.variant)
        if expected:
            params["expect_init"] = expected
        if self.spec.get("tensorboard"):  # only when on: the params of existing runs stay as they were
            params["tensorboard"] = True
        if params["mode"] == "distill":
            d = dict(variant["distill"])
            teacher = d.pop("teacher")
            params["distill"] = d
            params["teacher"] = {**self.teachers[teacher]["model"], "weights": self.teacher_file(teacher)}
        return params


# ------------------------------------------------------------------------------ a study outside Snakemake
def load_study(configfile: Any = "config.yaml", name: Optional[str] = None, schema: Any = None) -> Study:
    """The study ``name`` of a workflow's config file, read as the Snakefile reads it.

    ``configfile``: the workflow's ``config.yaml``; ``name``: a key of its ``studies`` (default: its
    ``study`` key, as ``snakemake`` without ``--config study=...``); ``schema``: the JSON schema
    (default ``schemas/config.schema.yaml`` beside the config file). The config is validated, and
    the schema's defaults filled in, by ``snakemake.utils.validate`` as in ``rules/common.smk``.
    Raises FileNotFoundError (config or schema missing), RuntimeError (Snakemake not installed:
    the ``workflow`` extra), yaml.YAMLError (not YAML), ValueError (the config breaks the schema) and
    StudyConfigError (an unknown study or an inconsistent one).
    """
    configfile = Path(configfile)
    if not configfile.is_file():
        raise FileNotFoundError(f"--configfile {configfile}: no such file; pass the workflow's config.yaml "
                                "(run from the workflow's folder, or give its path)")
    schema = Path(schema) if schema is not None else configfile.parent / "schemas" / "config.schema.yaml"
    if not schema.is_file():
        raise FileNotFoundError(f"{schema}: no config schema beside {configfile}; a workflow folder holds "
                                "config.yaml and schemas/config.schema.yaml")
    try:
        from snakemake.exceptions import WorkflowError
        from snakemake.utils import validate
    except ModuleNotFoundError:
        raise RuntimeError("reading a study needs Snakemake: pip install 'weightselect[workflow]'") from None
    with configfile.open() as stream:  # a YAML error then names the file
        config = yaml.safe_load(stream)
    try:
        validate(config, str(schema.resolve()))
    except WorkflowError as exc:
        raise ValueError(f"{configfile} breaks {schema.name}: {_schema_error(exc)}") from None
    name = name or config.get("study", "demo")
    if name not in config["studies"]:  # Study's own message gives Snakemake's --config syntax
        raise StudyConfigError(f"study '{name}' is not in {configfile}; choose one of {sorted(config['studies'])}")
    return Study(config, name)


def _schema_error(exc: Exception) -> str:
    """jsonschema's message and where (``$.studies.t.seeds``) behind Snakemake's WorkflowError."""
    cause = exc.__context__
    if hasattr(cause, "json_path") and hasattr(cause, "message"):
        return f"{cause.message} at {cause.json_path}; fix that key"
    lines = [line for line in str(exc).splitlines() if line.startswith("ValidationError")]
    return lines[0] if lines else str(exc).splitlines()[0]
