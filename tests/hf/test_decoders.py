"""GPT-NeoX/Pythia (per-head fused query_key_value, partial rotary), OPT, Phi-3 (fused qkv_proj with
GQA, fused gate_up_proj), Gemma/Gemma2/Gemma3 (head_dim apart from hidden / heads; sliding and global
layers): depth-only students compute the teacher through the chosen layers and generate; heads, KV
groups and fused layouts by hand-computed rows; halved MLPs (and heads) compute the masked teacher."""
from __future__ import annotations

import pytest
import torch
from hf_helpers import (
    build, cut_layers, head_rows, lm_logits, load_strict, save_teacher, state, token_ids, zero_outside,
)

import weightselect.hf as wh
from weightselect.selection.layers import layer_indices

TOKENS = dict(vocab_size=64, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
SLIDING = ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]
CFG = {
    "gpt_neox": dict(TOKENS, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48,
                     rotary_pct=0.5, tie_word_embeddings=False),
    "opt": dict(TOKENS, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, ffn_dim=48, word_embed_proj_dim=32),
    "phi3": dict(TOKENS, hidden_size=32, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                 intermediate_size=48, tie_word_embeddings=False),  # head_dim 4
    "gemma": dict(TOKENS, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  intermediate_size=48),
    "gemma2": dict(TOKENS, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                   head_dim=16, intermediate_size=48, sliding_window=4, layer_types=SLIDING),
    "gemma3": dict(TOKENS, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                   head_dim=16, intermediate_size=48, sliding_window=4, layer_types=SLIDING),
}
LAYERS = {"gpt_neox": "gpt_neox.layers", "opt": "model.decoder.layers"}
MLP = {  # (tensor of the layer, dimension of the MLP width, blocks of it)
    "gpt_neox": [("mlp.dense_h_to_4h.weight", 0, 1), ("mlp.dense_h_to_4h.bias", 0, 1), ("mlp.dense_4h_to_h.weight", 1, 1)],
    "opt": [("fc1.weight", 0, 1), ("fc1.bias", 0, 1), ("fc2.weight", 1, 1)],
    "phi3": [("mlp.gate_up_proj.weight", 0, 2), ("mlp.down_proj.weight", 1, 1)],
}
GATED = [("mlp.gate_proj.weight", 0, 1), ("mlp.up_proj.weight", 0, 1), ("mlp.down_proj.weight", 1, 1)]


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoders")
    return {kind: save_teacher(kind, cfg, root / kind) for kind, cfg in CFG.items()}


@pytest.mark.parametrize("kind", sorted(CFG))
def test_depth_only_student_is_the_teacher_through_the_chosen_layers(teachers, tmp_path, kind):
    result = wh.select(teachers[kind], "num_hidden_layers=2", layers="last")
    student = load_strict(result.save(tmp_path / "s"))
    teacher = build(kind, CFG[kind])
    chosen = layer_indices("last", 4, 2)
    cut_layers(teacher, LAYERS.get(kind, "model.layers"), chosen)
    torch.testing.assert_close(lm_logits(student, token_ids()), lm_logits(teacher, token_ids()), rtol=0, atol=1e-5)
    assert student.generate(token_ids()[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)
    if "layer_types" in CFG[kind]:
        assert student.config.layer_types == [SLIDING[i] for i in chosen] == ["sliding_attention", "full_attention"]


@pytest.mark.parametrize("kind", ["gpt_neox", "opt", "phi3", "gemma", "gemma2"])
def test_half_mlp_student_computes_the_masked_teacher(teachers, tmp_path, kind):
    field = "ffn_dim" if kind == "opt" else "intermediate_size"
    student = load_strict(wh.select(teachers[kind], {field: 24}).save(tmp_path / "s"))
    prefix = LAYERS.get(kind, "model.layers")
    keep = {}
    for i in range(4):
        for name, dim, blocks in MLP.get(kind, GATED):
            rows = torch.cat([b * 48 + torch.arange(24) * 2 for b in range(blocks)])  # uniform 48 -> 24, per block
            keep[f"{prefix}.{i}.{name}"] = {dim: rows}
    teacher = build(kind, CFG[kind])
    masked = zero_outside(teacher, keep)
    assert not torch.allclose(lm_logits(masked, token_ids(1)), lm_logits(teacher, token_ids(1)), atol=1e-4)
    torch.testing.assert_close(lm_logits(student, token_ids(1)), lm_logits(masked, token_ids(1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["gemma", "gemma3"])
def test_gemma_half_the_heads_computes_the_masked_teacher(teachers, tmp_path, kind):
    """2 of 4 heads (KV group 0 and its query heads 0, 1), head_dim 16 and the width kept."""
    student = load_strict(wh.select(teachers[kind], dict(num_attention_heads=2, num_key_value_heads=1))
                          .save(tmp_path / "s"))
    q, kv, a = head_rows([0, 1], 16), head_rows([0], 16), "model.layers.{}.self_attn.{}.weight"
    keep = {a.format(i, n): {0: rows} for i in range(4) for n, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv))}
    keep.update({a.format(i, "o_proj"): {1: q} for i in range(4)})
    masked = zero_outside(build(kind, CFG[kind]), keep)
    torch.testing.assert_close(lm_logits(student, token_ids(2)), lm_logits(masked, token_ids(2)), rtol=1e-5, atol=1e-5)


def test_neox_query_key_value_keeps_whole_heads_of_the_interleaved_layout(teachers, tmp_path):
    """Per head [q | k | v], 8 each: heads 0 and 2 of 4 are rows 0-23 and 48-71."""
    result = wh.select(teachers["gpt_neox"], "hidden_size=16,num_attention_heads=2,intermediate_size=24")
    s, t = state(load_strict(result.save(tmp_path / "s"))), state(build("gpt_neox", CFG["gpt_neox"]))
    hidden, rows = torch.arange(16) * 2, torch.cat([torch.arange(24), 48 + torch.arange(24)])
    key = "gpt_neox.layers.1.attention.{}"
    assert torch.equal(s[key.format("query_key_value.weight")], t[key.format("query_key_value.weight")][rows][:, hidden])
    assert torch.equal(s[key.format("query_key_value.bias")], t[key.format("query_key_value.bias")][rows])
    assert torch.equal(s[key.format("dense.weight")], t[key.format("dense.weight")][hidden][:, head_rows([0, 2], 8)])
    assert torch.equal(s["lm_head.weight"], t["lm_head.weight"][:, hidden])
    with pytest.raises(ValueError, match=r"rotary pairs .* would be split \(partial_rotary_factor 0.5\)"):
        wh.select(teachers["gpt_neox"], "hidden_size=16", select_head_dim=True)


@pytest.mark.parametrize("kv,q_heads", [(1, [0, 1, 2, 3]), (2, [0, 2, 4, 6])])
def test_phi3_qkv_proj_takes_q_heads_k_groups_v_groups_and_gate_up_halves(teachers, tmp_path, kv, q_heads):
    """qkv_proj rows: 8 q heads (0-31), 2 k groups (32-39), 2 v groups (40-47), head_dim 4; each
    student query head reads the KV group its teacher head read (head h -> group h // 4)."""
    result = wh.select(teachers["phi3"], dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=kv,
                                              intermediate_size=24))
    s, t = state(load_strict(result.save(tmp_path / "s"))), state(build("phi3", CFG["phi3"]))
    groups = sorted({h // 4 for h in q_heads})
    rows = torch.cat([head_rows(q_heads, 4), 32 + head_rows(groups, 4), 40 + head_rows(groups, 4)])
    hidden, mlp = torch.arange(16) * 2, torch.arange(24) * 2
    key = "model.layers.2.{}.weight"
    assert torch.equal(s[key.format("self_attn.qkv_proj")], t[key.format("self_attn.qkv_proj")][rows][:, hidden])
    assert torch.equal(s[key.format("self_attn.o_proj")], t[key.format("self_attn.o_proj")][hidden][:, head_rows(q_heads, 4)])
    assert torch.equal(s[key.format("mlp.gate_up_proj")], t[key.format("mlp.gate_up_proj")][torch.cat([mlp, 48 + mlp])][:, hidden])


def test_opt_heads_positions_and_the_projection_width(teachers, tmp_path):
    result = wh.select(teachers["opt"], "hidden_size=16,num_attention_heads=2")
    model = load_strict(result.save(tmp_path / "s"))
    s, t = state(model), state(build("opt", CFG["opt"]))
    assert model.config.word_embed_proj_dim == 16  # follows hidden_size, as in the teacher: no project_in/out
    hidden, heads = torch.arange(16) * 2, head_rows([0, 2], 8)
    key = "model.decoder.layers.3.self_attn.{}"
    for name in ("q_proj", "k_proj", "v_proj"):
        assert torch.equal(s[key.format(name + ".weight")], t[key.format(name + ".weight")][heads][:, hidden])
        assert torch.equal(s[key.format(name + ".bias")], t[key.format(name + ".bias")][heads])
    assert torch.equal(s[key.format("out_proj.weight")], t[key.format("out_proj.weight")][hidden][:, heads])
    assert torch.equal(s["model.decoder.embed_positions.weight"], t["model.decoder.embed_positions.weight"][:, hidden])
    assert model.lm_head.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("kind", ["gemma2", "gemma3"])
def test_gemma_head_dim_apart_from_the_width_and_the_extra_norms(teachers, tmp_path, kind):
    result = wh.select(teachers[kind], dict(hidden_size=16, num_attention_heads=2, num_key_value_heads=1))
    s, t = state(load_strict(result.save(tmp_path / "s"))), state(build(kind, CFG[kind]))
    hidden = torch.arange(16) * 2
    key = "model.layers.0.{}.weight"
    assert torch.equal(s[key.format("self_attn.q_proj")], t[key.format("self_attn.q_proj")][head_rows([0, 1], 16)][:, hidden])
    assert torch.equal(s[key.format("self_attn.k_proj")], t[key.format("self_attn.k_proj")][head_rows([0], 16)][:, hidden])
    for norm in ("pre_feedforward_layernorm", "post_feedforward_layernorm"):
        assert torch.equal(s[key.format(norm)], t[key.format(norm)][hidden])
    if kind == "gemma3":
        assert torch.equal(s[key.format("self_attn.q_norm")], t[key.format("self_attn.q_norm")])  # head_dim kept


def test_gemma2_layer_kinds_are_kept_or_refused(teachers):
    with pytest.raises(ValueError, match="student layer 0 is full_attention but teacher layer 0, .* is sliding_attention"):
        wh.select(teachers["gemma2"], dict(num_hidden_layers=2, layer_types=["full_attention", "full_attention"]))
    # layers 1 and 3 are both global: a student of two global layers takes them
    result = wh.select(teachers["gemma2"], dict(num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"]),
                       layers="last")
    assert result.manifest["layer_map"] == {"model.layers.0": "model.layers.2", "model.layers.1": "model.layers.3"}


@pytest.mark.parametrize("model_type,cause", [("olmoe", "an? mixture-of-experts model"),
                                              ("deepseek_v3", "an? mixture-of-experts model"),
                                              ("bart", "an? encoder-decoder model"), ("gemma3", "the multimodal Gemma3"),
                                              ("falcon", "Falcon's fused query_key_value has three layouts")])
def test_moe_and_encoder_decoder_models_are_refused_with_the_cause(tmp_path, model_type, cause):
    import json

    from safetensors.torch import save_file

    folder = tmp_path / model_type
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    save_file({"model.embed_tokens.weight": torch.zeros(4, 2)}, folder / "model.safetensors")
    with pytest.raises(ValueError, match=rf"unsupported transformers architecture '{model_type}': {cause} .*; "
                                         "weight selection supports the model types llama") as info:
        wh.select(folder, "hidden_size=16")
    assert "\n" not in str(info.value)


def test_opt_with_project_in_and_out_is_refused(tmp_path):
    """OPT-350m's layout: word embeddings of another width, projected in and out."""
    teacher = save_teacher("opt", dict(CFG["opt"], word_embed_proj_dim=16), tmp_path / "t")
    with pytest.raises(ValueError, match=r"the teacher's word_embed_proj_dim 16 differs from hidden_size 32 \(project_in/"
                                         r"project_out, as in OPT-350m\): those projections are not mapped"):
        wh.select(teacher, "num_hidden_layers=2")
    with pytest.raises(ValueError, match="the student's word_embed_proj_dim 8 differs from hidden_size 16"):
        wh.select(save_teacher("opt", CFG["opt"], tmp_path / "t2"), dict(hidden_size=16, word_embed_proj_dim=8))


@pytest.mark.parametrize("kind", ["phi3", "gpt_neox"])
def test_same_seed_same_bytes_other_seed_other_bytes(teachers, tmp_path, kind):
    width = dict(hidden_size=16, num_attention_heads=4 if kind == "phi3" else 2, intermediate_size=24)
    paths = [wh.select(teachers[kind], width, method="random", seed=seed).save(tmp_path / f"s{i}") / "model.safetensors"
             for i, seed in enumerate((5, 5, 6))]
    assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()


def test_phi3_longrope_keeps_whole_heads_and_refuses_a_narrower_head(tmp_path):
    """LongRoPE's long_factor/short_factor hold one factor per rotary pair of the teacher's heads."""
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "long_factor": [1.0, 2.0], "short_factor": [1.0, 1.5],
            "original_max_position_embeddings": 32}
    teacher = save_teacher("phi3", dict(CFG["phi3"], rope_parameters=rope), tmp_path / "t")
    with pytest.raises(ValueError, match=r"\(4 -> 2\): the rotary scaling has one factor per pair \(long_factor, "
                                         r"short_factor, Phi-3's LongRoPE\) for the teacher's 2 pairs; keep head_dim"):
        wh.select(teacher, dict(hidden_size=16), select_head_dim=True)
    student = load_strict(wh.select(teacher, dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=1))
                          .save(tmp_path / "s"))
    assert student.config.rope_parameters["long_factor"] == [1.0, 2.0]
