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
