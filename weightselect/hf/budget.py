"""Parameter budgets for Llama-like transformers teachers (Llama, Mistral, Qwen2/3, Phi-3, Gemma).

The rule is :mod:`weightselect.selection.budget`'s (width first at the teacher's depth, then the
deepest depth that fits), over these widths: ``w`` KV groups of ``ratio`` query heads each (the
teacher's GQA ratio, so heads divide into groups), ``w = 1 .. num_key_value_heads``; with one KV
group (multi-query attention) ``w`` query heads instead. The head dimension is the teacher's;
``hidden_size`` and ``intermediate_size`` are the teacher's times ``heads / num_attention_heads``
(rounded down), so the model keeps its proportions. Counts are exact, from meta-device builds.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from weightselect.hf.families import family_for, head_dim_of
from weightselect.selection.budget import BudgetChoice, count_params, fit_budget, shallower

__all__ = ["hf_budget_student", "LLAMA_LIKE"]

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


def hf_budget_student(config: Any, target_params: int) -> BudgetChoice:
    """The student's config overrides for at most ``target_params`` parameters (tied embeddings
    counted once), by the module's rule. Raises ValueError for a family without KV groups, a
    budget below the smallest candidate or not below the teacher."""
    fam = family_for(config)
    if fam.family.name not in LLAMA_LIKE:
        raise ValueError(f"parameter budgets for transformers are defined for Llama-like models with KV groups "
                         f"({', '.join(LLAMA_LIKE)}), not {fam.family.name}: give the student's config overrides")
    teacher_params = count_params(_meta(config, {}))
    if int(target_params) >= teacher_params:
        raise ValueError(f"the teacher has {teacher_params:,} parameters, within the budget of {int(target_params):,}: "
                         "nothing to select; give a smaller --target-params")
    layer_re = fam.family.layer_re

    def cost(width):
        model = _meta(config, _overrides(config, width, 1))
        layer = sum(p.numel() for n, p in model.named_parameters() if layer_re.match(n))
        return count_params(model), (layer,)

    hd = head_dim_of(config)
    describe = lambda w, d: (f"{w[1]} heads in {w[0]} KV groups (head_dim {hd}), hidden "  # noqa: E731
                             f"{_overrides(config, w, 1)['hidden_size']}, {d[0]} layers")
    widths = _widths(config)
    w, depths, params, why, n = fit_budget(target_params, widths, shallower((int(config.num_hidden_layers),)), cost,
                                           describe, fam.family.name)
    overrides = _overrides(config, w, depths[0])
    shape = {k: v for k, v in overrides.items()}
    return BudgetChoice(overrides, params, int(target_params), why, n, teacher_params, shape)
