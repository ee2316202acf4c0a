"""Training engine: the paper's recipe (Tables 13-15), datasets, the resumable loop,
distillation and linear probing. ``train`` is the entry point; see docs/training.md."""
from __future__ import annotations

__all__ = ["train", "probe", "resolve_recipe", "Recipe", "build_dataset"]


def __getattr__(name):
    if name == "train":
        from weightselect.training.loop import train

        return train
    if name == "probe":
        from weightselect.training.probe import probe

        return probe
    if name in ("resolve_recipe", "Recipe"):
        from weightselect.training import recipe

        return getattr(recipe, name)
    if name == "build_dataset":
        from weightselect.training.data import build_dataset

        return build_dataset
    raise AttributeError(name)
