"""The CLI as a user runs it (real processes): two writers of one output, a full disk, a read-only
output folder, and the one-line errors with ``--debug`` / ``WEIGHTSELECT_DEBUG`` for the trace.

A full disk and a read-only folder are real mounts (a 64 KiB tmpfs, a read-only tmpfs) made in a
user namespace (``unshare -rm``) where the machine allows it; otherwise those tests are skipped and
the injected ENOSPC tests (here and in tests/test_io.py) stand in for them.
"""
from __future__ import annotations

import errno
import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from weightselect import io
from weightselect.cli import main

ROOT = Path(__file__).resolve().parents[1]
VIT = "vit_tiny_patch16_224"
TEACHER_KW = {"img_size": 16, "patch_size": 4, "depth": 4, "embed_dim": 64, "num_heads": 4}
STUDENT_KW = {"img_size": 16, "patch_size": 4, "depth": 2, "embed_dim": 32, "num_heads": 2}
TRAIN_FAST = ["--set", "epochs=1", "--set", "train_samples=100", "--set", "batch_size=50", "--set", "warmup_epochs=0"]


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}
    env.pop("WEIGHTSELECT_DEBUG", None)
    env.update(extra)
    return env


def _cli(*argv, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weightselect", *map(str, argv)], env=_env(**extra_env),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    import timm

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    io.save_state_dict(timm.create_model(VIT, **TEACHER_KW).state_dict(), path)
    return path


def _select_argv(teacher, out, *extra):
    return [str(a) for a in ["select", "--teacher", teacher, "--student", VIT, "--student-kwargs", json.dumps(STUDENT_KW),
            "-o", out, *extra]]


# -- two writers of one output -----------------------------------------------------------------------
@pytest.mark.parametrize("command", ["select", "baseline"])
def test_two_writers_of_one_output_the_second_fails_at_once_naming_the_holder(tmp_path, teacher, command):
    """The first process is stopped (SIGSTOP) while it holds the output's lock; the second, started
    then, fails at once with exit 2 naming the first's pid; the first then finishes a whole pair."""
    out = tmp_path / "i.safetensors"
    if command == "select":
        argv = _select_argv(teacher, out, "--force")
    else:
        argv = ["baseline", "--student", VIT, "--student-kwargs", json.dumps(STUDENT_KW), "--name", "xavier",
                "-o", out, "--force"]
    lock = tmp_path / ".i.safetensors.lock"
    first = subprocess.Popen([sys.executable, "-m", "weightselect", *map(str, argv)], env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (lock.exists() and f"pid {first.pid} " in lock.read_text()):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first writer never took the lock"
        time.sleep(0.002)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        assert not out.exists()  # stopped while holding the lock, before writing
        started = time.monotonic()
        second = _cli(*argv)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert f"i.safetensors is being written by pid {first.pid} " in lines[0]
        assert f"wait for that {command} to end" in lines[0]
        assert time.monotonic() - started < 60  # no waiting for the holder (the time is Python's start-up)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    sd, manifest = io.load_init(out)  # one whole pair, from the first writer
    assert manifest["weights_sha256"] == io.sha256_file(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.json", "i.safetensors"]  # no lock file left


# -- full disk and read-only folders: real mounts in a user namespace -----------------------------------
@functools.lru_cache(maxsize=None)
def _can_mount() -> bool:
    import tempfile

    probe = Path(tempfile.mkdtemp(prefix="weightselect-mount-probe-"))
    try:
        r = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k none {probe}"],
                           capture_output=True, timeout=30)
        return r.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        probe.rmdir()


needs_mount = pytest.mark.skipif(not _can_mount(), reason="cannot mount a tmpfs here (no user namespaces)")


def _cli_on_mount(mount: Path, options: str, argv) -> subprocess.CompletedProcess:
    """Run the CLI with a fresh tmpfs (``options``, e.g. ``size=64k`` or ``ro``) mounted at ``mount``."""
    mount.mkdir(exist_ok=True)
    cli = " ".join(shlex.quote(str(a)) for a in [sys.executable, "-m", "weightselect", *argv])
    where = shlex.quote(str(mount))
    script = (f"mount -t tmpfs -o {options} none {where} || exit 99; {cli}; rc=$?; "
              f"echo \"ls: $(ls -A {where} | tr '\\n' ' ')\" >&2; exit $rc")
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], env=_env(), capture_output=True, text=True, timeout=300)


def _one_line_error(proc, *fragments):
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("ls:")]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def _left_in_mount(proc) -> list:
    return [line for line in proc.stderr.splitlines() if line.startswith("ls:")][-1][3:].split()


@needs_mount
@pytest.mark.parametrize("command", ["select", "baseline"])
def test_full_disk_one_line_and_nothing_half_published(tmp_path, teacher, command):
    """A 64 KiB tmpfs: the init (about 130 KiB) does not fit; no weights without manifest, no temp file."""
    mount = tmp_path / "full"
    out = mount / "i.safetensors"
    if command == "select":
        argv = _select_argv(teacher, out)
    else:
        argv = ["baseline", "--student", VIT, "--student-kwargs", json.dumps(STUDENT_KW), "--name", "xavier", "-o", out]
    proc = _cli_on_mount(mount, "size=64k", argv)
    line = _one_line_error(proc, "no space left on the device writing", "i.safetensors", "-o/--output")
    assert line.startswith(f"weightselect {command}: error:")
    assert _left_in_mount(proc) == []  # no orphan, no .tmp, no lock file


@needs_mount
def test_full_disk_train_one_line(tmp_path):
    mount = tmp_path / "full"
    argv = ["train", "--model", VIT, "--model-kwargs", json.dumps(STUDENT_KW), "--dataset", "digits",
            "--out", mount / "run", *TRAIN_FAST]
    proc = _cli_on_mount(mount, "size=16k", argv)
    _one_line_error(proc, "no space left on the device writing", str(mount / "run"), "--out")
    assert not [name for name in _left_in_mount(proc) if name.endswith(".tmp")]


@needs_mount
@pytest.mark.parametrize("command", ["select", "baseline", "train"])
def test_read_only_output_folder_one_line(tmp_path, teacher, command):
    mount = tmp_path / "ro"
    if command == "select":
        argv, option = _select_argv(teacher, mount / "i.safetensors"), "-o/--output"
    elif command == "baseline":
        argv = ["baseline", "--student", VIT, "--student-kwargs", json.dumps(STUDENT_KW), "--name", "kaiming",
                "-o", mount / "i.safetensors"]
        option = "-o/--output"
    else:
        argv = ["train", "--model", VIT, "--model-kwargs", json.dumps(STUDENT_KW), "--dataset", "digits",
                "--out", mount / "run", *TRAIN_FAST]
        option = "--out"
    proc = _cli_on_mount(mount, "ro", argv)
    _one_line_error(proc, "cannot write", str(mount), "Read-only file system", f"choose another folder with {option}")
    assert _left_in_mount(proc) == []


def test_read_only_output_folder_without_root(tmp_path, teacher):
    """The same with permissions, where the tests do not run as root (root ignores them)."""
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder; the tmpfs test covers it")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        proc = _cli(*_select_argv(teacher, folder / "i.safetensors"))
    finally:
        folder.chmod(0o755)
    _one_line_error(proc, "cannot write", str(folder), "choose another folder with -o/--output")


def test_injected_full_disk_in_select_one_line_and_the_old_pair_kept(tmp_path, teacher, capsys, monkeypatch):
    """Where no tmpfs can be mounted: ENOSPC injected when the manifest is written (weights written)."""
    out = tmp_path / "i.safetensors"
    assert main(_select_argv(teacher, out)) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_fsync = os.fsync

    def fsync(fd):  # weights written, manifest not (other files, e.g. the digest cache, are written)
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".i.json."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(io.os, "fsync", fsync)
    capsys.readouterr()
    assert main(_select_argv(teacher, out, "--method", "random", "--force")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on the device writing" in err[0] and f"{tmp_path}/i.json" in err[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# -- --debug, WEIGHTSELECT_DEBUG, internal errors, --version ----------------------------------------------
def test_one_line_by_default_and_the_trace_with_debug_or_the_env_variable(tmp_path):
    argv = ["train", "--model", VIT, "--model-kwargs", '{"embed_dimm": 32}', "--dataset", "digits",
            "--out", tmp_path / "run"]
    plain = _cli(*argv)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    lines = plain.stderr.strip().splitlines()
    assert lines[-1].startswith("weightselect train: error: vit_tiny_patch16_224 takes no keyword argument 'embed_dimm'")
    for proc in (_cli("--debug", *argv), _cli(*argv, "--debug"), _cli(*argv, WEIGHTSELECT_DEBUG="1")):
        assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
        assert "ModelKwargsError: vit_tiny_patch16_224 takes no keyword argument 'embed_dimm'" in proc.stderr
    assert _cli(*argv, WEIGHTSELECT_DEBUG="0").returncode == 2


def test_an_internal_error_is_one_line_asking_for_debug(monkeypatch, capsys, tmp_path):
    from weightselect.results import runs as results_runs  # the summary command imports it when it runs

    def broken(runs_root, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'glob'")

    monkeypatch.setattr(results_runs, "collect_runs", broken)
    (tmp_path / "runs").mkdir()
    assert main(["summary", "--runs", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["weightselect summary: internal error (AttributeError: 'NoneType' object has no attribute "
                   "'glob'); rerun with --debug for the trace and report it"]
    with pytest.raises(AttributeError):
        main(["--debug", "summary", "--runs", str(tmp_path / "runs")])


def test_version():
    from weightselect import __version__

    proc = _cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"weightselect {__version__}"


def test_error_line_tells_bad_input_from_a_bug():
    import argparse

    from weightselect.cli import error_line

    args = argparse.Namespace(command="train", out="runs/r", model_kwargs='{"a": 1')
    assert error_line(KeyError("unknown dataset 'x'; known: digits"), args) == "unknown dataset 'x'; known: digits"
    assert error_line(KeyError("epoch"), args) is None  # a failed lookup in our code: a bug
    assert error_line(TypeError("unsupported operand"), args) is None
    try:
        json.loads(args.model_kwargs)
    except json.JSONDecodeError as exc:
        assert error_line(exc, args).startswith("--model-kwargs is not valid JSON (Expecting ',' delimiter, column 8)")
    line = error_line(PermissionError(errno.EACCES, "Permission denied", "runs/.final.json.vm-12.abc.tmp"), args)
    assert line == "cannot write runs/final.json (Permission denied); make runs writable or choose another folder with --out"
    line = error_line(OSError(errno.ENOSPC, "No space left on device", "inits/.i.safetensors.lock"),
                      argparse.Namespace(command="select"))
    assert line.startswith("no space left on the device writing inits/i.safetensors") and "-o/--output" in line
    line = error_line(OSError(errno.EROFS, "Read-only file system", "r/.metrics.jsonl.node-01-7.k_3x.tmp"), args)
    assert line.startswith("cannot write r/metrics.jsonl (Read-only file system)")
    secret = Path(__file__)  # an existing file refused: reading or writing, not known which
    line = error_line(PermissionError(errno.EACCES, "Permission denied", str(secret)), args)
    assert line == f"cannot read or write {secret} (Permission denied); check its permissions and those of {secret.parent}"
    assert "rerun with --debug to see which" in error_line(OSError(errno.EINVAL, "Invalid argument"), args)
    assert error_line(FileNotFoundError("runs folder r does not exist; train first"), args) == (
        "runs folder r does not exist; train first")
