"""The student's transformers config and the checks that refuse pairs weight selection cannot map.

A student is the teacher's config with overrides (``{"hidden_size": 256, "num_hidden_layers": 4}``
or the text ``"hidden_size=256,num_hidden_layers=4"``), or a ``config.json`` (file or folder) of the
same architecture, optionally with overrides on top. Values the student does not override stay the
teacher's: in particular an explicit ``head_dim`` (Llama) stays, so narrowing ``hidden_size`` and
``num_attention_heads`` together keeps whole heads.
"""
from __future__ import annotations

import copy
import difflib
import filecmp
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from weightselect.hf.families import HFFamily, axis_sizes, family_for, head_dim_of, rope_parameters
from weightselect.hf.sources import tokenizer_files
from weightselect.selection.layers import layer_indices

__all__ = ["parse_overrides", "student_config", "check_pair", "check_layer_kinds", "AXIS_WORDS"]

# how each axis is called in the configs, for error messages
AXIS_WORDS = {
    "hidden": "hidden width (hidden_size / n_embd / dim)",
    "heads": "attention heads (num_attention_heads / n_head / n_heads)",
    "kv_groups": "KV groups (num_key_value_heads)",
    "q_per_kv": "query heads per KV group (num_attention_heads / num_key_value_heads)",
    "head_dim": "head dimension",
    "rope_pairs": "rotary pairs (head_dim / 2)",
    "mlp_hidden": "MLP width (intermediate_size / n_inner / hidden_dim)",
    "pooler": "pooler width",
    "classifier_hidden": "classification head width",
    "experts": "experts (num_local_experts / num_experts)",
    "expert_hidden": "expert MLP width (Mixtral's intermediate_size / moe_intermediate_size)",
    "shared_hidden": "shared expert MLP width (shared_expert_intermediate_size)",
}


def parse_overrides(text: str) -> Dict[str, Any]:
    """``"hidden_size=256,num_hidden_layers=4"`` (values read as JSON where they parse) or a JSON
    object -> a dict."""
    text = text.strip()
    if text.startswith("{"):
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("student overrides must be a JSON object")
        return value
    out: Dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"student override '{item}' is not KEY=VALUE (e.g. hidden_size=256,num_hidden_layers=4)")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw.strip()
    return out


_SIZE_FIELD = re.compile(r"^(num_|n_)|(_size|_dim|_layers|_heads|_embd|intermediate.*)$")


def _check_size(key: str, value: Any, teacher_value: Any) -> None:
    """A size field (layers, widths, heads) of the teacher's config is a whole number of at least 1."""
    if isinstance(teacher_value, bool) or not isinstance(teacher_value, int) or teacher_value < 1:
        return
    if _SIZE_FIELD.search(key) and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"student {key}={value!r}: {key} is a size; give a whole number of at least 1 "
                         f"(the teacher's is {teacher_value})")


def _apply_overrides(config: Any, overrides: Mapping[str, Any], teacher: Any) -> None:
    known = set(teacher.to_dict()) | set(getattr(teacher, "attribute_map", {}) or {})
    for key, value in overrides.items():
        _check_size(key, value, getattr(teacher, key, None))
        is_property = hasattr(teacher, key) and not callable(getattr(teacher, key))  # e.g. num_labels
        if key not in known and not is_property:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"'{key}' is not a field of the teacher's {teacher.model_type} config{hint}")
        setattr(config, key, value)


def student_config(teacher: Any, student: Any, overrides: Optional[Mapping[str, Any]] = None,
                   layers: str = "first") -> Tuple[Any, Dict[str, Any], Optional[Path]]:
    """The student's config, its description for the manifest and its folder (when given one).

    ``student``: None (the teacher's config with ``overrides``), a dict of overrides, an overrides
    text, a ``config.json`` path or folder, or a transformers config. A teacher with per-layer
    ``layer_types`` (sliding-window layers of Mistral/Qwen2/Qwen3/Gemma2/Gemma3) gives the student
    those of the layers that layer selection ``layers`` picks, unless ``layer_types`` is overridden
    (a student whose kinds differ from the chosen layers' is refused by :func:`check_layer_kinds`).
    """
    from transformers import AutoConfig, PretrainedConfig

    fam = family_for(teacher)  # an unsupported architecture is refused before its fields are read
    overrides = dict(overrides or {})
    folder: Optional[Path] = None
    spec: Dict[str, Any]
    if student is None or isinstance(student, Mapping):
        overrides = {**dict(student or {}), **overrides}
        config, spec = copy.deepcopy(teacher), {"from": "teacher"}
    elif isinstance(student, PretrainedConfig):
        config, spec = copy.deepcopy(student), {"from": "config"}
    elif isinstance(student, (str, os.PathLike)) and Path(student).exists():
        path = Path(student)
        folder = path if path.is_dir() else path.parent
        config, spec = AutoConfig.from_pretrained(path), {"from": os.fspath(student)}
    elif isinstance(student, str) and ("=" in student or student.strip().startswith("{")):
        overrides = {**parse_overrides(student), **overrides}
        config, spec = copy.deepcopy(teacher), {"from": "teacher"}
    else:
        raise ValueError(
            f"student '{student}' is neither a config.json (file or folder) nor overrides such as "
            "'hidden_size=256,num_hidden_layers=4'"
        )
    _apply_overrides(config, overrides, teacher)
    if spec["from"] == "teacher":
        for dep, src in fam.follows:  # OPT's word_embed_proj_dim = hidden_size
            if dep not in overrides and getattr(teacher, dep, None) == getattr(teacher, src, None):
                setattr(config, dep, getattr(config, src))
    if not getattr(config, "architectures", None):
        config.architectures = list(getattr(teacher, "architectures", None) or [])
    t_types = getattr(teacher, "layer_types", None)  # checked against the layer map by check_layer_kinds
    s_layers = getattr(config, "num_hidden_layers", None)
    s_types = getattr(config, "layer_types", None) or []
    if t_types and "layer_types" not in overrides and s_layers and len(s_types) != s_layers:
        if s_layers <= len(t_types):
            config.layer_types = [t_types[i] for i in layer_indices(layers, len(t_types), s_layers)]
    spec["overrides"] = overrides
    return config, spec, folder


def _check_tokenizer(teacher: Any, student: Any, t_folder: Path, s_folder: Optional[Path]) -> None:
    for key in ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id"):
        t, s = getattr(teacher, key, None), getattr(student, key, None)
        if t != s:
            raise ValueError(
                f"the student's {key} is {s} but the teacher's is {t}: weight selection never selects the "
                "vocabulary, so the student keeps the teacher's tokenizer; remove that override"
            )
    if s_folder is None or s_folder.resolve() == t_folder.resolve():
        return
    for path in tokenizer_files(s_folder):
        other = t_folder / path.name
        if other.is_file() and not filecmp.cmp(path, other, shallow=False):
            raise ValueError(
                f"the student's {path.name} differs from the teacher's: weight selection keeps the teacher's "
                "vocabulary and tokenizer; give a student config without tokenizer files, or the teacher's"
            )


def _check_heads(fam: HFFamily, teacher: Any, student: Any, select_head_dim: bool) -> None:
    hidden, heads = getattr(student, "hidden_size", None), getattr(student, "num_attention_heads", None)
    if getattr(student, "head_dim", None) is None and hidden and heads and hidden % heads:
        raise ValueError(
            f"the student's hidden_size {hidden} is not a multiple of its num_attention_heads {heads}: a head "
            f"would not be whole; choose hidden_size = {heads} x {head_dim_of(teacher)} to keep the teacher's "
            "head dimension, or another head count"
        )
    t_hd, s_hd = head_dim_of(teacher), head_dim_of(student)
    if fam.rotary:
        s_heads = int(student.num_attention_heads)
        s_kv = int(getattr(student, "num_key_value_heads", None) or s_heads)
        if s_heads % s_kv:
            raise ValueError(
                f"the student's {s_heads} attention heads do not divide into its {s_kv} KV groups "
                "(num_key_value_heads): choose a head count that is a multiple of the KV groups"
            )
    if t_hd == s_hd:
        return
    if not select_head_dim:
        raise ValueError(
            f"the student's head dimension is {s_hd}, the teacher's {t_hd}: keep the head dimension (change "
            "hidden_size and num_attention_heads together, or set head_dim) to select whole heads, or pass "
            "select_head_dim=True (--select-head-dim) to select inside every head"
            + (" (whole rotary pairs)" if fam.rotary else "")
        )
    if fam.rotary:
        rope = rope_parameters(teacher)
        partial = rope.get("partial_rotary_factor", 1.0)
        if partial not in (None, 1, 1.0) or t_hd % 2 or s_hd % 2:
            raise ValueError(
                f"cannot select inside the head dimension ({t_hd} -> {s_hd}): rotary pairs (i, i + head_dim/2) "
                f"would be split (partial_rotary_factor {partial}); keep head_dim"
            )
        per_pair = sorted(k for k, v in rope.items() if isinstance(v, (list, tuple)))
        if per_pair:
            raise ValueError(
                f"cannot select inside the head dimension ({t_hd} -> {s_hd}): the rotary scaling has one factor per "
                f"pair ({', '.join(per_pair)}, Phi-3's LongRoPE) for the teacher's {t_hd // 2} pairs; keep head_dim"
            )


def _check_rope(fam: HFFamily, teacher: Any, student: Any, allow_rope_change: bool) -> None:
    if not fam.rotary:
        return
    t, s = rope_parameters(teacher), rope_parameters(student)
    if t != s and not allow_rope_change:
        diff = ", ".join(f"{k}: {t.get(k)} -> {s.get(k)}" for k in sorted(set(t) | set(s)) if t.get(k) != s.get(k))
        raise ValueError(
            f"the student's rotary settings differ from the teacher's ({diff}): the selected heads were trained "
            "with the teacher's; keep them, or pass allow_rope_change=True (--allow-rope-change)"
        )


def check_pair(teacher: Any, student: Any, t_folder: Path, s_folder: Optional[Path] = None,
               select_head_dim: bool = False, allow_rope_change: bool = False) -> HFFamily:
    """Refuse, with the fix in one line, a student that weight selection cannot take from the
    teacher; returns the family. Raises ValueError."""
    fam = family_for(teacher)
    if getattr(student, "model_type", None) != teacher.model_type:
        raise ValueError(
            f"the student config is a {student.model_type} model but the teacher a {teacher.model_type} model: "
            "weight selection needs two models of the same architecture"
        )
    for who, config in (("teacher", teacher), ("student", student)):
        why = fam.unsupported(config)
        if why:
            raise ValueError(f"the {who}'s {why}")
    if bool(getattr(teacher, "tie_word_embeddings", False)) != bool(getattr(student, "tie_word_embeddings", False)):
        raise ValueError(
            "tie_word_embeddings differs between teacher and student: the LM head keeps the teacher's tying"
        )
    _check_tokenizer(teacher, student, t_folder, s_folder)
    for key, t in fam.fixed(teacher).items():
        s = fam.fixed(student)[key]
        if s != t:
            raise ValueError(f"the student's {key} is {s}, the teacher's {t}: this size is never selected; keep it")
    _check_heads(fam, teacher, student, select_head_dim)
    _check_rope(fam, teacher, student, allow_rope_change)
    t_sizes, s_sizes = axis_sizes(teacher), axis_sizes(student)
    gqa = "q_per_kv" in s_sizes
    if gqa and s_sizes["kv_groups"] <= t_sizes["kv_groups"] and s_sizes["q_per_kv"] > t_sizes["q_per_kv"]:
        raise ValueError(
            f"the student has {s_sizes['q_per_kv']} query heads per KV group, the teacher {t_sizes['q_per_kv']}: "
            "whole KV groups keep only the query heads that read them (keep the GQA ratio at most the teacher's)"
        )
    for axis, t in sorted(t_sizes.items(), key=lambda item: item[0] == "hidden"):  # heads first
        s = s_sizes[axis]
        if s > t:
            raise ValueError(
                f"the student has more {AXIS_WORDS.get(axis, axis)} than the teacher ({s} > {t}): "
                "the student must not be wider than the teacher on any axis"
            )
    return fam


def check_layer_kinds(groups: Mapping[str, Any], teacher: Any, student: Any) -> None:
    """Every student layer keeps the kind of the teacher layer it is selected from: its attention
    (``layer_types``: sliding-window or global, as Mistral, Qwen2/3, Gemma2/3 set per layer) and, for
    the Qwen MoEs, its MLP (the experts' or dense). ``groups``: the layer map's ``{group: [teacher index
    of each student layer]}``. Raises ValueError."""
    fam = family_for(teacher)
    t_types, s_types = fam.layer_kinds(teacher), fam.layer_kinds(student)
    if not t_types or not s_types:
        return
    for chosen in groups.values():
        for i, t in enumerate(chosen):
            if i < len(s_types) and t < len(t_types) and s_types[i] != t_types[t]:
                raise ValueError(
                    f"student layer {i} is {s_types[i]} but teacher layer {t}, which layer selection takes it "
                    f"from, is {t_types[t]}: a selected layer keeps its kind; leave layer_types out of the student "
                    "to take the chosen layers' attention kinds (Qwen MoEs: set mlp_only_layers/decoder_sparse_step "
                    "to their MLP kinds), or choose other layers"
                )
