"""method="activation" for transformers (Llama with GQA): KV groups, heads and MLP units ranked by
mean |activation| on token ids, computed here with this test's own hooks; whole groups and heads."""
from __future__ import annotations

import pytest
import torch
from hf_helpers import LLAMA, build, head_rows, load_strict, state

import weightselect.hf as wh

HALF = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=1, intermediate_size=24)
P = "model.layers.{}.{}.weight"


def _ids(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 64, (6, 16), generator=torch.Generator().manual_seed(seed))


def _own_means(teacher, ids, names):
    out, handles, modules = {}, [], dict(teacher.named_modules())
    for name in names:
        def hook(m, args, name=name):
            out[name] = args[0].abs().double().reshape(-1, args[0].shape[-1]).mean(dim=0)
        handles.append(modules[name].register_forward_pre_hook(hook))
    with torch.no_grad():
        teacher(input_ids=ids)
    for h in handles:
        h.remove()
    return out


def _top(scores, k):
    return sorted(torch.argsort(scores, descending=True)[:k].tolist())


def test_llama_gqa_ranks_whole_kv_groups_and_mlp_units(llama_dir, tmp_path):
    ids = _ids()
    result = wh.select(llama_dir, HALF, method="activation", calibration=ids)
    teacher = build("llama", LLAMA)
    names = [f"model.layers.{i}.{m}" for i in range(4) for m in ("self_attn.o_proj", "mlp.down_proj")]
    means = _own_means(teacher, ids, names)
    axes = result.manifest["axes"]
    t, s = state(teacher), state(load_strict(result.save(tmp_path / "s")))
    hidden = torch.tensor(axes["hidden"]["indices"])
    for i in range(4):
        # o_proj reads kv_groups x q_per_kv x head_dim: a group's score is the mean over its heads
        group = _top(means[f"model.layers.{i}.self_attn.o_proj"].reshape(2, 4, 8).mean(dim=(1, 2)), 1)
        assert axes[f"model.layers.{i}.kv_groups"]["indices"] == group
        mlp = _top(means[f"model.layers.{i}.mlp.down_proj"], 24)
        assert axes[f"model.layers.{i}.mlp_hidden"]["indices"] == mlp
        q_rows, kv_rows = head_rows(range(4 * group[0], 4 * group[0] + 4), 8), head_rows(group, 8)
        assert torch.equal(s[P.format(i, "self_attn.q_proj")], t[P.format(i, "self_attn.q_proj")][q_rows][:, hidden])
        for name in ("k_proj", "v_proj"):
            assert torch.equal(s[P.format(i, f"self_attn.{name}")], t[P.format(i, f"self_attn.{name}")][kv_rows][:, hidden])
        assert torch.equal(s[P.format(i, "self_attn.o_proj")], t[P.format(i, "self_attn.o_proj")][hidden][:, q_rows])
        mlp = torch.tensor(mlp)
        assert torch.equal(s[P.format(i, "mlp.down_proj")], t[P.format(i, "mlp.down_proj")][hidden][:, mlp])
        assert torch.equal(s[P.format(i, "mlp.up_proj")], t[P.format(i, "mlp.up_proj")][mlp][:, hidden])
        assert torch.equal(s[P.format(i, "input_layernorm")], t[P.format(i, "input_layernorm")][hidden])
    assert torch.equal(s["model.embed_tokens.weight"], t["model.embed_tokens.weight"][:, hidden])
    cal = result.manifest["calibration"]
    assert cal["samples"] == 6 and cal["shape"] == [6, 16] and set(cal["scores"]) == set(axes)


def test_same_ids_give_identical_tensors_and_other_ids_are_recorded(llama_dir):
    a = wh.select(llama_dir, HALF, method="activation", calibration=_ids())
    b = wh.select(llama_dir, HALF, method="activation", calibration=_ids())
    assert a.manifest["axes"] == b.manifest["axes"]
    assert all(torch.equal(v, b.state_dict[k]) for k, v in a.state_dict.items())


def test_token_file_windows_are_seeded(llama_dir, tmp_path):
    from weightselect.hf.importance import token_calibration

    path = tmp_path / "ids.txt"
    path.write_text(" ".join(str(i % 64) for i in range(500)))
    one, two = token_calibration(path, 5, 16, seed=3), token_calibration(path, 5, 16, seed=3)
    assert torch.equal(one.data, two.data) and one.data.shape == (5, 16)
    assert one.description == {"source": str(path), "tokens": 500, "length": 16, "seed": 3}
    assert not torch.equal(one.data, token_calibration(path, 5, 16, seed=4).data)
    with pytest.raises(ValueError, match="fewer than one window"):
        token_calibration(path, 5, 1000, seed=0)


def test_activation_needs_token_ids(llama_dir):
    with pytest.raises(ValueError, match="pass calibration="):
        wh.select(llama_dir, HALF, method="activation")
    with pytest.raises(ValueError, match="not 'uniform'"):
        wh.select(llama_dir, HALF, calibration=_ids())


def test_cli_activation_from_a_token_file_with_a_budget(llama_dir, tmp_path, capsys):
    from weightselect.cli import main

    ids = tmp_path / "ids.txt"
    ids.write_text(" ".join(str((i * 7) % 64) for i in range(400)))
    out = tmp_path / "student"
    argv = ["select", "--teacher", str(llama_dir), "--target-params", "12000", "--method", "activation",
            "--calibration", str(ids), "--calibration-samples", "4", "--calibration-length", "16", "-o", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("budget: ")
    model = load_strict(out)
    import json

    manifest = json.loads((out / "weightselect.json").read_text())
    assert manifest["calibration"]["data"] == {"source": str(ids), "tokens": 400, "length": 16, "seed": 0}
    assert manifest["calibration"]["shape"] == [4, 16]
    assert sum(p.numel() for p in model.parameters()) == manifest["budget"]["params"] <= 12000
    assert main(argv[:3] + ["--student", "hidden_size=16", "--method", "activation", "-o", str(tmp_path / "x")]) == 2
    assert "add --calibration" in capsys.readouterr().err


def test_moe_experts_keep_uniform_selection_and_say_so(tmp_path):
    """The experts' fused tensors are no linear layers: their axes are listed as unscored and
    selected uniformly; the attention and hidden axes are ranked."""
    from hf_helpers import save_teacher
    from test_moe import MIXTRAL

    teacher = save_teacher("mixtral", MIXTRAL, tmp_path / "t")
    student = "hidden_size=16,num_attention_heads=2,num_key_value_heads=1,num_local_experts=2,intermediate_size=24"
    result = wh.select(teacher, student, method="activation", calibration=_ids())
    cal, axes = result.manifest["calibration"], result.manifest["axes"]
    assert "model.layers.0.experts" in cal["unscored"] and "hidden" in cal["scores"]
    assert axes["model.layers.0.experts"]["indices"] == [0, 2]  # uniform 4 -> 2
    load_strict(result.save(tmp_path / "s"))


def test_encoder_decoder_reads_the_ids_on_both_sides(tmp_path):
    from hf_helpers import save_teacher
    from test_t5 import T5

    teacher = save_teacher("t5", T5, tmp_path / "t")
    result = wh.select(teacher, "d_model=16,d_ff=24,num_heads=2", method="activation", calibration=_ids())
    assert result.manifest["calibration"]["unscored"] == []
    load_strict(result.save(tmp_path / "s"), auto="AutoModelForSeq2SeqLM")
