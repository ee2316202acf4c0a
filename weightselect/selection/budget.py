"""Students chosen by a parameter budget: ``target_params`` -> a configuration of the teacher's family.

The rule (the same for every family): candidates keep the teacher's family, its head dimension and
its ratios (MLP ratio; ConvNeXt's widths per stage; Llama's GQA ratio and its hidden and
intermediate sizes per KV group), and never exceed the teacher on any width or depth, so weight
selection can initialize them. **Width first**: at the teacher's depth, the widest candidate whose
parameter count is within the budget; only when even the narrowest width at the teacher's depth is
over the budget is depth reduced, to the deepest depth at which some width fits, and the widest
width there. Minitron (Muralidharan et al., 2024, section 4) found width pruning better than depth
pruning at equal size, and the paper's students (ViT-T from ViT-S) keep the teacher's depth.

Parameters are counted exactly from models built on the meta device (no memory): one build per
width with one layer per layer group; a group's further layers add the first layer's count each
(the layers of a group are identical), which the tests check against full builds.

The same rule serves three measures (:data:`BUDGET_KINDS`): ``params`` (``--target-params``: a
count, tied parameters once), ``memory`` (``--target-memory``: bytes of the weights at a dtype,
parameters x ``torch.dtype.itemsize``; buffers not counted) and, for timm image models, ``flops``
(``--target-flops``: the FLOPs of one forward of one image at the model's input size, counted by
PyTorch's ``torch.utils.flop_counter.FlopCounterMode`` on the meta device, where a multiply-add is
2 FLOPs and attention's matmuls count; a group's further layers add the FLOPs a second layer in
that group adds, measured once per width).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch.nn as nn

__all__ = ["BudgetChoice", "fit_budget", "timm_budget_student", "count_params", "count_flops", "parse_amount",
           "dtype_itemsize", "budget_of", "BUDGET_KINDS"]

# kind -> (unit in messages, command-line option)
BUDGET_KINDS = {"params": ("parameters", "--target-params"), "memory": ("bytes", "--target-memory"),
                "flops": ("FLOPs", "--target-flops")}
MEMORY_DTYPES = ("float32", "float16", "bfloat16", "float64")
_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


@dataclass
class BudgetChoice:
    """The chosen student: ``student`` (a timm ``{"name", "kwargs"}`` or transformers overrides),
    its exact ``params``, the ``target``, a one-line ``rationale`` and the candidates weighed."""

    student: Dict[str, Any]
    params: int
    target: int
    rationale: str
    candidates: int = 0
    teacher_params: int = 0
    shape: Dict[str, Any] = field(default_factory=dict)

    kind: str = "params"
    amount: int = 0  # the chosen student's measure (params; bytes; FLOPs)
    dtype: Optional[str] = None  # memory budgets: the dtype the bytes are counted at
    input_size: Optional[Tuple[int, ...]] = None  # FLOPs budgets: (C, H, W) of the counted forward

    def as_dict(self) -> Dict[str, Any]:
        out = {"target_params": self.target, "params": self.params, "teacher_params": self.teacher_params,
               "shape": self.shape, "rationale": self.rationale, "candidates": self.candidates}
        if self.kind != "params":  # a parameter budget's entry stays as it was
            out = {"kind": self.kind, "target": self.target, "amount": self.amount, "params": self.params,
                   "teacher_params": self.teacher_params, "shape": self.shape, "rationale": self.rationale,
                   "candidates": self.candidates}
            out.update({"dtype": self.dtype} if self.kind == "memory" else {"input_size": list(self.input_size)})
        return out


def parse_amount(value: Any, option: str) -> int:
    """A budget from the command line or an argument: an int, or a number with an SI (``k``, ``M``,
    ``G``, ``T``: powers of 1000) or binary (``Ki``, ``Mi``, ``Gi``, ``Ti``) prefix and an optional
    ``B`` or ``FLOPs`` (case-insensitive): ``20MB`` is 20,000,000, ``1.5GiB`` 1,610,612,736,
    ``2.1G`` 2,100,000,000. Raises ValueError naming ``option`` for anything else or a value below 1."""
    import re

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, prefix = float(value), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]i?)?(?:b|flops?)?\s*",
                             str(value), re.IGNORECASE)
        if match is None:
            raise ValueError(f"{option} {value!r}: give a number with an optional prefix and unit, e.g. 20MB, "
                             "1.5GiB, 2.1G")
        number, prefix = float(match.group(1)), (match.group(2) or "").lower()
    amount = int(round(number * _PREFIX[prefix]))
    if amount < 1:
        raise ValueError(f"{option} {value!r}: give a positive amount")
    return amount


def dtype_itemsize(dtype: str) -> int:
    """Bytes per element of a floating dtype name (``torch.dtype.itemsize``). Raises ValueError
    naming the dtypes a memory budget takes."""
    import torch

    if dtype not in MEMORY_DTYPES:
        raise ValueError(f"a memory budget counts bytes at a dtype: give --dtype one of {', '.join(MEMORY_DTYPES)}"
                         f", not {dtype!r}")
    return getattr(torch, dtype).itemsize


def budget_of(target_params: Any = None, target_memory: Any = None, target_flops: Any = None
              ) -> Optional[Tuple[str, int]]:
    """``(kind, amount)`` of the one budget given (amounts parsed by :func:`parse_amount`), or None.
    Raises ValueError when more than one is given."""
    given = [(k, v) for k, v in (("params", target_params), ("memory", target_memory), ("flops", target_flops))
             if v is not None]
    if len(given) > 1:
        raise ValueError(f"give one budget, not {' and '.join(BUDGET_KINDS[k][1] for k, _ in given)}")
    return (given[0][0], parse_amount(given[0][1], BUDGET_KINDS[given[0][0]][1])) if given else None


def count_flops(model: nn.Module, input_size: Sequence[int]) -> int:
    """FLOPs of one forward of ``model`` on one input of ``input_size`` ``(C, H, W)``, as
    ``torch.utils.flop_counter.FlopCounterMode`` counts them (a multiply-add is 2), run on the meta
    device (no memory, no compute; attention's matmuls are counted there, which PyTorch's fused CPU
    kernel would leave out). ``model`` must be on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty((1, *[int(v) for v in input_size]), device="meta"))
    return int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    """The number of parameters (tied ones once), meta tensors included."""
    return sum(p.numel() for p in model.parameters())


def _layer_params(model: nn.Module, prefix: str) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


def fit_budget(target: int, widths: Sequence[Any], depth_options: Sequence[Tuple[int, ...]],
               cost: Callable[[Any], Tuple[int, Tuple[int, ...]]], describe: Callable[[Any, Tuple[int, ...]], str],
               family: str, unit: str = "parameters", option: str = "--target-params"
               ) -> Tuple[Any, Tuple[int, ...], int, str, int]:
    """``(width, depths, params, rationale, candidates)`` by the module's rule. ``widths``: ascending;
    ``depth_options``: the teacher's depths first, then shallower ones, deepest first; ``cost(width)``:
    ``(measure with one layer per group, measure of one layer of each group)`` in ``unit``
    (parameters, bytes or FLOPs); ``describe(width, depths)``: the candidate in words. Raises
    ValueError naming the smallest candidate's measure and ``option``."""
    target = int(target)
    costs = {i: cost(w) for i, w in enumerate(widths)}
    total = lambda i, d: costs[i][0] + sum((n - 1) * b for n, b in zip(d, costs[i][1]))  # noqa: E731
    for k, depths in enumerate(depth_options):
        fits = [i for i in range(len(widths)) if total(i, depths) <= target]
        if not fits:
            continue
        i = fits[-1]
        params = total(i, depths)
        nxt = (f"; the next width ({describe(widths[i + 1], depths)}) has {total(i + 1, depths):,}"
               if i + 1 < len(widths) else "")
        if k == 0:
            why = (f"the widest width at the teacher's depth within {target:,} {unit}: {params:,} "
                   f"({params / target:.1%} of the budget){nxt}")
        else:
            teacher_depth = depth_options[0][0] if len(depth_options[0]) == 1 else depth_options[0]
            why = (f"the narrowest width at the teacher's depth {teacher_depth} has {total(0, depth_options[0]):,} "
                   f"{unit}, over {target:,}: depth reduced to the deepest that fits, the widest width there "
                   f"({params:,}, {params / target:.1%} of the budget){nxt}")
        return widths[i], depths, params, f"{describe(widths[i], depths)}: {why}", len(widths) * (k + 1)
    smallest = total(0, depth_options[-1])
    raise ValueError(f"no {family} student within {target:,} {unit}: the smallest candidate "
                     f"({describe(widths[0], depth_options[-1])}) has {smallest:,}; raise the budget ({option})")


def shallower(depths: Tuple[int, ...]) -> List[Tuple[int, ...]]:
    """``depths`` and the shallower options, deepest first: every group scaled by k / max(depths)
    (rounded, at least one layer), k = max(depths) .. 1, without repeats."""
    top = max(depths)
    out: List[Tuple[int, ...]] = []
    for k in range(top, 0, -1):
        d = tuple(max(1, round(n * k / top)) for n in depths)
        if d not in out:
            out.append(d)
    return out


# ---------------------------------------------------------------------------------------------
# timm: ViT (embed_dim = heads x head_dim, depth) and ConvNeXt (dims per stage, depths per stage)
def _meta_build(name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    from weightselect.models import ModelSpec, create_model, on_meta

    with on_meta():
        return create_model(ModelSpec(name, dict(kwargs)))


def _timm_teacher(teacher: Any, teacher_kwargs: Optional[Mapping[str, Any]],
                  why: str = "a parameter budget builds students of the teacher's architecture") -> Tuple[nn.Module, str]:
    """The teacher's module (meta for a name) and its architecture name; ``why`` it is needed
    opens the error for a teacher without an architecture."""
    from weightselect.models import ModelSpec

    if isinstance(teacher, nn.Module):
        arch = (getattr(teacher, "pretrained_cfg", None) or {}).get("architecture")
        if arch:
            return teacher, arch
    elif isinstance(teacher, str) and not teacher.endswith((".safetensors", ".pth", ".pt", ".bin")):
        arch = ModelSpec.from_any(teacher).architecture
        return _meta_build(arch, dict(teacher_kwargs or {})), arch
    raise ValueError(f"{why}: give the teacher as a timm name or a timm model (a weights file or state dict names "
                     "no architecture)")


def _vit_search(model: nn.Module, arch: str, kwargs: Dict[str, Any]):
    attn = model.blocks[0].attn
    hd, heads, embed = int(attn.head_dim), int(attn.num_heads), int(model.embed_dim)
    ratio = model.blocks[0].mlp.fc1.out_features / embed

    def spec(h, depths):
        return {"name": arch, "kwargs": {**kwargs, "embed_dim": h * hd, "num_heads": h, "depth": depths[0],
                                         "mlp_ratio": ratio}}

    describe = lambda h, d: f"embed_dim {h * hd} ({h} heads of {hd}), depth {d[0]}"  # noqa: E731
    shape = lambda h, d: {"embed_dim": h * hd, "num_heads": h, "head_dim": hd, "depth": d[0]}  # noqa: E731
    return list(range(1, heads + 1)), shallower((len(model.blocks),)), ("blocks.0.",), describe, spec, shape


def _convnext_search(model: nn.Module, arch: str, kwargs: Dict[str, Any]):
    dims = tuple(int(s.blocks[0].conv_dw.weight.shape[0]) for s in model.stages)
    unit = 8 if dims[0] % 8 == 0 else 1  # channels in multiples of 8 where the teacher's are
    steps = dims[0] // unit
    widths = [tuple(d * j // steps for d in dims) for j in range(1, steps + 1)]

    def spec(w, depths):
        return {"name": arch, "kwargs": {**kwargs, "dims": w, "depths": tuple(depths)}}

    describe = lambda w, d: f"dims {w}, depths {d}"  # noqa: E731
    shape = lambda w, d: {"dims": list(w), "depths": list(d)}  # noqa: E731
    prefixes = tuple(f"stages.{s}.blocks.0." for s in range(len(dims)))
    return widths, shallower(tuple(len(s.blocks) for s in model.stages)), prefixes, describe, spec, shape


def input_size_of(model: nn.Module, kwargs: Optional[Mapping[str, Any]] = None) -> Tuple[int, int, int]:
    """``(C, H, W)`` a timm model takes: its pretrained config's ``input_size`` with the ``in_chans``
    and ``img_size`` keywords it was built with (3 x 224 x 224 without a pretrained config)."""
    from weightselect.selection.select import student_pretrained_cfg

    size = student_pretrained_cfg(model, kwargs).get("input_size") or [int((kwargs or {}).get("in_chans", 3)), 224, 224]
    return tuple(int(v) for v in size)


def _cost(kind: str, build: Callable, prefixes: Sequence[str], scale: int = 1):
    """``cost(width)`` for :func:`fit_budget`: parameters (times ``scale``, the bytes per element of
    a memory budget) from one meta build with one layer per group; FLOPs from that build and one
    more per group with a second layer there (the difference is a layer's FLOPs)."""
    ones = (1,) * len(prefixes)
    if kind != "flops":
        def cost(w):
            m = build(w, ones)
            return count_params(m) * scale, tuple(_layer_params(m, p) * scale for p in prefixes)
        return cost

    def flops(w, depths):
        m, kwargs = build(w, depths, with_kwargs=True)
        return count_flops(m, input_size_of(m, kwargs))

    def cost(w):
        base = flops(w, ones)
        return base, tuple(flops(w, tuple(2 if i == g else 1 for i in range(len(ones)))) - base
                           for g in range(len(ones)))
    return cost


def timm_budget_student(teacher: Any, target: Any, student_kwargs: Optional[Mapping[str, Any]] = None,
                        teacher_kwargs: Optional[Mapping[str, Any]] = None, kind: str = "params",
                        dtype: str = "float32") -> BudgetChoice:
    """The student of the teacher's family (timm ViT or ConvNeXt) within ``target`` by the module's
    rule: ``kind`` ``params`` (a count, classifier included), ``memory`` (bytes of the weights at
    ``dtype``) or ``flops`` (one forward of one image at the student's input size, by
    ``FlopCounterMode``); ``target`` is an int or a string :func:`parse_amount` reads (``20MB``).
    ``student_kwargs`` (``num_classes``, ``img_size``) apply to every candidate. Raises ValueError
    for another family, a teacher without an architecture, a budget below the smallest candidate or
    not below the teacher."""
    from weightselect.selection.families import CONVNEXT, VIT, detect_family

    unit, option = BUDGET_KINDS[kind]
    target = parse_amount(target, option)
    scale = dtype_itemsize(dtype) if kind == "memory" else 1
    model, arch = _timm_teacher(teacher, teacher_kwargs)
    family = detect_family({k: tuple(v.shape) for k, v in model.state_dict().items()})
    searches = {VIT.name: _vit_search, CONVNEXT.name: _convnext_search}
    if family.name not in searches:
        raise ValueError(f"budgets ({option}) are defined for the vit and convnext families (and Llama-like "
                         f"transformers), not {family.name}: give the student explicitly")
    widths, depth_options, prefixes, describe, spec, shape = searches[family.name](
        model, arch, dict(student_kwargs or {}))

    def build(w, depths, with_kwargs=False):
        kwargs = spec(w, depths)["kwargs"]
        return (_meta_build(arch, kwargs), kwargs) if with_kwargs else _meta_build(arch, kwargs)

    teacher_params = count_params(model)
    teacher_amount = {"params": teacher_params, "memory": teacher_params * scale}.get(kind)
    if teacher_amount is not None and target >= teacher_amount:
        raise ValueError(f"the teacher has {teacher_amount:,} {unit}, within the budget of {target:,}: "
                         f"nothing to select; give a smaller {option}")
    w, depths, amount, why, n = fit_budget(target, widths, depth_options, _cost(kind, build, prefixes, scale),
                                           describe, family.name, unit, option)
    if kind == "flops" and w == widths[-1] and depths == depth_options[0]:
        raise ValueError(f"the teacher's own shape is within the budget of {target:,} FLOPs: nothing to select; "
                         "give a smaller --target-flops")
    if kind == "memory":
        why += f" (bytes at {dtype})"
    params = count_params(build(w, depths))
    size = input_size_of(*build(w, depths, with_kwargs=True)) if kind == "flops" else None
    if size is not None:
        why += f" (one {'x'.join(map(str, size))} input)"
    return BudgetChoice(spec(w, depths), params, target, why, n, teacher_params, shape(w, depths), kind, amount,
                        dtype if kind == "memory" else None, size)
