"""The :class:`Study`: one study of config.yaml with its variants, recipes and runs resolved and
checked (its tables: :mod:`weightselect.study.tables`; figures: :mod:`weightselect.study.figures`;
recipes and what a train job gets: :mod:`weightselect.study.recipes`), and :func:`load_study` to
read one outside Snakemake.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from weightselect.study.base import Run, StudyConfigError, model_shape
from weightselect.study.figures import StudyFigures
from weightselect.study.recipes import StudyRecipes
from weightselect.study.tables import StudyTables

__all__ = ["Study", "load_study"]


# ------------------------------------------------------------------------------ the study
class Study(StudyTables, StudyFigures, StudyRecipes):
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
        self.optional_tables: set = set()  # tables built only when named (`optional: true`)
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
        return [v for v, spec in self.variants.items()
                if isinstance(spec.get("init"), dict) and "method" in spec["init"]]

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

    # -------------------------------------------------------------------------- the whole study
    def runs(self, optional: bool = False) -> List[Run]:
        """Every run of the study's default plan (tables and figures share runs), once; with
        ``optional``, the runs of its optional tables too."""
        runs = [r for t in self.tables for r in self.table_runs(t) if optional or t not in self.optional_tables]
        runs += [r for f in self.figures for r in self.figure_runs(f)]
        return list(dict.fromkeys(runs + self._extra_runs))

    def default_tables(self) -> List[str]:
        """The tables of the study's ``all`` target and of ``results/claims.csv``: all but the optional."""
        return [t for t in self.tables if t not in self.optional_tables]

    def targets(self) -> List[str]:
        """What the ``all`` target builds: the default tables, the figures and their claims."""
        tables = self.default_tables()
        out = [f"results/tables/{t}.csv" for t in tables]
        out += [f"results/figures/{f}.claims.csv" for f, spec in self.figures.items() if spec["claims"]]
        if any(self.tables[t]["claims"] for t in tables) or any(f["claims"] for f in self.figures.values()):
            out.append("results/claims.csv")
        return out + [p for f in self.figures for p in self.figure_outputs(f)]

    def optional_targets(self) -> List[str]:
        """The optional tables' files (each with its claims), built only when asked for."""
        return [f"results/tables/{t}.csv" for t in self.tables if t in self.optional_tables]

    def _check_pairs(self) -> None:
        """Every teacher a run needs exists, and each selection pair fits (family, width, depth)."""
        for s, spec in self.students.items():
            self._known("teacher", [spec["teacher"]], self.teachers, f"student '{s}'")
        pairs = set()
        for run in self.runs(optional=True):
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
