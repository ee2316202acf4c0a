"""GPT-2 (fused c_attn, Conv1D layout) and BERT: whole heads, depth-only equivalence, strict loads."""
from __future__ import annotations

import pytest
import torch
from hf_helpers import BERT, GPT2, build, head_rows, load_strict, save_teacher, state

import weightselect.hf as wh
from weightselect.selection.layers import layer_indices


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return save_teacher("gpt2", GPT2, tmp_path_factory.mktemp("gpt2") / "teacher")


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_teacher("bert", BERT, tmp_path_factory.mktemp("bert") / "teacher")


def test_gpt2_c_attn_keeps_whole_heads_of_q_k_and_v(gpt2_dir, tmp_path):
    out = wh.select(gpt2_dir, "n_embd=16,n_head=2").save(tmp_path / "s")
    s, t = state(load_strict(out)), state(build("gpt2", GPT2))
    hidden, mlp = torch.arange(16) * 2, torch.arange(64) * 2  # n_inner 4 * n_embd: 128 -> 64
    heads = head_rows([0, 2], 8)  # uniform 4 -> 2 heads of 8
    cols = torch.cat([b * 32 + heads for b in range(3)])  # q, k and v blocks alike
    for i in range(3):
        L = f"transformer.h.{i}"
        assert s[f"{L}.attn.c_attn.weight"].shape == (16, 48)  # Conv1D: (in, out)
        assert torch.equal(s[f"{L}.attn.c_attn.weight"], t[f"{L}.attn.c_attn.weight"][hidden][:, cols])
        assert torch.equal(s[f"{L}.attn.c_attn.bias"], t[f"{L}.attn.c_attn.bias"][cols])
        assert torch.equal(s[f"{L}.attn.c_proj.weight"], t[f"{L}.attn.c_proj.weight"][heads][:, hidden])
        assert torch.equal(s[f"{L}.mlp.c_fc.weight"], t[f"{L}.mlp.c_fc.weight"][hidden][:, mlp])
        assert torch.equal(s[f"{L}.mlp.c_proj.weight"], t[f"{L}.mlp.c_proj.weight"][mlp][:, hidden])
    assert torch.equal(s["transformer.wte.weight"], t["transformer.wte.weight"][:, hidden])  # 64 rows: all
    assert torch.equal(s["transformer.wpe.weight"], t["transformer.wpe.weight"][:, hidden])


def test_gpt2_head_dim_needs_the_option_and_is_then_selected_per_head(gpt2_dir, tmp_path):
    with pytest.raises(ValueError, match="head dimension is 4, the teacher's 8"):
        wh.select(gpt2_dir, "n_embd=16")
    result = wh.select(gpt2_dir, "n_embd=16", select_head_dim=True)
    t = state(build("gpt2", GPT2))
    rows = torch.tensor([h * 8 + d for h in range(4) for d in (0, 2, 4, 6)])
    cols = torch.cat([b * 32 + rows for b in range(3)])
    key = "transformer.h.1.attn.c_attn.weight"
    assert torch.equal(result.state_dict[key], t[key][torch.arange(16) * 2][:, cols])
    model = load_strict(result.save(tmp_path / "s"))
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


@pytest.mark.parametrize("layers", ["uniform", "last"])
def test_gpt2_depth_only_student_is_the_teacher_through_the_chosen_layers(gpt2_dir, tmp_path, layers):
    student = load_strict(wh.select(gpt2_dir, "n_layer=2", layers=layers).save(tmp_path / "s"))
    teacher = build("gpt2", GPT2)
    teacher.transformer.h = torch.nn.ModuleList([teacher.transformer.h[i] for i in layer_indices(layers, 3, 2)])
    teacher.config.n_layer = 2
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(student(ids, use_cache=False).logits, teacher(ids, use_cache=False).logits, rtol=0, atol=1e-6)


def test_bert_heads_and_depth(bert_dir, tmp_path):
    out = wh.select(bert_dir, "hidden_size=16,num_attention_heads=2,intermediate_size=24").save(tmp_path / "w")
    s, t = state(load_strict(out, "AutoModel")), state(build("bert", BERT))
    hidden, heads = torch.arange(16) * 2, head_rows([0, 2], 8)
    for name in ("query", "key", "value"):
        key = f"encoder.layer.2.attention.self.{name}"
        assert torch.equal(s[f"{key}.weight"], t[f"{key}.weight"][heads][:, hidden])
        assert torch.equal(s[f"{key}.bias"], t[f"{key}.bias"][heads])
    key = "encoder.layer.2.attention.output.dense.weight"
    assert torch.equal(s[key], t[key][hidden][:, heads])
    for key in ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"):
        assert torch.equal(s[key], t[key][:, hidden])
    student = load_strict(wh.select(bert_dir, "num_hidden_layers=2", layers="mid").save(tmp_path / "d"), "AutoModel")
    teacher = build("bert", BERT)
    teacher.encoder.layer = torch.nn.ModuleList([teacher.encoder.layer[i] for i in layer_indices("mid", 3, 2)])
    ids = torch.randint(1, 64, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = student(ids, output_hidden_states=True), teacher(ids, output_hidden_states=True)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.pooler_output, b.pooler_output, rtol=0, atol=1e-6)


def test_bert_masked_lm_head_stays_tied(tmp_path):
    teacher = save_teacher("bert_mlm", BERT, tmp_path / "t")
    out = wh.select(teacher, "hidden_size=16,num_attention_heads=2").save(tmp_path / "s")
    model = load_strict(out, "AutoModelForMaskedLM")
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    assert model.cls.predictions.decoder.weight.shape == (64, 16)


VIT = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48, image_size=16,
           patch_size=4, num_labels=5)


def test_hf_vit_heads_classifier_and_depth(tmp_path):
    """transformers 5 saves ViT under its older names (encoder.layer.N.attention.attention.query);
    they are read under the model's names (layers.N.attention.q_proj), as from_pretrained does."""
    import transformers

    torch.manual_seed(0)
    teacher = transformers.ViTForImageClassification(transformers.ViTConfig(**VIT)).eval()
    teacher.save_pretrained(tmp_path / "t")
    result = wh.select(tmp_path / "t", "hidden_size=16,num_attention_heads=2,intermediate_size=24")
    s = state(load_strict(result.save(tmp_path / "s"), "AutoModelForImageClassification"))
    t = state(teacher)
    hidden, heads = torch.arange(16) * 2, head_rows([0, 2], 8)
    key = "vit.layers.1.attention.k_proj"
    assert torch.equal(s[f"{key}.weight"], t[f"{key}.weight"][heads][:, hidden])
    assert torch.equal(s["vit.embeddings.patch_embeddings.projection.weight"],
                       t["vit.embeddings.patch_embeddings.projection.weight"][hidden])
    assert torch.equal(s["classifier.weight"], t["classifier.weight"][:, hidden])  # 5 classes kept
    student = load_strict(wh.select(tmp_path / "t", "num_hidden_layers=2", layers="uniform").save(tmp_path / "d"),
                          "AutoModelForImageClassification")
    teacher.vit.layers = torch.nn.ModuleList([teacher.vit.layers[i] for i in layer_indices("uniform", 3, 2)])
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(student(pixels).logits, teacher(pixels).logits, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="num_labels is 3, the teacher's 5"):
        wh.select(tmp_path / "t", {"num_labels": 3, "id2label": {0: "a", 1: "b", 2: "c"}})


def test_older_bert_checkpoint_names_are_read(bert_dir, tmp_path):
    """LayerNorm 'gamma'/'beta' of older BERT checkpoints are renamed as from_pretrained renames them."""
    from safetensors.torch import load_file, save_file

    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((bert_dir / "config.json").read_text())
    tensors = load_file(bert_dir / "model.safetensors")
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in tensors.items()}
    assert any(k.endswith("gamma") for k in renamed)
    save_file(renamed, old / "model.safetensors", metadata={"format": "pt"})
    a = wh.select(old, "hidden_size=16,num_attention_heads=2").state_dict
    b = wh.select(bert_dir, "hidden_size=16,num_attention_heads=2").state_dict
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["random", "uniform"])
def test_bert_masked_lm_transform_uses_the_index_set_of_the_tied_embeddings(tmp_path, method):
    """The MLM transform's output feeds the decoder, whose weight is the word embeddings: its rows
    must be the teacher rows of the embedding columns the student kept (read from the weights, not
    the manifest). With `random`, another index set per axis name gave other rows."""
    teacher_dir = save_teacher("bert_mlm", BERT, tmp_path / "t")
    out = wh.select(teacher_dir, "hidden_size=16,num_attention_heads=2", method=method, seed=3).save(tmp_path / "s")
    t = state(load_strict(teacher_dir, "AutoModelForMaskedLM"))
    s = state(load_strict(out, "AutoModelForMaskedLM"))
    emb_t, emb_s = t["bert.embeddings.word_embeddings.weight"], s["bert.embeddings.word_embeddings.weight"]
    idx = [next(j for j in range(emb_t.shape[1]) if torch.equal(emb_t[:, j], emb_s[:, i])) for i in range(emb_s.shape[1])]
    w_t, w_s = t["cls.predictions.transform.dense.weight"], s["cls.predictions.transform.dense.weight"]
    assert torch.equal(w_s, w_t[idx][:, idx])
    for key in ("cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.weight"):
        assert torch.equal(s[key], t[key][idx])
