"""PyTorch-format teachers: shards ``pytorch_model-0000x-of-0000y.bin`` with
``pytorch_model.bin.index.json`` (the layout transformers 4 wrote with safe_serialization=False;
transformers 5 writes safetensors only, so the files are written here as it wrote them: torch.save
of each shard's state dict and the index), read with torch.load(weights_only=True) only."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from hf_helpers import LLAMA, build, fake_hub_cache, load_strict

import weightselect.hf as wh
from weightselect.io import WeightsFileError

HALF = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=1, intermediate_size=24)


def _write_bin_shards(state: dict, folder, n: int, config_from) -> None:
    """``state`` in ``n`` shards named and indexed as transformers 4's save_pretrained named them."""
    folder.mkdir()
    shutil.copy(config_from / "config.json", folder / "config.json")
    keys = list(state)
    weight_map, total = {}, 0
    for i in range(n):
        name = f"pytorch_model-{i + 1:05d}-of-{n:05d}.bin"
        part = {k: state[k].contiguous() for k in keys[i::n]}
        torch.save(part, folder / name)
        weight_map.update({k: name for k in part})
        total += sum(v.numel() * v.element_size() for v in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2, sort_keys=True))


def _teacher_state() -> dict:
    state = build("llama", LLAMA).state_dict()
    del state["lm_head.weight"]  # tied to the embeddings: save_pretrained leaves it out
    return state


def test_sharded_bin_teacher_gives_the_bytes_of_the_safetensors_one(llama_dir, tmp_path):
    _write_bin_shards(_teacher_state(), tmp_path / "bin", 3, llama_dir)
    a = wh.select(tmp_path / "bin", HALF, method="random", seed=1)
    b = wh.select(llama_dir, HALF, method="random", seed=1)
    out_a, out_b = a.save(tmp_path / "a"), b.save(tmp_path / "b")
    assert (out_a / "model.safetensors").read_bytes() == (out_b / "model.safetensors").read_bytes()
    assert sorted(a.manifest["teacher"]["files"]) == [f"pytorch_model-0000{i}-of-00003.bin" for i in (1, 2, 3)]
    load_strict(out_a)


def test_a_bin_shard_that_is_not_only_tensors_is_refused_in_one_line(llama_dir, tmp_path):
    state = _teacher_state()
    _write_bin_shards(state, tmp_path / "extra", 2, llama_dir)
    shard = tmp_path / "extra" / "pytorch_model-00002-of-00002.bin"
    torch.save({**torch.load(shard, weights_only=True), "step": 3}, shard)
    with pytest.raises(WeightsFileError, match=r"pytorch_model-00002-of-00002.bin: refused, it holds 'step' \(int\), not only tensors") as info:
        wh.select(tmp_path / "extra", HALF)
    assert "\n" not in str(info.value)


class NotATensor:  # an arbitrary pickled object: weights_only=True must not construct it
    def __init__(self):
        self.value = 1


def test_a_bin_checkpoint_with_a_pickled_object_is_never_unpickled(llama_dir, tmp_path):
    folder = tmp_path / "single"
    folder.mkdir()
    shutil.copy(llama_dir / "config.json", folder / "config.json")
    torch.save({**_teacher_state(), "extra": NotATensor()}, folder / "pytorch_model.bin")
    with pytest.raises(WeightsFileError, match=r"pytorch_model.bin: refused, .*weights_only=True\) \(it holds .*NotATensor, not only tensors\)") as info:
        wh.select(folder, HALF)
    assert "\n" not in str(info.value)


def test_a_single_bin_teacher_holding_a_number_is_refused(llama_dir, tmp_path):
    """It was read as a checkpoint, the non-tensor entries dropped without a word."""
    folder = tmp_path / "single"
    folder.mkdir()
    shutil.copy(llama_dir / "config.json", folder / "config.json")
    torch.save({**_teacher_state(), "epoch": 7}, folder / "pytorch_model.bin")
    with pytest.raises(WeightsFileError, match=r"holds 'epoch' \(int\), not only tensors"):
        wh.select(folder, HALF)


def test_a_bin_only_hub_model_is_fetched_as_bin_files(llama_dir, tmp_path, monkeypatch):
    """The first snapshot asks for safetensors; a model without them is asked again for its .bin files."""
    import huggingface_hub
    from huggingface_hub import constants

    _write_bin_shards(_teacher_state(), tmp_path / "bin", 2, llama_dir)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    fake_hub_cache(tmp_path / "hub", "old-org/bin-llama", tmp_path / "bin")
    calls, real = [], huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kw: calls.append(kw) or real(**kw))
    result = wh.select("old-org/bin-llama", HALF)
    assert "*.safetensors" in calls[0]["allow_patterns"] and len(calls) == 2
    assert set(calls[1]["allow_patterns"]) == {"pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"}
    assert len(result.manifest["teacher"]["files"]) == 2
    calls.clear()
    wh.select(llama_dir, HALF)  # a local folder: no hub call
    assert calls == []
