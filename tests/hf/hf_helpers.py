"""Plain helpers for the transformers tests: tiny configs, teachers saved with save_pretrained,
loading a student folder strictly, and head index arithmetic written out by hand."""
from __future__ import annotations

import zlib
from pathlib import Path

import torch

LLAMA = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=2, head_dim=8, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
             max_position_embeddings=64)
GPT2 = dict(vocab_size=64, n_embd=32, n_layer=3, n_head=4, n_positions=32, bos_token_id=1, eos_token_id=2)
BERT = dict(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=32, pad_token_id=0)


KINDS = {  # kind -> (config class, model class) of transformers
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM"),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM"),
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM"),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM"),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM"),
    "opt": ("OPTConfig", "OPTForCausalLM"),
    "t5": ("T5Config", "T5ForConditionalGeneration"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),
    "bert": ("BertConfig", "BertModel"),
    "bert_mlm": ("BertConfig", "BertForMaskedLM"),
}


def build(kind: str, cfg: dict, seed: int | None = None):
    """A randomly initialized model (``llama``/``gpt2`` causal LM, ``bert`` BertModel); the seed is
    stable across processes."""
    import transformers

    config_name, model_name = KINDS[kind]
    config_cls, model_cls = getattr(transformers, config_name), getattr(transformers, model_name)
    torch.manual_seed(zlib.crc32(kind.encode()) if seed is None else seed)
    model = model_cls(config_cls(**cfg)).eval()
    with torch.no_grad():  # HF zero-inits biases and sets norms to one: make every tensor informative
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def save_teacher(kind: str, cfg: dict, folder: Path, **save_kwargs) -> Path:
    build(kind, cfg).save_pretrained(folder, **save_kwargs)
    return Path(folder)


def load_strict(folder: Path, auto: str = "AutoModelForCausalLM"):
    """``from_pretrained`` of a student folder, asserting no missing/unexpected/mismatched names."""
    import transformers

    model, info = getattr(transformers, auto).from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model.eval()


def head_rows(heads, head_dim: int, pairs=None) -> torch.Tensor:
    """Rows of a (heads * head_dim) dimension for whole ``heads``; ``pairs`` (rotary pair indices)
    keeps dimensions ``p`` and ``p + head_dim / 2`` of each head."""
    dims = list(range(head_dim)) if pairs is None else [p for p in pairs] + [p + head_dim // 2 for p in pairs]
    return torch.tensor([h * head_dim + d for h in heads for d in dims], dtype=torch.long)


def state(model) -> dict:
    return {k: v.detach() for k, v in model.state_dict().items()}


def zero_outside(model, keep: dict):
    """A copy of ``model`` in which every element of a named parameter outside the kept indices is
    zero: ``keep`` is ``{parameter name: {dim: kept indices}}`` (the masked-function check: a student
    must compute what the teacher computes with everything not selected set to zero)."""
    import copy

    masked = copy.deepcopy(model)
    params = dict(masked.named_parameters())
    with torch.no_grad():
        for name, dims in keep.items():
            p = params[name]
            for dim, idx in dims.items():
                drop = torch.ones(p.shape[dim], dtype=torch.bool)
                drop[torch.as_tensor(idx, dtype=torch.long)] = False
                p.index_fill_(dim, drop.nonzero().squeeze(1), 0.0)
    return masked


def cut_layers(model, layers_attr: str, chosen) -> None:
    """Keep only the ``chosen`` layers of ``model``'s layer list (``"model.layers"``), renumbering
    the attention layer indices (the KV cache slot) and ``num_hidden_layers``/``layer_types``."""
    parent_name, _, attr = layers_attr.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    kept = [getattr(parent, attr)[i] for i in chosen]
    setattr(parent, attr, torch.nn.ModuleList(kept))
    for new, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new
    types = getattr(model.config, "layer_types", None)
    if types:
        model.config.layer_types = [types[i] for i in chosen]
    model.config.num_hidden_layers = len(kept)


def fake_hub_cache(root, repo_id, folder):
    """The Hugging Face cache layout (models--org--name/refs/main -> snapshots/<commit>/files)."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)
    return commit


def token_ids(seed: int = 0, n: int = 12) -> torch.Tensor:
    """A (2, n) batch of token ids in 3..63 (past the special tokens of the tiny configs), by seed."""
    return torch.randint(3, 64, (2, n), generator=torch.Generator().manual_seed(seed))


def lm_logits(model, ids) -> torch.Tensor:
    """A causal LM's logits without a cache."""
    with torch.no_grad():
        return model(ids, use_cache=False).logits
