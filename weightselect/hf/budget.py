"""Parameter budgets for Llama-like transformers teachers (Llama, Mistral, Qwen2/3, Phi-3, Gemma).

The rule is :mod:`weightselect.selection.budget`'s (width first at the teacher's depth, then the
deepest depth that fits), over these widths: ``w`` KV groups of ``ratio`` query heads each (the
teacher's GQA ratio, so heads divide into groups), ``w = 1 .. num_key_value_heads``; with one KV
group (multi-query attention) ``w`` query heads instead. The head dimension is the teacher's;
``hidden_size`` and ``intermediate_size`` are the teacher's times ``heads / num_attention_heads``
(rounded down), so the model keeps its proportions. Counts are exact, from meta-device builds.
A memory budget counts the parameters' bytes at a dtype (``torch.dtype.itemsize``; tied ones once).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from weightselect.hf.families import family_for, head_dim_of
from weightselect.selection.budget import (
    BUDGET_KINDS, BudgetChoice, count_params, dtype_itemsize, fit_budget, parse_amount, shallower,
)

__all__ = ["hf_budget_student", "config_dtype", "LLAMA_LIKE"]

LLAMA_LIKE = ("llama", "phi3", "gemma")  # families of weightselect.hf.families with KV groups


def _widths(config: Any) -> List[Tuple[int, int]]:
    """``(kv heads, query heads)`` candidates, ascending."""
    heads = int(config.num_attention_heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads)
    if kv == 1:
        return [(1, h) for h in range(1, heads + 1)]
    return [(w, w * (heads // kv)) for w in range(1, kv + 1)]


def _overrides(config: Any, width: Tuple[int, int], layers: int) -> Dict[str, Any]:
    kv, heads = width
    scale = lambda n: int(n) * heads // int(config.num_attention_heads)  # noqa: E731
    return {"hidden_size": scale(config.hidden_size), "intermediate_size": scale(config.intermediate_size),
            "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim_of(config),
            "num_hidden_layers": int(layers)}


def _meta(config: Any, overrides: Dict[str, Any]):
    from weightselect.hf.config import student_config
    from weightselect.hf.select import build_meta_model

    return build_meta_model(student_config(config, overrides)[0])


def config_dtype(config: Any) -> str:
    """The dtype name ``from_pretrained(dtype="auto")`` loads a config's weights in (its ``dtype``,
    formerly ``torch_dtype``), float32 when it names none."""
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32"
    return str(value).replace("torch.", "")


def hf_budget_student(config: Any, target: Any, kind: str = "params", dtype: Optional[str] = None) -> BudgetChoice:
    """The student's config overrides within ``target`` by the module's rule: ``kind`` ``params``
    (parameters, tied embeddings once) or ``memory`` (bytes of those parameters at ``dtype``,
    default :func:`config_dtype`); ``target`` an int or a string such as ``"20MB"``. Raises
    ValueError for a FLOPs budget (timm image models only), a family without KV groups, a budget
    below the smallest candidate or not below the teacher."""
    if kind not in ("params", "memory"):
        raise ValueError("--target-flops is defined for timm image models; for a transformers teacher give "
                         "--target-params or --target-memory")
    unit, option = BUDGET_KINDS[kind]
    target = parse_amount(target, option)
    dtype = dtype or config_dtype(config)
    scale = dtype_itemsize(dtype) if kind == "memory" else 1
    fam = family_for(config)
    if fam.family.name not in LLAMA_LIKE:
        raise ValueError(f"budgets for transformers are defined for Llama-like models with KV groups "
                         f"({', '.join(LLAMA_LIKE)}), not {fam.family.name}: give the student's config overrides")
    teacher_params = count_params(_meta(config, {}))
    if target >= teacher_params * scale:
        raise ValueError(f"the teacher has {teacher_params * scale:,} {unit}, within the budget of {target:,}: "
                         f"nothing to select; give a smaller {option}")
    layer_re = fam.family.layer_re

    def cost(width):
        model = _meta(config, _overrides(config, width, 1))
        layer = sum(p.numel() for n, p in model.named_parameters() if layer_re.match(n))
        return count_params(model) * scale, (layer * scale,)

    hd = head_dim_of(config)
    describe = lambda w, d: (f"{w[1]} heads in {w[0]} KV groups (head_dim {hd}), hidden "  # noqa: E731
                             f"{_overrides(config, w, 1)['hidden_size']}, {d[0]} layers")
    widths = _widths(config)
    w, depths, amount, why, n = fit_budget(target, widths, shallower((int(config.num_hidden_layers),)), cost,
                                           describe, fam.family.name, unit, option)
    overrides = _overrides(config, w, depths[0])
    params = amount // scale
    if kind == "memory":
        why += f" (bytes at {dtype})"
    return BudgetChoice(overrides, params, target, why, n, teacher_params, dict(overrides), kind, amount,
                        dtype if kind == "memory" else None)
