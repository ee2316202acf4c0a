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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch.nn as nn

__all__ = ["BudgetChoice", "fit_budget", "timm_budget_student", "count_params"]


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

    def as_dict(self) -> Dict[str, Any]:
        return {"target_params": self.target, "params": self.params, "teacher_params": self.teacher_params,
                "shape": self.shape, "rationale": self.rationale, "candidates": self.candidates}


def count_params(model: nn.Module) -> int:
    """The number of parameters (tied ones once), meta tensors included."""
    return sum(p.numel() for p in model.parameters())


def _layer_params(model: nn.Module, prefix: str) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


def fit_budget(target: int, widths: Sequence[Any], depth_options: Sequence[Tuple[int, ...]],
               cost: Callable[[Any], Tuple[int, Tuple[int, ...]]], describe: Callable[[Any, Tuple[int, ...]], str],
               family: str) -> Tuple[Any, Tuple[int, ...], int, str, int]:
    """``(width, depths, params, rationale, candidates)`` by the module's rule. ``widths``: ascending;
    ``depth_options``: the teacher's depths first, then shallower ones, deepest first; ``cost(width)``:
    ``(params with one layer per group, params of one layer of each group)``; ``describe(width,
    depths)``: the candidate in words. Raises ValueError naming the smallest candidate's count."""
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
            why = (f"the widest width at the teacher's depth within {target:,} parameters: {params:,} "
                   f"({params / target:.1%} of the budget){nxt}")
        else:
            teacher_depth = depth_options[0][0] if len(depth_options[0]) == 1 else depth_options[0]
            why = (f"the narrowest width at the teacher's depth {teacher_depth} has {total(0, depth_options[0]):,} "
                   f"parameters, over {target:,}: depth reduced to the deepest that fits, the widest width there "
                   f"({params:,}, {params / target:.1%} of the budget){nxt}")
        return widths[i], depths, params, f"{describe(widths[i], depths)}: {why}", len(widths) * (k + 1)
    smallest = total(0, depth_options[-1])
    raise ValueError(f"no {family} student within {target:,} parameters: the smallest candidate "
                     f"({describe(widths[0], depth_options[-1])}) has {smallest:,}; raise the budget (--target-params)")


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

    def cost(h):
        m = _meta_build(arch, spec(h, (1,))["kwargs"])
        return count_params(m), (_layer_params(m, "blocks.0."),)

    describe = lambda h, d: f"embed_dim {h * hd} ({h} heads of {hd}), depth {d[0]}"  # noqa: E731
    shape = lambda h, d: {"embed_dim": h * hd, "num_heads": h, "head_dim": hd, "depth": d[0]}  # noqa: E731
    return list(range(1, heads + 1)), shallower((len(model.blocks),)), cost, describe, spec, shape


def _convnext_search(model: nn.Module, arch: str, kwargs: Dict[str, Any]):
    dims = tuple(int(s.blocks[0].conv_dw.weight.shape[0]) for s in model.stages)
    unit = 8 if dims[0] % 8 == 0 else 1  # channels in multiples of 8 where the teacher's are
    steps = dims[0] // unit
    widths = [tuple(d * j // steps for d in dims) for j in range(1, steps + 1)]

    def spec(w, depths):
        return {"name": arch, "kwargs": {**kwargs, "dims": w, "depths": tuple(depths)}}

    def cost(w):
        m = _meta_build(arch, spec(w, (1,) * len(dims))["kwargs"])
        return count_params(m), tuple(_layer_params(m, f"stages.{s}.blocks.0.") for s in range(len(dims)))

    describe = lambda w, d: f"dims {w}, depths {d}"  # noqa: E731
    shape = lambda w, d: {"dims": list(w), "depths": list(d)}  # noqa: E731
    return widths, shallower(tuple(len(s.blocks) for s in model.stages)), cost, describe, spec, shape


def timm_budget_student(teacher: Any, target_params: int, student_kwargs: Optional[Mapping[str, Any]] = None,
                        teacher_kwargs: Optional[Mapping[str, Any]] = None) -> BudgetChoice:
    """The student of the teacher's family (timm ViT or ConvNeXt) for ``target_params`` parameters
    (a count, classifier included), by the module's rule. ``student_kwargs`` (``num_classes``,
    ``img_size``) apply to every candidate. Raises ValueError for another family, a teacher without
    an architecture, a budget below the smallest candidate or not below the teacher."""
    from weightselect.selection.families import CONVNEXT, VIT, detect_family

    model, arch = _timm_teacher(teacher, teacher_kwargs)
    family = detect_family({k: tuple(v.shape) for k, v in model.state_dict().items()})
    searches = {VIT.name: _vit_search, CONVNEXT.name: _convnext_search}
    if family.name not in searches:
        raise ValueError(f"parameter budgets are defined for the vit and convnext families (and Llama-like "
                         f"transformers), not {family.name}: give the student explicitly")
    widths, depth_options, cost, describe, spec, shape = searches[family.name](model, arch, dict(student_kwargs or {}))
    teacher_params = count_params(model)
    if int(target_params) >= teacher_params:
        raise ValueError(f"the teacher has {teacher_params:,} parameters, within the budget of {int(target_params):,}: "
                         "nothing to select; give a smaller --target-params")
    w, depths, params, why, n = fit_budget(target_params, widths, depth_options, cost, describe, family.name)
    return BudgetChoice(spec(w, depths), params, int(target_params), why, n, teacher_params, shape(w, depths))
