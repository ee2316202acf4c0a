"""Zoo sweep for the transformers families: weight selection checked by function, not by its plan.

For every family :mod:`weightselect.hf` supports (Llama, Mistral, Qwen2, GPT-2, BERT, ViT), a tiny
teacher with random weights is saved with ``save_pretrained`` and students are selected from the
folder; each student folder must load with ``from_pretrained`` with no missing, unexpected or
mismatched tensors (and a causal LM must ``generate()``). Then:

- ``identity``  the teacher's own config: every tensor and the outputs equal the teacher's;
- ``depth``     half the layers, ``layers="first"``: the outputs equal the teacher's with its
                layer list cut to its first layers (built from the teacher, not from the manifest);
- ``inner``     ``intermediate_size`` halved, ``method="random"``: the outputs equal the masked
                teacher's (below);
- ``heads``     half the query heads and KV groups, ``head_dim`` kept (GQA families): the masked
                teacher again; for GPT-2, BERT and ViT a head count change changes the head size,
                so the identity does not hold (``n/a``);
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
GQA = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=8,
           num_key_value_heads=4, head_dim=8, max_position_embeddings=64, tie_word_embeddings=False)
FAMILIES = {  # name: (config class, model class, teacher config, input kind)
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(GQA), "tokens"),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(GQA, sliding_window=16), "tokens"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(GQA, tie_word_embeddings=True), "tokens"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=96, n_embd=64, n_layer=4, n_head=8, n_positions=64), "tokens"),
    "bert": ("BertConfig", "BertForMaskedLM", dict(vocab_size=96, hidden_size=64, num_hidden_layers=4, num_attention_heads=8,
                                                   intermediate_size=96, max_position_embeddings=64), "tokens"),
    "vit": ("ViTConfig", "ViTForImageClassification", dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=8,
                                                           intermediate_size=96, image_size=32, patch_size=8,
                                                           num_labels=10), "pixels"),
}
CHECKS = ("identity", "depth", "inner", "heads", "width")


def _classes(family: str):
    import transformers

    cfg_cls, model_cls, cfg, kind = FAMILIES[family]
    return getattr(transformers, cfg_cls), getattr(transformers, model_cls), cfg, kind


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
    c = teacher.config
    student = {"hidden_size": c.hidden_size // 2, "num_attention_heads": c.num_attention_heads // 2}
    if family in ("gpt2",):
        student = {"n_embd": c.n_embd // 2, "n_head": c.n_head // 2}
    if hasattr(c, "num_key_value_heads") and family != "gpt2":
        student["num_key_value_heads"] = c.num_key_value_heads // 2
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
        c = teacher.config
        gqa = hasattr(c, "num_key_value_heads") and family not in ("gpt2", "bert", "vit")
        checks: Dict[str, Callable[[], Tuple[str, str]]] = {
            "identity": lambda: check_identity(family, folders, tmp),
            "depth": lambda: check_depth(family, folders, tmp),
            "inner": lambda: check_masked(family, folders, {"intermediate_size": c.intermediate_size // 2}
                                          if hasattr(c, "intermediate_size") and c.intermediate_size else
                                          {"n_inner": 2 * c.n_embd}, tmp, "inner"),
            "heads": (lambda: check_masked(family, folders, {"num_attention_heads": c.num_attention_heads // 2,
                                                             "num_key_value_heads": c.num_key_value_heads // 2},
                                           tmp, "heads")) if gqa else
                     (lambda: ("n/a", "the head size is hidden / heads: a head count change changes it")),
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
