"""Where the teacher's weights come from: a timm name (hub cache), a local file, a module, a dict.

Files are read tensor by tensor (``weightselect.io.open_tensor_source``), so selecting from a large
safetensors teacher needs memory near the student's size. Pretrained timm names are resolved to the
hub's ``model.safetensors`` through timm's pretrained config and ``huggingface_hub``'s cache (which
honours ``HF_HUB_OFFLINE``); a tag without safetensors on the hub falls back to loading the whole
model with ``timm.create_model(pretrained=True)``.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch
import torch.nn as nn

from weightselect.io import TensorSource, WeightsFileError, open_tensor_source, sha256_file
from weightselect.models import ModelSpec, _check_known

__all__ = ["TeacherSource", "open_teacher", "state_dict_sha256", "HubWeightsUnavailable"]

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


class HubWeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


@dataclass
class TeacherSource:
    tensors: TensorSource
    description: Dict[str, Any]  # the manifest's "teacher" entry: {"source", "sha256", ...}

    def close(self) -> None:
        self.tensors.close()


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A hash of names, dtypes, shapes and bytes of every tensor (in name order)."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy
    return h.hexdigest()


def _looks_like_path(value: str) -> bool:
    return value.endswith(WEIGHT_SUFFIXES) or os.sep in value or Path(value).exists()


def open_teacher(teacher: Any, teacher_kwargs: Optional[Mapping[str, Any]] = None) -> TeacherSource:
    """Open the teacher for tensor-by-tensor reads; see the module docstring for what it accepts."""
    if isinstance(teacher, nn.Module):
        sd = teacher.state_dict()
        cfg = getattr(teacher, "pretrained_cfg", None) or {}
        name = cfg.get("architecture") or type(teacher).__name__
        return TeacherSource(
            TensorSource.from_state_dict(sd, f"module {name}"),
            {"source": f"module:{name}", "sha256": state_dict_sha256(sd)},
        )
    if isinstance(teacher, Mapping):
        sd = dict(teacher)
        if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise TypeError("a teacher state dict must map parameter names to tensors")
        return TeacherSource(
            TensorSource.from_state_dict(sd, "state dict"),
            {"source": "state_dict", "sha256": state_dict_sha256(sd)},
        )
    if isinstance(teacher, (str, os.PathLike)):
        value = os.fspath(teacher)
        if isinstance(teacher, os.PathLike) or _looks_like_path(value):
            path = Path(value)
            if not path.is_file():
                raise WeightsFileError(f"teacher weights file not found: {path}")
            return TeacherSource(open_tensor_source(path), {"source": str(value), "sha256": sha256_file(path)})
        return _open_pretrained(ModelSpec(value, dict(teacher_kwargs or {})))
    raise TypeError(
        f"teacher must be a timm model name, a weights file, an nn.Module or a state dict, not {type(teacher).__name__}"
    )


def _open_pretrained(spec: ModelSpec) -> TeacherSource:
    """Pretrained weights of a timm name: the hub's safetensors (lazy), else timm in memory."""
    import timm

    _check_known(spec.architecture)
    try:
        cfg = timm.models.get_pretrained_cfg(spec.name)
    except RuntimeError:  # a known architecture with an unknown tag
        cfg = None
    if cfg is None:
        tags = timm.list_pretrained(f"{spec.architecture}.*")[:8]
        raise ValueError(
            f"no pretrained weights named '{spec.name}' in timm; available: {', '.join(tags) or 'none'}"
        )
    full_name = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    if cfg.hf_hub_id and not spec.kwargs:
        path = _hub_safetensors(cfg.hf_hub_id, full_name)
        if path is not None:
            log.info("teacher %s: reading %s tensor by tensor", full_name, path)
            return TeacherSource(
                open_tensor_source(path),
                {"source": full_name, "sha256": sha256_file(path), "hf_hub_id": cfg.hf_hub_id},
            )
    log.info("teacher %s: loading the whole pretrained model with timm", full_name)
    try:
        model = timm.create_model(spec.name, pretrained=True, **spec.kwargs)
    except Exception as exc:  # network, cache or checkpoint errors
        raise HubWeightsUnavailable(
            f"cannot load pretrained '{full_name}' ({exc}). Without internet, set HF_HUB_OFFLINE=1 with the "
            f"weights in the Hugging Face cache, or pass a local .safetensors/.pth file as the teacher."
        ) from exc
    sd = model.state_dict()
    return TeacherSource(
        TensorSource.from_state_dict(sd, f"pretrained {full_name}"),
        {"source": full_name, "sha256": state_dict_sha256(sd)},
    )


def _hub_safetensors(repo_id: str, name: str) -> Optional[Path]:
    """The cached (or downloaded) ``model.safetensors`` of a hub repo; None if the repo has none."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename="model.safetensors"))
    except LocalEntryNotFoundError as exc:
        offline = bool(constants.HF_HUB_OFFLINE)
        why = "HF_HUB_OFFLINE is set and it is not cached" if offline else "it is not cached and the hub cannot be reached"
        raise HubWeightsUnavailable(
            f"the weights of '{name}' (hub repo {repo_id}, file model.safetensors) are unavailable: {why}. "
            f"Download them where there is internet (huggingface-cli download {repo_id} model.safetensors) "
            f"into the Hugging Face cache (HF_HOME), unset HF_HUB_OFFLINE, or pass a local "
            f".safetensors/.pth file as the teacher."
        ) from exc
    except EntryNotFoundError:
        return None
