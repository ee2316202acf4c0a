"""The paper's published numbers as data (``paper_numbers.csv`` beside this module).

One row per published number, in long format:

| column | meaning |
| --- | --- |
| ``table`` | ``table2`` ... ``table17`` (the paper's table number) |
| ``model`` | paper model: ``vit_t``, ``convnext_f`` (also ``vit_a``, ``vit_s`` in Tables 6, 16, 17) |
| ``dataset`` | one of :data:`PAPER_DATASETS` |
| ``setting`` | the init: ``random`` (timm default), ``xavier``, ``kaiming``, ``ws_uniform``, ``ws_consecutive``, ``ws_random``, ``ws_random_nocons``, ... |
| ``teacher`` | the weight-selection (or distillation) teacher; empty for baselines |
| ``metric`` | ``test_top1`` after training, or ``linear_probe_top1`` (Table 9) |
| ``top1`` | accuracy in percent, as printed |
| ``note`` | anything the number needs to be read right |
"""
from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Optional

import pandas as pd

__all__ = [
    "PAPER_MODELS",
    "PAPER_DATASETS",
    "INIT_LABELS",
    "paper_numbers",
    "paper_value",
    "init_label",
]

#: The paper's two main students (Table 1).
PAPER_MODELS = ("vit_t", "convnext_f")

#: Table 2's datasets, in the paper's order (by number of images, largest first).
PAPER_DATASETS = (
    "imagenet",
    "svhn",
    "food101",
    "eurosat",
    "cifar10",
    "cifar100",
    "stl10",
    "flowers102",
    "pets",
    "dtd",
)

#: Readable names for the inits, as the paper words them.
INIT_LABELS = {
    "random": "random init (timm default)",
    "xavier": "Xavier init",
    "kaiming": "Kaiming init",
    "mimetic": "mimetic init",
    "ws_uniform": "weight selection (uniform)",
    "ws_consecutive": "weight selection (consecutive)",
    "ws_random": "weight selection (random w/ consistency)",
    "ws_random_nocons": "weight selection (random w/o consistency)",
    "l1": "L1 pruning",
    "magnitude": "magnitude pruning",
    "distill": "distillation",
    "distill_ws_uniform": "distillation + weight selection",
}


def init_label(variant: str) -> str:
    """A readable legend/table label for a variant name (the name itself when unknown)."""
    return INIT_LABELS.get(variant, variant)


@functools.lru_cache(maxsize=1)
def _load() -> pd.DataFrame:
    with resources.files(__package__).joinpath("paper_numbers.csv").open("r") as fh:
        df = pd.read_csv(fh, dtype={"teacher": "string", "note": "string"})
    return df


def paper_numbers(table: Optional[str] = None) -> pd.DataFrame:
    """All published numbers (a copy), or those of one table (``"table2"``, ``"table3"``, ...)."""
    df = _load()
    if table is not None:
        known = sorted(df["table"].unique(), key=lambda t: int(t.removeprefix("table")))
        if table not in known:
            raise ValueError(f"no paper numbers for {table!r}; known tables: {', '.join(known)}")
        df = df[df["table"] == table]
    return df.reset_index(drop=True).copy()


def paper_value(
    model: Optional[str],
    dataset: Optional[str],
    setting: str,
    table: str = "table2",
    teacher: Optional[str] = None,
) -> float:
    """The published top-1 for (model, dataset, setting) in ``table``; NaN when the paper has none.

    ``model`` or ``dataset`` may be None (a study model or dataset with no paper counterpart),
    which gives NaN: the paper columns of a table stay empty rather than guessed. Tables 5 and 8
    compare teachers for one setting; pass ``teacher`` to pick one there.
    """
    if model is None or dataset is None or (isinstance(model, float) and math.isnan(model)):
        return math.nan
    df = _load()
    hit = df[
        (df["table"] == table)
        & (df["model"] == model)
        & (df["dataset"] == dataset)
        & (df["setting"] == setting)
    ]
    if teacher is not None:
        hit = hit[hit["teacher"] == teacher]
    if hit.empty:
        return math.nan
    if len(hit) > 1:
        teachers = ", ".join(str(t) for t in hit["teacher"])
        raise ValueError(
            f"{table} has {len(hit)} numbers for {model}/{dataset}/{setting}, one per teacher "
            f"({teachers}); pass teacher= to choose one"
        )
    return float(hit["top1"].iloc[0])
