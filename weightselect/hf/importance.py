"""Activation importance for transformers teachers (``method="activation"``).

The measure is :mod:`weightselect.selection.importance`'s: each axis's units ranked by their mean
|activation| over calibration token ids, read at the inputs of the linear layers that carry the
axis. A dimension written as a product (``kv_groups * q_per_kv * 2 * rope_pairs``: o_proj's input)
is reshaped to its factors, so a KV group is scored over every query head that reads it and every
head dimension, and the selected index sets are whole KV groups and whole heads, as the families'
products make every method's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from weightselect.hf.families import base_axis, factors, terms
from weightselect.selection.importance import Calibration, Reader

__all__ = ["load_teacher_model", "product_readers", "forward_ids", "token_calibration"]


def load_teacher_model(folder: Path, config: Any) -> nn.Module:
    """The teacher with its weights, in the stored dtype (``from_pretrained`` of its folder, by the
    class named in ``config.architectures``, else ``AutoModel``), in eval mode."""
    import transformers

    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    return (cls or transformers.AutoModel).from_pretrained(folder, dtype="auto").eval()


def _layout(dim: str, t_sizes: Mapping[str, int]) -> Tuple[Tuple[Tuple[Optional[str], int], ...], ...]:
    return tuple(tuple((None, f) if isinstance(f, int) else (f, t_sizes[base_axis(f)]) for f in factors(term))
                 for term in terms(dim))


def product_readers(entries: Iterable[Any], model: nn.Module, t_sizes: Mapping[str, int]) -> List[Reader]:
    """Readers (inputs) and writers (outputs) of the plan's axes among the teacher's linear layers
    (``nn.Linear``, weight ``(out, in)``; GPT-2's ``Conv1D``, weight ``(in, out)``)."""
    modules = dict(model.named_modules())
    out: Dict[Tuple[str, bool], Reader] = {}
    for e in entries:
        name, _, param = e.teacher_key.rpartition(".")
        module = modules.get(name)
        if param != "weight" or len(e.dims) != 2:
            continue
        if isinstance(module, nn.Linear):
            in_dim, out_dim = e.dims[1], e.dims[0]
        elif type(module).__name__ == "Conv1D":
            in_dim, out_dim = e.dims[0], e.dims[1]
        else:
            continue
        for output, dim in ((False, in_dim), (True, out_dim)):
            if dim is not None:
                out.setdefault((name, output), Reader(name, -1, _layout(dim, t_sizes), output))
    return list(out.values())


def forward_ids(model: nn.Module, batch: torch.Tensor) -> Any:
    """One forward of a transformers model on its calibration batch, without a cache: token ids
    ``(B, T)`` (an encoder-decoder reads them on both sides, as T5's span corruption pairs do), or
    images ``(B, C, H, W)`` for a vision model (``pixel_values``)."""
    if batch.is_floating_point():
        return model(pixel_values=batch)
    kwargs: Dict[str, Any] = {"input_ids": batch}
    if getattr(model.config, "is_encoder_decoder", False):
        kwargs["decoder_input_ids"] = batch
    if "use_cache" in model.forward.__code__.co_varnames:
        kwargs["use_cache"] = False
    return model(**kwargs)


def token_calibration(path: Path, samples: int, length: int, seed: int, tokenizer_folder: Optional[Path] = None,
                      batch_size: int = 8) -> Calibration:
    """``samples`` windows of ``length`` token ids drawn (seeded) from a token file: a ``.pt`` tensor
    of ids (``torch.load(weights_only=True)``), a ``.txt`` of whitespace-separated ids, or other
    text tokenized with the teacher folder's tokenizer. Raises ValueError naming the fix."""
    ids = _read_ids(Path(path), tokenizer_folder)
    if ids.numel() < length:
        raise ValueError(f"{path} holds {ids.numel()} tokens, fewer than one window of {length}: give more text "
                         "or a shorter --calibration-length")
    gen = torch.Generator().manual_seed(int(seed))
    starts = torch.randint(0, ids.numel() - length + 1, (int(samples),), generator=gen)
    data = torch.stack([ids[s:s + length] for s in starts.tolist()])
    return Calibration(data, {"source": str(path), "tokens": int(ids.numel()), "length": int(length),
                              "seed": int(seed)}, batch_size)


def _read_ids(path: Path, tokenizer_folder: Optional[Path]) -> torch.Tensor:
    if not path.is_file():
        raise ValueError(f"calibration file {path} does not exist: give a token file (.pt ids, or text)")
    if path.suffix == ".pt":
        ids = torch.load(path, weights_only=True)
        if not isinstance(ids, torch.Tensor) or ids.is_floating_point():
            raise ValueError(f"{path}: a .pt calibration file holds one integer tensor of token ids")
        return ids.reshape(-1).long()
    text = path.read_text(encoding="utf-8")
    words = text.split()
    if words and all(w.isdigit() for w in words):
        return torch.tensor([int(w) for w in words], dtype=torch.long)
    if tokenizer_folder is None:
        raise ValueError(f"{path} is text and the teacher has no tokenizer files: give token ids (.pt, or digits)")
    from transformers import AutoTokenizer

    return torch.tensor(AutoTokenizer.from_pretrained(tokenizer_folder)(text)["input_ids"], dtype=torch.long)
