"""Linear probing (Table 9) as a mode of the training engine.

``probe(model, dataset, run_dir, ...)`` is ``train(..., mode="probe")``: the model is built and
initialized as for fine-tuning, its classifier becomes ``BatchNorm1d(affine=False, eps=1e-6) ->
Linear`` and everything else is frozen; the head is trained with LARS on the MAE recipe (He et
al. 2022: batch 16384, base lr 0.1 at 256 with the linear rule, 90 epochs, 10 warm-up,
RandomResizedCrop + flip). Recipe overrides apply to that probe recipe. See docs/training.md.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = ["probe"]


def probe(model: Any, dataset: Any, run_dir, **kwargs: Any) -> Optional[Dict[str, Any]]:
    """``weightselect.training.train(model, dataset, run_dir, mode="probe", **kwargs)``."""
    from weightselect.training.loop import train

    if kwargs.get("distill") or kwargs.get("teacher"):
        raise ValueError("a linear probe does not distil: drop distill/teacher")
    return train(model, dataset, run_dir, mode="probe", **kwargs)
