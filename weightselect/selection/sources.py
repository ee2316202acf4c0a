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
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from weightselect.io import (
    TensorSource,
    WeightsFileError,
    cached_sha256,
    header_identity,
    hub_cache_only,
    not_a_file,
    open_tensor_source,
    remember_sha256,
    sha256_file,
)
from weightselect.models import ModelSpec, _check_known

from weightselect.selection.names import TEACHER_IDENTITIES as IDENTITIES

__all__ = ["TeacherSource", "open_teacher", "IDENTITIES", "state_dict_sha256", "HubWeightsUnavailable", "strip_wrappers"]

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


class HubWeightsUnavailable(RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


@dataclass
class TeacherSource:
    tensors: TensorSource
    description: Dict[str, Any]  # the manifest's "teacher" entry: {"source", "sha256", ...}
    model: Optional[nn.Module] = None  # the teacher's module (meta for a timm name), None for a file
    stripped: List[str] = field(default_factory=list)  # wrapper prefixes removed from its names
    hash_path: Optional[Path] = None  # a file whose sha256 is not known yet: hashed while it is read

    def close(self) -> None:
        self.tensors.close()

    def hasher(self):
        """A sha256 object to feed with the file during the selection's one pass over it, or None
        when the digest is already known (or the source cannot be hashed while read)."""
        return hashlib.sha256() if self.hash_path is not None and self.tensors.streams else None

    def finish_identity(self, hasher) -> None:
        """Put the file's sha256 in :attr:`description` (from ``hasher`` after a complete pass, else
        by reading the file once) and remember it for the next selection from the same file."""
        if self.hash_path is None:
            return
        if hasher is None:
            digest = sha256_file(self.hash_path)
        else:
            digest = hasher.hexdigest()
            remember_sha256(self.hash_path, digest)
        self.description["sha256"] = digest
        self.hash_path = None


def file_identity(path: Path, source: str, identity: str = "sha256", **extra) -> Tuple[Dict[str, Any], Optional[Path]]:
    """The manifest's ``teacher`` entry for a weights file, and the file to hash during the read
    (None when its sha256 is already known: Hugging Face blob name or the digest cache, see
    ``weightselect.io.cached_sha256``). ``identity="header"`` records the cheap
    ``weightselect.io.header_identity`` (header sha256 + size) instead of the full sha256; the
    name is checked once, by :func:`open_teacher`, its only caller."""
    if identity == "header":
        return {"source": source, **header_identity(path), **extra}, None
    digest = cached_sha256(path)
    return {"source": source, "sha256": digest, **extra}, (None if digest else Path(path))


# Wrapper prefixes that timm's ``clean_state_dict`` removes (DDP, torch.compile, in either order),
# then Lightning's ``model.`` when every name carries it.
TIMM_WRAPPERS = ("_orig_mod.", "module.", "_orig_mod.")
WHOLE_WRAPPERS = ("model.",)


def _strip_names(keys: List[str], student_keys: frozenset) -> Tuple[Dict[str, str], List[str]]:
    """``{clean name: stored name}`` and the prefixes removed (in order), as timm's
    ``clean_state_dict`` does, plus a prefix every name carries that the student's names lack."""
    mapping = {k: k for k in keys}
    stripped: List[str] = []
    for prefix in TIMM_WRAPPERS:
        if any(k.startswith(prefix) for k in mapping):
            mapping = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in mapping.items()}
            stripped.append(prefix)
    for prefix in WHOLE_WRAPPERS:
        if mapping and all(k.startswith(prefix) for k in mapping) and not any(
            k.startswith(prefix) for k in student_keys
        ):
            mapping = {k[len(prefix):]: v for k, v in mapping.items()}
            stripped.append(prefix)
    return mapping, list(dict.fromkeys(stripped))


def strip_wrappers(source: TeacherSource, student_keys) -> TeacherSource:
    """``source`` with wrapper prefixes (``module.``, ``_orig_mod.``, ``model.``) removed from its
    tensor names, still read one tensor at a time; ``source.stripped`` lists what was removed."""
    mapping, stripped = _strip_names(list(source.tensors.keys()), frozenset(student_keys))
    if not stripped:
        return source
    inner = source.tensors
    shapes = {k: inner.shape(v) for k, v in mapping.items()}
    back = {v: k for k, v in mapping.items()}

    def reader(keys, hasher):
        for key, tensor in inner.iter_tensors([mapping[k] for k in keys], hasher):
            yield back[key], tensor

    tensors = TensorSource(shapes, lambda k: inner.get(mapping[k]), inner.description, closer=inner.close,
                           reader=reader if inner.streams else None)
    log.info("teacher names: removed the wrapper prefixes %s", ", ".join(stripped))
    return replace(source, tensors=tensors, stripped=stripped)


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


def open_teacher(
    teacher: Any, teacher_kwargs: Optional[Mapping[str, Any]] = None, identity: str = "sha256",
    checkpoint_key: Optional[str] = None,
) -> TeacherSource:
    """Open the teacher for tensor-by-tensor reads; see the module docstring for what it accepts.

    ``identity`` (``sha256`` or ``header``) is how a teacher read from a file is identified in the
    manifest (:func:`file_identity`); a module or state dict is always identified by the sha256 of
    its tensors. Raises WeightsFileError for a missing file, ValueError for an unknown identity."""
    if identity not in IDENTITIES:
        raise ValueError(f"unknown teacher identity '{identity}'; choose one of {', '.join(IDENTITIES)}")
    if checkpoint_key is not None and not (isinstance(teacher, (str, os.PathLike)) and _looks_like_path(os.fspath(teacher))):
        raise ValueError("checkpoint_key (--checkpoint-key) chooses a state dict of a PyTorch checkpoint file; "
                         "the teacher here is not one")
    if isinstance(teacher, nn.Module):
        sd = teacher.state_dict()
        cfg = getattr(teacher, "pretrained_cfg", None) or {}
        name = cfg.get("architecture") or type(teacher).__name__
        return TeacherSource(
            TensorSource.from_state_dict(sd, f"module {name}"),
            {"source": f"module:{name}", "sha256": state_dict_sha256(sd)},
            model=teacher,
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
        if isinstance(value, str) and re.match(r"^[a-z][a-z0-9+.-]*://", value, re.IGNORECASE):
            raise WeightsFileError(
                f"{value}: a URL; weightselect reads a local file or a timm name (hub weights), it does not "
                "fetch URLs: download it first (e.g. curl -LO URL) and pass the file"
            )
        if isinstance(value, str) and value.startswith("hf-hub:"):  # timm's spelling of a hub repo
            repo = value[len("hf-hub:"):]
            if not repo.startswith("timm/"):
                raise WeightsFileError(
                    f"{value}: only timm's own hub repos (hf-hub:timm/NAME) are read by name; download the "
                    "repo's model.safetensors and pass the file"
                )
            return _open_pretrained(ModelSpec(repo[len("timm/"):], dict(teacher_kwargs or {})), identity)
        if isinstance(teacher, os.PathLike) or _looks_like_path(value):
            path = Path(value)
            if not path.is_file():
                raise not_a_file(path, "teacher weights file")
            tensors = open_tensor_source(path, checkpoint_key)
            try:
                description, hash_path = file_identity(path, str(value), identity)
            except BaseException:
                tensors.close()
                raise
            checkpoint = getattr(tensors, "checkpoint", None)
            if checkpoint:  # which state dict of a {'model': ..., 'model_ema': ...} checkpoint was read
                description["checkpoint_key"] = checkpoint["key"]
                description["checkpoint_entries"] = checkpoint["entries"]
                if len(checkpoint["entries"]) > 1:
                    log.warning("%s holds the state dicts %s; read '%s' (choose with --checkpoint-key)",
                                path, ", ".join(checkpoint["entries"]), checkpoint["key"])
            return TeacherSource(tensors, description, hash_path=hash_path)
        return _open_pretrained(ModelSpec(value, dict(teacher_kwargs or {})), identity)
    raise TypeError(
        f"teacher must be a timm model name, a weights file, an nn.Module or a state dict, not {type(teacher).__name__}"
    )


def _open_pretrained(spec: ModelSpec, identity: str = "sha256") -> TeacherSource:
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
            description, hash_path = file_identity(path, full_name, identity, hf_hub_id=cfg.hf_hub_id)
            return TeacherSource(open_tensor_source(path), description, model=_meta_model(spec), hash_path=hash_path)
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
        model=model,
    )


def _meta_model(spec: ModelSpec) -> Optional[nn.Module]:
    """The teacher architecture on the meta device (for its token grid); None if it cannot be built."""
    from weightselect.models import create_model, on_meta

    try:
        with on_meta():
            return create_model(ModelSpec(spec.architecture, dict(spec.kwargs)))
    except Exception:  # a model that cannot be built on meta: its attributes are then read from names
        return None


def _hub_safetensors(repo_id: str, name: str) -> Optional[Path]:
    """The cached (or downloaded) ``model.safetensors`` of a hub repo; None if the repo has none."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    offline, cache_only, why = hub_cache_only()  # no network: the cache at once, not after retries
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id=repo_id, filename="model.safetensors",
                                                    local_files_only=cache_only))
    except LocalEntryNotFoundError as exc:
        raise HubWeightsUnavailable(
            f"the weights of '{name}' (hub repo {repo_id}, file model.safetensors) are unavailable: {why}. "
            f"Download them where there is internet (hf download {repo_id} model.safetensors) "
            f"into the Hugging Face cache (HF_HOME){', unset HF_HUB_OFFLINE' * offline}, or pass a local "
            f".safetensors/.pth file as the teacher."
        ) from exc
    except EntryNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# Teacher files in an upstream layout (Microsoft's Swin, Meta's ConvNeXt, ...): timm converts them on
# load with the family's ``checkpoint_filter_fn(state_dict, model)``; we apply the same function.
def _normal(key: str) -> str:
    return re.sub(r"\d+", "#", key)


class _FilterModel:
    """What a timm ``checkpoint_filter_fn`` reads from its ``model``, at the teacher's widths.

    The filters use the model to reshape or resample tensors to the model's shapes. Selected
    dimensions must keep the teacher's size, so ``state_dict()[k]`` has the shape of the tensor the
    filter is converting (``current``) at the student's rank (1x1 convolutions vs linear layers), and
    submodules (window sizes, patch kernels) come from the student, where only unselected
    dimensions are read."""

    def __init__(self, student: nn.Module):
        self._student = student
        s_state = student.state_dict()
        self._rank = {_normal(k): v.dim() for k, v in s_state.items()}
        self.current: Optional[torch.Tensor] = None
        self._modules = dict(student.named_modules())

    def state_dict(self):
        proxy = self

        class _Shapes(dict):
            def __getitem__(self, key):
                v = proxy.current
                rank = proxy._rank.get(_normal(key), v.dim())
                shape = tuple(v.shape) + (1,) * max(rank - v.dim(), 0)
                return torch.empty(shape, device="meta")

            def __contains__(self, key):
                return _normal(key) in proxy._rank

        return _Shapes()

    def get_submodule(self, name: str) -> nn.Module:
        for candidate in (name, re.sub(r"blocks\.\d+", "blocks.0", name)):
            if candidate in self._modules:
                return self._modules[candidate]
        for other, module in self._modules.items():
            if _normal(other) == _normal(name):
                return module
        return self._student.get_submodule(name)

    def __getattr__(self, name):
        return getattr(self._student, name)


class _Tracked(dict):
    """A state dict whose ``items()`` tells the filter model which tensor is being converted."""

    def __init__(self, data, model: _FilterModel):
        super().__init__(data)
        self._model = model

    def items(self):
        for k, v in super().items():
            self._model.current = v
            yield k, v


def _filter_fn(student: nn.Module):
    module = sys.modules.get(type(student).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    return fn if callable(fn) and module.__name__.startswith("timm.models") else None


def convert_upstream(source: TeacherSource, student: nn.Module, student_keys) -> TeacherSource:
    """``source`` converted by the student family's timm ``checkpoint_filter_fn`` when the teacher's
    names are not the student's layout but the filter makes them so (tried first on meta tensors).
    A converted teacher is held in memory (the filter needs all of it); a teacher already in timm's
    layout is returned as it is, still read one tensor at a time."""
    fn = _filter_fn(student)
    if fn is None:
        return source
    student_norm = {_normal(k) for k in student_keys}
    t_keys = list(source.tensors.keys())
    if not t_keys or all(_normal(k) in student_norm for k in t_keys):
        return source  # already timm's layout
    meta = {k: torch.empty(source.tensors.shape(k), device="meta") for k in t_keys}
    proxy = _FilterModel(student)
    try:
        converted = fn(_Tracked(meta, proxy), proxy)
    except Exception as exc:  # a filter that needs real values or other model attributes
        log.info("the timm filter %s.checkpoint_filter_fn does not apply to this teacher (%s)", fn.__module__, exc)
        return source
    if set(converted) == set(t_keys):
        return source
    gained = sum(_normal(k) in student_norm for k in converted) - sum(_normal(k) in student_norm for k in t_keys)
    if gained <= 0:
        return source
    real = {k: source.tensors.get(k) for k in t_keys}
    state = fn(_Tracked(real, proxy), proxy)
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    name = f"{fn.__module__}.checkpoint_filter_fn"
    log.info("teacher in an upstream layout: converted with timm's %s (%d -> %d tensors)", name, len(real), len(state))
    source.tensors.close()
    description = {**source.description, "converted": name}
    return replace(source, tensors=TensorSource.from_state_dict(state, source.tensors.description), description=description)
