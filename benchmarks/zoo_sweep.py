"""Zoo sweep: weight selection on one small architecture of every timm model file (family).

For each module of ``timm.models`` (one model file = one family), the architecture with the fewest
parameters is built at reduced depth with random weights (the teacher), and three students are
selected from it:

- ``identity``  the same architecture: the selection must return the teacher's tensors exactly and
                the student must compute the teacher's outputs bit for bit;
- ``depth``     fewer blocks per layer group (first-N): every tensor must equal the teacher tensor
                it is mapped to, and where the layer groups are ``nn.Sequential``/``nn.ModuleList``
                the student's outputs must equal the teacher's run through the chosen blocks only;
- ``width``     the widths halved (random selection with consistency, seed 0): the file must load
                strictly, the student must run and give finite outputs, every tensor must be an
                index selection of its teacher tensor, and every axis of the manifest must be one
                index set shared by all tensors that carry it; and, where the identity holds, by
                function (below);
- ``width34``   the widths at 3/4 (sizes that do not divide the teacher's), ``method="uniform"``
                (rounded evenly spaced indices): the same checks as ``width``;
- ``inner``     only the inner widths reduced (``mlp_ratio``, ``mlp_ratios``, ``ffn_ratio``, ...
                halved; the residual width, heads and depth kept): index selection and function.

The function check does not read the selection's plan. The teacher's tensors are coded with their
own element indices and selected with the same method and seed as the real ones, so each student
element names the teacher element it came from; the teacher with every element *not* selected set
to zero (the masked teacher) must then compute the student's outputs (relative error < 1e-4). That
identity holds when every operation that touches a reduced axis is linear or per channel with
f(0) = 0 (linear and convolution layers, BatchNorm in eval, ReLU/GELU/SiLU, gates, pooling,
attention with its heads unchanged). It does not hold, and the check says ``n/a`` with the module,
where a LayerNorm/GroupNorm/RMSNorm-like module normalizes over a reduced dimension, or an
attention's head count or head dimension (its scale) changes (the paper's element selection takes
channels of the attention width, not whole heads); that decision is made from the two models'
modules before the outputs are compared. A selection that couples the wrong units (fc1 rows that are not
fc2's columns, q rows of one head with k rows of another, a channel of one group read as another's)
makes the masked teacher differ from the student.

Depths and widths are changed through the model arguments the timm entry point passes to its
constructor (captured from ``build_model_with_cfg``): ``depth``/``depths``/``layers``/...,
``embed_dim``/``dims``/``channels``/... A family whose arguments have no such field is ``n/a`` for
that check (a limit of the sweep, not of the selection).

Each check ends ``right``, ``refused`` (a one-line ``ValueError`` from weightselect naming the
cause), ``wrong`` (silent: a file was written but a tensor or output differs) or ``crashed`` (any
other exception). The family's result is the worst of its checks. The table is printed and written
as CSV.

What ``width`` cannot see: which teacher dimensions *should* share an index set is what the family
rules (or, for families without rules, equal sizes) declare; the sweep checks that the declaration
is applied consistently and loads, not that it is the network's true coupling. The family rules are
tested against hand-computed indices in ``tests/selection``.

Usage: ``python benchmarks/zoo_sweep.py [--out zoo_sweep.csv] [--only vit,resnet] [--threads 1]``.
"""
from __future__ import annotations

import argparse
import copy
import csv
import logging
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import timm
import torch
import torch.nn as nn

from weightselect.selection import select
from weightselect.selection.elements import take

DEPTH_ARGS = ("depth", "depths", "layers", "num_blocks", "block_counts", "stage_depths", "num_layers", "block_config")
WIDTH_ARGS = (
    "embed_dim", "embed_dims", "dims", "widths", "channels", "hidden_dim", "hidden_size", "base_width",
    "stem_width", "num_init_features", "growth_rate", "channel_multiplier", "width_multiplier",
    "width_mult", "stem_chs", "num_features",
)
INNER_ARGS = ("mlp_ratio", "mlp_ratios", "ffn_ratio", "attn_mlp_ratio", "conv_ratio", "bottle_ratio")
RANK = {"right": 0, "n/a": 0, "refused": 1, "crashed": 2, "wrong": 3}
CHECKS = ("identity", "depth", "width", "width34", "inner")
FUNCTION_RTOL = 1e-4  # the masked teacher's outputs against the student's: max |diff| / max |output|


class _Captured(Exception):
    def __init__(self, cls, kwargs):
        super().__init__()
        self.cls, self.kwargs = cls, kwargs


def model_args(name: str) -> Dict[str, Any]:
    """The keyword arguments timm's entry point passes to the model class (captured, not built)."""
    module = sys.modules[f"timm.models.{timm.models._registry._model_to_module[name]}"]
    real = module.build_model_with_cfg

    def capture(model_cls, variant, pretrained, **kwargs):
        raise _Captured(model_cls, kwargs)

    module.build_model_with_cfg = capture
    try:
        timm.create_model(name)
    except _Captured as cap:
        import inspect

        try:  # constructor defaults of the depth and width arguments the entry point leaves out
            params = inspect.signature(cap.cls.__init__).parameters
            defaults = {k: p.default for k, p in params.items() if k in DEPTH_ARGS + WIDTH_ARGS + INNER_ARGS
                        and p.default is not inspect.Parameter.empty}
        except (TypeError, ValueError):
            defaults = {}
        kwargs = {k: v for k, v in cap.kwargs.items() if not k.startswith(("feature_cfg", "pretrained_"))}
        return {**defaults, **kwargs}
    except Exception:
        return {}
    finally:
        module.build_model_with_cfg = real
    return {}


SIZE_WORDS = ("pico", "atto", "femto", "nano", "xxxs", "xxs", "tiny", "xs", "mini", "small", "18", "b0", "lite", "050", "s")


def _size_rank(name: str) -> Tuple[int, int, str]:
    words = re.split(r"[_.]", name)
    for rank, word in enumerate(SIZE_WORDS):
        if any(w == word or w.startswith(word) or w.endswith(word) for w in words):
            return rank, len(name), name
    return len(SIZE_WORDS), len(name), name


def candidates(module: str) -> List[str]:
    """The architectures of a timm module, smallest-sounding first (timm's own ``test_*`` models
    last: they are too shallow to reduce)."""
    names = timm.list_models(module=module)
    return sorted(names, key=lambda n: (n.startswith("test_"), _size_rank(n)))


def _reduce(value, fn):
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return fn(value)
    if isinstance(value, float):
        return value * 0.5 if fn(4) == 2 else None
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return type(value)(fn(v) for v in value)
    return None


def reduced(args: Dict[str, Any], which: Tuple[str, ...], fn) -> Dict[str, Any]:
    out = {}
    for key in which:
        if key in args:
            new = _reduce(args[key], fn)
            if new is not None and new != args[key]:
                out[key] = new
    return out


def _half_width(args: Dict[str, Any], fn=lambda v: max(v // 2, 1)) -> Dict[str, Any]:
    out = reduced(args, WIDTH_ARGS, fn)
    heads = args.get("num_heads")
    if out and isinstance(heads, int):
        width = out.get("embed_dim", out.get("hidden_size"))
        if isinstance(width, int) and width % heads:
            out["num_heads"] = max(heads // 2, 1)
    return out


# ---------------------------------------------------------------------------------------------
def _outcome(fn) -> Tuple[str, str]:
    """Run one check: ('right'|'wrong'|'n/a', detail), or ('refused'|'crashed', the error)."""
    try:
        return fn()
    except ValueError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        ours = frames and "weightselect" in frames[-1].filename
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ("refused" if ours and "\n" not in str(exc) else "crashed"), f"{type(exc).__name__}: {message}"
    except Exception as exc:  # noqa: BLE001 - every other failure is a crash of the selection
        return "crashed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _build(name: str, kwargs: Dict[str, Any], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, **kwargs).eval()


def _input(model: nn.Module, side: Optional[int] = None) -> torch.Tensor:
    size = tuple((model.pretrained_cfg or {}).get("input_size", (3, 224, 224)))
    if side:
        size = (size[0], side, side)
    torch.manual_seed(1)
    return torch.randn(1, *size)


def _finite(model: nn.Module) -> nn.Module:
    """Replace values timm leaves uninitialized (``torch.empty``) that are not finite."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                tensor.copy_(torch.randn_like(tensor) * 0.02)
    return model


def _teacher(name: str, t_kwargs: Dict[str, Any]) -> Tuple[nn.Module, torch.Tensor, Dict[str, Any]]:
    """The reduced teacher, a small input it runs on, and the kwargs used (img_size 64 when the
    model takes it and runs there; the default input size otherwise)."""
    for extra, side in (({"img_size": 64}, 64), ({}, 96), ({}, None)):
        kwargs = {**t_kwargs, **extra}
        try:
            teacher = _finite(_build(name, kwargs))
            x = _input(teacher, side)
            out = _forward(teacher, x)
            if bool(torch.isfinite(out).all()):
                return teacher, x, kwargs
        except Exception:  # noqa: BLE001 - try the next size
            continue
    raise RuntimeError("timm cannot build or run the teacher")


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return out if isinstance(out, torch.Tensor) else out[0]


def check_identity(name, t_kwargs, teacher, x) -> Tuple[str, str]:
    result = select(teacher, {"name": name, "kwargs": t_kwargs})
    t_sd = teacher.state_dict()
    for key, value in result.state_dict.items():
        if not torch.equal(value, t_sd[key]):
            return "wrong", f"{key} differs from the teacher's"
    student = _build(name, t_kwargs, seed=2)
    student.load_state_dict(result.state_dict)
    if not torch.equal(_forward(student, x), _forward(teacher, x)):
        return "wrong", "outputs differ from the teacher's"
    return "right", f"{len(result.state_dict)} tensors equal, outputs equal"


def _truncated(teacher: nn.Module, student: nn.Module, layer_map: Dict[str, str]) -> Optional[nn.Module]:
    """The teacher run through the chosen blocks only: every Sequential/ModuleList that is shorter in
    the student keeps the teacher layers the layer map chose (the first ones when unmapped)."""
    chosen: Dict[str, List[int]] = {}
    for s_layer, t_layer in layer_map.items():
        group, _, index = t_layer.rpartition(".")
        chosen.setdefault(group, []).append(int(index))
    copy_ = copy.deepcopy(teacher)
    s_modules = dict(student.named_modules())
    containers = [(n, m) for n, m in copy_.named_modules() if isinstance(m, (nn.Sequential, nn.ModuleList)) and n]
    for name, container in sorted(containers, key=lambda nm: -nm[0].count(".")):  # innermost first
        other = s_modules.get(name)
        if other is None or len(other) >= len(container):
            continue
        indices = chosen.get(name, list(range(len(other))))
        kept = [container[i] for i in indices]
        parent_name, _, attr = name.rpartition(".")
        parent = copy_.get_submodule(parent_name) if parent_name else copy_
        setattr(parent, attr, nn.Sequential(*kept) if isinstance(container, nn.Sequential) else nn.ModuleList(kept))
    return copy_


def _teacher_key(key: str, layer_map: Dict[str, str]) -> str:
    for s_layer, t_layer in layer_map.items():
        if key.startswith(s_layer + "."):
            return t_layer + key[len(s_layer):]
    return key


def _buildable(name: str, kwargs: Dict[str, Any]) -> Optional[str]:
    """None if timm builds the student, else why not (the sweep's kwargs do not fit the family)."""
    try:
        with torch.device("meta"):
            timm.create_model(name, **kwargs)
    except Exception as exc:  # noqa: BLE001
        return f"timm cannot build the reduced student ({type(exc).__name__})"
    return None


def check_depth(name, t_kwargs, s_kwargs, teacher, x) -> Tuple[str, str]:
    if not s_kwargs:
        return "n/a", "no depth argument to reduce"
    spec_kwargs = {**t_kwargs, **s_kwargs}
    if why := _buildable(name, spec_kwargs):
        return "n/a", why
    result = select(teacher, {"name": name, "kwargs": spec_kwargs})
    lmap, t_sd = result.manifest["layer_map"], teacher.state_dict()
    for key, value in result.state_dict.items():
        if not torch.equal(value, t_sd[_teacher_key(key, lmap)]):
            return "wrong", f"{key} differs from the teacher's {_teacher_key(key, lmap)}"
    student = _build(name, spec_kwargs, seed=2)
    student.load_state_dict(result.state_dict)
    try:
        short = _truncated(teacher, student, lmap)
    except Exception:  # noqa: BLE001 - a container the sweep cannot rebuild
        short = None
    if short is None:
        return "right", "tensors equal (groups not sequential: outputs not compared)"
    try:
        expected = _forward(short, x)
    except Exception:  # noqa: BLE001 - the model's forward depends on its depth
        return "right", "tensors equal (teacher cannot run truncated: outputs not compared)"
    if not torch.equal(_forward(student, x), expected):
        return "wrong", "outputs differ from the teacher through the chosen blocks"
    return "right", "tensors equal, outputs equal the truncated teacher"


def _coded(teacher: nn.Module) -> Dict[str, torch.Tensor]:
    """Teacher tensors whose every element is its own flat index (exact in float64)."""
    return {
        k: torch.arange(v.numel(), dtype=torch.float64).reshape(v.shape) if v.is_floating_point() else v
        for k, v in teacher.state_dict().items()
    }


def _decode(value: torch.Tensor, t_shape) -> Optional[List[torch.Tensor]]:
    """The per-dimension teacher indices of a tensor selected from a coded one, or None when it is
    not an index selection along each dimension."""
    if value.dim() != len(t_shape) or value.numel() == 0:
        return None
    strides = [1] * len(t_shape)
    for d in range(len(t_shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * t_shape[d + 1]
    code = value.long()
    idx = [(code.movedim(d, 0).reshape(code.shape[d], -1)[:, 0] // strides[d]) % t_shape[d] for d in range(code.dim())]
    numel = 1
    for n in t_shape:
        numel *= n
    rebuilt = take(torch.arange(numel).reshape(t_shape), idx)
    return idx if torch.equal(rebuilt, code) else None


def _declared(idx: torch.Tensor, t: int, axes: Dict[Tuple[int, int], List[torch.Tensor]]) -> bool:
    """Whether a dimension's index set is the whole dimension, or one manifest axis, whole or as
    ``n`` equal blocks (a fused tensor)."""
    s = len(idx)
    if s == t and torch.equal(idx, torch.arange(t)):
        return True
    for n in (1, 2, 3, 4):
        if t % n or s % n:
            continue
        for cand in axes.get((t // n, s // n), []):
            if torch.equal(idx, torch.cat([cand + b * (t // n) for b in range(n)])):
                return True
    return False


def _indexed(result, coded: Dict[str, torch.Tensor], axes_too: bool = True) -> Tuple[Optional[str], int]:
    """(why the coded selection is wrong, or None; the number of tensors checked): every tensor an
    index selection of its teacher tensor, and (``axes_too``) each dimension's index set an axis of
    the manifest."""
    axes: Dict[Tuple[int, int], List[torch.Tensor]] = {}
    for info in result.manifest["axes"].values():
        if info["indices"] is not None:
            axes.setdefault((info["teacher"], info["student"]), []).append(torch.tensor(info["indices"]))
    lmap, checked = result.manifest["layer_map"], 0
    for key, value in result.state_dict.items():
        if not value.is_floating_point() or key in result.manifest["resampled"]:
            continue
        t_key = _teacher_key(key, lmap)
        t_shape = tuple(coded[t_key].shape)
        if value.numel() != 0 and value.dim() == len(t_shape):
            idx = _decode(value, t_shape)
            if idx is None:
                return f"{key} is not an index selection of the teacher's {t_key}", checked
            for d, ix in enumerate(idx):
                if axes_too and not _declared(ix, t_shape[d], axes):
                    return f"{key} dimension {d} is selected by no axis of the manifest", checked
            checked += 1
    return None, checked


def not_separable(teacher: nn.Module, student: nn.Module) -> Optional[str]:
    """Why the masked-teacher identity does not hold for this pair (None when it does): a
    normalization other than BatchNorm over a reduced dimension, or an attention whose head count,
    head dimension or scale changed. Read from the two models' modules, not from the selection."""
    t_modules = dict(teacher.named_modules())
    for name, s_mod in student.named_modules():
        t_mod = t_modules.get(name)
        if t_mod is None:
            continue
        kind = type(s_mod).__name__
        if "Norm" in kind and "BatchNorm" not in kind and s_mod.extra_repr() != t_mod.extra_repr():
            return f"{kind} over a reduced dimension ({name})"
        for attr in ("head_dim", "scale", "dim_head", "key_dim", "num_heads", "heads", "n_heads"):
            a, b = getattr(s_mod, attr, None), getattr(t_mod, attr, None)
            if isinstance(a, (int, float)) and not isinstance(a, bool) and a != b:
                return f"attention {attr} changed ({name})"
    return None


def masked_teacher(teacher: nn.Module, coded_result) -> nn.Module:
    """The teacher with every element the coded selection did not take set to zero."""
    masked = copy.deepcopy(teacher)
    t_sd, lmap = masked.state_dict(), coded_result.manifest["layer_map"]
    with torch.no_grad():
        for key, value in coded_result.state_dict.items():
            target = t_sd[_teacher_key(key, lmap)]
            if value.is_floating_point() and value.shape != target.shape:
                keep = torch.zeros(target.numel(), dtype=torch.bool)
                keep[value.long().flatten()] = True
                target.mul_(keep.reshape(target.shape).to(target.dtype))
    return masked


def function_check(teacher: nn.Module, student: nn.Module, coded_result, x: torch.Tensor) -> Tuple[str, str]:
    """('right'|'wrong'|'n/a', detail): the student (loaded with the real selection) against the
    masked teacher, where :func:`not_separable` says the identity holds."""
    if why := not_separable(teacher, student):
        return "n/a", f"function not compared: {why}"
    if coded_result.manifest["resampled"] or coded_result.manifest.get("reinitialized"):
        return "n/a", "function not compared: tensors resampled or left at init"
    expected = _forward(masked_teacher(teacher, coded_result), x)
    err = float((_forward(student, x) - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
    if not err < FUNCTION_RTOL:
        return "wrong", f"outputs differ from the masked teacher's (relative error {err:.2g})"
    return "right", f"outputs equal the masked teacher's (relative error {err:.1g})"


def _reduced_student(name, spec_kwargs, x) -> Tuple[Optional[nn.Module], str]:
    if why := _buildable(name, spec_kwargs):
        return None, why
    student = _build(name, spec_kwargs, seed=2)
    try:
        _forward(student, x)
    except Exception as exc:  # noqa: BLE001
        return None, f"timm's reduced student does not run ({type(exc).__name__})"
    return student, ""


def _same_names(name: str, kwargs: Dict[str, Any], names: set) -> bool:
    try:
        with torch.device("meta"):
            return set(timm.create_model(name, **kwargs).state_dict()) == names
    except Exception:  # noqa: BLE001
        return False


def _buildable_part(name: str, t_kwargs: Dict[str, Any], r_kwargs: Dict[str, Any], names: set) -> Dict[str, Any]:
    """``r_kwargs``, or where timm cannot build a student of the teacher's structure (the same
    tensor names) with all of them, the part that it can with one argument left at the teacher's
    value (ResNet's BasicBlock takes no ``base_width`` but 64). Otherwise ``r_kwargs``."""
    for part in [r_kwargs] + [{k: v for k, v in r_kwargs.items() if k != key} for key in r_kwargs]:
        if part and _same_names(name, {**t_kwargs, **part}, names):
            return part
    return r_kwargs


def _check_reduced(name, t_kwargs, r_kwargs, teacher, x, axes_too: bool, method: str = "random") -> Tuple[str, str]:
    """The width and inner checks: strict load, finite outputs, index selection (and axes), function."""
    part = _buildable_part(name, t_kwargs, r_kwargs, set(teacher.state_dict()))
    spec = {"name": name, "kwargs": {**t_kwargs, **part}}
    student, why = _reduced_student(name, spec["kwargs"], x)
    if student is None:
        return "n/a", why
    real = select(teacher, spec, method=method, seed=0)  # the index sets do not depend on values
    student.load_state_dict(real.state_dict)  # strict
    if not bool(torch.isfinite(_forward(student, x)).all()):
        return "wrong", "non-finite outputs"
    coded = _coded(teacher)
    result = select(coded, spec, method=method, seed=0)
    problem, checked = _indexed(result, coded, axes_too)
    if problem:
        return "wrong", problem
    status, detail = function_check(teacher, student, result, x)
    return status if status == "wrong" else "right", (
        f"strict load, {checked} tensors index-selected on {len(result.manifest['axes'])} axes; {detail}")


def check_width(name, t_kwargs, w_kwargs, teacher, x, method: str = "random") -> Tuple[str, str]:
    if not w_kwargs:
        return "n/a", "no width argument to reduce"
    return _check_reduced(name, t_kwargs, w_kwargs, teacher, x, axes_too=True, method=method)


def _halve_ratio(value):
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value / 2 if value >= 2 else None
    if isinstance(value, (tuple, list)) and value:
        halves = [_halve_ratio(v) for v in value]
        return None if any(h is None for h in halves) else type(value)(halves)
    return None


def inner_args(args: Dict[str, Any]) -> Dict[str, Any]:
    """The inner-width arguments (MLP/FFN expansion ratios) halved; {} when the family has none."""
    return {k: h for k in INNER_ARGS if k in args and (h := _halve_ratio(args[k])) is not None}


def check_inner(name, t_kwargs, i_kwargs, teacher, x) -> Tuple[str, str]:
    if not i_kwargs:
        return "n/a", "no MLP/FFN ratio argument to halve"
    status, detail = _check_reduced(name, t_kwargs, i_kwargs, teacher, x, axes_too=False)
    if status == "right" and "function not compared" in detail:
        return "n/a", detail
    return status, detail


# ---------------------------------------------------------------------------------------------
def _n_params(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in timm.create_model(name).parameters())


def sweep_family(module: str, max_params: float = 150e6) -> Dict[str, str]:
    row = {"family": module, "model": "", **{c: "n/a" for c in CHECKS}, "seconds": "", "detail": ""}
    start = time.perf_counter()
    names = candidates(module)
    if not names:
        row["detail"] = "no architecture"
        return row
    name = names[0]
    row["model"] = name
    try:
        n_params = _n_params(name)
    except Exception:  # noqa: BLE001 - built for real below
        n_params = 0
    if n_params > max_params:
        row["detail"] = f"skipped: the smallest architecture has {n_params / 1e6:.0f}M parameters (over --max-params)"
        return row
    args = model_args(name)
    t_kwargs = reduced(args, DEPTH_ARGS, lambda v: min(max(v, 2), 3))  # 2-3 blocks per group (or in all)
    s_kwargs = reduced({**args, **t_kwargs}, DEPTH_ARGS, lambda v: 1)
    w_kwargs = _half_width(args)
    w34_kwargs = _half_width(args, lambda v: max(v * 3 // 4, 1))  # sizes that do not divide the teacher's
    i_kwargs = inner_args(args)
    try:
        teacher, x, t_kwargs = _teacher(name, t_kwargs)
    except RuntimeError:
        s_kwargs = {}
        try:
            teacher, x, t_kwargs = _teacher(name, {})
        except RuntimeError as exc:
            row["detail"] = str(exc)
            return row
        row["detail"] = "full depth (timm cannot build it reduced); "
    details = []
    for check, fn in (
        ("identity", lambda: check_identity(name, t_kwargs, teacher, x)),
        ("depth", lambda: check_depth(name, t_kwargs, s_kwargs, teacher, x)),
        ("width", lambda: check_width(name, t_kwargs, w_kwargs, teacher, x)),
        ("width34", lambda: check_width(name, t_kwargs, w34_kwargs, teacher, x, method="uniform")),
        ("inner", lambda: check_inner(name, t_kwargs, i_kwargs, teacher, x)),
    ):
        row[check], detail = _outcome(fn)
        details.append(f"{check}: {detail}")
    row["detail"] += " | ".join(details)
    row["seconds"] = f"{time.perf_counter() - start:.1f}"
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="zoo_sweep.csv", help="CSV to write (default: zoo_sweep.csv)")
    parser.add_argument("--only", default="", help="comma-separated timm modules (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-params", type=float, default=150e6, help="skip families whose smallest model is larger")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    modules = [m for m in timm.list_modules() if not args.only or m in args.only.split(",")]
    rows, start = [], time.perf_counter()
    for module in modules:
        row = sweep_family(module, args.max_params)
        row["result"] = max((row[c] for c in CHECKS), key=RANK.__getitem__)
        rows.append(row)
        print(f"{module:28s} {row['model'][:34]:34s} " + " ".join(f"{row[c]:8s}" for c in CHECKS) + " "
              f"{row['seconds']:>5s}s  {row['detail'][:150]}", flush=True)
    fields = ["family", "model", "result", *CHECKS, "seconds", "detail"]
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    total = time.perf_counter() - start
    print(f"\n{len(rows)} families in {total:.0f} s (torch threads: {args.threads})")
    for check in ("result", *CHECKS):
        counts = {k: sum(r[check] == k for r in rows) for k in ("right", "refused", "wrong", "crashed", "n/a")}
        print(f"{check:9s} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    verified = {c: sum("outputs equal the masked teacher" in r["detail"].split(f"{c}: ")[-1].split(" | ")[0]
                       for r in rows) for c in ("width", "width34", "inner")}
    print("verified by function (masked teacher): " + ", ".join(f"{c} {n}" for c, n in verified.items()))
    print(f"table: {Path(args.out).resolve().name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
