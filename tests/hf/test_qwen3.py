"""Qwen3: the Llama layout plus per-head q_norm/k_norm (RMSNorm over head_dim), which follow the
selected head dimension: kept whole when it is kept, whole rotary pairs when it is selected."""
from __future__ import annotations

import pytest
import torch
from hf_helpers import (
    LLAMA, build, cut_layers, head_rows, lm_logits, load_strict, save_teacher, state, token_ids, zero_outside,
)

import weightselect.hf as wh
from weightselect.selection.layers import layer_indices

QWEN3 = dict(LLAMA, tie_word_embeddings=False)  # 4 layers, hidden 32, 8 heads in 2 KV groups, head_dim 8
A = "model.layers.{}.self_attn.{}.weight"


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    return save_teacher("qwen3", QWEN3, tmp_path_factory.mktemp("qwen3") / "teacher")


def test_qwen3_depth_only_student_is_the_teacher_through_the_chosen_layers(qwen3_dir, tmp_path):
    result = wh.select(qwen3_dir, "num_hidden_layers=2", layers="uniform")
    assert result.manifest["family"] == "llama" and result.manifest["model_type"] == "qwen3"
    student = load_strict(result.save(tmp_path / "s"))
    teacher = build("qwen3", QWEN3)
    cut_layers(teacher, "model.layers", layer_indices("uniform", 4, 2))
    torch.testing.assert_close(lm_logits(student, token_ids()), lm_logits(teacher, token_ids()), rtol=0, atol=1e-6)
    out = student.generate(token_ids()[:1, :4], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)


def test_qwen3_whole_heads_keep_q_norm_and_k_norm_whole(qwen3_dir, tmp_path):
    result = wh.select(qwen3_dir, dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=1,
                                       intermediate_size=24))
    s, t = state(load_strict(result.save(tmp_path / "s"))), state(build("qwen3", QWEN3))
    hidden = torch.arange(16) * 2
    for i in range(4):
        assert torch.equal(s[A.format(i, "q_proj")], t[A.format(i, "q_proj")][head_rows([0, 1, 2, 3], 8)][:, hidden])
        assert torch.equal(s[A.format(i, "k_proj")], t[A.format(i, "k_proj")][head_rows([0], 8)][:, hidden])
        for norm in ("q_norm", "k_norm"):
            assert torch.equal(s[A.format(i, norm)], t[A.format(i, norm)])  # head_dim 8 kept: all of it
    assert torch.equal(s["lm_head.weight"], t["lm_head.weight"][:, hidden])


def test_qwen3_head_dim_selection_takes_the_same_rotary_pairs_in_the_norms(qwen3_dir, tmp_path):
    result = wh.select(qwen3_dir, dict(head_dim=4), select_head_dim=True)
    s, t = state(load_strict(result.save(tmp_path / "s"))), state(build("qwen3", QWEN3))
    dims = torch.tensor([0, 2, 4, 6])  # pairs 0 and 2 of 4: dimensions (0, 4) and (2, 6) of each head
    for norm in ("q_norm", "k_norm"):
        assert torch.equal(s[A.format(1, norm)], t[A.format(1, norm)][dims])
    assert torch.equal(s[A.format(1, "q_proj")], t[A.format(1, "q_proj")][head_rows(range(8), 8, [0, 2])])
    assert torch.equal(s[A.format(1, "k_proj")], t[A.format(1, "k_proj")][head_rows(range(2), 8, [0, 2])])


@pytest.mark.parametrize("student", ["heads", "mlp"])
def test_qwen3_student_computes_the_masked_teacher(qwen3_dir, tmp_path, student):
    """Half the heads (4 in KV group 0; head_dim and width kept) or half the MLP: the student's logits
    are those of the teacher with every element that was not selected set to zero."""
    if student == "heads":
        overrides = dict(num_attention_heads=4, num_key_value_heads=1)
        q, kv = head_rows([0, 1, 2, 3], 8), head_rows([0], 8)
        keep = {A.format(i, n): {0: rows} for i in range(4) for n, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv))}
        keep.update({A.format(i, "o_proj"): {1: q} for i in range(4)})
    else:
        overrides, mlp = dict(intermediate_size=24), torch.arange(24) * 2
        keep = {f"model.layers.{i}.mlp.{n}.weight": {0: mlp} for i in range(4) for n in ("gate_proj", "up_proj")}
        keep.update({f"model.layers.{i}.mlp.down_proj.weight": {1: mlp} for i in range(4)})
    model = load_strict(wh.select(qwen3_dir, overrides).save(tmp_path / "s"))
    masked = zero_outside(build("qwen3", QWEN3), keep)
    a, b = lm_logits(model, token_ids(1)), lm_logits(masked, token_ids(1))
    assert not torch.allclose(b, lm_logits(build("qwen3", QWEN3), token_ids(1)), atol=1e-3)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
