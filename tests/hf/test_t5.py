"""T5: an encoder and a decoder stack, heads of d_kv apart from d_model, a gated MLP, and the relative
position bias of block 0 that every layer of its stack uses (one heads axis for the whole model; the
bias always from the teacher's block 0)."""
from __future__ import annotations

import pytest
import torch
from hf_helpers import build, head_rows, load_strict, save_teacher, state, zero_outside

import weightselect.hf as wh
from weightselect.selection.layers import layer_indices

T5 = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=4, num_decoder_layers=4, num_heads=4,
          feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0,
          eos_token_id=1)
STACKS = ("encoder", "decoder")


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    return save_teacher("t5", T5, tmp_path_factory.mktemp("t5") / "teacher")


def _logits(model):
    g = torch.Generator().manual_seed(0)
    ids, dec = torch.randint(2, 64, (2, 9), generator=g), torch.randint(2, 64, (2, 5), generator=g)
    with torch.no_grad():
        return model(input_ids=ids, decoder_input_ids=dec, use_cache=False).logits


def _cut(teacher, chosen):
    """The teacher through the chosen blocks of each stack, block 0's position bias kept first."""
    for stack in STACKS:
        blocks = getattr(teacher, stack).block
        bias = blocks[0].layer[0].SelfAttention.relative_attention_bias
        kept = torch.nn.ModuleList([blocks[i] for i in chosen])
        first = kept[0].layer[0].SelfAttention
        first.has_relative_attention_bias, first.relative_attention_bias = True, bias
        for new, block in enumerate(kept):
            for module in block.modules():
                if hasattr(module, "layer_idx"):
                    module.layer_idx = new
        getattr(teacher, stack).block = kept


@pytest.mark.parametrize("layers", ["uniform", "last"])
def test_t5_depth_only_student_is_the_teacher_through_the_chosen_blocks(t5_dir, tmp_path, layers):
    result = wh.select(t5_dir, dict(num_layers=2, num_decoder_layers=2), layers=layers)
    student = load_strict(result.save(tmp_path / "s"), "AutoModelForSeq2SeqLM")
    teacher = build("t5", T5)
    chosen = layer_indices(layers, 4, 2)
    _cut(teacher, chosen)
    torch.testing.assert_close(_logits(student), _logits(teacher), rtol=0, atol=1e-5)
    assert result.manifest["layer_map"]["decoder.block.1"] == f"decoder.block.{chosen[1]}"
    out = student.generate(torch.tensor([[5, 6, 7, 1]]), max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 1 and out.shape[1] <= 4


def test_t5_heads_and_the_position_bias_columns(t5_dir, tmp_path):
    result = wh.select(t5_dir, dict(d_model=16, num_heads=2, d_ff=24))
    s, t = state(load_strict(result.save(tmp_path / "s"), "AutoModelForSeq2SeqLM")), state(build("t5", T5))
    hidden, heads, mlp = torch.arange(16) * 2, head_rows([0, 2], 8), torch.arange(24) * 2
    for stack in STACKS:
        key = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        assert torch.equal(s[key], t[key][:, [0, 2]])  # the columns of the heads every layer keeps
        for i in range(4):
            att = f"{stack}.block.{i}.layer.0.SelfAttention"
            assert torch.equal(s[f"{att}.q.weight"], t[f"{att}.q.weight"][heads][:, hidden])
            assert torch.equal(s[f"{att}.o.weight"], t[f"{att}.o.weight"][hidden][:, heads])
    key = "decoder.block.3.layer.1.EncDecAttention.k.weight"
    assert torch.equal(s[key], t[key][heads][:, hidden])
    key = "decoder.block.3.layer.2.DenseReluDense.wi_1.weight"
    assert torch.equal(s[key], t[key][mlp][:, hidden])
    assert result.manifest["axes"]["heads"]["indices"] == [0, 2]


@pytest.mark.parametrize("student", ["heads", "mlp"])
def test_t5_student_computes_the_masked_teacher(t5_dir, tmp_path, student):
    """Half the heads (0 and 2; d_model and d_kv kept) or half the MLP: the masked teacher's logits."""
    model = load_strict(wh.select(t5_dir, dict(num_heads=2) if student == "heads" else dict(d_ff=24))
                        .save(tmp_path / "s"), "AutoModelForSeq2SeqLM")
    keep, heads, mlp = {}, head_rows([0, 2], 8), torch.arange(24) * 2
    for stack in STACKS:
        for i in range(4):
            b = f"{stack}.block.{i}.layer"
            if student == "heads":
                for att in ([f"{b}.0.SelfAttention"] + ([f"{b}.1.EncDecAttention"] if stack == "decoder" else [])):
                    keep.update({f"{att}.{n}.weight": {0: heads} for n in "qkv"})
                    keep[f"{att}.o.weight"] = {1: heads}
            else:
                ff = f"{b}.{2 if stack == 'decoder' else 1}.DenseReluDense"
                keep.update({f"{ff}.{n}.weight": {0: mlp} for n in ("wi_0", "wi_1")})
                keep[f"{ff}.wo.weight"] = {1: mlp}
    teacher = build("t5", T5)
    masked = zero_outside(teacher, keep)
    assert not torch.allclose(_logits(masked), _logits(teacher), atol=1e-4)
    torch.testing.assert_close(_logits(model), _logits(masked), rtol=1e-5, atol=1e-5)
