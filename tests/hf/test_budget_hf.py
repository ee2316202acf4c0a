"""Parameter budgets for a Llama-GQA teacher: within the budget, GQA ratio and head_dim kept, the
widest width at the teacher's depth (the next is over, counted on a real build), a folder that
loads strictly, and depth reduced only when no width fits."""
from __future__ import annotations

import pytest
import torch
from hf_helpers import load_strict, save_teacher

import weightselect.hf as wh

WIDE = dict(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=8,
            num_key_value_heads=4, head_dim=8, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
            max_position_embeddings=64)


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory):
    return save_teacher("llama", WIDE, tmp_path_factory.mktemp("wide") / "teacher")


def _count(cfg: dict) -> int:
    import transformers

    return sum(p.numel() for p in transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).parameters())


def test_budget_picks_whole_kv_groups_at_full_depth(wide_dir, tmp_path):
    result = wh.select(wide_dir, target_params=40_000)
    budget, shape = result.manifest["budget"], result.manifest["budget"]["shape"]
    assert shape["num_hidden_layers"] == 3 and shape["head_dim"] == 8
    assert shape["num_attention_heads"] % shape["num_key_value_heads"] == 0
    assert shape["num_attention_heads"] // shape["num_key_value_heads"] == 2  # the teacher's ratio
    model = load_strict(result.save(tmp_path / "s"))
    assert sum(p.numel() for p in model.parameters()) == budget["params"] <= 40_000
    kv = shape["num_key_value_heads"] + 1
    wider = dict(WIDE, hidden_size=64 * kv // 4, intermediate_size=96 * kv // 4, num_attention_heads=2 * kv,
                 num_key_value_heads=kv)
    assert _count(wider) > 40_000
    assert "widest width at the teacher's depth" in budget["rationale"]


def test_small_budget_reduces_depth_and_activation_selects_it(wide_dir, tmp_path):
    ids = torch.randint(0, 64, (4, 12), generator=torch.Generator().manual_seed(0))
    result = wh.select(wide_dir, target_params=6_000, method="activation", calibration=ids)
    shape = result.manifest["budget"]["shape"]
    assert shape["num_hidden_layers"] < 3 and shape["num_key_value_heads"] >= 1
    model = load_strict(result.save(tmp_path / "s"))
    assert sum(p.numel() for p in model.parameters()) == result.manifest["budget"]["params"] <= 6_000
    assert "depth reduced" in result.manifest["budget"]["rationale"]


def test_budget_errors(wide_dir):
    with pytest.raises(ValueError, match="smallest candidate"):
        wh.select(wide_dir, target_params=100)
    with pytest.raises(ValueError, match="not both"):
        wh.select(wide_dir, "hidden_size=32", target_params=20_000)


def _bytes(cfg: dict, dtype) -> int:
    import transformers

    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).to(dtype)
    return sum(p.numel() * p.element_size() for p in model.parameters())  # tied embeddings once


def test_memory_budget_at_bfloat16_writes_that_many_bytes(wide_dir, tmp_path):
    """WIDE is float32; at bfloat16 the student is written in it and its weights fit 60 kB."""
    result = wh.select(wide_dir, target_memory="60kB", dtype="bfloat16")
    budget, shape = result.manifest["budget"], result.manifest["budget"]["shape"]
    assert budget["kind"] == "memory" and budget["dtype"] == "bfloat16" and shape["num_hidden_layers"] == 3
    assert shape["num_attention_heads"] // shape["num_key_value_heads"] == 2 and shape["head_dim"] == 8
    model = load_strict(result.save(tmp_path / "s"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    written = sum(p.numel() * p.element_size() for p in model.parameters())
    assert budget["amount"] == written <= 60_000
    kv = shape["num_key_value_heads"] + 1
    wider = dict(WIDE, hidden_size=64 * kv // 4, intermediate_size=96 * kv // 4, num_attention_heads=2 * kv,
                 num_key_value_heads=kv)
    assert _bytes(wider, torch.bfloat16) > 60_000
    assert "bytes at bfloat16" in budget["rationale"]


def test_memory_budget_refusals(wide_dir):
    with pytest.raises(ValueError, match="give one budget, not --target-params and --target-memory"):
        wh.select(wide_dir, target_params=20_000, target_memory="60kB")
    with pytest.raises(ValueError, match="nothing to select; give a smaller --target-memory"):
        wh.select(wide_dir, target_memory="1MB")  # float32 teacher, about 0.2 MB
    with pytest.raises(ValueError, match="dtype 'int8' for a transformers student"):
        wh.select(wide_dir, target_memory="60kB", dtype="int8")
    import transformers

    from weightselect.hf.budget import hf_budget_student

    with pytest.raises(ValueError, match="--target-flops is defined for timm image models"):
        hf_budget_student(transformers.AutoConfig.from_pretrained(wide_dir), 10**6, kind="flops")


def test_cli_memory_budget_for_a_transformers_teacher(wide_dir, tmp_path, capsys):
    from weightselect.cli import main

    out = tmp_path / "s"
    assert main(["select", "--teacher", str(wide_dir), "--target-memory", "60kB", "--dtype", "bfloat16",
                 "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith("budget: ")
    model = load_strict(out)
    assert sum(p.numel() * p.element_size() for p in model.parameters()) <= 60_000
    assert main(["select", "--teacher", str(wide_dir), "--target-flops", "1G", "-o", str(tmp_path / "f")]) == 2
    assert "--target-flops apply to timm teachers" in capsys.readouterr().err
