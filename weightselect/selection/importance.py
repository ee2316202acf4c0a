"""Activation importance: rank the units of every named axis by what the teacher does on data.

``method="activation"`` keeps, for every axis, the ``s`` units of largest importance, in the
teacher's order, and uses that one index set on every tensor that carries the axis (consistency,
as the other consistent methods). The importance of unit ``i`` of axis ``A`` is its mean absolute
activation:

    score_A[i] = mean over readers m of  mean over samples and positions of |x_m[..., i]|

where the *readers* of ``A`` are the teacher's linear and convolution layers whose weight carries
``A`` on its input dimension (``x_m`` is the layer's input: for a ViT's residual axis the outputs
of the LayerNorms before ``qkv``, ``fc1`` and the head, for an MLP's hidden axis the activation
entering ``fc2``, for an attention axis the heads' output entering ``proj``/``o_proj``). An input
dimension laid out as a product of axes (``kv_groups * q_per_kv * head_dim``) or as blocks
(``Fused``: q, k and v) is reshaped to its factors and each axis's score is the mean over the
others, so a KV group is scored by all the query heads that read it, and a head by all its
dimensions. An axis no layer reads (a MoE router's experts) is scored by the outputs of the layers
that write it; one neither read nor written keeps uniform selection (listed in the manifest).

Where the teacher's attention module states its heads (timm's ``num_heads`` and ``head_dim``) and
the student keeps the head dimension, whole heads are kept: a head's score is the mean of its
units' scores. Transformers families name heads and KV groups as axes of their own, so their index
sets are whole heads and whole KV groups by construction.

The measure follows Apple's weight subcloning (Samragh et al., 2023, "Weight subcloning: direct
initialization of transformers using larger pretrained ones", section 3: neurons ranked by mean
activation magnitude, one ordering shared by every layer) and NVIDIA's Minitron (Muralidharan et
al., 2024, "Compact language models via pruning and knowledge distillation", section 2.2:
embedding channels from LayerNorm outputs, neurons and heads from their activations, aggregated
over batch and sequence by the mean of absolute values).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from weightselect.selection.elements import outer_threads

__all__ = ["Calibration", "Reader", "as_calibration", "axis_scores", "top_units", "score_summary"]

# A dimension laid out as blocks (``+``), each a row-major product of factors: (axis or None, size).
Layout = List[List[Tuple[Optional[str], int]]]


@dataclass
class Calibration:
    """Calibration data: ``data`` is images ``(N, C, H, W)`` (float, normalized as the teacher
    expects) or token ids ``(N, T)`` (int64); ``description`` (what it is, e.g. ``{"source":
    "cifar10 train", "seed": 0}``) goes to the manifest with the sample count; the teacher runs on
    ``batch_size`` samples at a time."""

    data: torch.Tensor
    description: Dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32


def as_calibration(value: Any) -> Calibration:
    """A :class:`Calibration` from itself or a tensor. Raises ValueError naming the fix when
    ``value`` is None or empty."""
    if value is None:
        raise ValueError("method 'activation' ranks units on calibration data: pass calibration= (a tensor of "
                         "images or token ids, or a Calibration; CLI: --calibration)")
    cal = value if isinstance(value, Calibration) else Calibration(torch.as_tensor(value), {"source": "tensor"})
    if cal.data.dim() < 2 or cal.data.shape[0] == 0:
        raise ValueError(f"calibration data of shape {tuple(cal.data.shape)}: give at least one sample, as "
                         "(N, C, H, W) images or (N, T) token ids")
    if int(cal.batch_size) < 1:
        raise ValueError(f"calibration batch_size {cal.batch_size}: give a positive number")
    return cal


@dataclass(frozen=True)
class Reader:
    """A teacher layer whose input (``output=False``) or output (``output=True``) carries axes:
    ``module`` its name, ``channel`` the dimension of its channels (-1 for linear layers, 1 for
    convolutions), ``layout`` how that dimension splits into axes."""

    module: str
    channel: int
    layout: Tuple[Tuple[Tuple[Optional[str], int], ...], ...]
    output: bool = False


class _Meter:
    """Per reader, the running sum over samples and positions of |x| per channel, and the count."""

    def __init__(self, reader: Reader):
        self.reader, self.total, self.count = reader, None, 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach()
        channel = self.reader.channel % x.dim()
        dims = [d for d in range(x.dim()) if d != channel]
        part = x.abs().float().sum(dim=dims).double()
        self.total = part if self.total is None else self.total + part
        self.count += x.numel() // x.shape[channel]

    def mean(self) -> torch.Tensor:
        return self.total / self.count


def _hooks(model: nn.Module, meters: Sequence[_Meter]) -> List[Any]:
    modules = dict(model.named_modules())
    handles = []
    for meter in meters:
        module = modules[meter.reader.module]
        if meter.reader.output:
            handles.append(module.register_forward_hook(
                lambda m, a, out, meter=meter: meter.add(out) if isinstance(out, torch.Tensor) else None))
        else:
            handles.append(module.register_forward_pre_hook(
                lambda m, a, meter=meter: meter.add(a[0]) if a and isinstance(a[0], torch.Tensor) else None))
    return handles


def _run(model: nn.Module, cal: Calibration, forward: Callable, meters: Sequence[_Meter]) -> float:
    """The teacher over the calibration data, batch by batch, with no gradients, in its own dtype
    (float inputs are cast to it), on the threads selection's one-thread mode set aside; returns
    the seconds taken."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    handles = _hooks(model, meters)
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), outer_threads():
            for batch in cal.data.split(int(cal.batch_size)):
                batch = batch.to(device=device, dtype=dtype if batch.is_floating_point() else batch.dtype)
                forward(model, batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return time.perf_counter() - start


def _split_scores(mean: torch.Tensor, layout: Layout) -> Iterable[Tuple[str, torch.Tensor]]:
    """``(axis, per-unit score)`` for each axis of a reader's channel means, split into blocks and
    factors (the mean over every other factor of its block)."""
    offset = 0
    for term in layout:
        sizes = [n for _, n in term]
        size = 1
        for n in sizes:
            size *= n
        block = mean[offset:offset + size].reshape(sizes)
        offset += size
        for d, (axis, _) in enumerate(term):
            if axis is not None:
                others = [o for o in range(len(sizes)) if o != d]
                yield axis, block.mean(dim=others) if others else block
    if offset != mean.numel():
        raise ValueError(f"a reader's {mean.numel()} channels do not match its axes' {offset} units")


def axis_scores(model: nn.Module, readers: Sequence[Reader], cal: Calibration,
                forward: Callable = lambda m, x: m(x)) -> Tuple[Dict[str, torch.Tensor], float]:
    """``({axis: score per teacher unit (float64)}, seconds)``: the mean |activation| of every axis
    over ``cal`` (see the module docstring); readers of output activations count only for axes that
    no input reader carries. ``forward(model, batch)`` runs the teacher."""
    meters = [_Meter(r) for r in readers]
    seconds = _run(model, cal, forward, meters)
    sums: Dict[str, torch.Tensor] = {}
    counts: Dict[str, int] = {}
    read = {a for r in readers if not r.output for term in r.layout for a, _ in term if a is not None}
    for meter in meters:
        if meter.total is None:
            continue  # a layer the forward did not reach
        for axis, score in _split_scores(meter.mean(), [list(t) for t in meter.reader.layout]):
            if meter.reader.output and axis in read:
                continue
            sums[axis] = score if axis not in sums else sums[axis] + score
            counts[axis] = counts.get(axis, 0) + 1
    return {a: sums[a] / counts[a] for a in sums}, seconds


def top_units(scores: torch.Tensor, s: int, group: int = 1) -> torch.Tensor:
    """The ``s`` units of largest score, in ascending (teacher) order; with ``group`` > 1, whole
    groups of ``group`` consecutive units (heads), each scored by the mean of its units. Ties keep
    the lower index. Raises ValueError when ``s`` exceeds the units or is not whole groups."""
    t = scores.numel()
    if s > t or s < 0:
        raise ValueError(f"cannot select {s} elements out of {t}: the student is wider than the teacher")
    if group > 1:
        if t % group or s % group:
            raise ValueError(f"{s} of {t} units are not whole groups of {group}")
        chosen = top_units(scores.reshape(-1, group).mean(dim=1), s // group)
        return (chosen[:, None] * group + torch.arange(group)[None, :]).reshape(-1)
    return torch.argsort(-scores, stable=True)[:s].sort().values


def score_summary(scores: torch.Tensor, chosen: torch.Tensor) -> Dict[str, float]:
    """What the manifest records of one axis's scores: their mean, min and max and the share of
    the total score the kept units hold."""
    total = float(scores.sum())
    kept = float(scores[chosen].sum()) if chosen.numel() else 0.0
    return {"mean": round(float(scores.mean()), 6), "min": round(float(scores.min()), 6),
            "max": round(float(scores.max()), 6), "kept_share": round(kept / total, 6) if total > 0 else None}


# ---------------------------------------------------------------------------------------------
# timm models: readers and heads from the selection plan (``select._Entry``: teacher_key, dims, t_shape)
def _dim_layout(dim: Any, size: int) -> Tuple[Tuple[Optional[str], int], ...]:
    from weightselect.selection.families import Fused

    if isinstance(dim, Fused):
        return ((None, dim.blocks), (dim.axis, size // dim.blocks))
    return ((dim, size),)


def plan_readers(entries: Iterable[Any], model: nn.Module) -> List[Reader]:
    """The readers (inputs, dimension 1 of the weight) and writers (outputs, dimension 0) of the
    plan's axes among the teacher's linear and convolution layers."""
    modules = dict(model.named_modules())
    out: Dict[Tuple[str, bool], Reader] = {}
    for e in entries:
        name, _, param = e.teacher_key.rpartition(".")
        module = modules.get(name)
        if param != "weight" or len(e.dims) < 2 or not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            continue
        channel = -1 if isinstance(module, nn.Linear) else 1
        for output, d in ((False, 1), (True, 0)):
            if e.dims[d] is not None:
                out.setdefault((name, output), Reader(name, channel, (_dim_layout(e.dims[d], e.t_shape[d]),), output))
    return list(out.values())


def head_groups(entries: Iterable[Any], t_model: nn.Module, s_model: nn.Module) -> Dict[str, int]:
    """``{axis: head_dim}`` for the attention axes read by the output projection (``proj``) of a
    module that states its heads (timm's attention: ``num_heads``, ``head_dim``), when the student's
    module keeps that head dimension: the axis is then selected in whole heads."""
    t_modules, s_modules = dict(t_model.named_modules()), dict(s_model.named_modules())
    out: Dict[str, int] = {}
    for e in entries:
        t_name, s_name = e.teacher_key.rpartition(".")[0], e.key.rpartition(".")[0]
        if not isinstance(t_modules.get(t_name), nn.Linear) or len(e.dims) != 2 or not isinstance(e.dims[1], str):
            continue
        t_att, s_att = t_modules.get(t_name.rpartition(".")[0]), s_modules.get(s_name.rpartition(".")[0])
        hd, heads = getattr(t_att, "head_dim", None), getattr(t_att, "num_heads", None)
        if getattr(t_att, "proj", None) is not t_modules[t_name]:
            continue  # only the output projection reads the heads
        if isinstance(hd, int) and isinstance(heads, int) and hd * heads == e.t_shape[1] and \
                getattr(s_att, "head_dim", None) == hd:
            out[e.dims[1]] = hd
    return out


def calibration_note(cal: Calibration, model: nn.Module, seconds: float, groups: Mapping[str, int]) -> Dict[str, Any]:
    """The manifest's ``calibration`` entry (the axes' score summaries are added by the caller)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return {"data": dict(cal.description), "samples": int(cal.data.shape[0]), "shape": list(cal.data.shape),
            "batch_size": int(cal.batch_size), "dtype": str(dtype).replace("torch.", ""),
            "seconds": round(seconds, 3), "whole_heads": dict(groups)}


def scores_entry(note: Mapping[str, Any], scores: Mapping[str, torch.Tensor], chosen: Mapping[str, torch.Tensor],
                 axes: Mapping[str, Tuple[int, ...]]) -> Dict[str, Any]:
    """``note`` with every axis's score summary and the axes selected without scores (uniformly)."""
    return {**note, "unscored": [a for a, size in axes.items() if a not in scores and size[0] != size[1]],
            "scores": {a: score_summary(scores[a], chosen[a]) for a in axes if a in scores}}


def check_dataset(name: str) -> None:
    """Raises ValueError naming the catalog's datasets when ``name`` is not one of them."""
    from weightselect.training.catalog import DATASETS

    if name not in DATASETS:
        raise ValueError(f"--calibration {name}: neither a dataset of the catalog ({', '.join(DATASETS)}) nor a "
                         ".pt tensor file of images")


def image_calibration(dataset: str, samples: int, seed: int, input_size: Sequence[int], mean: Sequence[float],
                      std: Sequence[float], data_root: Any = None, batch_size: int = 32) -> Calibration:
    """``samples`` training images of a dataset of the catalog (``weightselect.training.catalog``),
    drawn without replacement by a generator seeded with ``seed``, resized (shorter side) and
    centre-cropped to ``input_size`` ``(C, H, W)`` pixels and normalized by ``mean``/``std`` (the
    teacher's data config, 0-1 scale). Raises ValueError for an unknown dataset or too few images;
    ``DatasetNotFoundError`` when its files are not under ``data_root``."""
    from torchvision import transforms

    from weightselect.training.data import _ToMode, build_dataset

    check_dataset(dataset)
    chans, height, width = (int(v) for v in input_size)
    transform = transforms.Compose([_ToMode("RGB" if chans == 3 else "L"), transforms.Resize(min(height, width)),
                                    transforms.CenterCrop((height, width)), transforms.ToTensor(),
                                    transforms.Normalize(list(mean)[:chans], list(std)[:chans])])
    ds = build_dataset(dataset, data_root, train=True, img_size=max(height, width), in_chans=chans,
                       transform=transform)
    if int(samples) < 1 or int(samples) > len(ds):
        raise ValueError(f"--calibration-samples {samples}: the {dataset} training split has {len(ds)} images; "
                         f"give 1 to {len(ds)}")
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(int(seed)))[:int(samples)]
    data = torch.stack([ds[int(i)][0] for i in order])
    return Calibration(data, {"source": f"{dataset} train", "seed": int(seed), "input_size": [chans, height, width]},
                       batch_size)


def teacher_calibration(dataset: str, samples: int, seed: int, teacher: nn.Module, kwargs: Any = None,
                        weights: Any = None, data_root: Any = None, batch_size: int = 32,
                        img_size: Optional[int] = None) -> Calibration:
    """:func:`image_calibration` at the teacher's own input: its channels (timm data config with the
    spec's ``kwargs``), the size it was trained at (``img_size`` if given, else
    ``models.trained_img_size`` of a teacher file of this project, ``weights``, else the data
    config's) and its normalization (``models.input_norm``: the dataset that teacher file was trained
    on, else the data config's; not the calibration dataset's own, which a hub teacher was not
    trained with). The description records which normalization (``normalization``)."""
    from weightselect.models import input_norm, trained_img_size
    from weightselect.selection.select import student_pretrained_cfg

    chans, height, width = student_pretrained_cfg(teacher, kwargs).get("input_size") or (3, 224, 224)
    size = img_size or trained_img_size(weights)
    mean, std, source = input_norm(teacher, weights)
    cal = image_calibration(dataset, samples, seed, (chans, size or height, size or width), mean, std, data_root,
                            batch_size)
    cal.description["normalization"] = source
    return cal


def study_calibration(spec: Mapping[str, Any], teacher: Any = None) -> Calibration:
    """The calibration images of a workflow variant's ``calibration`` (config.yaml: ``dataset``,
    ``samples``, ``seed``, ``img_size``; the select rule adds ``teacher_model`` and ``data_root``)
    for the teacher file ``teacher``, at that teacher's input (:func:`teacher_calibration`)."""
    from weightselect.models import ModelSpec, create_model, on_meta

    model_spec = ModelSpec.from_any(spec["teacher_model"])
    with on_meta():
        model = create_model(model_spec)
    return teacher_calibration(spec["dataset"], int(spec.get("samples", 256)), int(spec.get("seed", 0)), model,
                               model_spec.kwargs, teacher, spec.get("data_root"),
                               img_size=int(spec["img_size"]) if spec.get("img_size") else None)
