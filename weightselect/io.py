"""Files: atomic writes, safe weight loading, streamed safetensors reads, manifests.

Every file the project writes goes through :func:`atomic_write` (temp file
``.{name}.{host}-{pid}.*.tmp`` in the same folder + ``os.replace``), so an interrupted job never
leaves a half-written result, and the next write of the same file removes the temp files of killed
writers. An init file and its manifest are written as one unit (:func:`save_init`). Weights are
read only as safetensors or with ``torch.load(weights_only=True)``. Errors name the file: a full
disk is ``OSError`` ENOSPC with the target's name, bad weights are :class:`WeightsFileError`.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Tuple

if TYPE_CHECKING:
    import torch

__all__ = [
    "WeightsFileError",
    "InitFileError",
    "torch_load_reason",
    "atomic_write",
    "write_json",
    "read_json",
    "write_text",
    "sha256_file",
    "cached_sha256",
    "hub_resolves",
    "hub_cache_only",
    "remember_sha256",
    "header_identity",
    "hash_cache_dir",
    "save_state_dict",
    "safetensors_layout",
    "write_safetensors",
    "load_state_dict",
    "TensorSource",
    "open_tensor_source",
    "manifest_path",
    "save_init",
    "load_init",
    "read_init_file",
    "check_init_pair",
    "LockedError",
    "DuplicateKeyError",
    "read_yaml",
    "exclusive_lock",
]


class WeightsFileError(ValueError):
    """A weights file is missing, of an unknown format, or corrupt."""


class InitFileError(WeightsFileError):
    """An init file without its manifest (or the reverse), or a manifest describing other weights."""


class LockedError(RuntimeError):
    """Another live process holds the lock of a run folder or output file."""


def _lock_file(target: Path) -> Path:
    return target / ".lock" if target.is_dir() else target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Hold an exclusive lock on ``target`` (an existing run folder, or an output file) meanwhile.

    The lock is ``target/.lock`` for a folder, ``.{name}.lock`` beside a file; it is an advisory
    ``flock``, so the kernel releases it when its holder exits in any way (a crash or SIGKILL leaves
    no stale lock: the next writer simply takes it); the holder deletes the file when it is done.
    The file records the holder (pid, host, time,
    command) for the message a second writer gets.

    Raises LockedError at once, naming the holder, when another process holds it.
    """
    import socket
    import sys
    import time

    target = Path(target)
    path = _lock_file(target)  # a folder must exist already to be locked from the inside
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _take_lock(path, target, what)
    try:
        info = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')} ({' '.join(sys.argv)[:200]})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode("utf-8", "backslashreplace"), 0)  # argv may hold undecodable bytes
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # still held: a waiter that opened this file sees it gone and takes a new one
        os.close(fd)  # releases the flock


def _take_lock(path: Path, target: Path, what: str) -> int:
    """An open descriptor of ``path`` holding its flock; LockedError naming the holder if taken.

    A holder deletes the file before it releases the lock, so a lock taken on a file no longer at
    ``path`` (same inode check) is dropped and taken again on the new file.
    """
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockedError(
                f"{target} is being written by {holder}; wait for that {what} to end or stop it"
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _host() -> str:
    """This machine's name without dots (cluster nodes are often ``node1.cluster.org``)."""
    import socket

    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())


def _tmp_prefix(path: Path) -> str:
    """``.{name}.{host}-{pid}.``: a temp file names its writer, so a dead writer's leftovers can go."""
    return f".{path.name}.{_host()}-{os.getpid()}."


def _remove_stale_tmps(path: Path) -> None:
    """Delete ``.{name}.{host}-{pid}.*.tmp`` beside ``path`` left by a killed process of this host.

    A temp file of a live process (or of another host, whose processes this one cannot see) is
    kept; a SIGKILL leaves no chance to clean up, so the next write of the same file does it.
    """
    pattern = re.compile(re.escape(f".{path.name}.{_host()}-") + r"(\d+)\.[^/]*\.tmp$")
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return
    for sibling in siblings:
        m = pattern.match(sibling.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                sibling.unlink()
        except OSError:
            pass  # alive under another user


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once, at import (setting and restoring it is not thread-safe)


def _atomic_tmp_path(path: Path) -> Path:
    """A new empty temp file beside ``path``, with the mode a plain ``open(path, "w")`` would give
    (0666 less the umask: mkstemp's own 0600 would make results unreadable to a project's group)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmps(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
    finally:
        os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temp file beside ``path``; on success rename it over ``path``.

    On any exception (a full disk included: ``OSError`` ENOSPC) the temp file is removed and
    ``path`` is left untouched. Temp files of killed writers of ``path`` are removed first.
    """
    path = Path(path)
    tmp = _atomic_tmp_path(path)
    try:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # A serializer that swallows the errno (torch.save: "unexpected pos ...") on a full disk
        # still gets ENOSPC naming the file: the disk is looked at before the temp file goes.
        full = isinstance(exc, Exception) and not isinstance(exc, OSError) and _disk_full(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # name the file (ENOSPC)
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise


def _disk_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has (almost) no block left for this user."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail < 4


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")


def _json_default(obj: Any) -> Any:
    torch = sys.modules.get("torch")  # a tensor exists only where torch was imported
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class DuplicateKeyError(ValueError):
    """A YAML mapping gives one key twice (YAML's loaders silently keep the last)."""


def _strict_yaml_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: Dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKeyError(
                        f"{key_node.start_mark.name}: key '{key}' is given twice (lines {seen[key]} and {line}); "
                        "YAML would keep the last silently: keep one"
                    )
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def read_yaml(path: str | os.PathLike) -> Any:
    """A YAML file's content (safe types only), refusing a mapping that gives a key twice.

    Raises DuplicateKeyError naming the file, the key and both lines; ValueError naming the file,
    line and column for invalid YAML; IsADirectoryError for a folder; OSError when it cannot be read.
    """
    import yaml

    with open(path) as fh:
        try:
            return yaml.load(fh, Loader=_strict_yaml_loader())  # noqa: S506 - a SafeLoader subclass
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ValueError(
                f"{path} is not valid YAML ({exc.problem or exc.context}{where}); fix the file") from None


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path) as fh:
        fh.write(text)


_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")


def hash_cache_dir() -> Path:
    """Where file digests are remembered: ``$WEIGHTSELECT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/weightselect`` (``~/.cache/weightselect``)."""
    root = os.environ.get("WEIGHTSELECT_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "weightselect"


def _hash_cache_entry(path: Path) -> Tuple[Path, str]:
    """The cache file of ``path`` and the stamp (real path, size, mtime, inode) it must carry."""
    st = path.stat()
    stamp = f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    key = hashlib.sha256(stamp.encode()).hexdigest()
    return hash_cache_dir() / "sha256" / key[:2] / key, stamp


def cached_sha256(path: str | os.PathLike) -> str | None:
    """The sha256 of ``path`` when it is known without reading the file, else None.

    Known are: a file in the Hugging Face cache (``snapshots/<rev>/<name>`` linking to
    ``blobs/<sha256>``, huggingface_hub's layout for LFS files such as weights), which is named by
    its sha256, and a digest remembered by :func:`remember_sha256` under :func:`hash_cache_dir`,
    keyed by the file's real path, size, modification time (ns) and inode (any change misses it).
    """
    path = Path(path)
    real = path.resolve()
    if real.parent.name == "blobs" and _SHA256_NAME.match(real.name):
        return real.name
    with contextlib.suppress(OSError, ValueError):
        entry, stamp = _hash_cache_entry(path)
        saved_stamp, digest = entry.read_text().split("\n")[:2]
        if saved_stamp == stamp and _SHA256_NAME.match(digest):
            return digest
    return None


def remember_sha256(path: str | os.PathLike, digest: str) -> None:
    """Remember the sha256 of the current version of ``path`` (see :func:`cached_sha256`); an
    unwritable cache folder is ignored (the digest is then computed again next time)."""
    with contextlib.suppress(OSError):
        entry, stamp = _hash_cache_entry(Path(path))
        write_text(entry, f"{stamp}\n{digest}\n")


def hub_resolves(endpoint: str | None = None) -> bool:
    """Whether the Hugging Face hub's host name resolves (one DNS lookup, no connection).

    ``endpoint``: the hub's URL (default huggingface_hub's ``constants.ENDPOINT``, which follows
    ``HF_ENDPOINT``). False on a machine without network, where huggingface_hub would retry each
    request five times (about 25 s) before failing: callers then read the Hugging Face cache only.
    """
    import socket
    from urllib.parse import urlparse

    if endpoint is None:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    host = urlparse(endpoint).hostname
    if not host:
        return True
    try:
        socket.getaddrinfo(host, 443)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        return False
    return True


def hub_cache_only() -> Tuple[bool, bool, str]:
    """How a hub lookup goes now: ``(offline, cache_only, why)``.

    ``offline``: ``HF_HUB_OFFLINE`` is set; ``cache_only``: not offline, but the hub's host name does
    not resolve (:func:`hub_resolves`), so callers pass ``local_files_only=True`` and read the cache
    at once instead of after huggingface_hub's retries; ``why``: the reason a file that is not
    cached is unavailable, for the caller's error message.
    """
    from huggingface_hub import constants

    offline = bool(constants.HF_HUB_OFFLINE)
    cache_only = not offline and not hub_resolves()
    why = ("HF_HUB_OFFLINE is set and it is not cached" if offline else
           f"it is not cached and the hub cannot be reached{' (its host name does not resolve)' * cache_only}")
    return offline, cache_only, why


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20, cache: bool = True) -> str:
    """The sha256 (hex) of a file's bytes, computed at most once per file version.

    With ``cache`` (the default) a digest known from :func:`cached_sha256` is returned without
    reading the file; otherwise the file is read once and its digest remembered. ``cache=False``
    always reads the file and remembers nothing. Raises OSError when the file cannot be read.
    """
    if cache:
        digest = cached_sha256(path)
        if digest is not None:
            return digest
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    digest = h.hexdigest()
    if cache:
        remember_sha256(path, digest)
    return digest


def header_identity(path: str | os.PathLike) -> Dict[str, Any]:
    """A cheap identity of a safetensors file: the sha256 of its header (tensor names, dtypes,
    shapes and offsets, plus its metadata) and the file's size in bytes, read without the tensors.

    It tells apart files of different layouts or sizes, not two files that differ only in tensor
    values (for that, use the full sha256 of :func:`sha256_file`). Raises WeightsFileError for a
    file that is not safetensors.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsFileError(f"{path}: a header identity needs a safetensors file; use the full sha256")
    with open(path, "rb") as fh:
        raw, size = _raw_safetensors_header(fh, path)
    return {"identity": "header", "header_sha256": hashlib.sha256(raw).hexdigest(), "size": size}


def save_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Save tensors as safetensors, atomically; returns the file's sha256 (hex).

    The file is written by :func:`write_safetensors` (the bytes ``safetensors.torch.save`` gives,
    metadata in sorted key order, written tensor by tensor with no serialized copy in memory) through
    :func:`atomic_write`, so a full disk raises ``OSError`` (ENOSPC) naming ``path`` and leaves no
    partial file. Raises ValueError for tensors safetensors cannot store.
    """
    tensors = {k: v.detach().to("cpu") for k, v in state_dict.items()}
    with atomic_write(path, "wb") as fh:
        return write_safetensors(fh, tensors, metadata)


@functools.lru_cache(maxsize=1)
def _st_dtypes() -> Dict[Any, Tuple[int, str]]:
    """``{torch dtype: (rank, safetensors name)}`` in safetensors' Dtype enum order: a file lays out
    its tensors by dtype, the last first, then by name (each tensor aligned to its element size)."""
    import torch
    names = ("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64",
             "I64", "U64")
    dtypes = (torch.bool, torch.uint8, torch.int8, torch.float8_e5m2, torch.float8_e4m3fn, torch.int16, torch.uint16,
              torch.float16, torch.bfloat16, torch.int32, torch.uint32, torch.float32, torch.float64, torch.int64,
              torch.uint64)
    return {dtype: (rank, name) for rank, (dtype, name) in enumerate(zip(dtypes, names))}


@functools.lru_cache(maxsize=None)
def _st_dtype_of(name: str):
    """The torch dtype of a safetensors dtype name; KeyError for an unknown one."""
    return {n: d for d, (_, n) in _st_dtypes().items()}[name]


def safetensors_layout(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
                       ) -> Tuple[bytes, List[Tuple[str, int]]]:
    """The head of a safetensors file for ``tensors`` (8-byte little-endian header length, the JSON
    header padded with spaces to a multiple of 8) and the tensors' (name, byte size) in file order.

    The layout is the one ``safetensors.torch.save`` writes (safetensors 0.4-0.8: tensors ordered by
    dtype, the widest first, then by name; ``data_offsets`` relative to the data), except that
    ``__metadata__`` is in sorted key order, so the same tensors always give the same bytes. Only
    shapes and dtypes are read. Raises ValueError for a dtype safetensors has no name for.
    """
    for name, t in tensors.items():
        if t.dtype not in _st_dtypes():
            raise ValueError(f"tensor '{name}' has dtype {t.dtype}, which safetensors cannot store")
    ranks = _st_dtypes()
    order = sorted(tensors, key=lambda k: (-ranks[tensors[k].dtype][0], k))
    header: Dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    offset, sizes = 0, []
    for name in order:
        t = tensors[name]
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": ranks[t.dtype][1], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        sizes.append((name, nbytes))
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw, sizes


def write_safetensors(fh, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> str:
    """Write ``tensors`` (CPU) as a safetensors file to the open binary file ``fh``, one tensor at a
    time from its own memory (a non-contiguous one is copied alone), hashing as it writes; returns
    the sha256 (hex) of the bytes written. The bytes are :func:`safetensors_layout`'s."""
    import torch
    head, order = safetensors_layout(tensors, metadata)
    digest = hashlib.sha256(head)
    fh.write(head)
    for name, nbytes in order:
        if nbytes:
            data = tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy()
            digest.update(data)
            fh.write(data)
    return digest.hexdigest()


def torch_load_reason(exc: BaseException) -> str:
    """The gist of a ``torch.load(weights_only=True)`` error, in a few words.

    torch's own message is long and advises ``weights_only=False``, which would run whatever the
    file holds; this keeps only what was refused ("unsupported GLOBAL posix.system", "Unsupported
    operand 119") or the first line.
    """
    text = str(exc)
    for pattern in (r"Trying to load unsupported GLOBAL (\S+)", r"Unsupported global: GLOBAL (\S+)",
                    r"WeightsUnpickler error: ([^\n.]+)"):
        m = re.search(pattern, text)
        if m:
            what = m.group(1).rstrip(".")
            return f"it holds {what}, not only tensors" if "GLOBAL" in pattern or "global" in pattern else what
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if "weights_only" not in first else type(exc).__name__


CHECKPOINT_KEYS = ("model", "state_dict", "model_state", "module")  # preferred in this order


def checkpoint_entries(obj: Any) -> List[str]:
    """The keys of a checkpoint dict whose value is a whole state dict (tensors only)."""
    import torch
    if not isinstance(obj, Mapping):
        return []
    return [k for k, v in obj.items() if isinstance(k, str) and isinstance(v, Mapping) and v
            and all(isinstance(t, torch.Tensor) for t in v.values())]


def _unwrap_checkpoint(obj: Any, path: Path, key: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """A bare state dict, or the state dict under ``key`` of a {'model': ..., 'model_ema': ...}
    wrapper (default: the first of CHECKPOINT_KEYS, the non-EMA weights). Returns it and the key
    used (None for a bare state dict). Raises WeightsFileError naming the entries when ``key`` is
    not one of them, or when there are no tensors."""
    import torch
    entries = checkpoint_entries(obj)
    if key is not None:
        if key not in entries:
            raise WeightsFileError(f"{path}: no state dict under '{key}'; its state dicts: {', '.join(entries) or 'none'} "
                                   "(--checkpoint-key)")
        return dict(obj[key]), key
    for name in CHECKPOINT_KEYS:
        if name in entries:
            return dict(obj[name]), name
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors, None
        if entries:
            return dict(obj[entries[0]]), entries[0]
    raise WeightsFileError(f"{path}: no tensors found (expected a state dict)")


def not_a_file(path: Path, what: str = "weights file") -> WeightsFileError:
    """The error for a ``path`` that is not a readable file: absent, a folder, or a symbolic link
    that leads nowhere (a loop, or a link to a missing file)."""
    if path.is_symlink() and not path.exists():
        return WeightsFileError(f"{what} {path}: a symbolic link loop or a link to nothing; point it at the file")
    if path.is_dir():
        return WeightsFileError(f"{what} {path} is a folder, not a file")
    return WeightsFileError(f"{what} not found: {path}")


def _check_not_safetensors(path: Path) -> None:
    """A safetensors file under another name would be unpickled as a PyTorch file: say to rename it."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    size = path.stat().st_size
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        raise WeightsFileError(f"{path} is a safetensors file: rename it {path.with_suffix('.safetensors').name} "
                               "(a file not named .safetensors is read as a PyTorch file)")


def load_state_dict(path: str | os.PathLike, device: str = "cpu", checkpoint_key: Optional[str] = None
                    ) -> Dict[str, torch.Tensor]:
    """Load a whole weights file: ``.safetensors`` or a PyTorch file with ``weights_only=True``.

    ``checkpoint_key``: the entry of a PyTorch checkpoint to read (``model``, ``model_ema``, ...;
    default: :func:`read_checkpoint`'s choice). Raises WeightsFileError for a missing or unreadable
    file, and for a safetensors file under another suffix (rename it).
    """
    return read_checkpoint(path, device, checkpoint_key)[0]


def read_checkpoint(path: str | os.PathLike, device: str = "cpu", checkpoint_key: Optional[str] = None
                    ) -> Tuple[Dict[str, torch.Tensor], Optional[str], List[str]]:
    """:func:`load_state_dict` that also returns the checkpoint entry read (None for a bare state
    dict or a safetensors file) and the file's state-dict entries (``model``, ``model_ema``...)."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        if checkpoint_key is not None:
            raise WeightsFileError(f"{path}: a safetensors file holds one state dict; --checkpoint-key applies to "
                                   "PyTorch checkpoints")
        try:
            return load_file(str(path), device=device), None, []
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsFileError(f"{path}: not a valid safetensors file ({exc})") from exc
    _check_not_safetensors(path)
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise WeightsFileError(
            f"{path}: cannot be read as a PyTorch weights file with weights_only=True ({torch_load_reason(exc)}). "
            "Convert it to safetensors, or re-save it as a plain state dict."
        ) from exc
    state, used = _unwrap_checkpoint(obj, path, checkpoint_key)
    return state, used, checkpoint_entries(obj)


class TensorSource:
    """Read-only access to named tensors, one at a time.

    For safetensors files tensors are read lazily with positioned reads, so peak memory stays near
    the size of the tensors being used, not of the whole file; :meth:`iter_tensors` reads many
    tensors in one sequential pass in file order, into one reused buffer (a pass that hashes the
    file) or mapping a group of neighbouring tensors at a time (one that does not).
    """

    def __init__(self, shapes: Dict[str, Tuple[int, ...]], getter, description: str, closer=None, reader=None):
        self._shapes = shapes
        self._get = getter
        self.description = description
        self._closer = closer
        self._reader = reader
        self.checkpoint: Optional[Dict[str, Any]] = None  # {"key", "entries"} of a wrapped PyTorch checkpoint

    def keys(self):
        return list(self._shapes)

    def shape(self, key: str) -> Tuple[int, ...]:
        return self._shapes[key]

    @property
    def shapes(self) -> Dict[str, Tuple[int, ...]]:
        return dict(self._shapes)

    @property
    def streams(self) -> bool:
        """Whether :meth:`iter_tensors` reads a file in one pass (and can hash it on the way)."""
        return self._reader is not None

    def __contains__(self, key: str) -> bool:
        return key in self._shapes

    def get(self, key: str) -> torch.Tensor:
        if key not in self._shapes:
            raise KeyError(f"{key} not in {self.description}")
        return self._get(key)

    def iter_tensors(self, keys, hasher=None) -> Iterator[Tuple[str, torch.Tensor]]:
        """Yield ``(key, tensor)`` for each of ``keys`` (once each), in the order that reads the
        file front to back.

        The tensors of a streamed file are **borrowed**: views of a buffer that the next step of
        the iteration overwrites, or of a copy-on-write mapping of the file that it drops; copy
        what you keep. ``hasher`` (a ``hashlib`` object) is updated
        with every byte of the file, in order, in the same pass; only a source that
        :attr:`streams` accepts one (ValueError otherwise). Raises KeyError for an unknown key.
        """
        keys = list(dict.fromkeys(keys))
        for key in keys:
            if key not in self._shapes:
                raise KeyError(f"{key} not in {self.description}")
        if self._reader is not None:
            yield from self._reader(keys, hasher)
            return
        if hasher is not None:
            raise ValueError(f"{self.description} is not read from one file: it cannot be hashed while read")
        for key in keys:
            yield key, self._get(key)

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None

    def __enter__(self) -> "TensorSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], description: str = "state dict"):
        sd = dict(state_dict)
        return cls({k: tuple(v.shape) for k, v in sd.items()}, sd.__getitem__, description)


def _raw_safetensors_header(fh, path: Path) -> Tuple[bytes, int]:
    """The 8-byte header length and the header's JSON bytes, as in the file; the file's size."""
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(8)
    n = int.from_bytes(head, "little") if len(head) == 8 else -1
    if n <= 0 or 8 + n > size:
        raise WeightsFileError(f"{path}: not a valid safetensors file (bad header length)")
    return head + fh.read(n), size


def _read_safetensors_header(fh, path: Path) -> Tuple[Dict[str, Any], int]:
    """The tensor entries of a safetensors header and the offset where the data starts."""
    raw, size = _raw_safetensors_header(fh, path)
    n = len(raw) - 8
    try:
        header = json.loads(raw[8:])
    except ValueError as exc:
        raise WeightsFileError(f"{path}: not a valid safetensors file (header is not JSON: {exc})") from exc
    if not isinstance(header, dict):
        raise WeightsFileError(f"{path}: not a valid safetensors file (header is not an object)")
    header.pop("__metadata__", None)
    data_size = size - 8 - n
    for key, info in header.items():
        try:
            start, end = (int(x) for x in info["data_offsets"])
            shape = tuple(int(d) for d in info["shape"])
            dtype = _st_dtype_of(info["dtype"])
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsFileError(f"{path}: not a valid safetensors file (entry '{key}': {exc})") from exc
        if any(d < 0 for d in shape):
            raise WeightsFileError(f"{path}: not a valid safetensors file (entry '{key}' has a negative dimension {shape})")
        numel = 1
        for d in shape:
            numel *= d
        if dtype is None or not 0 <= start <= end <= data_size or end - start != numel * dtype.itemsize:
            raise WeightsFileError(f"{path}: not a valid safetensors file (entry '{key}' is out of range)")
        info["_parsed"] = (start, end, shape, dtype)
    _check_offsets(header, data_size, path)
    return header, 8 + n


def _check_offsets(header: Mapping[str, Any], data_size: int, path: Path) -> None:
    """The tensors tile the data section, as the format requires and its reference reader checks
    (``safetensors`` ``validate``): in offset order each starts where the previous one ends, and the
    last ends at the end of the file. Overlapping or gapped entries raise WeightsFileError."""
    end_before, before = 0, None
    for start, end, key in sorted((info["_parsed"][0], info["_parsed"][1], key) for key, info in header.items()):
        if start != end_before:
            where = f"overlaps '{before}'" if start < end_before else f"leaves a gap after '{before or 'the header'}'"
            raise WeightsFileError(f"{path}: not a valid safetensors file (entry '{key}' {where}: invalid data offsets)")
        end_before, before = end, key
    if end_before != data_size:
        raise WeightsFileError(f"{path}: not a valid safetensors file (the data section holds "
                               f"{data_size - end_before} bytes no entry covers)")


READ_BUFFER_BYTES = 16 << 20  # the reused read buffer of a sequential pass (grown to the largest tensor)
HASH_SLICE_BYTES = 1 << 20  # a pass that also hashes reads and hashes this much at a time


def _pread_exact(fd: int, view: memoryview, offset: int, path: Path, what: str) -> None:
    got = os.preadv(fd, [view], offset) if hasattr(os, "preadv") else _pread_into(fd, view, offset)
    if got != len(view):
        raise WeightsFileError(f"{path}: truncated safetensors file ({what})")


def _groups(spans, limit: int, contiguous: bool) -> list:
    """Spans ``(start, end, key)`` sorted by start, gathered into reads ``(start, end, members)``
    of at most ``limit`` bytes (or one span); ``contiguous`` reads also cover every gap (from byte
    0 on), others read through gaps of up to 1 MiB only."""
    groups, group, g_start, g_end = [], [], (0 if contiguous else None), 0
    for span in spans:
        start, end, _ = span
        if group and (end - g_start > limit or (not contiguous and start - g_end > (1 << 20))):
            groups.append((g_start, g_end, group))
            group, g_start = [], (g_end if contiguous else None)
        if g_start is None:
            g_start = start
        group.append(span)
        g_end = max(g_end, end)
    if group:
        groups.append((g_start, g_end, group))
    return groups


def _safetensors_reader(fd: int, header: Dict[str, Any], base: int, path: Path):
    """The :meth:`TensorSource.iter_tensors` of a safetensors file, in file order, a group of
    neighbouring tensors at a time. A pass that hashes reads every byte with positioned reads into
    one buffer reused across reads, 1 MiB at a time, each slice hashed right after it is read; a
    pass that does not hash maps each group instead (:func:`_mapped_groups`)."""

    def read(keys, hasher):
        wanted = set(keys)
        names = list(header) if hasher is not None else keys
        spans = sorted((header[k]["_parsed"][0], header[k]["_parsed"][1], k) for k in names)
        limit = max([READ_BUFFER_BYTES] + [end - start for start, end, _ in spans])
        groups = _groups(spans, limit, contiguous=hasher is not None)
        if hasher is None:
            yield from _mapped_groups(fd, header, base, path, groups, wanted)
            return
        buf = bytearray(max([0] + [g_end - g_start for g_start, g_end, _ in groups]))
        view = memoryview(buf)
        head = bytearray(base)
        _pread_exact(fd, memoryview(head), 0, path, "header")
        hasher.update(head)
        done = 0
        for g_start, g_end, group in groups:
            what = f"tensor '{group[0][2]}'"
            for at in range(0, g_end - g_start, HASH_SLICE_BYTES):  # hashed while still in the CPU's cache
                part = view[at: min(at + HASH_SLICE_BYTES, g_end - g_start)]
                _pread_exact(fd, part, base + g_start + at, path, what)
                hasher.update(part)
            done = g_end
            for start, end, key in group:
                if key in wanted:
                    _, _, shape, dtype = header[key]["_parsed"]
                    yield key, _borrowed(buf, start - g_start, end - start, shape, dtype)
        rest = os.fstat(fd).st_size - base - done  # bytes after the last tensor, if any
        if rest > 0:
            tail = bytearray(rest)
            _pread_exact(fd, memoryview(tail), base + done, path, "data")
            hasher.update(tail)

    return read


def _mapped_groups(fd: int, header: Dict[str, Any], base: int, path: Path, groups, wanted):
    """``(key, tensor)`` of the ``wanted`` tensors of each group, the group mapped copy-on-write
    (``mmap`` ``ACCESS_COPY``: a write to a tensor stays in this process): the tensors are views of
    the page cache, with no copy into a buffer, no fresh pages to fault in for one, and only the pages
    a selection touches read (the rows of a matrix's selected rows). One group is mapped at a time
    (the caller may hold the last tensor of the previous one), so the process holds about as much
    as a buffer would. A file system that cannot map files is read into a buffer instead."""
    import mmap

    buf = None
    for g_start, g_end, group in groups:
        region, shift = None, 0
        if g_end > g_start:
            at = (base + g_start) // mmap.ALLOCATIONGRANULARITY * mmap.ALLOCATIONGRANULARITY
            try:
                region = mmap.mmap(fd, base + g_end - at, access=mmap.ACCESS_COPY, offset=at)
                shift = base - at
                with contextlib.suppress(AttributeError, OSError):  # a cold file: read ahead the whole group
                    region.madvise(mmap.MADV_WILLNEED)
            except ValueError:  # the group runs past the end of the file (truncated since it was opened)
                raise WeightsFileError(f"{path}: truncated safetensors file (tensor '{group[0][2]}')") from None
            except OSError:
                buf = buf if buf is not None else bytearray(max(g_e - g_s for g_s, g_e, _ in groups))
                _pread_exact(fd, memoryview(buf)[: g_end - g_start], base + g_start, path, f"tensor '{group[0][2]}'")
                region, shift = buf, -g_start
        for start, end, key in group:
            if key in wanted:
                _, _, shape, dtype = header[key]["_parsed"]
                yield key, _borrowed(region, start + shift, end - start, shape, dtype)


def _borrowed(buf, offset: int, nbytes: int, shape, dtype) -> torch.Tensor:
    import torch
    if nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset).reshape(shape)


def open_tensor_source(path: str | os.PathLike, checkpoint_key: Optional[str] = None) -> TensorSource:
    """Open a weights file for tensor-by-tensor reads (lazy for safetensors).

    A safetensors file is read so that the process holds only the tensors it keeps: ``get`` reads
    one tensor into a buffer of its own (a positioned read); ``iter_tensors`` reads many in file
    order, a group of up to 16 MiB (or the largest tensor) at a time, through one reused buffer when
    it hashes the file, else mapping each group copy-on-write (no copy; only the pages used are read).
    A PyTorch checkpoint is loaded whole (``checkpoint_key``: its entry, as :func:`read_checkpoint`);
    the source's ``checkpoint`` attribute says which entry was read and which there were.
    Raises WeightsFileError for a missing, truncated or malformed file.
    """
    import torch
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path)
    if path.suffix == ".safetensors" and checkpoint_key is None:
        fh = open(path, "rb")
        try:
            header, base = _read_safetensors_header(fh, path)
        except BaseException:
            fh.close()
            raise

        def get(key: str) -> torch.Tensor:
            start, end, shape, dtype = header[key]["_parsed"]
            buf = bytearray(end - start)
            if end > start:
                _pread_exact(fh.fileno(), memoryview(buf), base + start, path, f"tensor '{key}'")
            return _borrowed(buf, 0, end - start, shape, dtype)

        shapes = {k: v["_parsed"][2] for k, v in header.items()}
        reader = _safetensors_reader(fh.fileno(), header, base, path)
        return TensorSource(shapes, get, str(path), closer=fh.close, reader=reader)
    state, used, entries = read_checkpoint(path, checkpoint_key=checkpoint_key)
    source = TensorSource.from_state_dict(state, str(path))
    source.checkpoint = {"key": used, "entries": entries} if used is not None else None
    return source


def _pread_into(fd: int, buf, offset: int) -> int:
    os.lseek(fd, offset, os.SEEK_SET)
    return os.readv(fd, [buf])


def manifest_path(weights_path: str | os.PathLike) -> Path:
    """The JSON manifest that sits beside an init file: ``x.safetensors`` -> ``x.json``."""
    return Path(weights_path).with_suffix(".json")


def _json_text(obj: Any, levels: int = 2, indent: str = "") -> str:
    """JSON with the first ``levels`` levels of objects one key per line (indented by 2) and the
    values below on one line each: readable, and encoded by json's C encoder (an init's index lists
    hold tens of thousands of numbers, which ``indent=`` would encode in Python)."""
    if not isinstance(obj, Mapping) or not obj or levels == 0:
        return json.dumps(obj, default=_json_default, ensure_ascii=False)
    inner = indent + "  "
    items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_json_text(v, levels - 1, inner)}" for k, v in obj.items()]
    return "{\n" + ",\n".join(items) + "\n" + indent + "}"


def save_init(state_dict: Mapping[str, torch.Tensor], manifest: Mapping[str, Any], path) -> Path:
    """Write an initialization: ``path`` (safetensors) plus its manifest beside it, as one unit.

    Both files are written to temporaries first (nothing is published if either write fails, e.g.
    ``OSError`` ENOSPC on a full disk), then renamed into place, the manifest last. The manifest
    records ``weights_sha256``, the sha256 of the weights file, so :func:`load_init` tells a
    manifest from its own weights apart from one left beside other weights by a crash between the
    two renames. Raises ValueError for a name that does not end in ``.safetensors``.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"init files are safetensors; name it '{path.with_suffix('.safetensors')}'")
    tensors = {k: v.detach().to("cpu") for k, v in state_dict.items()}
    mpath = manifest_path(path)
    tmps = []
    try:
        for target in (path, mpath):
            tmps.append(_atomic_tmp_path(target))
            try:
                with open(tmps[-1], "wb") as fh:
                    if target == path:  # the weights first: the manifest records their sha256
                        sha = write_safetensors(fh, tensors, {"format": "pt", "producer": "weightselect"})
                        manifest = {**dict(manifest), "weights_sha256": sha}
                    else:
                        fh.write((_json_text(manifest) + "\n").encode())
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(target)) from exc
        os.replace(tmps[0], path)
        os.replace(tmps[1], mpath)
    except BaseException:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    return path


def check_init_pair(path: str | os.PathLike) -> Path:
    """Check that the init file ``path`` and its manifest are both there; returns the manifest path.

    Raises InitFileError naming the file that is there, the one that is missing and the fix (an
    orphan left by a crash between writing the two, or one file copied without the other), and
    FileNotFoundError when neither exists.
    """
    path = Path(path)
    mpath = manifest_path(path)
    has_weights, has_manifest = path.is_file(), mpath.is_file()
    if has_weights and not has_manifest:
        raise InitFileError(
            f"init file {path} has no manifest {mpath.name} beside it (an interrupted write, or the file "
            "was copied alone); write the init again (weightselect select/baseline ... --force) or copy its manifest"
        )
    if has_manifest and not has_weights:
        raise InitFileError(
            f"manifest {mpath} has no init file {path.name} beside it (an interrupted write, or the file was "
            "deleted); write the init again (weightselect select/baseline ... --force) or delete the manifest"
        )
    if not has_weights:
        raise FileNotFoundError(f"init file not found: {path}; make one with `weightselect select ...`")
    return mpath


def read_init_file(path: str | os.PathLike) -> Tuple[bytes, Dict[str, Any], str]:
    """Read an init file's bytes and its manifest, checked as one unit, hashing the bytes once.

    Returns (safetensors bytes, manifest, sha256 of the bytes). Raises InitFileError when one of the
    two is missing (:func:`check_init_pair`), when the manifest is not a JSON object, or when its
    ``weights_sha256`` is not the weights file's (a manifest left beside other weights).
    """
    path = Path(path)
    mpath = check_init_pair(path)
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as exc:
        raise InitFileError(f"manifest {mpath} is not valid JSON ({exc}); write the init again with --force") from None
    if not isinstance(manifest, dict):
        raise InitFileError(f"manifest {mpath} must hold a JSON object; write the init again with --force")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    expected = manifest.get("weights_sha256")
    if expected is not None and expected != digest:
        _check_safetensors_bytes(data, path)  # garbage weights are named as such first
        raise InitFileError(
            f"manifest {mpath} describes other weights than {path} (sha256 differs: an interrupted "
            "overwrite, or one file replaced alone); write the init again with --force"
        )
    return data, manifest, digest


def _check_safetensors_bytes(data: bytes, path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise WeightsFileError(f"{path}: not a valid safetensors file ({exc}); write the init again with --force") from None


def load_init(path: str | os.PathLike) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Read an init file and its manifest, checked as one unit (:func:`read_init_file`).

    Raises InitFileError as :func:`read_init_file`; WeightsFileError when the weights are not valid
    safetensors.
    """
    data, manifest, _ = read_init_file(path)
    return _check_safetensors_bytes(data, path), manifest
