"""weightselect.io: atomic writes, safe loading, streamed reads, init files."""
import json
import os

import pytest
import torch

from weightselect import io


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "result.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_write(target) as fh:
            fh.write("{partial")
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"a": 1}
    # no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_safetensors_round_trip_and_streaming(tmp_path):
    sd = {"w": torch.arange(12.0).reshape(3, 4), "b": torch.tensor([1, 2, 3], dtype=torch.int64)}
    path = tmp_path / "m.safetensors"
    io.save_state_dict(sd, path)
    back = io.load_state_dict(path)
    assert set(back) == {"w", "b"}
    assert torch.equal(back["w"], sd["w"]) and torch.equal(back["b"], sd["b"])
    with io.open_tensor_source(path) as src:
        assert src.shape("w") == (3, 4)
        assert torch.equal(src.get("w")[1], torch.tensor([4.0, 5.0, 6.0, 7.0]))
        with pytest.raises(KeyError):
            src.get("missing")


def test_pth_loads_with_weights_only_and_unwraps(tmp_path):
    sd = {"layer.weight": torch.ones(2, 2)}
    path = tmp_path / "ckpt.pth"
    torch.save({"model": sd, "epoch": 3}, path)
    back = io.load_state_dict(path)
    assert list(back) == ["layer.weight"] and torch.equal(back["layer.weight"], torch.ones(2, 2))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _Evil()}, path)
    with pytest.raises(io.WeightsFileError, match="weights_only"):
        io.load_state_dict(path)


def test_corrupt_and_missing_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(io.WeightsFileError, match="not a valid safetensors"):
        io.load_state_dict(bad)
    with pytest.raises(io.WeightsFileError, match="not a valid safetensors"):
        io.open_tensor_source(bad)
    with pytest.raises(io.WeightsFileError, match="not found"):
        io.load_state_dict(tmp_path / "absent.safetensors")


def test_init_file_and_manifest_round_trip(tmp_path):
    sd = {"x": torch.randn(4)}
    manifest = {"format": "weightselect-init/1", "method": "uniform", "axes": {"embed": {"indices": [0, 2]}}}
    path = io.save_init(sd, manifest, tmp_path / "inits" / "ws.safetensors")
    assert io.manifest_path(path).name == "ws.json"
    back_sd, back_manifest = io.load_init(path)
    assert torch.equal(back_sd["x"], sd["x"]) and back_manifest == manifest
    with pytest.raises(ValueError, match="safetensors"):
        io.save_init(sd, manifest, tmp_path / "ws.pt")


def test_sha256_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert io.sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
