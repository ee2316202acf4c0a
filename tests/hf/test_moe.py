"""Mixtral and Qwen2-MoE: the experts are stored one by one (Mixtral's block_sparse_moe.experts.E.w1/
w2/w3) and held fused by transformers 5 (mlp.experts.gate_up_proj, down_proj); selection stacks them
as from_pretrained does, then keeps whole experts (with their router rows) and one MLP index set for
every expert. Qwen2-MoE adds a shared expert and dense-MLP layers."""
from __future__ import annotations

import pytest
import torch
from hf_helpers import build, cut_layers, lm_logits, load_strict, save_teacher, state, token_ids, zero_outside

import weightselect.hf as wh
from weightselect.selection.layers import layer_indices

MIXTRAL = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
               num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=64,
               bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
E = "model.layers.{}.mlp.{}"


@pytest.fixture(scope="module")
def mixtral_dir(tmp_path_factory):
    return save_teacher("mixtral", MIXTRAL, tmp_path_factory.mktemp("mixtral") / "teacher")


def test_the_teacher_is_stored_expert_by_expert(mixtral_dir):
    from safetensors import safe_open

    with safe_open(str(mixtral_dir / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.layers.0.block_sparse_moe.experts.3.w1.weight" in keys
    assert not any("gate_up_proj" in k for k in keys)


def test_mixtral_depth_only_student_is_the_teacher_through_the_chosen_layers(mixtral_dir, tmp_path):
    student = load_strict(wh.select(mixtral_dir, "num_hidden_layers=2", layers="uniform").save(tmp_path / "s"))
    teacher = build("mixtral", MIXTRAL)
    cut_layers(teacher, "model.layers", layer_indices("uniform", 4, 2))
    torch.testing.assert_close(lm_logits(student, token_ids()), lm_logits(teacher, token_ids()), rtol=0, atol=1e-6)
    assert student.generate(token_ids()[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)


def test_mixtral_keeps_whole_experts_their_router_rows_and_one_mlp_set(mixtral_dir, tmp_path):
    """Experts 0 and 2 of 4, MLP rows 0, 2, ... 46 of 48 in both the gate and the up half of every
    expert, hidden columns 0, 2, ... 30: compared with the teacher model's own fused tensors."""
    result = wh.select(mixtral_dir, dict(hidden_size=16, num_attention_heads=2, num_key_value_heads=1,
                                         intermediate_size=24, num_local_experts=2))
    s, t = state(load_strict(result.save(tmp_path / "s"))), state(build("mixtral", MIXTRAL))
    experts, hidden, mlp = torch.tensor([0, 2]), torch.arange(16) * 2, torch.arange(24) * 2
    for i in range(4):
        assert torch.equal(s[E.format(i, "gate.weight")], t[E.format(i, "gate.weight")][experts][:, hidden])
        gate_up = t[E.format(i, "experts.gate_up_proj")][experts][:, torch.cat([mlp, 48 + mlp])][:, :, hidden]
        assert torch.equal(s[E.format(i, "experts.gate_up_proj")], gate_up)
        down = t[E.format(i, "experts.down_proj")][experts][:, hidden][:, :, mlp]
        assert torch.equal(s[E.format(i, "experts.down_proj")], down)


def test_mixtral_half_mlp_student_computes_the_masked_teacher(mixtral_dir, tmp_path):
    """Every expert and the router kept: the same tokens go to the same experts, each with half its MLP."""
    student = load_strict(wh.select(mixtral_dir, dict(intermediate_size=24)).save(tmp_path / "s"))
    mlp = torch.arange(24) * 2
    keep = {E.format(i, "experts.gate_up_proj"): {1: torch.cat([mlp, 48 + mlp])} for i in range(4)}
    keep.update({E.format(i, "experts.down_proj"): {2: mlp} for i in range(4)})
    teacher = build("mixtral", MIXTRAL)
    masked = zero_outside(teacher, keep)
    assert not torch.allclose(lm_logits(masked, token_ids(1)), lm_logits(teacher, token_ids(1)), atol=1e-4)
    torch.testing.assert_close(lm_logits(student, token_ids(1)), lm_logits(masked, token_ids(1)), rtol=1e-5, atol=1e-5)


def test_mixtral_refusals(mixtral_dir):
    with pytest.raises(ValueError, match=r"the student's num_local_experts 1 is fewer than the 2 experts each token is "
                                         r"routed to \(num_experts_per_tok\)"):
        wh.select(mixtral_dir, dict(num_local_experts=1))
    with pytest.raises(ValueError, match="num_experts_per_tok is 1, the teacher's 2: this size is never selected"):
        wh.select(mixtral_dir, dict(num_experts_per_tok=1))
    with pytest.raises(ValueError, match=r"more experts \(num_local_experts / num_experts\) than the teacher \(8 > 4\)"):
        wh.select(mixtral_dir, dict(num_local_experts=8))


QWEN2_MOE = dict(vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
                 shared_expert_intermediate_size=32, mlp_only_layers=[1], max_position_embeddings=64,
                 bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


@pytest.fixture(scope="module")
def qwen2_moe_dir(tmp_path_factory):
    return save_teacher("qwen2_moe", QWEN2_MOE, tmp_path_factory.mktemp("qwen2_moe") / "teacher")


def test_qwen2_moe_depth_only_student_keeps_the_dense_layer(qwen2_moe_dir, tmp_path):
    """Layers 0 and 1 (experts, then dense as mlp_only_layers=[1]) -> a student with mlp_only_layers=[1]."""
    result = wh.select(qwen2_moe_dir, dict(num_hidden_layers=2))
    student = load_strict(result.save(tmp_path / "s"))
    teacher = build("qwen2_moe", QWEN2_MOE)
    cut_layers(teacher, "model.layers", [0, 1])
    torch.testing.assert_close(lm_logits(student, token_ids()), lm_logits(teacher, token_ids()), rtol=0, atol=1e-6)
    assert student.generate(token_ids()[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)
    # uniform: teacher layers 0 and 2, both with experts; the student's layer 1 would be dense (mlp_only_layers=[1])
    with pytest.raises(ValueError, match="student layer 1 is full_attention with a dense MLP but teacher layer 2, "
                                         ".* is full_attention with the experts: .*mlp_only_layers"):
        wh.select(qwen2_moe_dir, dict(num_hidden_layers=2), layers="uniform")
    result = wh.select(qwen2_moe_dir, dict(num_hidden_layers=2, mlp_only_layers=[]), layers="uniform")
    assert result.manifest["layer_map"] == {"model.layers.0": "model.layers.0", "model.layers.1": "model.layers.2"}


def test_qwen2_moe_experts_shared_expert_and_dense_layer_width(qwen2_moe_dir, tmp_path):
    student = dict(hidden_size=16, num_attention_heads=2, num_key_value_heads=1, num_experts=2,
                   moe_intermediate_size=12, shared_expert_intermediate_size=16, intermediate_size=20)
    s = state(load_strict(wh.select(qwen2_moe_dir, student).save(tmp_path / "s")))
    t = state(build("qwen2_moe", QWEN2_MOE))
    experts, hidden, moe, shared, dense = (torch.tensor([0, 2]), torch.arange(16) * 2, torch.arange(12) * 2,
                                           torch.arange(16) * 2, torch.arange(20) * 2)
    gate_up = t[E.format(0, "experts.gate_up_proj")][experts][:, torch.cat([moe, 24 + moe])][:, :, hidden]
    assert torch.equal(s[E.format(0, "experts.gate_up_proj")], gate_up)
    assert torch.equal(s[E.format(0, "gate.weight")], t[E.format(0, "gate.weight")][experts][:, hidden])
    for name in ("gate_proj", "up_proj"):
        key = E.format(2, f"shared_expert.{name}.weight")
        assert torch.equal(s[key], t[key][shared][:, hidden])
    assert torch.equal(s[E.format(2, "shared_expert_gate.weight")], t[E.format(2, "shared_expert_gate.weight")][:, hidden])
    key = E.format(1, "down_proj.weight")  # layer 1 is dense: intermediate_size 40 -> 20
    assert torch.equal(s[key], t[key][hidden][:, dense])


def test_qwen2_moe_half_expert_and_shared_mlp_computes_the_masked_teacher(qwen2_moe_dir, tmp_path):
    student = load_strict(wh.select(qwen2_moe_dir, dict(moe_intermediate_size=12, shared_expert_intermediate_size=16))
                          .save(tmp_path / "s"))
    moe, shared = torch.arange(12) * 2, torch.arange(16) * 2
    keep = {}
    for i in (0, 2, 3):
        keep[E.format(i, "experts.gate_up_proj")] = {1: torch.cat([moe, 24 + moe])}
        keep[E.format(i, "experts.down_proj")] = {2: moe}
        keep.update({E.format(i, f"shared_expert.{n}.weight"): {0: shared} for n in ("gate_proj", "up_proj")})
        keep[E.format(i, "shared_expert.down_proj.weight")] = {1: shared}
    teacher = build("qwen2_moe", QWEN2_MOE)
    masked = zero_outside(teacher, keep)
    assert not torch.allclose(lm_logits(masked, token_ids(1)), lm_logits(teacher, token_ids(1)), atol=1e-4)
    torch.testing.assert_close(lm_logits(student, token_ids(1)), lm_logits(masked, token_ids(1)), rtol=1e-5, atol=1e-5)


QWEN3_MOE = dict(vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
                 mlp_only_layers=[1], max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
                 tie_word_embeddings=False)


def test_qwen3_moe_depth_experts_norms_and_the_masked_teacher(tmp_path):
    """Qwen3-MoE: no shared expert, Qwen3's q_norm/k_norm; the experts stacked from per-expert tensors."""
    folder = save_teacher("qwen3_moe", QWEN3_MOE, tmp_path / "t")
    student = load_strict(wh.select(folder, dict(num_hidden_layers=2)).save(tmp_path / "d"))  # layers 0, 1
    teacher = build("qwen3_moe", QWEN3_MOE)
    cut_layers(teacher, "model.layers", [0, 1])
    torch.testing.assert_close(lm_logits(student, token_ids()), lm_logits(teacher, token_ids()), rtol=0, atol=1e-6)
    assert student.generate(token_ids()[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)

    s = state(load_strict(wh.select(folder, dict(hidden_size=16, num_attention_heads=2, num_key_value_heads=1,
                                                 num_experts=2, moe_intermediate_size=12)).save(tmp_path / "w")))
    t = state(build("qwen3_moe", QWEN3_MOE))
    experts, hidden, moe = torch.tensor([0, 2]), torch.arange(16) * 2, torch.arange(12) * 2
    down = t[E.format(3, "experts.down_proj")][experts][:, hidden][:, :, moe]
    assert torch.equal(s[E.format(3, "experts.down_proj")], down)
    key = "model.layers.3.self_attn.k_norm.weight"
    assert torch.equal(s[key], t[key])  # head_dim 8 kept

    student = load_strict(wh.select(folder, dict(moe_intermediate_size=12)).save(tmp_path / "m"))
    keep = {E.format(i, "experts.gate_up_proj"): {1: torch.cat([moe, 24 + moe])} for i in (0, 2, 3)}
    keep.update({E.format(i, "experts.down_proj"): {2: moe} for i in (0, 2, 3)})
    masked = zero_outside(build("qwen3_moe", QWEN3_MOE), keep)
    torch.testing.assert_close(lm_logits(student, token_ids(1)), lm_logits(masked, token_ids(1)), rtol=1e-5, atol=1e-5)
