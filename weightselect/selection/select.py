"""``select()``: weight selection in one call (paper section 3).

1. layer selection: map each student layer to a teacher layer (``layers.build_layer_map``);
2. component mapping: the family names the axis of every tensor dimension (``families``);
3. element selection: one index set per axis (``elements``), applied to every tensor carrying it.

The plan (steps 1-2 and the index sets) needs only names and shapes; tensors are then read one at
a time, so peak memory stays near the student's size.
"""
from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from weightselect import __version__
from weightselect.io import save_init
from weightselect.models import ModelSpec, create_model
from weightselect.selection import elements
from weightselect.selection.families import (
    GENERIC,
    Dims,
    Family,
    Fused,
    detect_family,
    infer_dims,
    infer_layer_pattern,
)
from weightselect.selection.layers import LAYER_METHODS, LayerMap, build_layer_map
from weightselect.selection.sources import open_teacher

__all__ = ["select", "SelectionResult", "classifier_keys", "INIT_FORMAT"]

log = logging.getLogger(__name__)

INIT_FORMAT = "weightselect-init/1"


@dataclass
class SelectionResult:
    """The selected student weights and the manifest that describes them."""

    state_dict: Dict[str, torch.Tensor]
    manifest: Dict[str, Any] = field(default_factory=dict)

    def save(self, path) -> Path:
        """Write ``path`` (safetensors) and its manifest ``path.with_suffix('.json')``."""
        return save_init(self.state_dict, self.manifest, path)


@dataclass
class _Entry:
    key: str  # student name
    teacher_key: str
    dims: Dims
    t_shape: Tuple[int, ...]  # teacher shape at the rank of ``dims``
    s_full: Tuple[int, ...]  # student shape as the model has it
    dtype: torch.dtype
    resample: Optional[Callable] = None  # teacher tensor -> its size on the student's fixed dims


# ---------------------------------------------------------------------------------------------
def _student_model(student: Any, student_kwargs: Optional[Mapping[str, Any]]) -> Tuple[nn.Module, Dict[str, Any]]:
    if isinstance(student, nn.Module):
        if student_kwargs:
            raise ValueError("student_kwargs apply to a model name, not to an already built module")
        cfg = getattr(student, "pretrained_cfg", None) or {}
        return student, {"name": cfg.get("architecture") or type(student).__name__, "kwargs": {}}
    spec = ModelSpec.from_any(student)
    if student_kwargs:
        spec = ModelSpec(spec.name, {**spec.kwargs, **dict(student_kwargs)})
    try:
        key = json.dumps(spec.to_dict(), sort_keys=True)
    except TypeError:  # kwargs that are not JSON (e.g. a layer class): no caching
        return _shape_model(spec), spec.to_dict()
    return _cached_shape_model(key), spec.to_dict()


def _shape_model(spec: ModelSpec) -> nn.Module:
    """The student for its names and shapes: built on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            return create_model(spec)
    except (RuntimeError, NotImplementedError, TypeError):
        return create_model(spec)


@functools.lru_cache(maxsize=16)
def _cached_shape_model(spec_json: str) -> nn.Module:
    return _shape_model(ModelSpec.from_any(json.loads(spec_json)))


def classifier_keys(model: nn.Module) -> List[str]:
    """Parameter names of the model's classifier(s), from timm's ``pretrained_cfg['classifier']``
    or ``get_classifier()``."""
    names: List[str] = []
    cfg = getattr(model, "pretrained_cfg", None) or {}
    declared = cfg.get("classifier")
    if declared:
        names = [declared] if isinstance(declared, str) else list(declared)
    modules = dict(model.named_modules())
    names = [n for n in names if n in modules]
    if not names and hasattr(model, "get_classifier"):
        clf = model.get_classifier()
        names = [n for n, m in modules.items() if m is clf and n]
    sd_keys = model.state_dict().keys()
    return [k for k in sd_keys if any(k.startswith(n + ".") for n in names)]


def _excluded_keys(family: Family, keys: Sequence[str], exclude: Sequence[str]) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for comp in exclude:
        if comp in family.components:
            hit = [k for k in keys if comp in family.component_of(k)]
        else:
            hit = [k for k in keys if k == comp or k.startswith(comp + ".")]
        if not hit:
            known = ", ".join(family.components) or "none"
            raise ValueError(
                f"cannot exclude '{comp}': it is neither a component of the {family.name} family "
                f"({known}) nor a parameter name prefix of the student"
            )
        out[comp] = hit
    return out


def _at_rank(shape: Tuple[int, ...], rank: int, what: str) -> Tuple[int, ...]:
    """Drop trailing size-1 dimensions (a 1x1 convolution is a linear layer in another shape)."""
    if len(shape) == rank:
        return shape
    if len(shape) > rank and all(d == 1 for d in shape[rank:]):
        return shape[:rank]
    raise ValueError(f"{what} has shape {shape}, which does not have the {rank} dimensions its family expects")


def _plan(
    family: Family,
    lmap: LayerMap,
    t_shapes: Mapping[str, Tuple[int, ...]],
    s_state: Mapping[str, torch.Tensor],
    skip: set,
) -> Tuple[List[_Entry], Dict[str, Tuple[int, int, str]]]:
    """Map every student tensor to its teacher tensor and axes; collect each axis's sizes."""
    ctx: Dict[str, object] = family.context(s_state.keys())
    ctx["keys"] = frozenset(s_state.keys())
    entries: List[_Entry] = []
    axes: Dict[str, Tuple[int, int, str]] = {}  # axis -> (teacher size, student size, first tensor)
    missing, inferred = [], []
    for key, tensor in s_state.items():
        if key in skip:
            continue
        t_key = lmap.teacher_key(key)
        if t_key not in t_shapes:
            missing.append(f"{key} (teacher '{t_key}')" if t_key != key else key)
            continue
        t_shape, s_shape = tuple(t_shapes[t_key]), tuple(tensor.shape)
        dims = family.dims(key, ctx)
        if dims is None:
            rank = min(len(t_shape), len(s_shape))
            dims = infer_dims(_at_rank(t_shape, rank, f"teacher '{t_key}'"), _at_rank(s_shape, rank, f"student '{key}'"))
            if any(d is not None for d in dims) and family is not GENERIC:
                inferred.append(key)
        t_r = _at_rank(t_shape, len(dims), f"teacher '{t_key}'")
        s_r = _at_rank(s_shape, len(dims), f"student '{key}'")
        fixed = [d for d, dim in enumerate(dims) if dim is None]
        resample = family.resampler(key) if any(t_r[d] != s_r[d] for d in fixed) else None
        if resample is not None:  # e.g. position embeddings for another image size
            t_r = tuple(s_r[d] if d in fixed else t_r[d] for d in range(len(dims)))
        for d, (dim, t, s) in enumerate(zip(dims, t_r, s_r)):
            if dim is None:
                if t != s:
                    raise ValueError(
                        f"'{key}' dimension {d}: teacher {t_key} has {t}, student has {s}; this dimension "
                        f"({family.name} family) is not selected, so both models need the same size there "
                        "(e.g. the same patch size, image size, input channels)"
                    )
                continue
            name, n = (dim.axis, dim.blocks) if isinstance(dim, Fused) else (dim, 1)
            if t % n or s % n:
                raise ValueError(f"'{key}' dimension {d} ({t} -> {s}) is not {n} blocks of '{name}'")
            t, s = t // n, s // n
            if s > t:
                raise ValueError(
                    f"the student is wider than the teacher on axis '{name}' ({s} > {t}, tensor '{key}'): "
                    "the student must not be wider than the teacher on any axis"
                )
            seen = axes.setdefault(name, (t, s, key))
            if seen[:2] != (t, s):
                raise ValueError(
                    f"axis '{name}' has teacher/student sizes {seen[0]}/{seen[1]} in '{seen[2]}' but {t}/{s} in "
                    f"'{key}': the teacher and student do not have the same structure"
                )
        entries.append(_Entry(key, t_key, dims, t_r, s_shape, tensor.dtype, resample))
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise ValueError(
            f"the teacher has no tensor for {len(missing)} student parameters: {shown}. Are the teacher and "
            "student the same model family?"
        )
    if inferred:
        log.warning("%d tensors have no %s rule; their axes were inferred from shapes: %s",
                    len(inferred), family.name, ", ".join(inferred[:8]))
    return entries, axes


def _dim_indices(
    entry: _Entry,
    tensor: torch.Tensor,
    method: str,
    seed: int,
    family: Family,
    axis_indices: Mapping[str, torch.Tensor],
) -> List[Optional[torch.Tensor]]:
    out: List[Optional[torch.Tensor]] = []
    s_r = _at_rank(entry.s_full, len(entry.dims), entry.key)
    for d, dim in enumerate(entry.dims):
        if dim is None:
            out.append(None)
            continue
        name, n = (dim.axis, dim.blocks) if isinstance(dim, Fused) else (dim, 1)
        t, s = entry.t_shape[d] // n, s_r[d] // n
        blocks = []
        for b in range(n):
            if method == "random_nocons":
                idx = elements.random_indices(t, s, seed, f"{entry.key}:{d}:{b}")
            elif method == "l1" and family.is_embedding_axis(name):
                idx = elements.l1_indices(tensor.narrow(d, b * t, t), d, s)
            else:
                idx = axis_indices[name]
            blocks.append(idx + b * t)
        out.append(torch.cat(blocks) if n > 1 else blocks[0])
    return out


def _consistent_method(method: str) -> str:
    """The method that chooses the shared index sets (l1 prunes only embedding axes per tensor)."""
    return method if method in elements.CONSISTENT_METHODS else "uniform"


# ---------------------------------------------------------------------------------------------
def select(
    teacher: Any,
    student: Any,
    method: str = "uniform",
    layers: str = "first",
    seed: int = 0,
    exclude: Sequence[str] = (),
    student_kwargs: Optional[Mapping[str, Any]] = None,
    teacher_kwargs: Optional[Mapping[str, Any]] = None,
) -> SelectionResult:
    """Initialize ``student`` from ``teacher`` by weight selection.

    ``teacher``: a timm name with optional pretrained tag, a ``.safetensors``/``.pth`` file, an
    ``nn.Module`` or a state dict. ``student``: a :class:`ModelSpec`, a timm name, a
    ``{"name", "kwargs"}`` dict or an ``nn.Module``. ``method``: one of ``elements.METHODS``;
    ``layers``: one of ``first``, ``uniform``, ``mid``, ``last``; ``exclude``: components (or
    parameter-name prefixes) left at the student's default init (Table 10).
    """
    if method not in elements.METHODS:
        raise ValueError(f"unknown selection method '{method}'; choose one of {', '.join(elements.METHODS)}")
    if layers not in LAYER_METHODS:
        raise ValueError(f"unknown layer selection '{layers}'; choose one of {', '.join(LAYER_METHODS)}")
    seed = int(seed)
    model, student_dict = _student_model(student, student_kwargs)
    s_state = model.state_dict()
    clf_keys = classifier_keys(model)

    source = open_teacher(teacher, teacher_kwargs)
    try:
        t_shapes = source.tensors.shapes
        s_family, t_family = detect_family(s_state.keys()), detect_family(t_shapes.keys())
        if s_family is not t_family:
            raise ValueError(
                f"the teacher ({source.description['source']}) looks like a {t_family.name} model but the "
                f"student ({student_dict['name']}) is a {s_family.name} model: weight selection needs two "
                "models of the same family"
            )
        family = s_family
        pattern = family.layer_re
        if pattern is None:
            inferred = infer_layer_pattern(t_shapes.keys())
            pattern = re.compile(inferred) if inferred else None
        lmap = build_layer_map(t_shapes.keys(), s_state.keys(), pattern, layers, family.pin_first)

        excluded = _excluded_keys(family, list(s_state), list(exclude))
        excluded_keys = {k for ks in excluded.values() for k in ks}

        # the classifier is selected when the class count matches, else left to the student's init
        head = "absent" if not clf_keys else "selected"
        for key in clf_keys:
            t_key = lmap.teacher_key(key)
            t_shape = t_shapes.get(t_key)
            s_shape = tuple(s_state[key].shape)
            if t_shape is None or len(t_shape) != len(s_shape) or t_shape[0] != s_shape[0]:
                head = "reinitialized"
        skip = set(excluded_keys) | (set(clf_keys) if head == "reinitialized" else set())

        entries, axes = _plan(family, lmap, t_shapes, s_state, skip)
        chooser = _consistent_method(method)
        per_tensor = method in ("random_nocons", "magnitude")
        axis_indices: Dict[str, torch.Tensor] = {}
        manifest_axes: Dict[str, Dict[str, Any]] = {}
        for name, (t, s, _) in axes.items():
            idx = elements.select_indices(chooser, t, s, seed=seed, axis=name)
            axis_indices[name] = idx
            shared = not per_tensor and not (method == "l1" and family.is_embedding_axis(name))
            manifest_axes[name] = {"teacher": t, "student": s, "indices": idx.tolist() if shared else None}

        log.info("family %s; layer map: %s", family.name, lmap.as_dict() or "identity")
        log.info("%d axes: %s", len(axes), ", ".join(f"{a} {t}->{s}" for a, (t, s, _) in list(axes.items())[:12]))

        selected: Dict[str, torch.Tensor] = {}
        for entry in entries:
            t_tensor = source.tensors.get(entry.teacher_key)
            if entry.resample is not None:
                t_tensor = entry.resample(t_tensor.float(), entry.s_full)
            t_tensor = t_tensor.reshape(entry.t_shape)
            if method == "magnitude":
                out = elements.magnitude_select(t_tensor, entry.s_full)
            else:
                out = elements.take(t_tensor, _dim_indices(entry, t_tensor, method, seed, family, axis_indices))
                out = out.reshape(entry.s_full)
            del t_tensor
            if out.is_floating_point() and entry.dtype.is_floating_point:
                out = out.to(entry.dtype)
            selected[entry.key] = out.contiguous()
    finally:
        source.close()

    reinitialized = [k for k in s_state if k in skip]
    manifest = {
        "format": INIT_FORMAT,
        "method": method,
        "layers": layers,
        "seed": seed,
        "teacher": {**source.description, **({"kwargs": dict(teacher_kwargs)} if teacher_kwargs else {})},
        "student": student_dict,
        "family": family.name,
        "layer_map": lmap.as_dict(),
        "axes": manifest_axes,
        "head": head,
        "reinitialized": reinitialized,
        "excluded": list(excluded),
        "resampled": [e.key for e in entries if e.resample is not None],
        "weightselect_version": __version__,
    }
    log.info("selected %d tensors; head %s; %d left at default init", len(selected), head, len(reinitialized))
    return SelectionResult(selected, manifest)
