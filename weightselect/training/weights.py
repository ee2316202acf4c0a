"""The run's init: an init file read, checked and hashed once, or a baseline name (loading a state
dict into a model is :func:`weightselect.models.load_weights`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch.nn as nn

from weightselect import io as wio

__all__ = ["RunInit", "read_init"]


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
        from weightselect.selection.apply import load_init_tensors
        from weightselect.selection.baselines import apply_baseline

        if self.kind == "baseline":
            return apply_baseline(model, self.name, seed)
        from safetensors.torch import load as load_bytes

        try:
            state_dict = load_bytes(self._data)
        except Exception as exc:
            raise wio.WeightsFileError(f"{self.name}: not a valid safetensors file ({exc})") from None
        # the model's classes are its dataset's: a classifier of another class count starts anew
        info = load_init_tensors(model, state_dict, self.manifest, seed, source=f"init file {self.name}",
                                 new_classifier=True)
        self._data = None  # read once, used once
        return {"init": self.name, "kind": "file", "sha256": self.sha256, **info}


def read_init(init: Optional[str]) -> RunInit:
    """``None`` or a baseline name, or an init file read and hashed in one pass (its manifest beside it).

    Raises FileNotFoundError for a name that is neither a baseline nor a file; InitFileError when
    the pair does not hold together, InitProvenanceError when the manifest's index sets are not
    its method's (weightselect.selection.provenance).
    """
    from weightselect.selection import BASELINES
    from weightselect.selection.provenance import check_indices

    name = "random" if init is None else str(init)
    path = Path(name)
    if name in BASELINES and not path.exists():
        return RunInit(name, "baseline")
    if not path.is_file() and not wio.manifest_path(path).is_file():
        raise FileNotFoundError(
            f"init '{name}' is neither a baseline ({', '.join(BASELINES)}) nor an existing init file; "
            "make one with `weightselect select ...`"
        )
    if path.suffix != ".safetensors":
        raise wio.WeightsFileError(f"init file {path}: an init file is a .safetensors file (weightselect select)")
    data, manifest, digest = wio.read_init_file(path)  # the pair checked as one unit, hashed once
    check_indices(manifest, path)  # a manifest edited after selection
    return RunInit(name, "file", digest, manifest, data)
