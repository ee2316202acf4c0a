"""sha256 of teacher files at most once per file version: HF cache names, a (path, size, mtime) cache."""
import hashlib
import os

import pytest

from weightselect.io import hash_cache_dir, sha256_file


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("WEIGHTSELECT_CACHE_DIR", str(root))
    return root


def _entries(root):
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_hf_cache_blob_is_named_by_its_sha256_and_not_read(tmp_path, cache):
    data = os.urandom(4096)
    digest = hashlib.sha256(data).hexdigest()
    blobs = tmp_path / "models--org--net" / "blobs"
    snap = tmp_path / "models--org--net" / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    (blobs / digest).write_bytes(data)
    (snap / "model.safetensors").symlink_to(f"../../blobs/{digest}")
    assert sha256_file(snap / "model.safetensors") == digest
    assert _entries(cache) == []  # answered from the name: nothing hashed, nothing remembered


def test_digest_is_remembered_per_file_version(tmp_path, cache):
    path = tmp_path / "teacher.safetensors"
    path.write_bytes(b"a" * 10000)
    first = sha256_file(path)
    assert first == hashlib.sha256(b"a" * 10000).hexdigest()
    assert len(_entries(cache)) == 1 and hash_cache_dir() == cache
    # Same size, same inode, same mtime: the remembered digest is used (the file is not read again).
    stat = path.stat()
    with open(path, "r+b") as fh:
        fh.write(b"b")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sha256_file(path) == first
    assert sha256_file(path, cache=False) == hashlib.sha256(b"b" + b"a" * 9999).hexdigest()
    # A new modification time is a new version: hashed again.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert sha256_file(path) == hashlib.sha256(b"b" + b"a" * 9999).hexdigest()


def test_unwritable_cache_still_gives_the_digest(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    monkeypatch.setenv("WEIGHTSELECT_CACHE_DIR", str(blocker))
    path = tmp_path / "w.bin"
    path.write_bytes(b"xyz")
    assert sha256_file(path) == hashlib.sha256(b"xyz").hexdigest()


def test_missing_file_raises(tmp_path, cache):
    with pytest.raises(OSError):
        sha256_file(tmp_path / "absent.safetensors")


# ---------------------------------------------------------------------------------------------
# One pass: the tensors read in file order through one reused buffer, the file hashed on the way.
def _teacher_file(path, n_blocks=6, gap=False):
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    tensors = {f"blocks.{i}.w": torch.randn(8 + i, 5, generator=gen) for i in range(n_blocks)}
    tensors["blocks.0.b"] = torch.arange(7, dtype=torch.int64)
    tensors["bf"] = torch.randn(3, 3, generator=gen).to(torch.bfloat16)
    tensors["empty"] = torch.zeros(0, 4)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return tensors


@pytest.mark.parametrize("limit", [1 << 20, 64])  # one read for all; a read per tensor (tiny buffer)
def test_iter_tensors_reads_in_file_order_and_hashes_every_byte(tmp_path, cache, monkeypatch, limit):
    import torch

    from weightselect import io

    monkeypatch.setattr(io, "READ_BUFFER_BYTES", limit)
    path = tmp_path / "t.safetensors"
    tensors = _teacher_file(path)
    wanted = ["blocks.3.w", "bf", "blocks.0.b", "empty", "blocks.1.w"]
    with io.open_tensor_source(path) as src:
        header, _ = io._read_safetensors_header(open(path, "rb"), path)
        h = hashlib.sha256()
        got = [(k, t.clone()) for k, t in src.iter_tensors(wanted, h)]
    order = sorted(wanted, key=lambda k: (*header[k]["data_offsets"], k))
    assert [k for k, _ in got] == order  # file order, each key once
    for key, tensor in got:
        assert torch.equal(tensor, tensors[key]) and tensor.dtype == tensors[key].dtype
    assert h.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    with io.open_tensor_source(path) as src:  # without a hasher only the wanted bytes are read
        assert [k for k, _ in src.iter_tensors(["blocks.2.w"])] == ["blocks.2.w"]
        with pytest.raises(KeyError, match="nope"):
            list(src.iter_tensors(["nope"]))


@pytest.mark.parametrize("mapped", [True, False])  # mapped copy-on-write; a file system that cannot map
def test_a_pass_without_hashing_maps_the_groups_and_never_writes_the_file(tmp_path, monkeypatch, mapped):
    import mmap

    import torch

    from weightselect import io

    monkeypatch.setattr(io, "READ_BUFFER_BYTES", 64)  # a group per tensor or two
    maps, real = [], mmap.mmap

    def fake_mmap(*args, **kwargs):
        maps.append(kwargs.get("access"))
        if not mapped:
            raise OSError(19, "No such device")
        return real(*args, **kwargs)

    monkeypatch.setattr(mmap, "mmap", fake_mmap)
    path = tmp_path / "t.safetensors"
    tensors = _teacher_file(path)
    before = path.read_bytes()
    with io.open_tensor_source(path) as src:
        got = []
        for key, tensor in src.iter_tensors(list(tensors)):
            got.append((key, tensor.clone()))
            tensor.zero_() if tensor.numel() else None  # borrowed: a write stays in the process
    assert sorted(k for k, _ in got) == sorted(tensors)
    for key, tensor in got:
        assert torch.equal(tensor, tensors[key]) and tensor.dtype == tensors[key].dtype
    assert path.read_bytes() == before
    assert len(maps) > 2 and set(maps) == {mmap.ACCESS_COPY}


def test_a_file_truncated_after_it_was_opened_is_named(tmp_path):
    from weightselect import io

    path = tmp_path / "t.safetensors"
    _teacher_file(path)
    with io.open_tensor_source(path) as src:
        os.truncate(path, path.stat().st_size - 100)
        with pytest.raises(io.WeightsFileError, match="truncated"):
            list(src.iter_tensors(src.keys()))


def test_in_memory_sources_cannot_hash_while_read():
    import torch

    from weightselect.io import TensorSource

    src = TensorSource.from_state_dict({"a": torch.ones(2)})
    assert not src.streams
    assert [k for k, _ in src.iter_tensors(["a"])] == ["a"]
    with pytest.raises(ValueError, match="cannot be hashed"):
        list(src.iter_tensors(["a"], hashlib.sha256()))


def test_selection_hashes_the_teacher_in_its_read_pass_and_remembers_it(tmp_path, cache, monkeypatch):
    import timm
    from safetensors.torch import save_file

    from weightselect import io
    from weightselect.selection import select, sources

    teacher = tmp_path / "vit_s.safetensors"
    kwargs = dict(img_size=32, patch_size=8, num_classes=10)
    save_file(timm.create_model("vit_small_patch16_224", **kwargs).state_dict(), str(teacher))
    calls = []
    real = sources.sha256_file
    monkeypatch.setattr(sources, "sha256_file", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = select(teacher, {"name": "vit_tiny_patch16_224", "kwargs": kwargs})
    truth = hashlib.sha256(teacher.read_bytes()).hexdigest()
    assert first.manifest["teacher"]["sha256"] == truth
    assert io.cached_sha256(teacher) == truth and calls == []  # hashed in the pass, not in a second one
    again = select(teacher, {"name": "vit_tiny_patch16_224", "kwargs": kwargs})
    assert again.manifest["teacher"]["sha256"] == truth
    for key, value in first.state_dict.items():  # same bytes with or without the hash in the pass
        assert value.equal(again.state_dict[key])
    cheap = select(teacher, {"name": "vit_tiny_patch16_224", "kwargs": kwargs}, teacher_identity="header")
    n = int.from_bytes(teacher.read_bytes()[:8], "little")
    assert cheap.manifest["teacher"] == {
        "source": str(teacher), "identity": "header", "size": teacher.stat().st_size,
        "header_sha256": hashlib.sha256(teacher.read_bytes()[: 8 + n]).hexdigest(),
    }
    with pytest.raises(ValueError, match="unknown teacher identity 'md5'; choose one of sha256, header"):
        select(teacher, {"name": "vit_tiny_patch16_224", "kwargs": kwargs}, teacher_identity="md5")


def test_header_identity_needs_safetensors(tmp_path):
    from weightselect.io import WeightsFileError, header_identity

    path = tmp_path / "w.pth"
    path.write_bytes(b"\x80\x02not safetensors")
    with pytest.raises(WeightsFileError, match="needs a safetensors file"):
        header_identity(path)
    truncated = tmp_path / "w.safetensors"
    truncated.write_bytes((1000).to_bytes(8, "little") + b'{"x":')  # says 1000 header bytes, has 5
    with pytest.raises(WeightsFileError, match="not a valid safetensors file .bad header length."):
        header_identity(truncated)
