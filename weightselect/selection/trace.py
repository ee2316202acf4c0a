"""Channel couplings that shapes cannot show, read from one forward pass of the student.

Families without rules get their axes from shapes (:func:`weightselect.selection.families.infer_dims`):
every (teacher, student) size pair is one axis. That guess is wrong where a layer reads channels that
the forward assembled or cut: a concatenation along the channel dimension (DLA's roots, Inception's
branches, GhostNet's primary and cheap features), a slice of the channels (RexNet adds its shortcut
to the first ``in_channels`` output channels, GhostNet keeps the first ``out_chs``), a split or chunk.
Which teacher channels the student's channels then are is not one axis, and a selection that treats
it as one is silently wrong (the zoo sweep's function check finds it).

:func:`channel_reads` runs the student once on the meta device (no memory, no values) under a
:class:`torch.overrides.TorchFunctionMode` that marks every tensor made by such an operation, carries
the mark through the operations that follow, and records the parameters of the first layers
(convolution, linear, normalization) that read a marked tensor. Those parameters' widths cannot be
selected by shape inference: :mod:`weightselect.selection.select` refuses a change of them, naming
the operation and the module.

A mark remembers the dimension that was assembled or cut, and follows the operations that keep that
dimension where it is (elementwise operations, activations, pooling, a mean that keeps it); a
reader counts only where it reads that dimension as its channels (dimension 1 for convolutions and
BatchNorm/GroupNorm, the last for linear layers and LayerNorm), so a class token concatenated along
the tokens, or a window cut along the height, is not a channel coupling. Models whose forward cannot run on the meta device, or a student
given as a built module with real weights, are not traced (None): shape inference applies as before.
"""
from __future__ import annotations

import logging
import weakref
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["channel_reads"]

log = logging.getLogger(__name__)

CONV = {F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, torch.conv2d,
        F.batch_norm, F.group_norm, F.instance_norm, torch.batch_norm, torch.group_norm}  # channels: dim 1
LAST = {F.linear, F.layer_norm, torch.layer_norm}  # channels: the last dimension
SPLITS = {torch.split, torch.Tensor.split, torch.chunk, torch.Tensor.chunk, torch.tensor_split,
          torch.Tensor.tensor_split, torch.narrow, torch.Tensor.narrow, torch.Tensor.split_with_sizes}
CATS = {torch.cat, torch.concat, torch.concatenate}
_CACHE: "weakref.WeakKeyDictionary[nn.Module, Optional[Dict[str, str]]]" = weakref.WeakKeyDictionary()


def _dim_arg(args, kwargs, position: int, default: int = 0) -> int:
    dim = kwargs.get("dim", kwargs.get("axis", args[position] if len(args) > position else default))
    return dim if isinstance(dim, int) else default


def _partial_dim(t: torch.Tensor, index: Any) -> Optional[int]:
    """The first dimension of which ``t[index]`` keeps a slice (the other dimensions in place), else None."""
    items = list(index) if isinstance(index, tuple) else [index]
    if any(i is Ellipsis for i in items):
        at = items.index(Ellipsis)
        items = items[:at] + [slice(None)] * (t.dim() - len(items) + 1) + items[at + 1:]
    items = [i for i in items if i is not None]
    if any(isinstance(i, int) or (isinstance(i, torch.Tensor) and i.dtype != torch.bool) for i in items):
        return None  # an integer or index array moves the dimensions: one token, a gather, not a slice
    for d, item in enumerate(items[:t.dim()]):
        if isinstance(item, slice) and range(*item.indices(t.shape[d])) != range(t.shape[d]):
            return d
    return None


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)


def _reads_dim(func, x: torch.Tensor, args, kwargs) -> Callable[[int], bool]:
    """Whether a reader ``func`` of ``x`` reads dimension ``d`` as its channels."""
    if func in CONV:
        return lambda d: d == 1
    if func in (F.layer_norm, torch.layer_norm):
        shape = kwargs.get("normalized_shape", args[1] if len(args) > 1 else (x.shape[-1],))
        return lambda d: d >= x.dim() - len(tuple(shape) if not isinstance(shape, int) else (shape,))
    return lambda d: d == x.dim() - 1


class _Recorder(TorchFunctionMode):
    """Marks tensors assembled from or cut out of one of their dimensions; records the parameters of
    the layers that read such a dimension as their channels."""

    def __init__(self, names: Dict[int, str]):
        super().__init__()
        self.names, self.marks, self.reads = names, {}, {}

    def _mark(self, obj: Any, why: str, dim: int) -> None:
        for t in _tensors(obj):
            if not isinstance(t, nn.Parameter) and dim < t.dim():
                self.marks[id(t)] = (t, why, dim)  # the tensor is kept: its id stays its own

    def _marked(self, args, kwargs) -> Optional[Tuple[torch.Tensor, str, int]]:
        for t in _tensors(list(args) + [v for v in kwargs.values() if not isinstance(v, nn.Parameter)]):
            mark = self.marks.get(id(t))
            if mark is not None and mark[0] is t:
                return mark
        return None

    def _made(self, func, args, kwargs) -> Optional[Tuple[str, int]]:
        if func in CATS and args:
            first = next(_tensors(args[0]), None)
            return ("are a concatenation (torch.cat)", _dim_arg(args, kwargs, 1) % first.dim()) if first is not None \
                else None
        if func in SPLITS and args and isinstance(args[0], torch.Tensor):
            dim = _dim_arg(args, kwargs, 2 if "split" in func.__name__ or "narrow" in func.__name__ else 1)
            return f"are a part ({func.__name__})", dim % args[0].dim()
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and len(args) > 1 and \
                isinstance(args[0], torch.Tensor) and (d := _partial_dim(args[0], args[1])) is not None:
            return "are a slice", d
        return None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in CONV or func in LAST:  # a reader: only its input counts (a bias made by torch.cat does not)
            mark = self._marked(args[:1], {k: v for k, v in kwargs.items() if k == "input"})
            if mark and _reads_dim(func, mark[0], args, kwargs)(mark[2]):
                for t in _tensors(list(args) + list(kwargs.values())):
                    if isinstance(t, nn.Parameter) and id(t) in self.names:
                        self.reads.setdefault(self.names[id(t)], f"{mark[1]} of its input channels")
            return out
        mark = self._marked(args, kwargs)
        made = self._made(func, args, kwargs)
        if made:
            self._mark(out, *made)
            if func is torch.Tensor.__setitem__:
                self._mark(args[0], *made)
        elif mark:  # carried through operations that keep the marked dimension where it is
            for t in _tensors(out):
                if t.dim() == mark[0].dim() and t.shape[mark[2]] == mark[0].shape[mark[2]]:
                    self._mark(t, mark[1], mark[2])
        return out


def _input(model: nn.Module) -> Optional[torch.Tensor]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = tuple(cfg.get("input_size") or (3, 224, 224))
    img = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if isinstance(img, (tuple, list)) and len(img) == 2 and all(isinstance(v, int) for v in img):
        size = (size[0], *img)
    return torch.empty(1, *size, device="meta")


def channel_reads(model: nn.Module) -> Optional[Dict[str, str]]:
    """``{parameter or buffer name: what its layer's input channels are}`` for the layers of
    ``model`` that read channels assembled or cut in the forward (see the module docstring); {} when
    none does. None when the model cannot be traced (weights not on the meta device, or a forward
    that needs values). Cached per model object."""
    if model in _CACHE:
        return _CACHE[model]
    result: Optional[Dict[str, str]] = None
    if all(p.is_meta for p in model.parameters()):
        names = {id(t): n for n, t in list(model.named_parameters()) + list(model.named_buffers())}
        recorder = _Recorder(names)
        try:
            with torch.no_grad(), recorder:
                model.eval()(_input(model))
            result = recorder.reads
        except Exception as exc:  # noqa: BLE001 - a forward that needs values: not traced
            log.debug("channel reads of %s not traced: %s", type(model).__name__, exc)
    _CACHE[model] = result
    return result


def read_owner(key: str, reads: Optional[Dict[str, str]]) -> Optional[Tuple[str, str]]:
    """(the module name, what it reads) when ``key`` belongs to a layer that reads assembled or cut
    channels, else None."""
    if not reads:
        return None
    module = key.rsplit(".", 1)[0]
    for name, why in reads.items():
        if name.rsplit(".", 1)[0] == module:
            return module, why
    return None
