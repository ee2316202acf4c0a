"""Refusals with the fix named, hub ids through the HF cache, the CLI, and the timm path's imports."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from hf_helpers import GPT2, LLAMA, fake_hub_cache, load_strict, save_teacher

import weightselect.hf as wh
from weightselect.cli import main
from weightselect.io import WeightsFileError


@pytest.mark.parametrize("student,message", [
    (dict(num_key_value_heads=4), r"more KV groups \(num_key_value_heads\) than the teacher \(4 > 2\)"),
    (dict(num_attention_heads=3, num_key_value_heads=2), "3 attention heads do not divide into its 2 KV groups"),
    (dict(num_attention_heads=8, num_key_value_heads=1), "8 query heads per KV group, the teacher 4"),
    (dict(hidden_size=64), r"more hidden width .* \(64 > 32\)"),
    (dict(intermediate_size=96), r"more MLP width"),
    (dict(num_hidden_layers=5), "5 layers in 'model.layers' but the teacher only 4"),
    (dict(vocab_size=32), "vocab_size is 32 but the teacher's is 64: .*never selects the vocabulary"),
    (dict(eos_token_id=7), "eos_token_id is 7 but the teacher's is 2"),
    (dict(rope_parameters={"rope_theta": 500000.0, "rope_type": "default"}), "rotary settings differ .*rope_theta: 10000.0 -> 500000.0.*allow_rope_change"),
    (dict(tie_word_embeddings=False), "tie_word_embeddings differs"),
    (dict(hiden_size=16), "'hiden_size' is not a field .*did you mean hidden_size"),
    (dict(num_hidden_layers=0), r"student num_hidden_layers=0: num_hidden_layers is a size; .*at least 1 \(the teacher's is 4\)"),
    (dict(num_hidden_layers=-1), r"student num_hidden_layers=-1: .*at least 1"),
    (dict(hidden_size="sixty"), r"student hidden_size='sixty': hidden_size is a size; give a whole number"),
    (dict(intermediate_size=40.5), r"student intermediate_size=40\.5: .*whole number"),
])
def test_llama_refusals_name_the_fix(llama_dir, student, message):
    with pytest.raises(ValueError, match=message):
        wh.select(llama_dir, student)


def test_rope_change_allowed_with_the_option(llama_dir, tmp_path):
    rope = {"rope_theta": 500000.0, "rope_type": "default"}
    out = wh.select(llama_dir, dict(rope_parameters=rope), allow_rope_change=True).save(tmp_path / "s")
    assert load_strict(out).config.rope_parameters["rope_theta"] == 500000.0


def test_other_refusals(llama_dir, tmp_path):
    import transformers

    bloom = tmp_path / "bloom"
    transformers.BloomForCausalLM(transformers.BloomConfig(vocab_size=64, hidden_size=16, n_layer=1, n_head=2)
                                  ).save_pretrained(bloom)
    supported = ("llama, mistral, qwen2, qwen3, phi3, mixtral, qwen2_moe, qwen3_moe, gemma, gemma2, gemma3_text, "
                 "gpt_neox, opt, t5, mt5, gpt2, bert, roberta, xlm-roberta, distilbert, vit")
    with pytest.raises(ValueError, match=f"unsupported transformers architecture 'bloom'; weight selection supports "
                                         f"the model types {supported}$"):
        wh.select(bloom, "hidden_size=8")
    with pytest.raises(ValueError, match="choose one of uniform, consecutive, random"):
        wh.select(llama_dir, "hidden_size=16", method="l1")
    gpt2 = save_teacher("gpt2", GPT2, tmp_path / "gpt2")
    with pytest.raises(ValueError, match="n_positions is 16, the teacher's 32"):
        wh.select(gpt2, "n_positions=16")
    with pytest.raises(ValueError, match="student config is a gpt2 model but the teacher a llama model"):
        wh.select(llama_dir, gpt2 / "config.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((llama_dir / "config.json").read_text())
    with pytest.raises(WeightsFileError, match="has no weights: expected model.safetensors"):
        wh.select(empty, "hidden_size=16")


def test_student_config_folder_with_another_tokenizer_is_refused(llama_dir, tmp_path):
    student = tmp_path / "student"
    student.mkdir()
    cfg = json.loads((llama_dir / "config.json").read_text())
    (student / "config.json").write_text(json.dumps({**cfg, "hidden_size": 16}))
    (llama_dir / "vocab.json").write_text('{"a": 0}')
    try:
        shutil.copy(llama_dir / "vocab.json", student / "vocab.json")
        assert wh.select(llama_dir, student).config.hidden_size == 16  # same tokenizer: fine
        (student / "vocab.json").write_text('{"b": 0}')
        with pytest.raises(ValueError, match="student's vocab.json differs from the teacher's"):
            wh.select(llama_dir, student)
    finally:
        (llama_dir / "vocab.json").unlink()


def test_hub_id_through_the_cache_offline(llama_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    fake_hub_cache(tmp_path / "hub", "tiny-org/tiny-llama", llama_dir)
    assert wh.is_hf_teacher("tiny-org/tiny-llama") and not wh.is_hf_teacher("vit_small_patch16_224.augreg_in21k")
    result = wh.select("tiny-org/tiny-llama", "hidden_size=16")
    assert result.manifest["teacher"]["hf_hub_id"] == "tiny-org/tiny-llama"
    assert result.manifest["teacher"]["sha256"] == wh.select(llama_dir, "hidden_size=16").manifest["teacher"]["sha256"]
    with pytest.raises(WeightsFileError, match="'tiny-org/absent' is unavailable: HF_HUB_OFFLINE is set"):
        wh.select("tiny-org/absent", "hidden_size=16")


def test_hub_id_without_network_reads_the_cache_at_once(llama_dir, tmp_path, monkeypatch, no_network):
    """Online mode, but the hub's host does not resolve: snapshot_download reads the cache only."""
    import huggingface_hub
    from huggingface_hub import constants

    calls = []
    real = huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: calls.append(kw) or real(**kw))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    fake_hub_cache(tmp_path / "hub", "tiny-org/tiny-llama", llama_dir)
    assert wh.select("tiny-org/tiny-llama", "hidden_size=16").manifest["teacher"]["hf_hub_id"] == "tiny-org/tiny-llama"
    assert calls[-1]["local_files_only"] is True
    with pytest.raises(WeightsFileError, match="cannot be reached .its host name does not resolve."):
        wh.select("tiny-org/absent", "hidden_size=16")


def test_cli_writes_a_loadable_folder_and_refuses_clearly(llama_dir, tmp_path, capsys):
    out = tmp_path / "student"
    args = ["select", "--teacher", str(llama_dir), "--student", "hidden_size=16,num_hidden_layers=2",
            "--layers", "uniform", "-o", str(out)]
    assert main(args) == 0
    model = load_strict(out)
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (16, 2)
    assert json.loads((out / "weightselect.json").read_text())["layer_map"]["model.layers.1"] == "model.layers.2"
    assert main(args) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert main(["select", "--teacher", str(llama_dir), "--student", "head_dim=4", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--select-head-dim" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["select", "--teacher", str(llama_dir), "--student", "hidden_size=16,head_dim=4",
                 "--select-head-dim", "-o", str(tmp_path / "hd")]) == 0


def test_timm_path_never_imports_transformers():
    code = (
        "import sys, weightselect, weightselect.selection, weightselect.hf\n"
        "from weightselect.cli import build_parser\n"
        "build_parser().parse_args(['select', '--teacher', 'a.safetensors', '--student', 'vit_tiny_patch16_224', '-o', 'x.safetensors'])\n"
        "assert not weightselect.hf.is_hf_teacher('vit_small_patch16_224.augreg_in21k')\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_teacher_kinds_recognised_by_the_cli(llama_dir, tmp_path):
    assert wh.is_hf_teacher(llama_dir) and wh.is_hf_teacher("meta-llama/Llama-3.2-1B@main")
    for timm_teacher in ("vit_small_patch16_224.augreg_in21k", "teachers/vit_small.safetensors", "runs/x/model.pth",
                         "hf-hub:timm/vit_small_patch16_224", tmp_path):
        assert not wh.is_hf_teacher(timm_teacher), timm_teacher


def test_pytorch_bin_teacher_is_read_with_weights_only(llama_dir, tmp_path):
    import torch
    from hf_helpers import build

    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(llama_dir / "config.json", folder / "config.json")
    torch.save(build("llama", LLAMA).state_dict(), folder / "pytorch_model.bin")
    a = wh.select(folder, "hidden_size=16").state_dict
    b = wh.select(llama_dir, "hidden_size=16").state_dict
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_options_of_timm_teachers_are_refused_for_a_transformers_teacher(llama_dir, tmp_path, capsys):
    """--skip-head-keys was silently ignored for a transformers teacher."""
    for extra in (["--skip-head-keys"], ["--teacher-id", "header"]):
        rc = main(["select", "--teacher", str(llama_dir), "--student", "hidden_size=16", "-o", str(tmp_path / "s"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and f"{extra[0]} apply to timm teachers" in err[0]
    assert not (tmp_path / "s").exists()


def test_a_folder_without_config_json_is_named_as_such(tmp_path, capsys):
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    rc = main(["select", "--teacher", str(folder), "--student", "vit_tiny_patch16_224", "-o", str(tmp_path / "i.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"--teacher {folder} is a folder without config.json" in err[0]


def test_a_hidden_size_that_the_heads_do_not_divide_is_named_as_such(tmp_path):
    """It was reported as "head dimension 7" (30 // 4): the cause is the head count."""
    gpt2 = save_teacher("gpt2", GPT2, tmp_path / "gpt2")
    with pytest.raises(ValueError, match=r"hidden_size 30 is not a multiple of its num_attention_heads 4: .*hidden_size = 4 x 8"):
        wh.select(gpt2, "n_embd=30")
