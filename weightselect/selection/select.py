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
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from weightselect import __version__
from weightselect.io import save_init
from weightselect.models import ModelSpec, classifier_keys, create_model, on_meta, stored_spec
from weightselect.selection import elements, importance
from weightselect.selection.families import (
    GENERIC,
    RESNET,
    Dims,
    Family,
    Fused,
    detect_family,
    fused_dims,
    grouped_conv,
    growing_inputs,
    packed_roles,
    infer_dims,
    infer_layer_pattern,
)
from weightselect.selection.names import DATA_METHODS
from weightselect.selection.layers import LAYER_METHODS, LayerMap, build_layer_map, layer_indices
from weightselect.selection.sources import convert_upstream, open_teacher, strip_wrappers
from weightselect.selection.tokens import file_layout, model_layout, resample_pos_embed
from weightselect.selection.trace import channel_reads, read_owner

__all__ = ["select", "SelectionResult", "classifier_keys", "student_pretrained_cfg", "INIT_FORMAT",
           "NonFiniteTeacherError"]

log = logging.getLogger(__name__)

INIT_FORMAT = "weightselect-init/1"
# The keys of timm's pretrained_cfg a manifest keeps (its "pretrained_cfg"): what timm's data config
# (resolve_data_config) and its loading read, so that the file loads with timm.create_model(name,
# pretrained=True, pretrained_cfg_overlay=dict(manifest["pretrained_cfg"], file=path)).
PRETRAINED_CFG_KEYS = ("architecture", "tag", "input_size", "fixed_input_size", "interpolation", "crop_pct",
                       "crop_mode", "mean", "std", "num_classes", "first_conv", "classifier")


class NonFiniteTeacherError(ValueError):
    """The teacher carries NaN or inf values in tensors the student needs."""


@dataclass
class SelectionResult:
    """The selected student weights and the manifest that describes them."""

    state_dict: Dict[str, torch.Tensor]
    manifest: Dict[str, Any] = field(default_factory=dict)

    def save(self, path) -> Path:
        """Write ``path`` (safetensors) and its manifest ``path.with_suffix('.json')``."""
        return save_init(self.state_dict, self.manifest, path)


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def student_pretrained_cfg(model: nn.Module, kwargs: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The student's timm ``pretrained_cfg`` as a manifest records it: the PRETRAINED_CFG_KEYS it
    has (data config: ``input_size`` (C, H, W) in pixels, ``mean``/``std`` per channel on the 0-1
    scale, ``interpolation``, ``crop_pct``; names: ``classifier``, ``first_conv``), tuples as lists,
    with ``num_classes`` the built model's and ``input_size`` following the student's ``in_chans`` /
    ``img_size`` keywords (``kwargs``). An empty dict for a model without a pretrained_cfg."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    out = {k: _plain(cfg[k]) for k in PRETRAINED_CFG_KEYS if cfg.get(k) is not None}
    if not out:
        return {}
    if isinstance(getattr(model, "num_classes", None), int):
        out["num_classes"] = model.num_classes
    kwargs = dict(kwargs or {})
    if isinstance(out.get("input_size"), list) and len(out["input_size"]) == 3:
        chans, height, width = out["input_size"]
        size = kwargs.get("img_size")
        if size is not None:
            height, width = (size, size) if isinstance(size, int) else tuple(size)
        out["input_size"] = [int(kwargs.get("in_chans", chans)), int(height), int(width)]
    return out


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
        with on_meta():
            return create_model(spec)
    except (RuntimeError, NotImplementedError, TypeError):
        return create_model(spec)


@functools.lru_cache(maxsize=16)
def _cached_shape_model(spec_json: str) -> nn.Module:
    return _shape_model(ModelSpec.from_any(json.loads(spec_json)))


def _excluded_keys(family: Family, keys: Sequence[str], exclude: Sequence[str]) -> Dict[str, List[str]]:
    """``{component or prefix: student names}``; an entry may list several, comma-separated."""
    out: Dict[str, List[str]] = {}
    for comp in [part for item in exclude for part in str(item).split(",") if part]:
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


def _entry_dims(family: Family, key: str, t_shape, s_shape, ctx) -> Tuple[Dims, bool]:
    """The axes of ``key``'s dimensions and whether they were inferred from shapes."""
    dims = family.dims(key, ctx)
    grouped = grouped_conv(ctx.get("model"), key) if tuple(t_shape[:2]) != tuple(s_shape[:2]) else None
    if grouped:  # which teacher group a student channel comes from is not tracked: never mix groups
        raise ValueError(
            f"'{key}' ({tuple(t_shape)} -> {tuple(s_shape)}) belongs to a grouped convolution ({grouped}): a change "
            "of its channels would give student groups channels of several teacher groups; keep the widths of "
            "grouped convolutions (RegNet, ResNeXt: width and group size) equal, or change the depth only"
        )
    if dims is not None:
        return dims, False
    rank = min(len(t_shape), len(s_shape))
    t_r, s_r = _at_rank(t_shape, rank, f"teacher '{key}'"), _at_rank(s_shape, rank, f"student '{key}'")
    packed = packed_roles(ctx.get("model"), key) if t_r[:1] != s_r[:1] else None  # the output dimension
    if packed:
        raise ValueError(
            f"'{key}' ({t_r} -> {s_r}) is a projection whose output packs several roles with sizes of their own "
            f"({packed}: q, k and v of each head, gates, or chunks of the channels), split in the module's "
            "forward: selected as one axis it would mix them; keep its sizes equal between teacher and student "
            "(the module's heads, key and value sizes, or hidden size)"
        )
    _check_channel_reads(ctx.get("model"), key, t_r, s_r)
    dims = fused_dims(key, t_r, s_r, ctx.get("model")) or infer_dims(t_r, s_r)
    return dims, family is not GENERIC and any(d is not None for d in dims)


def _check_channel_reads(model: Optional[nn.Module], key: str, t_r, s_r) -> None:
    """Refuse an inferred tensor whose layer reads channels the forward concatenated, sliced or split
    (:func:`weightselect.selection.trace.channel_reads`) when its input channels change."""
    if model is None or t_r == s_r:
        return
    found = read_owner(key, channel_reads(model))
    if found is None:
        return
    name, why = found
    module = model.get_submodule(name) if name else model
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        if key.endswith(".bias") or (getattr(module, "groups", 1) == 1 and t_r[1:2] == s_r[1:2]):
            return  # the output channels only: the inputs are the teacher's
    raise ValueError(
        f"'{key}' ({t_r} -> {s_r}): the inputs of {name} {why} in the model's forward, so one size is "
        "not one axis there and shape inference cannot tell which teacher channels they are; keep these "
        f"widths equal, leave the layer at init (--exclude {name}), or declare a family rule for it "
        "(weightselect/selection/families.py)"
    )


def _split(dim) -> Tuple[str, int]:
    return (dim.axis, dim.blocks) if isinstance(dim, Fused) else (dim, 1)


def _add_axes(family: Family, entry: "_Entry", s_r, axes: Dict[str, Tuple[int, int, str]]) -> None:
    """Check the entry's sizes and record each axis's (teacher, student) size."""
    key = entry.key
    for d, (dim, t, s) in enumerate(zip(entry.dims, entry.t_shape, s_r)):
        if dim is None:
            if t != s:
                hint = ("the same patch size, image size and input channels" if family.name == "vit"
                        else "the same kernel sizes and input channels")
                raise ValueError(
                    f"'{key}' dimension {d}: the teacher's {entry.teacher_key} has {t}, the student {s}; the "
                    f"{family.name} family does not select this dimension, so both models need {hint}"
                )
            continue
        name, n = _split(dim)
        if t % n or s % n:
            raise ValueError(f"'{key}' dimension {d} ({t} -> {s}) is not {n} blocks of '{name}'")
        t, s = t // n, s // n
        if s > t:
            cause = (
                "; with no family rule, tensors are matched by name, and here the same name holds a different "
                "layer in the two models (their layouts differ, e.g. VGG-13's features.N are not VGG-16's)"
                if family is GENERIC else ": the student must not be wider than the teacher on any axis"
            )
            raise ValueError(
                f"the student's '{key}' {tuple(entry.s_full)} is wider than the teacher's "
                f"'{entry.teacher_key}' {tuple(entry.t_shape)} on dimension {d}{cause}"
            )
        seen = axes.setdefault(name, (t, s, key))
        if seen[:2] != (t, s):
            raise ValueError(
                f"axis '{name}' has teacher/student sizes {seen[0]}/{seen[1]} in '{seen[2]}' but {t}/{s} in "
                f"'{key}': the teacher and student do not have the same structure"
            )


def _resolve_inferred(family: Family, lmap: LayerMap, entry: "_Entry", s_r, axes) -> Dims:
    """An uncovered tensor of a known family: each dimension takes the one named axis of its
    (teacher, student) sizes in scope (global, or of its own layer); none or several is an error."""
    layer = lmap.layer_of(entry.key)
    out = []
    for d, dim in enumerate(entry.dims):
        if dim is None:
            out.append(None)
            continue
        _, n = _split(dim)
        pair = (entry.t_shape[d] // n, s_r[d] // n)
        cands = [
            a for a, (t, s, _) in axes.items()
            if (t, s) == pair and not a.startswith("size") and lmap.layer_of(a + ".") in (None, layer)
        ]
        if len(cands) != 1:
            which = f"could be any of {', '.join(cands)}" if cands else "matches no axis of the family"
            raise ValueError(
                f"'{entry.key}' {tuple(entry.s_full)} has no {family.name} rule and its dimension {d} "
                f"({pair[0]} -> {pair[1]}) {which}: its selection cannot be told from shapes"
            )
        out.append(Fused(cands[0], n) if n > 1 else cands[0])
    return tuple(out)


def _exclude_names(keys: Sequence[str], all_keys: Iterable[str]) -> List[str]:
    """The shortest --exclude for ``keys``: a module where all its parameters are among them, else
    the parameter names themselves."""
    keys, all_keys = list(keys), list(all_keys)
    out: List[str] = []
    for module in dict.fromkeys(k.rsplit(".", 1)[0] for k in keys if "." in k):
        own = [k for k in all_keys if k.startswith(module + ".")]
        out += [module] if set(own) <= set(keys) else [k for k in keys if k.startswith(module + ".")]
    return list(dict.fromkeys(out + [k for k in keys if "." not in k]))


def _missing_error(missing: List[Tuple[str, str]], teacher_only: bool, lmap: Optional[LayerMap] = None) -> ValueError:
    """Student parameters without a teacher tensor, named by module, with the fix."""
    modules = list(dict.fromkeys(k.rsplit(".", 1)[0] if "." in k else k for k, _ in missing))
    modules = [m for m in modules if not any(m.startswith(o + ".") for o in modules if o != m)]  # outermost
    shown = ", ".join(modules[:3]) + (f" and {len(modules) - 3} more" if len(modules) > 3 else "")
    layers = list(dict.fromkeys(lmap.layer_of(k) for k, _ in missing)) if lmap is not None else [None]
    if lmap is not None and None not in layers:
        where = ", ".join(f"{layer} (teacher {lmap.teacher_key(layer + '.x')[:-2]})" for layer in layers[:3])
        return ValueError(
            f"the student's layers {where} hold modules their teacher layers lack ({shown}; {len(missing)} "
            f"parameters, e.g. {missing[0][0]}): the blocks differ "
            "in type or options there (e.g. attention blocks at the end of a stage, qk_norm); choose a student "
            f"whose blocks have the teacher's modules, or leave these at init (--exclude {','.join(modules)})"
        )
    return ValueError(
        f"the teacher has no tensor for the student's {shown} ({len(missing)} parameters, e.g. {missing[0][0]}): "
        f"the student has modules the teacher lacks; leave them at the student's init with "
        f"--exclude {','.join(modules)}, or build the student without them"
        + (" (the teacher's names do not look like this family at all)" if teacher_only else "")
    )


def _plan(
    family: Family,
    lmap: LayerMap,
    t_shapes: Mapping[str, Tuple[int, ...]],
    s_model: nn.Module,
    s_state: Mapping[str, torch.Tensor],
    skip: set,
    special: Optional[Mapping[str, Callable]] = None,
) -> Tuple[List[_Entry], Dict[str, Tuple[int, int, str]]]:
    """Map every student tensor to its teacher tensor and axes; collect each axis's sizes.

    ``special``: student names whose teacher tensor is resampled to the student's shape on the
    unselected dimensions by a given function (position embeddings from the token layouts)."""
    ctx: Dict[str, object] = family.context(s_state.keys())
    ctx["keys"] = frozenset(s_state.keys())
    ctx["shapes"] = {k: tuple(v.shape) for k, v in s_state.items()}
    ctx["model"] = s_model  # its modules tell how a fused projection is laid out (FUSED_LAYOUTS)
    entries: List[_Entry] = []
    axes: Dict[str, Tuple[int, int, str]] = {}  # axis -> (teacher size, student size, first tensor)
    missing, inferred = [], []
    for key, tensor in s_state.items():
        if key in skip:
            continue
        t_key = lmap.teacher_key(key)
        if t_key not in t_shapes:
            missing.append((key, t_key))
            continue
        t_shape, s_shape = tuple(t_shapes[t_key]), tuple(tensor.shape)
        dims, was_inferred = _entry_dims(family, key, t_shape, s_shape, ctx)
        t_r = _at_rank(t_shape, len(dims), f"teacher '{t_key}'")
        s_r = _at_rank(s_shape, len(dims), f"student '{key}'")
        fixed = [d for d, dim in enumerate(dims) if dim is None]
        resample = (special or {}).get(key)
        if resample is None and any(t_r[d] != s_r[d] for d in fixed):
            fn = family.resampler(key)  # e.g. patch kernels for another patch size
            owner = s_model.get_submodule(key.rsplit(".", 1)[0]) if fn is not None and "." in key else None
            resample = functools.partial(_call_resampler, fn, owner) if fn is not None else None
        if resample is not None:
            t_r = tuple(s_r[d] if d in fixed else t_r[d] for d in range(len(dims)))
        entry = _Entry(key, t_key, dims, t_r, s_shape, tensor.dtype, resample)
        if was_inferred:
            inferred.append((entry, s_r))
            continue
        _add_axes(family, entry, s_r, axes)
        entries.append(entry)
    if missing:
        raise _missing_error(missing, detect_family(t_shapes) is not family, lmap)
    if family is GENERIC and any(t != s for t, s, _ in axes.values()):
        grown = growing_inputs(t_shapes) or growing_inputs(ctx["shapes"])
        if grown:
            raise ValueError(
                f"the layers {grown} take inputs that grow layer by layer (a concatenation of earlier outputs, "
                "as in DenseNet): with no family rule for it, which input channels belong to which layer cannot "
                "be told, so a student of other widths or depth cannot be selected; keep them equal"
            )
    failed = []
    for entry, s_r in inferred:  # after the rules: their axes are known
        try:
            entry.dims = _resolve_inferred(family, lmap, entry, s_r, axes)
        except ValueError as exc:
            failed.append((entry.key, str(exc)))
            continue
        _add_axes(family, entry, s_r, axes)
        entries.append(entry)
    if failed:  # every such tensor at once, so that the --exclude given is the whole fix
        names = _exclude_names([k for k, _ in failed], s_state.keys())
        more = f" ({len(failed) - 1} more tensors alike)" if len(failed) > 1 else ""
        raise ValueError(f"{failed[0][1]}{more}; leave them at the student's init (--exclude {','.join(names)}) "
                         "or keep that width equal")
    if inferred:
        log.warning("%d tensors have no %s rule; each took the one axis of its sizes: %s",
                    len(inferred), family.name, ", ".join(e.key for e, _ in inferred[:8]))
    return entries, axes


def _call_resampler(fn: Callable, owner, tensor: torch.Tensor, s_full) -> torch.Tensor:
    return fn(tensor, s_full, owner)


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


def _runnable_teacher(source, teacher_kwargs, teacher_model=None) -> nn.Module:
    """The teacher as a module with its weights: a timm name's architecture, or ``teacher_model``
    (a spec) for a weights file or state dict, is built and loaded with the stored tensors, in their
    dtype, with the class count and input channels of the stored weights (``models.stored_spec``).
    Raises ValueError for a teacher without an architecture."""
    model = source.model
    if model is not None and not any(p.is_meta for p in model.parameters()):
        return model
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") if model is not None else None
    if teacher_model is not None:
        spec = ModelSpec.from_any(teacher_model)
    elif arch is not None:
        spec = ModelSpec(arch, dict(teacher_kwargs or {}))
    else:
        raise ValueError("method 'activation' runs the teacher on calibration data, and a weights file or state dict "
                         "names no architecture: give the teacher as a timm name (with its pretrained tag) or an "
                         "nn.Module, or its architecture (teacher_model=, CLI --teacher-model)")
    path = source.description.get("source")
    weights = path if isinstance(path, str) and Path(path).is_file() else None
    model = create_model(stored_spec(spec, source.tensors.shapes, weights))
    keys = [k for k in model.state_dict() if k in source.tensors.shapes]
    state = {k: v.clone() for k, v in source.tensors.iter_tensors(keys)}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _budget_student(teacher, student, student_kwargs, teacher_kwargs, budgets: Mapping[str, Any], dtype: str):
    """``(student, student_kwargs, BudgetChoice or None)``: the student chosen by the one budget of
    ``budgets`` (``target_params``, ``target_memory`` at ``dtype``, ``target_flops``;
    ``weightselect.selection.budget``), or the one given; one of the two is required."""
    from weightselect.selection.budget import budget_of

    budget = budget_of(**budgets)
    if budget is None:
        if student is None:
            raise ValueError("no student: give one (a timm name or spec) or a budget (target_params=, "
                             "target_memory=, target_flops=)")
        return student, student_kwargs, None
    if student is not None:
        raise ValueError("give a student or a budget (target_params=, target_memory=, target_flops=), not both")
    from weightselect.selection.budget import timm_budget_student

    kind, amount = budget
    if kind == "memory" and dtype in ("student", "teacher"):
        if dtype == "teacher":
            raise ValueError("--target-memory counts bytes at a dtype: give --dtype float32, float16 or bfloat16 "
                             "(the teacher's stored dtype is not known before its tensors are read)")
        dtype = "float32"  # the student's, as timm builds it
    choice = timm_budget_student(teacher, amount, student_kwargs, teacher_kwargs, kind,
                                 dtype if kind == "memory" else "float32")
    log.info("budget %s %s: %s", f"{amount:,}", kind, choice.rationale)
    return choice.student, None, choice


def _check_calibration(method: str, calibration: Any) -> None:
    """Calibration data goes with method ``activation`` and only with it (checked before any reading)."""
    if method in DATA_METHODS:
        importance.as_calibration(calibration)
    elif calibration is not None:
        raise ValueError(f"calibration data ranks units for method 'activation' only, not '{method}': "
                         "drop it or choose method='activation'")


def _rank_by_activation(source, entries, model, calibration, teacher_kwargs, teacher_model=None):
    """Mean |activation| of every axis over the calibration data (``importance``): the
    ``ranked`` argument of :func:`_choose_axes` and the manifest's ``calibration`` entry."""
    cal = importance.as_calibration(calibration)
    t_model = _runnable_teacher(source, teacher_kwargs, teacher_model)
    readers = importance.plan_readers(entries, t_model)
    scores, seconds = importance.axis_scores(t_model, readers, cal)
    groups = importance.head_groups(entries, t_model, model)
    note = importance.calibration_note(cal, t_model, seconds, groups)
    return {"scores": scores, "groups": groups}, note


def _consistent_method(method: str) -> str:
    """The method that chooses the shared index sets (l1 prunes only embedding axes per tensor)."""
    return method if method in elements.CONSISTENT_METHODS else "uniform"


def _compiled(pattern: Optional[str]) -> Optional["re.Pattern[str]"]:
    return re.compile(pattern) if pattern else None


def _family(source, t_shapes, s_state, student_dict) -> Family:
    """The family of both models; a mismatch, or ResNet blocks of another type, is an error."""
    s_family = detect_family({k: tuple(v.shape) for k, v in s_state.items()})
    t_family = detect_family(t_shapes)
    if s_family is not t_family:
        raise ValueError(
            f"the teacher ({source.description['source']}) looks like a {t_family.name} model but the "
            f"student ({student_dict['name']}) is a {s_family.name} model: weight selection needs two "
            "models of the same family"
        )
    if s_family is RESNET:
        kinds = ["bottleneck" if any(k.endswith(".conv3.weight") for k in keys) else "basic"
                 for keys in (t_shapes.keys(), s_state.keys())]
        if kinds[0] != kinds[1]:
            raise ValueError(
                f"the teacher has {kinds[0]} blocks, the student {kinds[1]} blocks (e.g. ResNet-50 -> ResNet-18): "
                "a block maps onto a block of the same type; choose a student with the teacher's block type "
                "(ResNet-50 -> ResNet-26, ResNet-34 -> ResNet-18)"
            )
    return s_family


def _head_status(clf_keys, lmap: LayerMap, t_shapes, s_state) -> str:
    """``selected`` when the classifier's class count matches, else ``reinitialized``."""
    head = "absent" if not clf_keys else "selected"
    for key in clf_keys:
        t_shape = t_shapes.get(lmap.teacher_key(key))
        s_shape = tuple(s_state[key].shape)
        if t_shape is None or len(t_shape) != len(s_shape) or t_shape[0] != s_shape[0]:
            head = "reinitialized"
    return head


def _token_resamplers(family, source, model, t_shapes, s_state, skip) -> Dict[str, Callable]:
    """``pos_embed`` of a ViT-like pair, resampled from the models' token layouts (``tokens``)."""
    lacking = [(k, k) for k in ("cls_token", "reg_token", "dist_token") if k in s_state and k not in skip and k not in t_shapes]
    if lacking:  # prefix tokens the teacher lacks: named before the position embeddings they shift
        raise _missing_error(lacking, False)
    if "pos_embed" not in s_state or "pos_embed" in skip or "pos_embed" not in t_shapes:
        return {}
    s_layout = model_layout(model)
    if s_layout is None:
        return {}
    t_layout = model_layout(source.model) if source.model is not None else None
    if t_layout is None or t_layout.tokens != t_shapes["pos_embed"][1]:  # the weights are what counts
        t_layout = file_layout(t_shapes, s_layout)
    if t_layout == s_layout:
        return {}
    resample_pos_embed(torch.zeros(1, t_layout.tokens, 1), t_layout, s_layout)  # prefix mismatch: fail now
    log.info("pos_embed: teacher %s -> student %s", t_layout.describe(), s_layout.describe())
    return {"pos_embed": lambda tensor, s_full: resample_pos_embed(tensor, t_layout, s_layout)}


def _choose_axes(axes, method: str, seed: int, family: Family, ranked: Optional[Mapping[str, Any]] = None):
    """One index set per axis, and the manifest's ``axes`` entry. ``ranked`` (method
    ``activation``): ``{"scores": {axis: scores}, "groups": {axis: head_dim}}``; an axis without
    scores takes uniform selection."""
    chooser = _consistent_method(method)
    per_tensor = method in ("random_nocons", "magnitude")
    axis_indices: Dict[str, torch.Tensor] = {}
    manifest_axes: Dict[str, Dict[str, Any]] = {}
    for name, (t, s, _) in axes.items():
        if ranked is not None and name in ranked["scores"]:
            idx = importance.top_units(ranked["scores"][name], s, ranked["groups"].get(name, 1))
        else:
            idx = elements.select_indices(chooser, t, s, seed=seed, axis=name)
        axis_indices[name] = idx
        shared = not per_tensor and not (method == "l1" and family.is_embedding_axis(name))
        manifest_axes[name] = {"teacher": t, "student": s, "indices": idx.tolist() if shared else None}
    return axis_indices, manifest_axes


def _total(tensor: torch.Tensor) -> float:
    """The sum of a float tensor (in float32 at least, so that half precision cannot overflow)."""
    return float(tensor.sum(dtype=torch.float32) if tensor.element_size() < 4 else tensor.sum())


DTYPES = ("student", "teacher", "float32", "float16", "bfloat16")


def _dtype_note(t_dtypes, selected, dtype: str) -> Dict[str, Any]:
    """The manifest's ``dtype``: the teacher's floating dtypes read, the selected tensors' and the choice."""
    name = lambda d: str(d).replace("torch.", "")  # noqa: E731
    out = sorted({name(v.dtype) for v in selected.values() if v.is_floating_point()})
    note = {"teacher": sorted(name(d) for d in t_dtypes), "selected": out, "choice": dtype}
    if note["teacher"] != out and out:
        log.warning("the teacher's %s weights were converted to %s (dtype='%s'; 'teacher' keeps them)",
                    "/".join(note["teacher"]), "/".join(out), dtype)
    return note


def _select_entry(entry: "_Entry", t_tensor: torch.Tensor, method, seed, family, axis_indices,
                  dtype: str = "student", scratch: Optional[elements.Scratch] = None) -> Tuple[torch.Tensor, bool]:
    """One student tensor from its (possibly borrowed) teacher tensor, never a view of it, and
    whether the selected values are finite (checked before any dtype change). ``scratch``: memory
    for the intermediate steps of the selection, reused across tensors."""
    borrowed = t_tensor.untyped_storage().data_ptr()
    t_dtype = t_tensor.dtype
    if entry.resample is not None:
        t_tensor = entry.resample(t_tensor.float(), entry.s_full)
    t_tensor = t_tensor.reshape(entry.t_shape)
    if method == "magnitude":
        out = elements.magnitude_select(t_tensor, entry.s_full)
    else:
        out = elements.take(t_tensor, _dim_indices(entry, t_tensor, method, seed, family, axis_indices), scratch)
        out = out.reshape(entry.s_full)
    finite = not out.is_floating_point() or math.isfinite(_total(out))
    if out.is_floating_point() and entry.dtype.is_floating_point:
        out = out.to({"student": entry.dtype, "teacher": t_dtype}.get(dtype) or getattr(torch, dtype))
    out = out.contiguous()
    if out.untyped_storage().data_ptr() == borrowed:
        out = out.clone()  # the read buffer is reused for the next tensors
    return out, finite


def _read_and_select(source, entries, method, seed, family, axis_indices, dtype: str = "student"):
    """Read the teacher in one pass in file order (``TensorSource.iter_tensors``; the file's sha256,
    when not known yet, is computed in the same pass) and select. NaN/inf among the selected values
    is an error naming every teacher tensor they come from (after all are read, so that the message
    is complete). The check is the sum of the selected values (float32 at least), through which NaN
    and inf always propagate. Returns the selected tensors and the teacher's floating dtypes read."""
    by_key: Dict[str, List[_Entry]] = {}
    t_dtypes = set()
    for entry in entries:
        by_key.setdefault(entry.teacher_key, []).append(entry)
    out: Dict[str, torch.Tensor] = {}
    non_finite = set()
    scratch = elements.Scratch()
    hasher = source.hasher()
    for t_key, t_tensor in source.tensors.iter_tensors(list(by_key), hasher):
        if t_tensor.is_floating_point():
            t_dtypes.add(t_tensor.dtype)
        for entry in by_key[t_key]:
            if entry.dtype.is_floating_point and not t_tensor.is_floating_point():
                raise ValueError(
                    f"{source.description['source']}: tensor '{t_key}' is {str(t_tensor.dtype).replace('torch.', '')} "
                    "where the student has floating-point weights: weight selection takes floating-point weights "
                    "(an integer or quantized checkpoint); dequantize it, or use the float checkpoint"
                )
            out[entry.key], finite = _select_entry(entry, t_tensor, method, seed, family, axis_indices, dtype, scratch)
            if not finite:
                non_finite.add(t_key)  # NaN/inf among the selected values (a sum keeps them)
    source.finish_identity(hasher)
    if non_finite:
        bad = [k for k in by_key if k in non_finite]
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise NonFiniteTeacherError(
            f"the teacher ({source.description['source']}) has NaN or inf among the values selected from "
            f"{len(bad)} of its tensors: {shown}; its weights are corrupt or diverged: use another checkpoint"
        )
    return {entry.key: out[entry.key] for entry in entries}, t_dtypes


def _stage_ends_from_shapes(t_shapes: Mapping[str, Tuple[int, ...]]) -> Optional[List[int]]:
    """The last block of each stage of a Hiera-like teacher file: a block with its own ``proj``
    (the width change that opens a stage) starts a new stage."""
    blocks = sorted({int(m.group(1)) for k in t_shapes for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
    if not blocks:
        return None
    starts = [b for b in blocks if f"blocks.{b}.proj.weight" in t_shapes and b > 0]
    return [s - 1 for s in starts] + [blocks[-1]]


def _staged_layer_map(lmap: LayerMap, model: nn.Module, source, t_shapes, layers: str) -> LayerMap:
    """Blocks numbered across stages (Hiera: ``blocks.0..N`` with ``stage_ends``): the layer map is
    made stage by stage (layer selection within each stage, its first block pinned), never across."""
    s_ends, blocks = getattr(model, "stage_ends", None), getattr(model, "blocks", None)
    if (not s_ends or not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or list(s_ends) != sorted(s_ends)
            or s_ends[0] < 0 or s_ends[-1] != len(blocks) - 1):  # stage_ends as Hiera's: last block per stage
        return lmap
    t_ends = list(getattr(source.model, "stage_ends", None) or _stage_ends_from_shapes(t_shapes) or [])
    if len(t_ends) != len(s_ends):
        raise ValueError(f"the student has {len(s_ends)} stages of blocks, the teacher {len(t_ends)}: the blocks "
                         "are numbered across stages, so both need the same number of stages")
    indices: List[int] = []
    t_start, s_start = 0, 0
    for stage, (t_end, s_end) in enumerate(zip(t_ends, s_ends)):
        t_n, s_n = t_end + 1 - t_start, s_end + 1 - s_start
        if s_n > t_n:
            raise ValueError(f"stage {stage} of the student has {s_n} blocks, the teacher's {t_n}: the student "
                             "must not be deeper in any stage")
        indices += [t_start + i for i in layer_indices(layers, t_n, s_n, pin_first=True)]
        t_start, s_start = t_end + 1, s_end + 1
    return LayerMap(re.compile(r"^(?P<group>blocks)\.(?P<index>\d+)\."), {"blocks": indices})


def _teacher_only(t_shapes, entries, lmap: LayerMap, skip) -> List[str]:
    """Teacher tensors no student tensor reads, outside the teacher layers that layer selection
    left out (e.g. a CLIP ViT's ``norm_pre``): skipped as the paper's release does, whose loop
    walks the student's names."""
    used = {e.teacher_key for e in entries} | {lmap.teacher_key(k) for k in skip}
    out = []
    for key in t_shapes:
        if key in used:
            continue
        m = lmap.pattern.match(key) if lmap.pattern is not None else None
        if m and m.group("group") in lmap.groups and int(m.group("index")) not in lmap.groups[m.group("group")]:
            continue  # a layer that layer selection did not choose
        out.append(key)
    if out:
        log.warning("%d teacher tensors have no student counterpart and were not used: %s", len(out), ", ".join(out[:8]))
    return out


def _check_names(method: str, layers: str, dtype: str = "student") -> None:
    if method not in elements.METHODS + DATA_METHODS:
        raise ValueError(f"unknown selection method '{method}'; choose one of "
                         f"{', '.join(elements.METHODS + DATA_METHODS)}")
    if layers not in LAYER_METHODS:
        raise ValueError(f"unknown layer selection '{layers}'; choose one of {', '.join(LAYER_METHODS)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype '{dtype}': choose one of {', '.join(DTYPES)}")


def _layer_map(family: Family, source, model: nn.Module, t_shapes, s_state, layers: str) -> LayerMap:
    """Student layer -> teacher layer: by the family's layer names (or the repeated names of an
    unknown family), stage by stage where blocks are numbered across stages."""
    pattern = family.layer_re or _compiled(infer_layer_pattern(t_shapes.keys()))
    lmap = build_layer_map(t_shapes.keys(), s_state.keys(), pattern, layers, family.pin_first)
    return _staged_layer_map(lmap, model, source, t_shapes, layers)


def _skipped(family: Family, lmap: LayerMap, t_shapes, s_state, clf_keys, exclude, skip_head_keys: bool):
    """The excluded components ``{name: keys}``, the head's status and every student name left at
    its default init (excluded, a classifier of another class count, or ``head`` names)."""
    excluded = _excluded_keys(family, list(s_state), list(exclude))
    head = "reinitialized" if skip_head_keys and clf_keys else _head_status(clf_keys, lmap, t_shapes, s_state)
    skip = {k for ks in excluded.values() for k in ks} | (set(clf_keys) if head == "reinitialized" else set())
    skip |= {k for k in s_state if "head" in k} if skip_head_keys else set()
    return excluded, head, skip


@dataclass
class _SelectionPlan:
    """What selection decides before reading a tensor: the family, the layer map, the student names
    left at init and why, the planned tensors and their axes; then (:func:`_choose`) one index set
    per axis, the manifest's ``axes`` entry and, for method ``activation``, the ranking."""

    t_shapes: Mapping[str, Tuple[int, ...]]
    s_keys: List[str]
    family: Family
    lmap: LayerMap
    excluded: Dict[str, List[str]]
    head: str
    skip: set
    entries: List[_Entry]
    axes: Dict[str, Tuple[int, int, str]]
    axis_indices: Dict[str, torch.Tensor] = field(default_factory=dict)
    manifest_axes: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    ranked: Optional[Dict[str, Any]] = None
    calibrated: Optional[Dict[str, Any]] = None


def _make_plan(source, model: nn.Module, s_state, student_dict, layers: str, exclude, skip_head_keys: bool):
    """Steps 1 and 2 of selection, from names and shapes: a :class:`_SelectionPlan` without indices."""
    t_shapes = source.tensors.shapes
    family = _family(source, t_shapes, s_state, student_dict)
    lmap = _layer_map(family, source, model, t_shapes, s_state, layers)
    clf_keys = classifier_keys(model)
    excluded, head, skip = _skipped(family, lmap, t_shapes, s_state, clf_keys, exclude, skip_head_keys)
    special = _token_resamplers(family, source, model, t_shapes, s_state, skip)
    entries, axes = _plan(family, lmap, t_shapes, model, s_state, skip, special)
    return _SelectionPlan(t_shapes, list(s_state), family, lmap, excluded, head, skip, entries, axes)


def _choose(plan: _SelectionPlan, source, model: nn.Module, method: str, seed: int, data) -> None:
    """Step 3's index sets into ``plan``: ranked on the calibration data for method ``activation``
    (``data``: calibration, teacher_kwargs, teacher_model), else by ``method``."""
    if method in DATA_METHODS:
        calibration, teacher_kwargs, teacher_model = data
        plan.ranked, plan.calibrated = _rank_by_activation(source, plan.entries, model, calibration, teacher_kwargs,
                                                           teacher_model)
    plan.axis_indices, plan.manifest_axes = _choose_axes(plan.axes, method, seed, plan.family, plan.ranked)
    log.info("family %s; layer map: %s", plan.family.name, plan.lmap.as_dict() or "identity")
    log.info("%d axes: %s", len(plan.axes), ", ".join(f"{a} {t}->{s}" for a, (t, s, _) in list(plan.axes.items())[:12]))


def _manifest(plan: _SelectionPlan, source, model: nn.Module, student_dict, settings: Mapping[str, Any],
              dtype_note: Dict[str, Any], budget) -> Dict[str, Any]:
    """The init file's manifest (docs/selection.md): ``settings`` holds the call's method, layers,
    seed, teacher_kwargs and skip_head_keys; ``budget`` the budget's choice or None."""
    teacher_only = _teacher_only(plan.t_shapes, plan.entries, plan.lmap, plan.skip)
    teacher_kwargs = settings["teacher_kwargs"]
    manifest = {  # the keys and their order are the init file format (docs/selection.md)
        "format": INIT_FORMAT, "method": settings["method"], "layers": settings["layers"], "seed": settings["seed"],
        "teacher": {**source.description, **({"kwargs": dict(teacher_kwargs)} if teacher_kwargs else {})},
        "student": student_dict, "pretrained_cfg": student_pretrained_cfg(model, student_dict.get("kwargs")),
        "family": plan.family.name, "layer_map": plan.lmap.as_dict(), "axes": plan.manifest_axes,
        "head": plan.head, "reinitialized": [k for k in plan.s_keys if k in plan.skip], "excluded": list(plan.excluded),
        "resampled": [e.key for e in plan.entries if e.resample is not None], "teacher_only": teacher_only,
        "skip_head_keys": bool(settings["skip_head_keys"]), "stripped_prefixes": source.stripped,
        "dtype": dtype_note, "weightselect_version": __version__,
    }
    if budget is not None:
        manifest["budget"] = budget.as_dict()
    if plan.calibrated is not None:
        manifest["calibration"] = importance.scores_entry(plan.calibrated, plan.ranked["scores"], plan.axis_indices,
                                                         plan.axes)
    return manifest


# ---------------------------------------------------------------------------------------------
@elements.one_thread()
def select(
    teacher: Any,
    student: Any = None,
    method: str = "uniform",
    layers: str = "first",
    seed: int = 0,
    exclude: Sequence[str] = (),
    student_kwargs: Optional[Mapping[str, Any]] = None,
    teacher_kwargs: Optional[Mapping[str, Any]] = None,
    skip_head_keys: bool = False,
    teacher_identity: str = "sha256",
    dtype: str = "student",
    checkpoint_key: Optional[str] = None,
    calibration: Any = None,
    target_params: Optional[int] = None,
    teacher_model: Any = None,
    target_memory: Any = None,
    target_flops: Any = None,
) -> SelectionResult:
    """Initialize ``student`` from ``teacher`` by weight selection.

    ``teacher``: a timm name with optional pretrained tag, a ``.safetensors``/``.pth`` file, an
    ``nn.Module`` or a state dict. ``student``: a :class:`ModelSpec`, a timm name, a
    ``{"name", "kwargs"}`` dict or an ``nn.Module``. ``method``: one of ``elements.METHODS``;
    ``layers``: one of ``first``, ``uniform``, ``mid``, ``last``; ``exclude``: components (or
    parameter-name prefixes) left at the student's default init (Table 10).

    ``teacher_identity``: how the manifest identifies a teacher file: ``sha256`` (default; the
    full digest, from the Hugging Face blob name or the digest cache when known, else computed in
    the same pass that reads the tensors) or ``header`` (sha256 of the safetensors header + the
    file size: no full pass, but blind to changed values; ``weightselect.io.header_identity``).

    ``skip_head_keys``: leave every student parameter whose name contains ``head`` at the student's
    init, as the paper's release does (its loop skips them), which reproduces the release bit for
    bit; by default the classifier is selected when the class counts match and ConvNeXt's final
    ``head.norm`` (a LayerNorm of the last stage, not part of the classifier) is always inherited.

    ``dtype``: the floating dtype of the selected tensors: ``student`` (default: the student model's,
    as timm builds it, float32), ``teacher`` (kept as stored), or a name (``float32``, ``float16``,
    ``bfloat16``). ``checkpoint_key``: the state dict of a PyTorch checkpoint holding several
    (``model`` or ``model_ema``, ``state_dict`` or ``state_dict_ema``); by default the non-EMA one.
    Both choices are recorded in the manifest (``dtype``; ``teacher.checkpoint_key``).

    ``calibration`` (method ``activation`` only): images ``(N, C, H, W)`` as the teacher takes them,
    or an :class:`~weightselect.selection.importance.Calibration` (data, description, batch size);
    every axis keeps its units of largest mean |activation| on it (``importance``), and the manifest's
    ``calibration`` records the data, its size, the time and each axis's score summary. A teacher
    given as a weights file or state dict then needs ``teacher_model``: its timm spec (name or
    ``{"name", "kwargs"}``), built and loaded with the file's tensors to run it.

    ``target_params`` (instead of ``student``): the student is the configuration of the teacher's
    family (ViT, ConvNeXt) with at most that many parameters, chosen by
    :mod:`weightselect.selection.budget`'s rule (``student_kwargs`` apply to every candidate); the
    manifest's ``budget`` says which and why. ``target_memory`` (bytes of the student's weights at
    ``dtype``; ``student`` counts float32, ``teacher`` is refused) and ``target_flops`` (FLOPs of
    one forward of one image at the student's input size, counted by ``FlopCounterMode``) choose it
    the same way; an int, or a string such as ``"20MB"`` or ``"1.2G"``. One budget at most.

    Raises ``ValueError`` (one line, naming the tensor or module and the fix) when the pair cannot
    be selected, and ``NonFiniteTeacherError`` when teacher tensors the student needs hold NaN/inf.
    """
    _check_names(method, layers, dtype)
    _check_calibration(method, calibration)
    budgets = dict(target_params=target_params, target_memory=target_memory, target_flops=target_flops)
    student, student_kwargs, budget = _budget_student(teacher, student, student_kwargs, teacher_kwargs, budgets, dtype)
    seed = int(seed)
    model, student_dict = _student_model(student, student_kwargs)
    s_state = model.state_dict()

    source = strip_wrappers(open_teacher(teacher, teacher_kwargs, teacher_identity, checkpoint_key), s_state.keys())
    try:
        source = convert_upstream(source, model, s_state.keys())
        plan = _make_plan(source, model, s_state, student_dict, layers, exclude, skip_head_keys)
        _choose(plan, source, model, method, seed, (calibration, teacher_kwargs, teacher_model))
        selected, t_dtypes = _read_and_select(source, plan.entries, method, seed, plan.family, plan.axis_indices, dtype)
    finally:
        source.close()
    settings = {"method": method, "layers": layers, "seed": seed, "teacher_kwargs": teacher_kwargs,
                "skip_head_keys": skip_head_keys}
    manifest = _manifest(plan, source, model, student_dict, settings, _dtype_note(t_dtypes, selected, dtype), budget)
    log.info("selected %d tensors; head %s; %d left at default init", len(selected), plan.head,
             len(manifest["reinitialized"]))
    return SelectionResult(selected, manifest)
