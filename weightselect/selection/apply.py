"""``apply_init``: put an initialization into a built student model (what the trainer calls)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping

import torch
import torch.nn as nn

from weightselect.io import load_init, manifest_path, sha256_file
from weightselect.models import WeightsMismatchError, load_weights
from weightselect.selection.baselines import BASELINES, apply_baseline
from weightselect.selection.select import classifier_keys

__all__ = ["apply_init", "load_init_tensors", "InitMismatchError"]

_HINT = "Build the student with the spec in the init's manifest."
_CLASSIFIER_HINT = ("Only the classifier differs: select again with the student's num_classes in its kwargs "
                    "(the head is then re-initialized), or build the model with the manifest's num_classes.")


class InitMismatchError(WeightsMismatchError):
    """An init file does not fit the model it is loaded into."""


def load_init_tensors(model: nn.Module, state_dict: Mapping[str, torch.Tensor], manifest: Mapping[str, Any],
                      seed: int, source: str, new_classifier: bool = False) -> Dict[str, Any]:
    """An init file's tensors into ``model``, in place: the one way an init file enters a model.

    The model first gets its seeded default init (timm's, ``apply_baseline(model, "random", seed)``),
    so that what the file leaves out (the manifest's ``reinitialized``, e.g. a new head) is
    reproducible; then every tensor of ``state_dict`` is loaded. Any other missing name, any
    unexpected name or shape mismatch raises InitMismatchError naming ``source``, the student the
    file was made for and the fix (when only the classifier differs: select again with the
    student's ``num_classes``). ``new_classifier=True`` (the trainer: the model's classes are its
    dataset's) leaves a classifier whose class count differs from the file's at the default init
    instead, as the paper fine-tunes a new head, and says so in ``head``. Returns method, layers,
    teacher, head (from the manifest), reinitialized (names left at the default init) and seed.
    """
    info = apply_baseline(model, "random", seed)
    student = (manifest.get("student") or {}).get("name", "unknown")
    head = manifest.get("head")
    if new_classifier:
        own = model.state_dict()
        differ = [k for k in classifier_keys(model) if k in state_dict and k in own
                  and tuple(state_dict[k].shape) != tuple(own[k].shape)]
        if differ:
            head = (f"reinitialized: the file's classifier ({state_dict[differ[0]].shape[0]} classes) does "
                    f"not fit the model's ({own[differ[0]].shape[0]})")
            state_dict = {k: v for k, v in state_dict.items() if k not in differ}
            manifest = dict(manifest, reinitialized=list(manifest.get("reinitialized") or []) + differ)
    try:
        loaded = load_weights(model, state_dict, source=f"{source} (made for student '{student}')",
                              allow_missing=manifest.get("reinitialized") or (), error=InitMismatchError)
    except InitMismatchError as exc:
        only_head = exc.mismatched and not exc.unexpected and not exc.missing
        hint = _CLASSIFIER_HINT if only_head and set(exc.mismatched) <= set(classifier_keys(model)) else _HINT
        raise InitMismatchError(f"{exc}. {hint}", exc.mismatched, exc.unexpected, exc.missing) from None
    return {"method": manifest.get("method"), "layers": manifest.get("layers"), "teacher": manifest.get("teacher"),
            "head": head, "reinitialized": loaded["missing"], "seed": info["seed"]}


def apply_init(model: nn.Module, init: str | os.PathLike, seed: int) -> Dict[str, Any]:
    """Initialize ``model`` in place from ``init``: a baseline name (``BASELINES``) or an init file.

    A file (safetensors + manifest, checked as a pair by :func:`weightselect.io.load_init`) goes
    through :func:`load_init_tensors`. Raises FileNotFoundError for a name that is neither,
    InitMismatchError when the file does not fit. Returns a small description for run metadata
    (with the file's sha256).
    """
    if isinstance(init, str) and init in BASELINES:
        return apply_baseline(model, init, seed)
    path = Path(init)
    if not path.is_file() and not manifest_path(path).is_file():  # an orphan manifest: load_init names it
        raise FileNotFoundError(
            f"init '{init}' is neither a baseline ({', '.join(BASELINES)}) nor an existing init file"
        )
    state_dict, manifest = load_init(path)
    info = load_init_tensors(model, state_dict, manifest, seed, source=f"init file {path}")
    return {"init": str(init), "kind": "file", "sha256": sha256_file(path), **info}
