"""``apply_init``: put an initialization into a built student model (what the trainer calls)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import torch.nn as nn

from weightselect.io import load_init, manifest_path, sha256_file
from weightselect.selection.baselines import BASELINES, apply_baseline
from weightselect.selection.select import classifier_keys

__all__ = ["apply_init", "InitMismatchError"]


class InitMismatchError(ValueError):
    """An init file does not fit the model it is loaded into."""


def apply_init(model: nn.Module, init: str | os.PathLike, seed: int) -> Dict[str, Any]:
    """Initialize ``model`` in place from ``init``: a baseline name (``BASELINES``) or an init file.

    For a file, the model first gets its seeded default init (so parameters the file leaves out, the
    manifest's ``reinitialized``, are reproducible), then the file is loaded. Anything else missing,
    any unexpected name or any shape mismatch is an error. Returns a small description for run
    metadata.
    """
    if isinstance(init, str) and init in BASELINES:
        return apply_baseline(model, init, seed)
    path = Path(init)
    if not path.is_file() and not manifest_path(path).is_file():  # an orphan manifest: load_init names it
        raise FileNotFoundError(
            f"init '{init}' is neither a baseline ({', '.join(BASELINES)}) nor an existing init file"
        )
    state_dict, manifest = load_init(path)
    own = model.state_dict()
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in state_dict]
    allowed = set(manifest.get("reinitialized") or ())
    not_allowed = [k for k in missing if k not in allowed]
    if unexpected or mismatched or not_allowed:
        student = (manifest.get("student") or {}).get("name", "unknown")
        parts = []
        if mismatched:
            parts.append(f"shape mismatches: {'; '.join(mismatched[:5])}")
        if unexpected:
            parts.append(f"names the model lacks: {', '.join(unexpected[:5])}")
        if not_allowed:
            parts.append(f"model parameters missing from the file: {', '.join(not_allowed[:5])}")
        hint = "Build the student with the spec in the manifest"
        clf = set(classifier_keys(model))
        if mismatched and not unexpected and not not_allowed and all(m.split(":")[0] in clf for m in mismatched):
            hint = (
                "Only the classifier differs: select again with the student's num_classes in its kwargs "
                "(the head is then re-initialized), or build the model with the manifest's num_classes"
            )
        raise InitMismatchError(
            f"init file {path} (made for student '{student}') does not fit this "
            f"{type(model).__name__}: " + "; ".join(parts) + f". {hint}."
        )
    info = apply_baseline(model, "random", seed)  # the seeded default for the reinitialized names
    model.load_state_dict(state_dict, strict=False)
    return {
        "init": str(init),
        "kind": "file",
        "sha256": sha256_file(path),
        "method": manifest.get("method"),
        "layers": manifest.get("layers"),
        "teacher": manifest.get("teacher"),
        "head": manifest.get("head"),
        "reinitialized": missing,
        "seed": info["seed"],
    }
