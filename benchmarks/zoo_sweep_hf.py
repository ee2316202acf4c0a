"""Zoo sweep for the transformers families: weight selection checked by function, not by its plan.

For the families :mod:`weightselect.hf` supports (Llama, Mistral, Qwen2/3, Gemma 1-3, Phi-3, Mixtral,
Qwen2-MoE, GPT-NeoX, OPT, GPT-2, BERT, RoBERTa, DistilBERT, ViT; T5's two stacks are checked in
``tests/hf/test_t5.py``), a tiny
teacher with random weights is saved with ``save_pretrained`` and students are selected from the
folder; each student folder must load with ``from_pretrained`` with no missing, unexpected or
mismatched tensors (and a causal LM must ``generate()``). Then:

- ``identity``  the teacher's own config: every tensor and the outputs equal the teacher's;
- ``depth``     half the layers, ``layers="first"``: the outputs equal the teacher's with its
                layer list cut to its first layers (built from the teacher, not from the manifest);
- ``inner``     the MLP width halved (``intermediate_size``; the experts' and the shared expert's
                in a mixture of experts), ``method="random"``: the outputs equal the masked
                teacher's (below);
- ``heads``     half the query heads and KV groups, ``head_dim`` kept (GQA families): the masked
                teacher again; where the head size is hidden / heads (Phi-3, GPT-NeoX, OPT, GPT-2,
                BERT, RoBERTa, DistilBERT, ViT) a head count change changes it, so the identity
                does not hold (``n/a``);
- ``width``     ``hidden_size`` halved (with the heads): load, ``generate()``, and every tensor an
                index selection of its teacher tensor (LayerNorm/RMSNorm normalize over the hidden
                axis, so outputs are not compared).

The masked teacher: the teacher's tensors are coded with their own element indices (float64,
exact), saved, and selected with the same method and seed; each student element then names the
teacher element it came from. The teacher with every element not taken set to zero must compute
the student's outputs (relative error < 1e-4): dropped MLP units and dropped whole heads contribute
nothing there, and any mix (a gate row without its up row, a query head reading another KV group,
rotary halves of different pairs) makes the outputs differ.

Usage: ``python benchmarks/zoo_sweep_hf.py [--out zoo_sweep_hf.csv]``.
"""
from __future__ import annotations

import argparse
import copy
import csv
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, Tuple

import torch

RTOL = 1e-4
TOK = dict(vocab_size=96, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
GQA = dict(TOK, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=8,
           num_key_value_heads=4, head_dim=8, tie_word_embeddings=False)
BERTLIKE = dict(TOK, hidden_size=64, num_hidden_layers=4, num_attention_heads=8, intermediate_size=96)
SLIDING = ["sliding_attention", "full_attention"] * 2
HEADS = ["num_attention_heads", "num_key_value_heads"]
WIDTH = ["hidden_size", "num_attention_heads"]


def _family(config, model, cfg, inner=("intermediate_size",), heads=None, width=WIDTH, inputs="tokens"):
    """A family of the sweep: transformers' config and model classes, the teacher's config, and the
    config keys the inner, heads and width students halve (heads: None where the head size is
    hidden / heads, so that a head count change changes it)."""
    return dict(config=config, model=model, cfg=cfg, inner=list(inner), heads=heads, width=list(width), inputs=inputs)


FAMILIES = {
    "llama": _family("LlamaConfig", "LlamaForCausalLM", GQA, heads=HEADS, width=WIDTH + HEADS[1:]),
    "mistral": _family("MistralConfig", "MistralForCausalLM", dict(GQA, sliding_window=16), heads=HEADS,
                       width=WIDTH + HEADS[1:]),
    "qwen2": _family("Qwen2Config", "Qwen2ForCausalLM", dict(GQA, tie_word_embeddings=True), heads=HEADS,
                     width=WIDTH + HEADS[1:]),
    "qwen3": _family("Qwen3Config", "Qwen3ForCausalLM", GQA, heads=HEADS, width=WIDTH + HEADS[1:]),
    "gemma": _family("GemmaConfig", "GemmaForCausalLM", dict(GQA, head_dim=16, num_attention_heads=4,
                                                             num_key_value_heads=2), heads=HEADS, width=WIDTH + HEADS[1:]),
    "gemma2": _family("Gemma2Config", "Gemma2ForCausalLM", dict(GQA, head_dim=16, num_attention_heads=4, num_key_value_heads=2,
                                                                sliding_window=4, layer_types=SLIDING),
                      heads=HEADS, width=WIDTH + HEADS[1:]),
    "gemma3": _family("Gemma3TextConfig", "Gemma3ForCausalLM", dict(GQA, head_dim=16, num_attention_heads=4,
                                                                    num_key_value_heads=2, sliding_window=4,
                                                                    layer_types=SLIDING),
                      heads=HEADS, width=WIDTH + HEADS[1:]),
    "phi3": _family("Phi3Config", "Phi3ForCausalLM", {k: v for k, v in GQA.items() if k != "head_dim"},
                    width=WIDTH + HEADS[1:]),
    "mixtral": _family("MixtralConfig", "MixtralForCausalLM", dict(GQA, num_local_experts=4, num_experts_per_tok=2),
                       heads=HEADS, width=WIDTH + HEADS[1:]),
    "qwen2_moe": _family("Qwen2MoeConfig", "Qwen2MoeForCausalLM",
                         dict(GQA, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48,
                              shared_expert_intermediate_size=64, mlp_only_layers=[1]),
                         inner=("intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size"),
                         heads=HEADS, width=WIDTH + HEADS[1:]),
    "gpt_neox": _family("GPTNeoXConfig", "GPTNeoXForCausalLM",
                        dict(TOK, hidden_size=64, num_hidden_layers=4, num_attention_heads=8, intermediate_size=96,
                             rotary_pct=0.5, tie_word_embeddings=False)),
    "opt": _family("OPTConfig", "OPTForCausalLM", dict(TOK, hidden_size=64, num_hidden_layers=4, num_attention_heads=8,
                                                      ffn_dim=96, word_embed_proj_dim=64),
                   inner=("ffn_dim",), width=WIDTH + ["word_embed_proj_dim"]),
    "gpt2": _family("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=96, n_embd=64, n_layer=4, n_head=8, n_positions=64),
                    inner=("n_inner",), width=("n_embd", "n_head")),
    "bert": _family("BertConfig", "BertForMaskedLM", BERTLIKE),
    "roberta": _family("RobertaConfig", "RobertaForMaskedLM", dict(BERTLIKE, pad_token_id=1, max_position_embeddings=80)),
    "distilbert": _family("DistilBertConfig", "DistilBertForMaskedLM",
                          dict(vocab_size=96, dim=64, n_layers=4, n_heads=8, hidden_dim=96, max_position_embeddings=64,
                               pad_token_id=0),
                          inner=("hidden_dim",), width=("dim", "n_heads")),
    "vit": _family("ViTConfig", "ViTForImageClassification",
                   dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=8, intermediate_size=96,
                        image_size=32, patch_size=8, num_labels=10), inputs="pixels"),
}
CHECKS = ("identity", "depth", "inner", "heads", "width")


def _classes(family: str):
    import transformers

    fam = FAMILIES[family]
    return getattr(transformers, fam["config"]), getattr(transformers, fam["model"]), fam["cfg"], fam["inputs"]


def _teacher(family: str) -> torch.nn.Module:
    cfg_cls, model_cls, cfg, _ = _classes(family)
    torch.manual_seed(0)
    model = model_cls(cfg_cls(**cfg)).eval()
    with torch.no_grad():  # transformers zero-inits biases and sets norms to one: make every tensor informative
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _coded(teacher: torch.nn.Module) -> torch.nn.Module:
    coded = copy.deepcopy(teacher).double()
    with torch.no_grad():
        for p in coded.parameters():  # tied tensors are one parameter: coded once
            p.copy_(torch.arange(p.numel(), dtype=torch.float64).reshape(p.shape))
    return coded


def _input(family: str) -> Dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    if _classes(family)[3] == "pixels":
        return {"pixel_values": torch.randn(2, 3, 32, 32, generator=gen)}
    return {"input_ids": torch.randint(3, 96, (2, 12), generator=gen)}


def _out(model, family: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**_input(family)).logits.float()


def _load(folder: Path, family: str):
    _, model_cls, _, kind = _classes(family)
    model, info = model_cls.from_pretrained(folder, output_loading_info=True)
    bad = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if bad:
        raise AssertionError(f"from_pretrained: {bad}")
    model.eval()
    if kind == "tokens" and ("CausalLM" in type(model).__name__ or "LMHeadModel" in type(model).__name__):
        model.generate(_input(family)["input_ids"][:1, :4], max_new_tokens=3, do_sample=False)
    return model


def _layers(model) -> torch.nn.ModuleList:
    n = model.config.num_hidden_layers
    return next(m for _, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == n)


def _select(folder: Path, student: dict, out: Path, **kw):
    import weightselect.hf as wh

    return wh.select(str(folder), student, **kw).save(out)


def _masked(teacher, coded_out: Path):
    """The teacher with every element the coded selection did not take set to zero."""
    from safetensors.torch import load_file

    masked, selected = copy.deepcopy(teacher), load_file(str(coded_out / "model.safetensors"))
    params = dict(masked.named_parameters())
    with torch.no_grad():
        for key, value in selected.items():
            target = params.get(key)
            if target is not None and value.shape != target.shape:
                keep = torch.zeros(target.numel(), dtype=torch.bool)
                keep[value.long().flatten()] = True
                target.mul_(keep.reshape(target.shape).to(target.dtype))
    return masked


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def check_masked(family: str, folders: Dict[str, Path], student: dict, tmp: Path, tag: str) -> Tuple[str, str]:
    teacher = _teacher(family)
    s_model = _load(_select(folders["teacher"], student, tmp / tag, method="random", seed=0), family)
    _select(folders["coded"], student, tmp / f"{tag}_coded", method="random", seed=0)
    err = _rel(_out(s_model, family), _out(_masked(teacher, tmp / f"{tag}_coded"), family))
    if not err < RTOL:
        return "wrong", f"outputs differ from the masked teacher's (relative error {err:.2g})"
    return "right", f"strict load, outputs equal the masked teacher's (relative error {err:.1g})"


def check_identity(family, folders, tmp) -> Tuple[str, str]:
    teacher = _teacher(family)
    student = _load(_select(folders["teacher"], {}, tmp / "identity"), family)
    t_sd = teacher.state_dict()
    for key, value in student.state_dict().items():
        if not torch.equal(value, t_sd[key]):
            return "wrong", f"{key} differs from the teacher's"
    if not torch.equal(_out(student, family), _out(teacher, family)):
        return "wrong", "outputs differ from the teacher's"
    return "right", "tensors equal, outputs equal"


def check_depth(family, folders, tmp) -> Tuple[str, str]:
    teacher = _teacher(family)
    n = teacher.config.num_hidden_layers // 2
    student = _load(_select(folders["teacher"], {"num_hidden_layers": n}, tmp / "depth", layers="first"), family)
    cut = copy.deepcopy(teacher)
    layers = _layers(cut)
    for i in range(len(layers) - 1, n - 1, -1):
        del layers[i]
    cut.config.num_hidden_layers = n
    if isinstance(getattr(cut.config, "layer_types", None), list):
        cut.config.layer_types = cut.config.layer_types[:n]
    err = _rel(_out(student, family), _out(cut, family))
    if not err < RTOL:
        return "wrong", f"outputs differ from the teacher cut to its first {n} layers (relative error {err:.2g})"
    return "right", f"outputs equal the teacher cut to its first {n} layers"


def check_width(family, folders, tmp) -> Tuple[str, str]:
    from safetensors.torch import load_file

    teacher = _teacher(family)
    student = {k: getattr(teacher.config, k) // 2 for k in FAMILIES[family]["width"]}
    _load(_select(folders["teacher"], student, tmp / "width", method="random", seed=0), family)
    _select(folders["coded"], student, tmp / "width_coded", method="random", seed=0)
    t_sd = {k: v.double() for k, v in teacher.state_dict().items()}
    for key, value in load_file(str(tmp / "width_coded" / "model.safetensors")).items():
        t_shape = t_sd[key].shape
        code = value.long()
        if code.numel() and (code.max() >= t_sd[key].numel() or len(set(code.flatten().tolist())) != code.numel()):
            return "wrong", f"{key} is not a selection of distinct teacher elements"
        idx = [torch.unique((code // int(torch.tensor(t_shape[d + 1:]).prod())) % t_shape[d]) for d in range(code.dim())]
        rebuilt = torch.arange(t_sd[key].numel()).reshape(t_shape)[torch.meshgrid(*idx, indexing="ij")]
        if rebuilt.shape != code.shape or not torch.equal(rebuilt, code):
            return "wrong", f"{key} is not an index selection of the teacher's"
    return "right", "strict load (and generate), every tensor an index selection (norms over hidden: outputs not compared)"


def sweep_family(family: str) -> Dict[str, str]:
    row = {"family": family, **{c: "n/a" for c in CHECKS}, "seconds": "", "detail": ""}
    start, details = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folders = {"teacher": tmp / "teacher", "coded": tmp / "coded"}
        teacher = _teacher(family)
        teacher.save_pretrained(folders["teacher"])
        _coded(teacher).save_pretrained(folders["coded"])
        c, fam = teacher.config, FAMILIES[family]
        inner = {k: (getattr(c, k) or 4 * c.n_embd) // 2 for k in fam["inner"]}
        checks: Dict[str, Callable[[], Tuple[str, str]]] = {
            "identity": lambda: check_identity(family, folders, tmp),
            "depth": lambda: check_depth(family, folders, tmp),
            "inner": lambda: check_masked(family, folders, inner, tmp, "inner"),
            "heads": (lambda: check_masked(family, folders, {k: getattr(c, k) // 2 for k in fam["heads"]}, tmp, "heads"))
            if fam["heads"] else (lambda: ("n/a", "the head size is hidden / heads: a head count change changes it")),
            "width": lambda: check_width(family, folders, tmp),
        }
        for name, fn in checks.items():
            row[name], detail = _outcome(fn)
            details.append(f"{name}: {detail}")
    row["detail"] = " | ".join(details)
    row["seconds"] = f"{time.perf_counter() - start:.1f}"
    return row


def _outcome(fn) -> Tuple[str, str]:
    try:
        return fn()
    except ValueError as exc:
        ours = any("weightselect" in f.filename for f in traceback.extract_tb(exc.__traceback__)[-1:])
        return ("refused" if ours else "crashed"), f"ValueError: {str(exc).splitlines()[0]}"
    except Exception as exc:  # noqa: BLE001 - every other failure is a crash
        return "crashed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="zoo_sweep_hf.csv", help="CSV to write (default: zoo_sweep_hf.csv)")
    parser.add_argument("--only", default="", help="comma-separated families (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    rows = []
    for family in [f for f in FAMILIES if not args.only or f in args.only.split(",")]:
        row = sweep_family(family)
        rows.append(row)
        print(f"{family:8s} " + " ".join(f"{row[c]:8s}" for c in CHECKS) + f" {row['seconds']:>5s}s  {row['detail'][:200]}",
              flush=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["family", *CHECKS, "seconds", "detail"])
        writer.writeheader()
        writer.writerows(rows)
    for check in CHECKS:
        counts = {k: sum(r[check] == k for r in rows) for k in ("right", "refused", "wrong", "crashed", "n/a")}
        print(f"{check:9s} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
