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
    assert torch.equal(back_sd["x"], sd["x"])
    assert back_manifest == {**manifest, "weights_sha256": io.sha256_file(path)}
    assert sorted(p.name for p in path.parent.iterdir()) == ["ws.json", "ws.safetensors"]  # no temp files
    with pytest.raises(ValueError, match="safetensors"):
        io.save_init(sd, manifest, tmp_path / "ws.pt")


def test_sha256_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert io.sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# -- an init file and its manifest are one unit ------------------------------------------------------
def _pair(tmp_path, value=1.0):
    path = tmp_path / "ws.safetensors"
    io.save_init({"x": torch.full((4,), value)}, {"method": "uniform"}, path)
    return path


def test_orphan_weights_or_manifest_is_named_with_the_fix(tmp_path):
    path = _pair(tmp_path)
    mpath = io.manifest_path(path)
    mpath.rename(tmp_path / "aside.json")
    with pytest.raises(io.InitFileError, match=r"ws\.safetensors has no manifest ws\.json .*--force"):
        io.load_init(path)
    (tmp_path / "aside.json").rename(mpath)
    path.unlink()
    with pytest.raises(io.InitFileError, match=r"manifest .*ws\.json has no init file ws\.safetensors.*--force"):
        io.load_init(path)
    mpath.unlink()
    with pytest.raises(FileNotFoundError, match="init file not found"):
        io.load_init(path)


def test_manifest_beside_other_weights_is_detected(tmp_path):
    path = _pair(tmp_path, 1.0)
    old_manifest = io.manifest_path(path).read_text()
    _pair(tmp_path, 2.0)  # a new pair; then the old manifest comes back (a crash between the renames)
    io.manifest_path(path).write_text(old_manifest)
    with pytest.raises(io.InitFileError, match="describes other weights .*sha256 differs"):
        io.load_init(path)


def test_init_without_weights_sha256_still_loads(tmp_path):
    path = _pair(tmp_path)
    mpath = io.manifest_path(path)
    manifest = json.loads(mpath.read_text())
    del manifest["weights_sha256"]  # an init file written before the key existed
    mpath.write_text(json.dumps(manifest))
    assert io.load_init(path)[1] == {"method": "uniform"}


_real_open = open


@pytest.mark.parametrize("step", ["weights", "manifest", "fsync", "publish_weights", "publish_manifest"])
def test_save_init_on_a_full_disk_publishes_nothing(tmp_path, monkeypatch, step):
    """An injected ENOSPC at each write step: the old pair stays whole and no temp file is left."""
    import builtins
    import errno

    path = _pair(tmp_path, 1.0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    full = OSError(errno.ENOSPC, "No space left on device")

    class FullFile:
        def __init__(self, fh):
            self._fh = fh

        def write(self, data):
            raise full

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def fake_open(file, mode="r", *args, **kwargs):
        fh = _real_open(file, mode, *args, **kwargs)
        name = os.path.basename(str(file))
        target = {"weights": ".ws.safetensors.", "manifest": ".ws.json."}.get(step)
        if target and name.startswith(target) and "w" in mode:
            return FullFile(fh)
        return fh

    real_replace = os.replace

    def fake_replace(src, dst):
        if (step == "publish_weights" and str(dst).endswith(".safetensors")) or (
            step == "publish_manifest" and str(dst).endswith(".json")
        ):
            raise full
        return real_replace(src, dst)

    def fake_fsync(fd):
        raise full

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io.os, "replace", fake_replace)
    if step == "fsync":
        monkeypatch.setattr(io.os, "fsync", fake_fsync)
    with pytest.raises(OSError) as info:
        io.save_init({"x": torch.full((4,), 2.0)}, {"method": "uniform"}, path)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    if step in ("weights", "manifest", "fsync"):
        assert info.value.filename in (str(path), str(io.manifest_path(path)))  # names the file, not the temp
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    if step == "publish_manifest":
        # the weights were renamed, the manifest not: the old manifest is refused as another pair's
        assert set(after) == set(before)
        with pytest.raises(io.InitFileError, match="describes other weights"):
            io.load_init(path)
    else:
        assert after == before
        assert torch.equal(io.load_init(path)[0]["x"], torch.ones(4))


def test_atomic_write_names_the_target_when_the_disk_is_full(tmp_path, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OSError) as info:
        io.write_json(tmp_path / "final.json", {"a": 1})
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "final.json")
    assert list(tmp_path.iterdir()) == []


def test_temp_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    """A SIGKILL leaves the temp file of atomic_write; the next write of that file removes it."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "final.json"
    code = (
        "import os, signal, sys\n"
        "from weightselect import io\n"
        "with io.atomic_write(sys.argv[1]) as fh:\n"
        "    fh.write('{partial'); fh.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".final.json.{io._host()}-")
    # a live writer's temp file (ours) and another host's are kept
    mine = tmp_path / f".final.json.{io._host()}-{os.getpid()}.abc.tmp"
    other = tmp_path / ".final.json.otherhost-1.abc.tmp"
    mine.write_text("x")
    other.write_text("x")
    io.write_json(target, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["final.json", mine.name, other.name])


@pytest.mark.parametrize("free_blocks, raised", [(0, OSError), (10_000, RuntimeError)])
def test_a_serializer_error_on_a_full_disk_becomes_enospc_naming_the_file(tmp_path, monkeypatch, free_blocks, raised):
    """torch.save into a file on a full disk raises RuntimeError ('unexpected pos ...'), not OSError."""
    import errno
    from types import SimpleNamespace

    monkeypatch.setattr(io.os, "statvfs", lambda p: SimpleNamespace(f_bavail=free_blocks))
    with pytest.raises(raised) as info:
        with io.atomic_write(tmp_path / "checkpoint.pt", "wb"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    if raised is OSError:
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "checkpoint.pt")
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_mode_a_plain_open_gives(tmp_path):
    """Atomic writes (results, init files, manifests) are 0666 less the umask, like open(.., "w"),
    not mkstemp's 0600 (which would hide results from the rest of a project's group)."""
    import stat

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    io.write_text(tmp_path / "a.txt", "x")
    io.save_init({"w": torch.ones(2)}, {"method": "uniform"}, tmp_path / "i.safetensors")
    for name in ("a.txt", "i.safetensors", "i.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == stat.S_IMODE(plain.stat().st_mode), name


def _safetensors_bytes(tensors, metadata=None):
    """What safetensors itself writes, with the header's metadata put in sorted key order."""
    from safetensors.torch import save

    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    if metadata:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return data[:8] + raw + b" " * (n - len(raw)) + data[8 + n:]


@pytest.mark.parametrize("metadata", [None, {"producer": "weightselect", "format": "pt", "b": "ü"}])
def test_streamed_safetensors_are_the_bytes_safetensors_writes(tmp_path, metadata):
    """Every dtype safetensors stores, names out of order, empty, 0-d and non-contiguous tensors."""
    import hashlib

    gen = torch.Generator().manual_seed(0)
    dtypes = [torch.float64, torch.int64, torch.float32, torch.int32, torch.float16, torch.bfloat16, torch.int16,
              torch.uint8, torch.int8, torch.bool, torch.float8_e4m3fn, torch.float8_e5m2, torch.uint16,
              torch.uint32, torch.uint64]
    tensors = {f"t{(7 * i) % len(dtypes)}.w": (torch.randn(3, 5, generator=gen) * 50).to(dt) for i, dt in enumerate(dtypes)}
    tensors.update({"empty": torch.zeros(0, 4), "scalar": torch.tensor(3.5), "ß": torch.ones(2),
                    "strided": torch.randn(6, 4, generator=gen).t()})
    path = tmp_path / "x.safetensors"
    sha = io.save_state_dict(tensors, path, metadata=metadata)
    expected = _safetensors_bytes(tensors, metadata)
    assert path.read_bytes() == expected
    assert sha == hashlib.sha256(expected).hexdigest()


def test_save_init_records_the_sha256_of_the_bytes_written(tmp_path):
    import hashlib

    path = io.save_init({"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(2, dtype=torch.bfloat16)},
                        {"method": "uniform"}, tmp_path / "i.safetensors")
    data = path.read_bytes()
    assert data == _safetensors_bytes({"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(2, dtype=torch.bfloat16)},
                                      {"format": "pt", "producer": "weightselect"})
    assert json.loads(io.manifest_path(path).read_text())["weights_sha256"] == hashlib.sha256(data).hexdigest()


def test_a_dtype_safetensors_cannot_store_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="tensor 'c' has dtype torch.complex64, which safetensors cannot store"):
        io.save_state_dict({"c": torch.zeros(2, dtype=torch.complex64)}, tmp_path / "c.safetensors")
    assert not (tmp_path / "c.safetensors").exists()
