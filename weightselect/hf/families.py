"""Hugging Face ``transformers`` families: named axes of every tensor dimension, from the config.

The same design as the timm families (:mod:`weightselect.selection.families`): one
:class:`~weightselect.selection.families.Family` per architecture declares its layer naming and, per
parameter-name pattern, the axis of each dimension. Transformers models add one thing: a dimension
is often a *product* of axes laid out row-major, written ``"a*b*c"``. ``q_proj``'s output is
``kv_groups * q_per_kv * head_dim`` (HF's ``repeat_kv`` gives query head ``h`` the KV group
``h // q_per_kv``), GPT-2's fused ``c_attn`` is ``3 * heads * head_dim``. A factor that is an integer
is a fixed block count (q, k, v; the two halves of a rotary head), kept whole. Selecting a product
dimension takes the Cartesian product of its factors' index sets, so whole heads and whole KV groups
are chosen, and each chosen KV group keeps the query heads that read it. Blocks of different
products laid out one after another are joined with ``+`` (Phi-3's ``qkv_proj``: q heads, then k
groups, then v groups); each block is selected on its own and the results concatenated.

Axis sizes come from the config (:func:`axis_sizes`), and every dimension's product is checked
against the tensor's shape. Vocabulary and positions are never selected (``None``).

Rotary heads (Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma, GPT-NeoX): HF's ``rotate_half`` pairs
dimension ``i`` of a head with ``i + head_dim / 2``, so the head dimension is ``2 * rope_pairs``:
selecting inside it selects whole rotary pairs, both halves alike. Qwen3's per-head
``q_norm``/``k_norm`` (an RMSNorm over the head dimension, applied before the rotation;
``transformers/models/qwen3/modeling_qwen3.py``) carry that same ``2 * rope_pairs`` axis, so they
keep the pairs the heads keep (all of them when the head dimension is kept). Where only part of each
head turns (``partial_rotary_factor`` below 1, GPT-NeoX's ``rotary_pct``), ``2 * rope_pairs`` is only
the head's layout: the head dimension must then be kept (:func:`weightselect.hf.config.check_pair`),
and whole heads are selected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from weightselect.selection.families import Family

__all__ = [
    "HFFamily",
    "HF_FAMILIES",
    "SUPPORTED_MODEL_TYPES",
    "family_for",
    "axis_sizes",
    "factors",
    "terms",
    "head_dim_of",
    "rope_parameters",
]

H = "hidden"


@dataclass(frozen=True)
class HFFamily:
    """A transformers architecture: the named-axes :class:`Family` plus how to read sizes from its
    config. ``sizes(config) -> {base axis name: size}``; ``fixed(config) -> {what: value}`` lists
    config values that select nothing and must be equal in teacher and student; ``follows``:
    ``(field, other)`` pairs where ``field`` equals ``other`` in the teacher and so is set to the
    student's ``other`` unless overridden (OPT's ``word_embed_proj_dim`` follows ``hidden_size``);
    ``unsupported(config) -> reason or None`` names a variant of the architecture that is refused;
    ``layer_kinds(config) -> [kind of each layer] or None`` what a selected layer must keep
    (``layer_types``: sliding-window or global attention); ``first_layer_only``: a regex of the
    parameters that only layer 0 of a group holds and every layer uses (T5's relative position bias),
    read from the teacher's layer 0 whichever layers are selected."""

    family: Family
    model_types: Tuple[str, ...]
    sizes: Callable[[Any], Dict[str, int]]
    fixed: Callable[[Any], Dict[str, Any]]
    rotary: bool = False
    follows: Tuple[Tuple[str, str], ...] = ()
    unsupported: Callable[[Any], Optional[str]] = lambda config: None
    layer_kinds: Callable[[Any], Optional[List[str]]] = lambda config: getattr(config, "layer_types", None)
    first_layer_only: Optional[str] = None


def head_dim_of(config: Any) -> int:
    """``config.head_dim`` where the architecture has one, else ``hidden_size // num_attention_heads``."""
    hd = getattr(config, "head_dim", None)
    if hd:
        return int(hd)
    return int(config.hidden_size) // int(config.num_attention_heads)


def rope_parameters(config: Any) -> Dict[str, Any]:
    """The rotary settings of a config: transformers 5's ``rope_parameters``, or 4.x's
    ``rope_theta`` and ``rope_scaling``; plus ``partial_rotary_factor``."""
    params = getattr(config, "rope_parameters", None)
    if params:
        out = dict(params)
    else:
        out = {"rope_theta": getattr(config, "rope_theta", None)}
        out.update(dict(getattr(config, "rope_scaling", None) or {}))
    out.setdefault("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0) or 1.0)
    return out


# --------------------------------------------------------------------------------------------
# Llama (and the GQA + RoPE models with its layout: Mistral, Qwen2, Qwen3). Linear weights are (out, in).
HEADS_Q = "{L}.kv_groups*{L}.q_per_kv*2*rope_pairs"
HEADS_KV = "{L}.kv_groups*2*rope_pairs"
LLAMA = Family(
    name="llama",
    signature=(),
    layer_pattern=r"^(?P<group>(?:model\.)?layers)\.(?P<index>\d+)\.",
    rules=[
        (r"(model\.)?embed_tokens\.weight", (None, H)),
        (r"lm_head\.weight", (None, H)),
        (r"(model\.)?norm\.weight", (H,)),
        (r"{L}\.(input_layernorm|post_attention_layernorm)\.weight", (H,)),
        (r"{L}\.self_attn\.q_proj\.weight", (HEADS_Q, H)),
        (r"{L}\.self_attn\.q_proj\.bias", (HEADS_Q,)),
        (r"{L}\.self_attn\.[kv]_proj\.weight", (HEADS_KV, H)),
        (r"{L}\.self_attn\.[kv]_proj\.bias", (HEADS_KV,)),
        (r"{L}\.self_attn\.[qk]_norm\.weight", ("2*rope_pairs",)),  # Qwen3: RMSNorm over head_dim
        (r"{L}\.self_attn\.o_proj\.weight", (H, HEADS_Q)),
        (r"{L}\.self_attn\.o_proj\.bias", (H,)),
        (r"{L}\.mlp\.(gate_proj|up_proj)\.weight", ("{L}.mlp_hidden", H)),
        (r"{L}\.mlp\.(gate_proj|up_proj)\.bias", ("{L}.mlp_hidden",)),
        (r"{L}\.mlp\.down_proj\.weight", (H, "{L}.mlp_hidden")),
        (r"{L}\.mlp\.down_proj\.bias", (H,)),
    ],
    components={"attention": r"\.self_attn\.", "mlp": r"\.mlp\.", "norm": r"norm\."},
    embedding_axes=H,
)


def _llama_sizes(c: Any) -> Dict[str, int]:
    heads, kv = int(c.num_attention_heads), int(getattr(c, "num_key_value_heads", None) or c.num_attention_heads)
    hd = head_dim_of(c)
    return {
        H: int(c.hidden_size), "kv_groups": kv, "q_per_kv": heads // kv if heads % kv == 0 else -1,
        "rope_pairs": hd // 2, "mlp_hidden": int(c.intermediate_size),
    }


def _llama_fixed(c: Any) -> Dict[str, Any]:
    return {"vocab_size": c.vocab_size}


# Phi-3 (transformers/models/phi3/modeling_phi3.py): the Llama layout with q, k and v fused into
# qkv_proj, whose output is the q heads, then the k groups, then the v groups (sliced in that order
# by query_pos = heads * head_dim and num_key_value_heads * head_dim), and gate and up fused into
# gate_up_proj ([gate | up], split by chunk(2)).
PHI3 = Family(
    name="phi3",
    signature=(),
    layer_pattern=LLAMA.layer_pattern,
    rules=[
        *[r for r in LLAMA.rules if "_proj" not in r[0]],
        (r"{L}\.self_attn\.qkv_proj\.weight", (f"{HEADS_Q}+{HEADS_KV}+{HEADS_KV}", H)),
        (r"{L}\.self_attn\.o_proj\.weight", (H, HEADS_Q)),
        (r"{L}\.mlp\.gate_up_proj\.weight", ("2*{L}.mlp_hidden", H)),
        (r"{L}\.mlp\.down_proj\.weight", (H, "{L}.mlp_hidden")),
    ],
    components=LLAMA.components,
    embedding_axes=H,
)

# Gemma, Gemma2, Gemma3 text (transformers/models/gemma{,2,3}/modeling_gemma*.py): the Llama layout
# with head_dim set apart from hidden_size / heads, and (Gemma2/3) an RMSNorm before and after the
# MLP. Its RMSNorms scale by (1 + weight); its embeddings by sqrt(hidden_size), the student's own.
GEMMA = Family(
    name="gemma",
    signature=(),
    layer_pattern=LLAMA.layer_pattern,
    rules=[*LLAMA.rules, (r"{L}\.(pre|post)_feedforward_layernorm\.weight", (H,))],
    components=LLAMA.components,
    embedding_axes=H,
)


# Mixtral, Qwen2-MoE, Qwen3-MoE (transformers/models/{mixtral,qwen2_moe,qwen3_moe}/modeling_*.py): the
# Llama attention (Qwen3-MoE: with Qwen3's q_norm/k_norm)
# with a sparse MoE MLP. transformers 5 holds the experts fused, mlp.experts.gate_up_proj (experts,
# [gate | up], hidden) and mlp.experts.down_proj (experts, hidden, expert MLP); checkpoints store them
# per expert (Mixtral's w1, w3, w2; Qwen2-MoE's gate/up/down_proj), stacked on reading
# (weightselect.hf.sources.Merged). One index set of experts is shared by the router's rows and both
# expert tensors; the expert MLP width by every expert of a layer. Qwen2-MoE adds a shared expert
# (an MLP of its own width, gated by one sigmoid row); both Qwen MoEs may have dense-MLP layers
# (mlp_only_layers, decoder_sparse_step), whose kind a selected layer keeps.
MOE_RULES = [
    (r"{L}\.mlp\.gate\.weight", ("{L}.experts", H)),
    (r"{L}\.mlp\.experts\.gate_up_proj", ("{L}.experts", "2*{L}.expert_hidden", H)),
    (r"{L}\.mlp\.experts\.down_proj", ("{L}.experts", H, "{L}.expert_hidden")),
]
MIXTRAL = Family(
    name="mixtral",
    signature=(),
    layer_pattern=LLAMA.layer_pattern,
    rules=[*[r for r in LLAMA.rules if r"\.mlp\." not in r[0]], *MOE_RULES],
    components={**LLAMA.components, "mlp": r"\.mlp\."},
    embedding_axes=H,
)
QWEN2_MOE = Family(
    name="qwen2_moe",
    signature=(),
    layer_pattern=LLAMA.layer_pattern,
    rules=[
        *LLAMA.rules,  # the dense-MLP layers too
        *MOE_RULES,
        (r"{L}\.mlp\.shared_expert\.(gate_proj|up_proj)\.weight", ("{L}.shared_hidden", H)),
        (r"{L}\.mlp\.shared_expert\.down_proj\.weight", (H, "{L}.shared_hidden")),
        (r"{L}\.mlp\.shared_expert_gate\.weight", (None, H)),
    ],
    components={**LLAMA.components, "mlp": r"\.mlp\."},
    embedding_axes=H,
)


def _mixtral_sizes(c: Any) -> Dict[str, int]:
    return {**_llama_sizes(c), "experts": int(c.num_local_experts), "expert_hidden": int(c.intermediate_size)}


def _qwen_moe_sizes(c: Any) -> Dict[str, int]:
    sizes = {**_llama_sizes(c), "experts": int(c.num_experts), "expert_hidden": int(c.moe_intermediate_size)}
    if getattr(c, "shared_expert_intermediate_size", None):  # Qwen2-MoE; Qwen3-MoE has no shared expert
        sizes["shared_hidden"] = int(c.shared_expert_intermediate_size)
    return sizes


def _moe_fixed(c: Any) -> Dict[str, Any]:
    return {"vocab_size": c.vocab_size, "num_experts_per_tok": c.num_experts_per_tok}


def _moe_unsupported(c: Any) -> Optional[str]:
    field = "num_local_experts" if hasattr(c, "num_local_experts") else "num_experts"
    if int(getattr(c, field)) < int(c.num_experts_per_tok):
        return (f"{field} {getattr(c, field)} is fewer than the {c.num_experts_per_tok} experts each "
                "token is routed to (num_experts_per_tok): keep at least that many experts")
    return None


def _qwen_moe_kinds(c: Any) -> List[str]:
    """Per layer its attention kind and whether its MLP is the experts' or dense (Qwen2MoeDecoderLayer,
    Qwen3MoeDecoderLayer)."""
    types = getattr(c, "layer_types", None) or ["full_attention"] * int(c.num_hidden_layers)
    only = set(getattr(c, "mlp_only_layers", None) or [])
    step = int(getattr(c, "decoder_sparse_step", 1) or 1)
    sparse = [i not in only and int(c.num_experts) > 0 and (i + 1) % step == 0 for i in range(int(c.num_hidden_layers))]
    return [f"{t} with {'the experts' if s else 'a dense MLP'}" for t, s in zip(types, sparse)]


# --------------------------------------------------------------------------------------------
# GPT-NeoX / Pythia (transformers/models/gpt_neox/modeling_gpt_neox.py): query_key_value's output is
# per head [q | k | v], each head_dim (view(..., heads, 3 * head_dim).chunk(3)); the rotation covers
# the first rotary_pct of each head dimension, pairing i with i + rotary_ndims / 2, so only whole
# heads are selected unless rotary_pct is 1 (then whole rotary pairs, as Llama).
NEOX_HEAD = "{L}.heads*2*rope_pairs"
NEOX = Family(
    name="gpt_neox",
    signature=(),
    layer_pattern=r"^(?P<group>(?:gpt_neox\.)?layers)\.(?P<index>\d+)\.",
    rules=[
        (r"(gpt_neox\.)?embed_in\.weight", (None, H)),
        (r"(lm_head|embed_out)\.weight", (None, H)),
        (r"(gpt_neox\.)?final_layer_norm\.(weight|bias)", (H,)),
        (r"{L}\.(input_layernorm|post_attention_layernorm)\.(weight|bias)", (H,)),
        (r"{L}\.attention\.query_key_value\.weight", ("{L}.heads*3*2*rope_pairs", H)),
        (r"{L}\.attention\.query_key_value\.bias", ("{L}.heads*3*2*rope_pairs",)),
        (r"{L}\.attention\.dense\.weight", (H, NEOX_HEAD)),
        (r"{L}\.attention\.dense\.bias", (H,)),
        (r"{L}\.mlp\.dense_h_to_4h\.weight", ("{L}.mlp_hidden", H)),
        (r"{L}\.mlp\.dense_h_to_4h\.bias", ("{L}.mlp_hidden",)),
        (r"{L}\.mlp\.dense_4h_to_h\.weight", (H, "{L}.mlp_hidden")),
        (r"{L}\.mlp\.dense_4h_to_h\.bias", (H,)),
    ],
    components={"attention": r"\.attention\.", "mlp": r"\.mlp\.", "norm": r"layernorm|layer_norm"},
    embedding_axes=H,
)


def _neox_sizes(c: Any) -> Dict[str, int]:
    return {H: int(c.hidden_size), "heads": int(c.num_attention_heads), "rope_pairs": head_dim_of(c) // 2,
            "mlp_hidden": int(c.intermediate_size)}


# --------------------------------------------------------------------------------------------
# OPT (transformers/models/opt/modeling_opt.py): learned positions (offset 2), separate q/k/v/out
# projections with biases, fc1/fc2. The variant with project_in/project_out (word_embed_proj_dim other
# than hidden_size, OPT-350m) has no rule and is refused.
OATT = "{L}.heads*head_dim"
OPT = Family(
    name="opt",
    signature=(),
    layer_pattern=r"^(?P<group>(?:model\.)?decoder\.layers)\.(?P<index>\d+)\.",
    rules=[
        (r"(model\.)?decoder\.(embed_tokens|embed_positions)\.weight", (None, H)),
        (r"lm_head\.weight", (None, H)),
        (r"(model\.)?decoder\.final_layer_norm\.(weight|bias)", (H,)),
        (r"{L}\.(self_attn_layer_norm|final_layer_norm)\.(weight|bias)", (H,)),
        (r"{L}\.self_attn\.[qkv]_proj\.weight", (OATT, H)),
        (r"{L}\.self_attn\.[qkv]_proj\.bias", (OATT,)),
        (r"{L}\.self_attn\.out_proj\.weight", (H, OATT)),
        (r"{L}\.self_attn\.out_proj\.bias", (H,)),
        (r"{L}\.fc1\.weight", ("{L}.mlp_hidden", H)),
        (r"{L}\.fc1\.bias", ("{L}.mlp_hidden",)),
        (r"{L}\.fc2\.weight", (H, "{L}.mlp_hidden")),
        (r"{L}\.fc2\.bias", (H,)),
    ],
    components={"attention": r"\.self_attn\.", "mlp": r"\.fc[12]\.", "norm": r"layer_norm"},
    embedding_axes=H,
)


def _opt_sizes(c: Any) -> Dict[str, int]:
    return {H: int(c.hidden_size), "heads": int(c.num_attention_heads), "head_dim": head_dim_of(c),
            "mlp_hidden": int(c.ffn_dim)}


def _opt_unsupported(c: Any) -> Optional[str]:
    proj, hidden = getattr(c, "word_embed_proj_dim", None), c.hidden_size
    if proj is not None and proj != hidden:
        return (f"word_embed_proj_dim {proj} differs from hidden_size {hidden} "
                "(project_in/project_out, as in OPT-350m): "
                "those projections are not mapped; select from an OPT whose word_embed_proj_dim is its hidden_size")
    return None


def _opt_fixed(c: Any) -> Dict[str, Any]:
    return {"vocab_size": c.vocab_size, "max_position_embeddings": c.max_position_embeddings}


# --------------------------------------------------------------------------------------------
# T5 / mT5 (transformers/models/t5/modeling_t5.py): an encoder and a decoder stack (two layer groups),
# heads of d_kv apart from d_model, no biases, a gated (wi_0, wi_1) or plain (wi) MLP. The relative
# position bias (buckets, heads) lives in block 0 of each stack and is used by every layer of it, so
# the heads axis is one for the whole model (every layer keeps the same heads, as the bias's columns)
# and the bias is read from the teacher's block 0 whichever layers are selected.
T5ATT = "heads*head_dim"
T5 = Family(
    name="t5",
    signature=(),
    layer_pattern=r"^(?P<group>(?:encoder|decoder)\.block)\.(?P<index>\d+)\.",
    rules=[
        (r"(shared|encoder\.embed_tokens|decoder\.embed_tokens)\.weight", (None, H)),
        (r"lm_head\.weight", (None, H)),
        (r"(encoder|decoder)\.final_layer_norm\.weight", (H,)),
        (r"{L}\.layer\.\d\.layer_norm\.weight", (H,)),
        (r"{L}\.layer\.[01]\.(SelfAttention|EncDecAttention)\.[qkv]\.weight", (T5ATT, H)),
        (r"{L}\.layer\.[01]\.(SelfAttention|EncDecAttention)\.o\.weight", (H, T5ATT)),
        (r"{L}\.layer\.0\.SelfAttention\.relative_attention_bias\.weight", (None, "heads")),
        (r"{L}\.layer\.[12]\.DenseReluDense\.(wi|wi_0|wi_1)\.weight", ("{L}.mlp_hidden", H)),
        (r"{L}\.layer\.[12]\.DenseReluDense\.wo\.weight", (H, "{L}.mlp_hidden")),
    ],
    components={"attention": r"Attention\.", "mlp": r"DenseReluDense", "norm": r"layer_norm"},
    embedding_axes=H,
)


def _t5_sizes(c: Any) -> Dict[str, int]:
    return {H: int(c.d_model), "heads": int(c.num_heads), "head_dim": int(c.d_kv), "mlp_hidden": int(c.d_ff)}


def _t5_fixed(c: Any) -> Dict[str, Any]:
    return {"vocab_size": c.vocab_size, "relative_attention_num_buckets": c.relative_attention_num_buckets,
            "relative_attention_max_distance": c.relative_attention_max_distance,
            "feed_forward_proj": c.feed_forward_proj}


# --------------------------------------------------------------------------------------------
# GPT-2: Conv1D weights are (in, out); c_attn's output is q, k and v, each heads * head_dim.
ATT = "{L}.heads*head_dim"
GPT2 = Family(
    name="gpt2",
    signature=(),
    layer_pattern=r"^(?P<group>(?:transformer\.)?h)\.(?P<index>\d+)\.",
    rules=[
        (r"(transformer\.)?(wte|wpe)\.weight", (None, H)),
        (r"lm_head\.weight", (None, H)),
        (r"(transformer\.)?ln_f\.(weight|bias)", (H,)),
        (r"{L}\.ln_[12]\.(weight|bias)", (H,)),
        (r"{L}\.attn\.c_attn\.weight", (H, "3*" + ATT)),
        (r"{L}\.attn\.c_attn\.bias", ("3*" + ATT,)),
        (r"{L}\.attn\.c_proj\.weight", (ATT, H)),
        (r"{L}\.attn\.c_proj\.bias", (H,)),
        (r"{L}\.mlp\.c_fc\.weight", (H, "{L}.mlp_hidden")),
        (r"{L}\.mlp\.c_fc\.bias", ("{L}.mlp_hidden",)),
        (r"{L}\.mlp\.c_proj\.weight", ("{L}.mlp_hidden", H)),
        (r"{L}\.mlp\.c_proj\.bias", (H,)),
    ],
    components={"attention": r"\.attn\.", "mlp": r"\.mlp\.", "norm": r"(^|\.)ln_"},
    embedding_axes=H,
)


def _gpt2_sizes(c: Any) -> Dict[str, int]:
    return {
        H: int(c.n_embd), "heads": int(c.n_head), "head_dim": head_dim_of(c),
        "mlp_hidden": int(getattr(c, "n_inner", None) or 4 * c.n_embd),
    }


def _gpt2_fixed(c: Any) -> Dict[str, Any]:
    return {"vocab_size": c.vocab_size, "n_positions": c.n_positions}


# --------------------------------------------------------------------------------------------
# BERT and RoBERTa/XLM-R (transformers/models/{bert,roberta,xlm_roberta}/modeling_*.py): BertModel,
# the masked-LM heads, and the task heads. A head reads either the sequence (token classification,
# question answering: the hidden axis) or the pooler's output (sequence classification and multiple
# choice where the model has a pooler, BERT's next-sentence head: the pooler axis). RoBERTa's
# sequence classification head has no pooler but its own dense layer (classifier_hidden). The label
# dimension is never selected.
BATT = "{L}.heads*head_dim"


def _reads_pooler(prefix: str) -> Callable[[Mapping[str, Any]], Tuple[Optional[str], ...]]:
    """The rule of ``classifier.weight``: it reads the pooler's output where the model has a pooler
    (``BertForSequenceClassification``, ``BertForMultipleChoice``, ``RobertaForMultipleChoice``), else
    the sequence (``BertForTokenClassification``, ``RobertaForTokenClassification``)."""
    def rule(env: Mapping[str, Any]) -> Tuple[Optional[str], ...]:
        return (None, "pooler" if f"{prefix}.pooler.dense.weight" in env["keys"] else H)
    return rule


def _bert_family(name: str, prefix: str) -> Family:
    """The BERT layout under the base-model prefix ``prefix`` (``bert``, ``roberta``)."""
    p = rf"({prefix}\.)?"
    return Family(
        name=name,
        signature=(),
        layer_pattern=rf"^(?P<group>(?:{prefix}\.)?encoder\.layer)\.(?P<index>\d+)\.",
        rules=[
            (p + r"embeddings\.(word|position|token_type)_embeddings\.weight", (None, H)),
            (p + r"embeddings\.LayerNorm\.(weight|bias)", (H,)),
            (r"{L}\.attention\.self\.(query|key|value)\.weight", (BATT, H)),
            (r"{L}\.attention\.self\.(query|key|value)\.bias", (BATT,)),
            (r"{L}\.attention\.output\.dense\.weight", (H, BATT)),
            (r"{L}\.(attention\.output|output)\.(dense\.bias|LayerNorm\.weight|LayerNorm\.bias)", (H,)),
            (r"{L}\.intermediate\.dense\.weight", ("{L}.mlp_hidden", H)),
            (r"{L}\.intermediate\.dense\.bias", ("{L}.mlp_hidden",)),
            (r"{L}\.output\.dense\.weight", (H, "{L}.mlp_hidden")),
            (p + r"pooler\.dense\.weight", ("pooler", H)),
            (p + r"pooler\.dense\.bias", ("pooler",)),
            # masked-LM heads: the transform's output is what the decoder reads, i.e. columns of the
            # word embeddings it is tied to (BERT's cls.predictions, RoBERTa's lm_head)
            (r"(cls\.predictions\.transform\.dense|lm_head\.dense)\.weight", (H, H)),
            (r"(cls\.predictions\.transform\.(dense|LayerNorm)|lm_head\.(dense|layer_norm))\.(weight|bias)", (H,)),
            (r"(cls\.predictions|lm_head)\.decoder\.weight", (None, H)),
            (r"(cls\.predictions|lm_head)\.(decoder\.)?bias", (None,)),
            (r"cls\.seq_relationship\.weight", (None, "pooler")),  # next-sentence head (BertForPreTraining)
            (r"classifier\.weight", _reads_pooler(prefix)),
            (r"classifier\.dense\.weight", ("classifier_hidden", H)),  # RobertaClassificationHead
            (r"classifier\.dense\.bias", ("classifier_hidden",)),
            (r"classifier\.out_proj\.weight", (None, "classifier_hidden")),
            (r"qa_outputs\.weight", (None, H)),
            (r"(classifier|classifier\.out_proj|qa_outputs|cls\.seq_relationship)\.bias", (None,)),
        ],
        components={"attention": r"\.attention\.", "mlp": r"\.(intermediate|output)\.dense", "norm": r"LayerNorm"},
        embedding_axes=H,
    )


BERT = _bert_family("bert", "bert")
ROBERTA = _bert_family("roberta", "roberta")


def _bert_sizes(c: Any) -> Dict[str, int]:
    h = int(c.hidden_size)
    return {
        H: h, "heads": int(c.num_attention_heads), "head_dim": head_dim_of(c),
        "mlp_hidden": int(c.intermediate_size), "pooler": h, "classifier_hidden": h,
    }


def _bert_fixed(c: Any) -> Dict[str, Any]:
    return {
        "vocab_size": c.vocab_size, "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size, "num_labels": c.num_labels,
    }


# --------------------------------------------------------------------------------------------
# DistilBERT (transformers/models/distilbert/modeling_distilbert.py): its own names (q_lin, k_lin,
# v_lin, out_lin, ffn.lin1/lin2, sa_layer_norm, output_layer_norm); config fields dim, n_heads,
# hidden_dim. The sequence classification head is pre_classifier (its own axis) then classifier;
# the token classification head reads the sequence; the masked-LM projector is tied to the embeddings.
DATT = "{L}.heads*head_dim"
DISTILBERT = Family(
    name="distilbert",
    signature=(),
    layer_pattern=r"^(?P<group>(?:distilbert\.)?transformer\.layer)\.(?P<index>\d+)\.",
    rules=[
        (r"(distilbert\.)?embeddings\.(word|position)_embeddings\.weight", (None, H)),
        (r"(distilbert\.)?embeddings\.LayerNorm\.(weight|bias)", (H,)),
        (r"{L}\.attention\.[qkv]_lin\.weight", (DATT, H)),
        (r"{L}\.attention\.[qkv]_lin\.bias", (DATT,)),
        (r"{L}\.attention\.out_lin\.weight", (H, DATT)),
        (r"{L}\.attention\.out_lin\.bias", (H,)),
        (r"{L}\.(sa_layer_norm|output_layer_norm)\.(weight|bias)", (H,)),
        (r"{L}\.ffn\.lin1\.weight", ("{L}.mlp_hidden", H)),
        (r"{L}\.ffn\.lin1\.bias", ("{L}.mlp_hidden",)),
        (r"{L}\.ffn\.lin2\.weight", (H, "{L}.mlp_hidden")),
        (r"{L}\.ffn\.lin2\.bias", (H,)),
        (r"vocab_transform\.weight", (H, H)),  # read by the projector tied to the embeddings
        (r"(vocab_transform|vocab_layer_norm)\.(weight|bias)", (H,)),
        (r"vocab_projector\.weight", (None, H)),
        (r"pre_classifier\.weight", ("classifier_hidden", H)),
        (r"pre_classifier\.bias", ("classifier_hidden",)),
        (r"classifier\.weight",  # after pre_classifier (sequence classification), else on the sequence
         lambda env: (None, "classifier_hidden" if "pre_classifier.weight" in env["keys"] else H)),
        (r"qa_outputs\.weight", (None, H)),
        (r"(vocab_projector|classifier|qa_outputs)\.bias", (None,)),
    ],
    components={"attention": r"\.attention\.", "mlp": r"\.ffn\.", "norm": r"(layer_norm|LayerNorm)"},
    embedding_axes=H,
)


def _distilbert_sizes(c: Any) -> Dict[str, int]:
    h = int(c.dim)
    return {H: h, "heads": int(c.n_heads), "head_dim": h // int(c.n_heads), "mlp_hidden": int(c.hidden_dim),
            "classifier_hidden": h}


def _distilbert_fixed(c: Any) -> Dict[str, Any]:
    return {"vocab_size": c.vocab_size, "max_position_embeddings": c.max_position_embeddings,
            "sinusoidal_pos_embds": bool(c.sinusoidal_pos_embds), "num_labels": c.num_labels}


# --------------------------------------------------------------------------------------------
# HF ViT (ViTModel, ViTForImageClassification), parameter names of transformers 5 (older checkpoint
# names are renamed on reading, as from_pretrained does: weightselect.hf.sources.checkpoint_names).
VATT = "{L}.heads*head_dim"
VIT = Family(
    name="hf_vit",
    signature=(),
    layer_pattern=r"^(?P<group>(?:vit\.)?layers)\.(?P<index>\d+)\.",
    rules=[
        (r"(vit\.)?embeddings\.(cls_token|mask_token|position_embeddings)", (None, None, H)),
        (r"(vit\.)?embeddings\.patch_embeddings\.projection\.weight", (H, None, None, None)),
        (r"(vit\.)?embeddings\.patch_embeddings\.projection\.bias", (H,)),
        (r"(vit\.)?layernorm\.(weight|bias)", (H,)),
        (r"{L}\.layernorm_(before|after)\.(weight|bias)", (H,)),
        (r"{L}\.attention\.[qkv]_proj\.weight", (VATT, H)),
        (r"{L}\.attention\.[qkv]_proj\.bias", (VATT,)),
        (r"{L}\.attention\.o_proj\.weight", (H, VATT)),
        (r"{L}\.attention\.o_proj\.bias", (H,)),
        (r"{L}\.mlp\.fc1\.weight", ("{L}.mlp_hidden", H)),
        (r"{L}\.mlp\.fc1\.bias", ("{L}.mlp_hidden",)),
        (r"{L}\.mlp\.fc2\.weight", (H, "{L}.mlp_hidden")),
        (r"{L}\.mlp\.fc2\.bias", (H,)),
        (r"(vit\.)?pooler\.dense\.weight", ("pooler", H)),
        (r"(vit\.)?pooler\.dense\.bias", ("pooler",)),
        (r"classifier\.weight", (None, H)),
        (r"classifier\.bias", (None,)),
    ],
    components={"attention": r"\.attention\.", "mlp": r"\.mlp\.", "norm": r"layernorm"},
    embedding_axes=H,
)


def _vit_sizes(c: Any) -> Dict[str, int]:
    h = int(c.hidden_size)
    return {H: h, "heads": int(c.num_attention_heads), "head_dim": head_dim_of(c),
            "mlp_hidden": int(c.intermediate_size), "pooler": int(getattr(c, "pooler_output_size", None) or h)}


def _vit_fixed(c: Any) -> Dict[str, Any]:
    return {"image_size": c.image_size, "patch_size": c.patch_size, "num_channels": c.num_channels,
            "num_labels": c.num_labels}


HF_FAMILIES: Tuple[HFFamily, ...] = (
    HFFamily(LLAMA, ("llama", "mistral", "qwen2", "qwen3"), _llama_sizes, _llama_fixed, rotary=True),
    HFFamily(PHI3, ("phi3",), _llama_sizes, _llama_fixed, rotary=True),
    HFFamily(MIXTRAL, ("mixtral",), _mixtral_sizes, _moe_fixed, rotary=True, unsupported=_moe_unsupported),
    HFFamily(QWEN2_MOE, ("qwen2_moe", "qwen3_moe"), _qwen_moe_sizes, _moe_fixed, rotary=True,
             unsupported=_moe_unsupported, layer_kinds=_qwen_moe_kinds),
    HFFamily(GEMMA, ("gemma", "gemma2", "gemma3_text"), _llama_sizes, _llama_fixed, rotary=True),
    HFFamily(NEOX, ("gpt_neox",), _neox_sizes, _llama_fixed, rotary=True),
    HFFamily(OPT, ("opt",), _opt_sizes, _opt_fixed, follows=(("word_embed_proj_dim", "hidden_size"),),
             unsupported=_opt_unsupported),
    HFFamily(T5, ("t5", "mt5"), _t5_sizes, _t5_fixed,
             first_layer_only=r"\.relative_attention_bias\.weight$"),
    HFFamily(GPT2, ("gpt2",), _gpt2_sizes, _gpt2_fixed),
    HFFamily(BERT, ("bert",), _bert_sizes, _bert_fixed),
    HFFamily(ROBERTA, ("roberta", "xlm-roberta"), _bert_sizes, _bert_fixed),
    HFFamily(DISTILBERT, ("distilbert",), _distilbert_sizes, _distilbert_fixed),
    HFFamily(VIT, ("vit",), _vit_sizes, _vit_fixed),
)
SUPPORTED_MODEL_TYPES: Tuple[str, ...] = tuple(t for f in HF_FAMILIES for t in f.model_types)


_MOE = ("deepseek_v2", "deepseek_v3", "dbrx", "olmoe", "jamba", "granitemoe",
        "phimoe", "gpt_oss", "switch_transformers", "llama4", "llama4_text")
_ENCODER_DECODER = ("umt5", "bart", "mbart", "pegasus", "marian", "whisper", "encoder-decoder")
# why some well-known model types are refused (one line each)
UNSUPPORTED_WHY: Dict[str, str] = {
    **{t: "a mixture-of-experts model whose layout (experts, shared experts, router) is not mapped here; "
          "Mixtral and Qwen2/Qwen3-MoE are" for t in _MOE},
    **{t: "an encoder-decoder model whose layout (cross-attention, per-layer position buckets) is not mapped "
          "here; T5 and mT5 are" for t in _ENCODER_DECODER},
    "gemma3": "the multimodal Gemma3 (a vision tower beside the language model); select from a text-only "
              "Gemma3ForCausalLM checkpoint (model_type gemma3_text)",
    "falcon": "Falcon's fused query_key_value has three layouts (multi-query, grouped by KV head in the new "
              "decoder architecture, and per head with ALiBi), chosen by config flags and not mapped here; "
              "GPT-NeoX (per-head fused qkv) and Llama-style models with GQA are",
}


def family_for(config: Any) -> HFFamily:
    """The family of a transformers config (by ``model_type``); an unsupported one is refused, in one
    line, with the cause where it is known (mixture of experts, encoder-decoder) and the list of
    supported model types. Raises ValueError."""
    model_type = getattr(config, "model_type", None)
    for fam in HF_FAMILIES:
        if model_type in fam.model_types:
            return fam
    why = f": {UNSUPPORTED_WHY[model_type]}" if model_type in UNSUPPORTED_WHY else ""
    raise ValueError(
        f"unsupported transformers architecture '{model_type}'{why}; weight selection supports the model "
        f"types {', '.join(SUPPORTED_MODEL_TYPES)}"
    )


def axis_sizes(config: Any) -> Dict[str, int]:
    """``{base axis name: size}`` of a config (``hidden``, ``kv_groups``, ``head_dim``, ...)."""
    return family_for(config).sizes(config)


def terms(dim: str) -> List[str]:
    """The blocks of a formatted dimension laid out one after another (``"a*b+c*b+c*b"``: Phi-3's
    fused ``qkv_proj``, q heads then k groups then v groups); a plain product is one block."""
    return dim.split("+")


def factors(dim: Optional[str]) -> List[object]:
    """The factors of a formatted dimension (of all its blocks): axis names (str) and fixed block
    counts (int)."""
    if dim is None:
        return []
    return [int(f) if f.isdigit() else f for term in terms(dim) for f in term.split("*")]


def base_axis(axis: str) -> str:
    """``model.layers.3.kv_groups`` -> ``kv_groups``."""
    return axis.rsplit(".", 1)[-1]


def product_size(dim: str, sizes: Mapping[str, int]) -> int:
    """The size of a formatted dimension: the sum over its blocks of the product of their factors."""
    total = 0
    for term in terms(dim):
        n = 1
        for f in factors(term):
            n *= f if isinstance(f, int) else sizes[base_axis(f)]
        total += n
    return total


def dims_text(dims: Sequence[Optional[str]]) -> str:
    return "(" + ", ".join("-" if d is None else d for d in dims) + ")"
