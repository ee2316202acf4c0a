"""Llama with GQA and RoPE: whole heads and KV groups, rotary pairs, layers, tying, the folder."""
from __future__ import annotations

import json

import pytest
import torch
from hf_helpers import LLAMA, build, head_rows, load_strict, state

import weightselect.hf as wh
from weightselect.selection.layers import layer_indices

HALF = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=1, intermediate_size=24)
P = "model.layers.{}.self_attn.{}.weight"


def test_gqa_8_heads_2_groups_to_4_heads_1_group(llama_dir, tmp_path):
    """The issue's example: the one KV group kept is read by exactly the four query heads kept."""
    out = wh.select(llama_dir, HALF).save(tmp_path / "s")
    t, s = state(build("llama", LLAMA)), state(load_strict(out))
    hidden = torch.arange(16) * 2  # uniform 32 -> 16
    q_rows, kv_rows = head_rows([0, 1, 2, 3], 8), head_rows([0], 8)  # KV group 0 and its query heads 0..3
    for i in range(4):
        assert torch.equal(s[P.format(i, "q_proj")], t[P.format(i, "q_proj")][q_rows][:, hidden])
        for name in ("k_proj", "v_proj"):
            assert torch.equal(s[P.format(i, name)], t[P.format(i, name)][kv_rows][:, hidden])
        assert torch.equal(s[P.format(i, "o_proj")], t[P.format(i, "o_proj")][hidden][:, q_rows])
        mlp = torch.arange(24) * 2
        for name in ("gate_proj", "up_proj"):
            key = f"model.layers.{i}.mlp.{name}.weight"
            assert torch.equal(s[key], t[key][mlp][:, hidden])
        key = f"model.layers.{i}.mlp.down_proj.weight"
        assert torch.equal(s[key], t[key][hidden][:, mlp])
        key = f"model.layers.{i}.input_layernorm.weight"
        assert torch.equal(s[key], t[key][hidden])


@pytest.mark.parametrize("method,student", [
    ("uniform", dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2)),
    ("random", dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2)),
    ("random", dict(hidden_size=24, num_attention_heads=3, num_key_value_heads=1)),
])
def test_kv_groups_match_the_query_heads_that_read_them(llama_dir, tmp_path, method, student):
    """Every student query head reads (through repeat_kv) the KV group that its teacher head read."""
    result = wh.select(llama_dir, student, method=method, seed=3)
    t = state(build("llama", LLAMA))
    hidden = torch.tensor(result.manifest["axes"]["hidden"]["indices"])
    s_heads, s_kv = student["num_attention_heads"], student["num_key_value_heads"]
    for i in range(4):
        q_t, k_t = t[P.format(i, "q_proj")][:, hidden], t[P.format(i, "k_proj")][:, hidden]
        q_s, k_s = result.state_dict[P.format(i, "q_proj")], result.state_dict[P.format(i, "k_proj")]
        for h in range(s_heads):
            block = q_s[h * 8:(h + 1) * 8]
            matches = [ht for ht in range(8) if torch.equal(block, q_t[ht * 8:(ht + 1) * 8])]
            assert len(matches) == 1  # a whole teacher head
            g_s, g_t = h // (s_heads // s_kv), matches[0] // 4
            assert torch.equal(k_s[g_s * 8:(g_s + 1) * 8], k_t[g_t * 8:(g_t + 1) * 8])


@pytest.mark.parametrize("layers", ["first", "uniform", "mid", "last"])
def test_depth_only_student_is_the_teacher_through_the_chosen_layers(llama_dir, tmp_path, layers):
    out = wh.select(llama_dir, "num_hidden_layers=2", layers=layers).save(tmp_path / layers)
    student = load_strict(out)
    teacher = build("llama", LLAMA)
    chosen = layer_indices(layers, 4, 2)
    teacher.model.layers = torch.nn.ModuleList([teacher.model.layers[i] for i in chosen])
    for layer, idx in zip(teacher.model.layers, range(2)):
        layer.self_attn.layer_idx = idx
    teacher.config.num_hidden_layers = 2
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = student(ids, output_hidden_states=True, use_cache=False)
        b = teacher(ids, output_hidden_states=True, use_cache=False)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=1e-6)
    assert json.loads((out / "weightselect.json").read_text())["layer_map"] == {
        f"model.layers.{i}": f"model.layers.{t}" for i, t in enumerate(chosen)}


def test_tied_embeddings_stay_tied_and_the_vocabulary_whole(llama_dir, tmp_path):
    out = wh.select(llama_dir, HALF).save(tmp_path / "s")
    student, teacher = load_strict(out), build("llama", LLAMA)
    emb = student.model.embed_tokens.weight
    assert student.lm_head.weight.data_ptr() == emb.data_ptr()
    assert emb.shape == (64, 16) and student.config.vocab_size == 64
    assert torch.equal(emb.detach(), teacher.model.embed_tokens.weight.detach()[:, torch.arange(16) * 2])
    manifest = json.loads((out / "weightselect.json").read_text())
    assert manifest["tied"] == {"lm_head.weight": "model.embed_tokens.weight"}
    with torch.no_grad():
        assert student(torch.tensor([[1, 5, 9]])).logits.shape == (1, 3, 64)


def test_head_dim_selection_keeps_rotary_pairs(llama_dir, tmp_path):
    student = dict(hidden_size=16, head_dim=4)
    with pytest.raises(ValueError, match="head dimension is 4, the teacher's 8.*select_head_dim"):
        wh.select(llama_dir, student)
    result = wh.select(llama_dir, student, select_head_dim=True)
    load_strict(result.save(tmp_path / "s"))
    t = state(build("llama", LLAMA))
    hidden, pairs = torch.arange(16) * 2, [0, 2]  # uniform 4 -> 2 pairs
    rows = head_rows(range(8), 8, pairs)  # every head, dims (0, 4) and (2, 6)
    assert torch.equal(result.state_dict[P.format(0, "q_proj")], t[P.format(0, "q_proj")][rows][:, hidden])
    assert torch.equal(result.state_dict[P.format(0, "k_proj")], t[P.format(0, "k_proj")][head_rows(range(2), 8, pairs)][:, hidden])
    # pairs 0 and 2 of 4 turn at theta^(-2*0/8), theta^(-2*2/8): the student's pairs 0 and 1 of 2 exactly
    assert result.manifest["rotary"]["frequencies_match"] is True
    assert wh.select(llama_dir, student, method="consecutive", select_head_dim=True).manifest["rotary"]["frequencies_match"] is False


def test_sharded_teacher_gives_the_same_bytes(llama_dir, tmp_path):
    from hf_helpers import save_teacher

    sharded = save_teacher("llama", LLAMA, tmp_path / "sharded", max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("model-*-of-*.safetensors"))) > 2
    a = wh.select(sharded, HALF, method="random", seed=1).save(tmp_path / "a")
    b = wh.select(llama_dir, HALF, method="random", seed=1).save(tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    teacher = json.loads((a / "weightselect.json").read_text())["teacher"]
    assert len(teacher["files"]) > 2 and len(teacher["sha256"]) == 64
    load_strict(a)


def test_same_seed_same_bytes_and_other_seed_other_heads(llama_dir, tmp_path):
    student = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2)
    a = wh.select(llama_dir, student, method="random", seed=5).save(tmp_path / "a")
    b = wh.select(llama_dir, student, method="random", seed=5).save(tmp_path / "b")
    c = wh.select(llama_dir, student, method="random", seed=6).save(tmp_path / "c")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_output_folder_has_config_tokenizer_and_manifest(llama_dir, tmp_path):
    (llama_dir / "tokenizer.json").write_text('{"version": "1.0"}')
    try:
        result = wh.select(llama_dir, HALF)
        out = result.save(tmp_path / "s")
    finally:
        (llama_dir / "tokenizer.json").unlink()
    assert (out / "tokenizer.json").read_text() == '{"version": "1.0"}'
    config = json.loads((out / "config.json").read_text())
    assert (config["hidden_size"], config["num_key_value_heads"], config["vocab_size"]) == (16, 1, 64)
    manifest = json.loads((out / "weightselect.json").read_text())
    assert manifest["teacher"]["sha256"] == manifest["teacher"]["files"]["model.safetensors"]
    assert manifest["axes"]["model.layers.0.kv_groups"] == {"teacher": 2, "student": 1, "indices": [0]}
    with pytest.raises(FileExistsError, match="force"):
        result.save(out)
    result.save(out, force=True)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["s"]


def test_output_folder_has_a_model_card_naming_teacher_method_and_layers(llama_dir, tmp_path):
    """README.md as Hugging Face users expect it: front matter, the teacher and its sha256, the
    method, the layer map as the manifest records it, the axes' sizes, and the manifest's name."""
    out = wh.select(llama_dir, dict(HALF, num_hidden_layers=2), layers="uniform", method="random", seed=3).save(
        tmp_path / "s")
    card = (out / "README.md").read_text()
    manifest = json.loads((out / "weightselect.json").read_text())
    assert card.startswith("---\nlibrary_name: transformers\n") and "- weight-selection" in card
    assert f"(sha256 `{manifest['teacher']['sha256']}`)" in card
    assert "- method: `random`, layers: `uniform`, seed: 3" in card and "`weightselect.json`" in card
    teacher_layers = [layer_indices("uniform", 4, 2)[i] for i in range(2)]
    for i, t in enumerate(teacher_layers):
        assert f"| `model.layers.{i}` | `model.layers.{t}` |" in card
    assert "| `model.layers.0.kv_groups` | 2 | 1 |" in card
    load_strict(out)  # the card changes nothing from_pretrained reads


@pytest.mark.parametrize("arch", ["Qwen2", "Mistral"])
def test_qwen2_and_mistral_share_the_llama_family(tmp_path, arch):
    """Qwen2 adds q/k/v biases and per-layer sliding-window types; Mistral is Llama's layout."""
    import transformers

    config = getattr(transformers, f"{arch}Config")(**{k: v for k, v in LLAMA.items()})
    if arch == "Qwen2":
        config.layer_types = ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]
    torch.manual_seed(0)
    teacher = getattr(transformers, f"{arch}ForCausalLM")(config)
    teacher.save_pretrained(tmp_path / "t")
    result = wh.select(tmp_path / "t", dict(HALF, num_hidden_layers=2), layers="last")
    student = load_strict(result.save(tmp_path / "s"))
    assert result.manifest["family"] == "llama"
    if arch == "Qwen2":
        bias = teacher.model.layers[3].self_attn.q_proj.bias.detach()
        assert torch.equal(student.model.layers[1].self_attn.q_proj.bias.detach(), bias[head_rows([0, 1, 2, 3], 8)])
        assert student.config.layer_types == ["full_attention", "sliding_attention"]
