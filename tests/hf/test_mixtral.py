"""Mixtral: the experts are stored one by one (block_sparse_moe.experts.E.w1/w2/w3) and held fused by
transformers 5 (mlp.experts.gate_up_proj, down_proj); selection stacks them as from_pretrained does,
then keeps whole experts (with their router rows) and one MLP index set for every expert."""
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
    with pytest.raises(ValueError, match=r"more experts \(num_local_experts\) than the teacher \(8 > 4\)"):
        wh.select(mixtral_dir, dict(num_local_experts=8))
