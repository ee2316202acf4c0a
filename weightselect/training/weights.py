"""Weights into models: the one place that loads a state dict into a model and reports what does
not fit, and the run's init (an init file read, checked and hashed once, or a baseline name)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

import torch
import torch.nn as nn

from weightselect import io as wio

__all__ = ["WeightsMismatchError", "load_weights", "RunInit", "read_init"]


class WeightsMismatchError(ValueError):
    """A state dict does not fit the model it is loaded into."""


def load_weights(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str,
    allow_missing: Iterable[str] = (), hint: str = "",
) -> Dict[str, Any]:
    """Load ``state_dict`` into ``model``: every model tensor must be there with its shape, except
    the names in ``allow_missing``; no unexpected name.

    Raises WeightsMismatchError naming ``source``, up to five names of each kind (shape
    mismatches, names the model lacks, model tensors missing from the file) and ``hint``.
    Returns {"missing": [...]} (the allowed missing names).
    """
    own = model.state_dict()
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state_dict]
    allowed = set(allow_missing)
    not_allowed = [k for k in missing if k not in allowed]
    if unexpected or mismatched or not_allowed:
        parts = []
        if mismatched:
            parts.append(f"shape mismatches: {'; '.join(mismatched[:5])}")
        if unexpected:
            parts.append(f"names the model lacks: {', '.join(unexpected[:5])}")
        if not_allowed:
            parts.append(f"model tensors missing from the file: {', '.join(not_allowed[:5])}")
        raise WeightsMismatchError(
            f"{source} does not fit this {type(model).__name__}: " + "; ".join(parts) + (f". {hint}" if hint else "")
        )
    model.load_state_dict(dict(state_dict), strict=False)
    return {"missing": missing}


@dataclass
class RunInit:
    """A run's init: a baseline name (``random``, ``xavier``, ...) or an init file (safetensors +
    manifest) whose bytes were read and hashed once."""

    name: str
    kind: str  # baseline | file
    sha256: Optional[str] = None
    manifest: Dict[str, Any] = field(default_factory=dict)
    _data: Optional[bytes] = field(default=None, repr=False)

    def describe(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"init": self.name, "kind": self.kind}
        if self.kind == "file":
            out.update(sha256=self.sha256, manifest=self.manifest)
        return out

    def apply(self, model: nn.Module, seed: int) -> Dict[str, Any]:
        """Initialize ``model`` in place. A file: the seeded default init first (for the names the
        manifest lists as ``reinitialized``), then the file's tensors. Returns a description."""
        from weightselect.selection.baselines import apply_baseline

        if self.kind == "baseline":
            return apply_baseline(model, self.name, seed)
        from safetensors.torch import load as load_bytes

        try:
            state_dict = load_bytes(self._data)
        except Exception as exc:
            raise wio.WeightsFileError(f"{self.name}: not a valid safetensors file ({exc})") from None
        info = apply_baseline(model, "random", seed)
        student = (self.manifest.get("student") or {}).get("name", "unknown")
        loaded = load_weights(model, state_dict, source=f"init file {self.name} (made for student '{student}')",
                              allow_missing=self.manifest.get("reinitialized") or (),
                              hint="Build the student with the spec in the init's manifest.")
        self._data = None  # read once, used once
        return {"init": self.name, "kind": "file", "sha256": self.sha256, "method": self.manifest.get("method"),
                "layers": self.manifest.get("layers"), "teacher": self.manifest.get("teacher"),
                "reinitialized": loaded["missing"], "seed": info["seed"]}


def read_init(init: Optional[str]) -> RunInit:
    """``None`` or a baseline name, or an init file read and hashed in one pass (its manifest beside it).

    Raises FileNotFoundError for a name that is neither a baseline nor a file.
    """
    from weightselect.selection import BASELINES

    name = "random" if init is None else str(init)
    path = Path(name)
    if not path.is_file():
        if name in BASELINES:
            return RunInit(name, "baseline")
        raise FileNotFoundError(
            f"init '{name}' is neither a baseline ({', '.join(BASELINES)}) nor an existing init file; "
            "make one with `weightselect select ...`"
        )
    if path.suffix != ".safetensors":
        raise wio.WeightsFileError(f"init file {path}: an init file is a .safetensors file (weightselect select)")
    data = path.read_bytes()
    manifest_file = wio.manifest_path(path)
    manifest = wio.read_json(manifest_file) if manifest_file.is_file() else {}
    return RunInit(name, "file", hashlib.sha256(data).hexdigest(), manifest, data)
