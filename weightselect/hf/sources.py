"""Hugging Face teachers: a local model folder or a hub id, read tensor by tensor.

A teacher folder holds ``config.json`` and its weights as ``model.safetensors``, or as shards
``model-0000x-of-0000y.safetensors`` listed in ``model.safetensors.index.json`` (``weight_map``:
tensor name -> shard file), the layout ``save_pretrained`` writes. Each shard is opened for
positioned reads (:func:`weightselect.io.open_tensor_source`), so only the tensor being selected is
in memory. Older checkpoints in PyTorch's format, ``pytorch_model.bin`` or shards
``pytorch_model-0000x-of-0000y.bin`` listed in ``pytorch_model.bin.index.json`` (the layout
transformers 4 wrote with ``safe_serialization=False``), are read with
``torch.load(weights_only=True)`` only, memory-mapped where the file is in torch's zip format; each
file must be a plain ``{name: tensor}`` dict (anything else is refused, never unpickled).

A hub id (``org/name``, optionally ``org/name@revision``) is resolved through the Hugging Face cache
with ``huggingface_hub.snapshot_download`` (config, safetensors and tokenizer files only; the
``pytorch_model*.bin`` files only for a model that has no safetensors), which honours
``HF_HUB_OFFLINE`` and ``HF_HOME``/``HF_HUB_CACHE``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from weightselect.io import (
    TensorSource, WeightsFileError, hub_cache_only, open_tensor_source, sha256_file,
)

__all__ = [
    "HFTeacher",
    "open_hf_teacher",
    "is_hf_teacher",
    "resolve_hf_folder",
    "TOKENIZER_FILES",
    "tokenizer_files",
    "SAFE_INDEX",
    "BIN_INDEX",
    "checkpoint_names",
    "Merged",
]

SAFE_SINGLE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_SINGLE = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"
# files a tokenizer (slow or fast) may consist of; copied into the student's folder
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model", "chat_template.jinja",
)
_HUB_PATTERNS = ["config.json", "generation_config.json", "*.safetensors", SAFE_INDEX, *TOKENIZER_FILES]
_HUB_BIN_PATTERNS = [BIN_SINGLE, BIN_INDEX, "pytorch_model-*-of-*.bin"]  # only when there is no safetensors
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".json")  # files: the timm path
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


@dataclass
class HFTeacher:
    """An opened teacher: its folder, config, lazily read tensors and the manifest's description."""

    folder: Path
    config: Any
    tensors: TensorSource
    description: Dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.tensors.close()


def is_hf_teacher(value: Any) -> bool:
    """Whether ``value`` names a transformers teacher: a folder with ``config.json``, or a hub id
    ``org/name`` that is not a local file (timm names have no ``/``)."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    path = Path(value)
    if path.is_dir():
        return (path / "config.json").is_file()
    text = os.fspath(value)
    if path.exists() or text.endswith(_WEIGHT_SUFFIXES) or text.startswith(("hf-hub:", "timm/")):
        return False
    return bool(_HUB_ID.match(text))


def tokenizer_files(folder: Path) -> List[Path]:
    """The tokenizer files present in a model folder."""
    return [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]


def _snapshot(hub, repo_id: str, revision: str, patterns: List[str], cache_only: bool) -> Path:
    return Path(hub.snapshot_download(repo_id=repo_id, revision=revision or None, allow_patterns=patterns,
                                      local_files_only=cache_only))


def resolve_hf_folder(teacher: str | os.PathLike) -> tuple[Path, Optional[Dict[str, str]]]:
    """The local folder of a teacher: itself, or the cached snapshot of a hub id (downloaded when
    online). Returns ``(folder, {"hf_hub_id", "revision"} or None)``."""
    path = Path(teacher)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise WeightsFileError(f"{path} has no config.json: a transformers teacher is a folder "
                                   "written by save_pretrained")
        return path, None
    text = os.fspath(teacher)
    if not _HUB_ID.match(text):
        raise WeightsFileError(f"teacher '{text}' is neither a model folder nor a hub id 'org/name'")
    repo_id, _, revision = text.partition("@")
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    _, cache_only, why = hub_cache_only()  # no network: the cache at once, not after retries
    try:
        folder = _snapshot(huggingface_hub, repo_id, revision, _HUB_PATTERNS, cache_only)
        if not (folder / SAFE_SINGLE).is_file() and not (folder / SAFE_INDEX).is_file():  # an older, .bin-only model
            folder = _snapshot(huggingface_hub, repo_id, revision, _HUB_BIN_PATTERNS, cache_only)
    except LocalEntryNotFoundError as exc:
        raise WeightsFileError(
            f"hub model '{repo_id}' is unavailable: {why}. Download it where there is internet "
            f"(hf download {repo_id}) into the Hugging Face cache (HF_HOME), or pass its local folder."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise WeightsFileError(f"hub model '{repo_id}' does not exist (or needs a token: hf auth login)") from exc
    return folder, {"hf_hub_id": repo_id, "revision": revision or "main"}


def _combined_sha256(files: Dict[str, str]) -> str:
    """One hash for a sharded teacher: sha256 over the sorted ``name:sha256`` lines of its shards."""
    text = "".join(f"{name}:{digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _load_bin(path: Path) -> Dict[str, Any]:
    """A ``pytorch_model*.bin`` file as ``{name: tensor}``, read with ``torch.load(weights_only=True)``
    (memory-mapped for torch's zip format). Raises WeightsFileError, in one line, for a file that
    holds anything but a plain dict of tensors (transformers' own shards never do)."""
    import zipfile

    import torch

    from weightselect.io import torch_load_reason

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:
        raise WeightsFileError(
            f"{path}: refused, it cannot be read with torch.load(weights_only=True) ({torch_load_reason(exc)}); "
            "a transformers checkpoint holds only tensors: convert it to safetensors where it was made"
        ) from exc
    if not isinstance(obj, dict):
        bad = [f"a {type(obj).__name__}"]
    else:
        bad = [f"'{k}' ({type(v).__name__})" for k, v in obj.items()
               if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise WeightsFileError(
            f"{path}: refused, it holds {', '.join(bad[:3])}, not only tensors: a transformers checkpoint "
            "file is a plain {name: tensor} dict; save the teacher's state dict alone (or as safetensors)"
        )
    return obj


def _open_sharded(folder: Path, index_name: str, open_shard) -> tuple[TensorSource, Dict[str, str]]:
    """Shards listed in the index ``index_name`` (``weight_map``: tensor name -> shard file), each
    opened with ``open_shard(path) -> TensorSource``."""
    index_path = folder / index_name
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WeightsFileError(f"{index_path}: not a checkpoint index (no 'weight_map': {exc})") from exc
    shards: Dict[str, TensorSource] = {}
    try:
        for name in sorted(set(weight_map.values())):
            shard = folder / name
            if not shard.is_file():
                raise WeightsFileError(f"{index_path} lists {name}, which is missing from {folder}")
            shards[name] = open_shard(shard)
        shapes = {}
        for key, name in weight_map.items():
            if key not in shards[name]:
                raise WeightsFileError(f"{index_path} maps '{key}' to {name}, which does not hold it")
            shapes[key] = shards[name].shape(key)
    except BaseException:
        for src in shards.values():
            src.close()
        raise

    def close() -> None:
        for src in shards.values():
            src.close()

    source = TensorSource(shapes, lambda key: shards[weight_map[key]].get(key),
                          f"{folder} ({len(shards)} shards)", close)
    return source, {name: sha256_file(folder / name) for name in shards}


def _open_bin(path: Path) -> TensorSource:
    return TensorSource.from_state_dict(_load_bin(path), str(path))


def _open_weights(folder: Path) -> tuple[TensorSource, Dict[str, str]]:
    if (folder / SAFE_INDEX).is_file():
        return _open_sharded(folder, SAFE_INDEX, open_tensor_source)
    if (folder / SAFE_SINGLE).is_file():
        path = folder / SAFE_SINGLE
        return open_tensor_source(path), {SAFE_SINGLE: sha256_file(path)}
    if (folder / BIN_INDEX).is_file():
        return _open_sharded(folder, BIN_INDEX, _open_bin)
    if (folder / BIN_SINGLE).is_file():
        path = folder / BIN_SINGLE
        return _open_bin(path), {BIN_SINGLE: sha256_file(path)}
    raise WeightsFileError(
        f"{folder} has no weights: expected {SAFE_SINGLE}, {SAFE_INDEX} with its shards, {BIN_SINGLE}, "
        f"or {BIN_INDEX} with its shards"
    )


def open_hf_teacher(teacher: str | os.PathLike) -> HFTeacher:
    """Open a transformers teacher (folder or hub id) for tensor-by-tensor reads.

    Raises ``WeightsFileError`` (a ``ValueError``) naming the fix when the folder, its weights or the
    hub snapshot are missing.
    """
    from transformers import AutoConfig

    folder, hub = resolve_hf_folder(teacher)
    config = AutoConfig.from_pretrained(folder)
    tensors, files = _open_weights(folder)
    desc: Dict[str, Any] = {
        "source": os.fspath(teacher),
        "sha256": files[next(iter(files))] if len(files) == 1 else _combined_sha256(files),
        "files": files,
        "model_type": getattr(config, "model_type", None),
        "architectures": list(getattr(config, "architectures", None) or []),
    }
    if hub:
        desc.update(hub)
    return HFTeacher(folder, config, tensors, desc)


@dataclass(frozen=True)
class Merged:
    """A model tensor that ``from_pretrained`` builds from several stored tensors: transformers 5
    stacks the per-expert weights of a mixture-of-experts checkpoint (Mixtral's
    ``block_sparse_moe.experts.E.w1/w3``) into one ``(experts, ...)`` tensor (``mlp.experts.gate_up_proj``).
    ``sources``: ``(source pattern, stored names in expert order)`` in the converter's order;
    ``shape``: the model tensor's."""

    converter: Any
    sources: Tuple[Tuple[str, Tuple[str, ...]], ...]
    shape: Tuple[int, ...]

    def read(self, tensors: TensorSource, name: str):
        """The model tensor ``name``, built with transformers' own operations of the converter.
        Raises ValueError when the result does not have the model's shape."""
        collected: Dict[str, Any] = {pattern: [tensors.get(k) for k in keys] for pattern, keys in self.sources}
        patterns, targets = list(self.converter.source_patterns), list(self.converter.target_patterns)
        for op in self.converter.operations:
            collected = op.convert(collected, source_patterns=patterns, target_patterns=targets, full_layer_name=name)
        (tensor,) = collected.values()
        if tuple(tensor.shape) != self.shape:
            raise ValueError(f"the teacher's '{name}' merges to shape {tuple(tensor.shape)}, the model's is "
                             f"{self.shape}: are its weights those of its config.json?")
        return tensor


_MERGE_OPS = ("MergeModulelist", "Concatenate")  # stacking and concatenation: the stored values, unchanged


def _merged(name: str, groups: Dict[str, List[str]], converter, meta) -> Merged:
    ops = [type(op).__name__ for op in converter.operations]
    if any(op not in _MERGE_OPS for op in ops):
        first = next(iter(groups.values()))[0]
        raise ValueError(
            f"the teacher's tensor '{first}' is converted by transformers when loaded ({', '.join(ops)}); streamed "
            "selection reads tensors as stored and applies only stacking and concatenation: save the teacher "
            "again with this transformers version"
        )
    sources = tuple((p, tuple(groups[p])) for p in converter.source_patterns if p in groups)
    return Merged(converter, sources, tuple(meta[name].shape))


def checkpoint_names(checkpoint_keys, model) -> Dict[str, Union[str, Merged]]:
    """``{model parameter name: checkpoint tensor name}`` for a teacher's tensors, renamed the way
    ``from_pretrained`` renames them (transformers 5's conversion mapping: older checkpoints' LayerNorm
    ``gamma``/``beta``, ViT's ``encoder.layer.N.attention.attention.query`` ->
    ``layers.N.attention.q_proj``, base-model prefixes). Without that mapping (transformers 4) names are
    kept. A model tensor that transformers stacks from several stored ones (fused experts) maps to a
    :class:`Merged`. Raises ValueError for any other conversion (tensors split, interleaved or
    dequantized on load), which streamed selection does not apply."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, dot_natural_key, rename_source_key
    except ImportError:
        return {k: k for k in checkpoint_keys}
    mapping = get_model_conversion_mapping(model)  # fresh objects: some renamings keep state
    renamings = [m for m in mapping if isinstance(m, WeightRenaming)]
    converters = [m for m in mapping if isinstance(m, WeightConverter)]
    meta = model.state_dict()
    out: Dict[str, Union[str, Merged]] = {}
    groups: Dict[str, Dict[str, List[str]]] = {}
    for key in sorted(checkpoint_keys, key=dot_natural_key):  # the order from_pretrained uses (experts 0, 1, ...)
        name, converted = rename_source_key(key, renamings, converters, model.base_model_prefix, meta)
        if name not in meta and key in meta:
            name, converted = key, None
        if converted is None:
            out[name] = key
        else:
            groups.setdefault(name, {}).setdefault(converted, []).append(key)
    for name, by_pattern in groups.items():
        converter = next(c for c in converters if set(by_pattern) <= set(c.source_patterns))
        out[name] = _merged(name, by_pattern, converter, meta)
    return out
