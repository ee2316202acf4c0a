"""A study as data: its runs, tables and figures, from the workflow's ``config.yaml``.

A **run** is student x dataset x variant x seed (folder ``results/runs/{student}/{dataset}/
{variant}/seed{seed}``, :func:`weightselect.rundir.run_path`). A **variant** says everything that
makes a run differ: its init (a baseline, a weight selection from a teacher, or another variant's
init), its training mode (``finetune``, ``distill`` with kind, alpha and teacher, ``probe``) and
recipe overrides. A **table** (:mod:`weightselect.study.tables`) names its rows, its column groups,
the variants, students and datasets whose runs fill its cells, the metric and the aggregation
(mean +- std over training seeds; Table 3's median over selection draws), the paper table it
reproduces and the paper's claims about it (:mod:`weightselect.study.claims`). A **figure**
(:mod:`weightselect.study.figures`) is the same idea for plots (curves, an epoch sweep, a
pretraining sweep, attention maps).

This package imports nothing heavy (yaml only): the Snakefile builds a :class:`Study` at parse
time. Every name a study uses is checked here, so a bad config fails before any job starts
(:class:`StudyConfigError`, one line naming the key and the fix).
"""
from weightselect.study.base import (
    AXES, BASELINES, LAYER_METHODS, MODES, RUNS_ROOT, SELECTION_METHODS, Run, StudyConfigError, model_shape,
    recipe_epochs, recipe_rows,
)
from weightselect.study.core import Study, load_study

__all__ = [
    "Run", "Study", "StudyConfigError", "load_study", "AXES", "MODES", "model_shape", "RUNS_ROOT",
    "SELECTION_METHODS", "LAYER_METHODS", "BASELINES", "recipe_epochs", "recipe_rows",
]
