"""What every part of a study shares: runs, the config error, model shapes by name, recipe rows."""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml

from weightselect.rundir import FINAL, METRICS, run_path

__all__ = [
    "Run", "StudyConfigError", "AXES", "MODES", "model_shape", "RUNS_ROOT", "SELECTION_METHODS", "LAYER_METHODS",
    "BASELINES", "recipe_epochs", "recipe_rows",
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
    path = Path(__file__).parent.parent / "training" / "recipes.yaml"
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


