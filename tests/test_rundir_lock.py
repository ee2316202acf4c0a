"""The run-directory contract and the exclusive lock shared by every writer."""
import json
import os
import signal
import subprocess
import sys

import pytest

from weightselect import rundir
from weightselect.io import LockedError, exclusive_lock

HOLD = """
import sys, time
from weightselect.io import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(target):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_second_writer_fails_naming_the_holder_and_a_killed_holder_leaves_no_stale_lock(tmp_path, kind):
    target = tmp_path / "seed0"
    if kind == "folder":
        target.mkdir()
    else:
        target = tmp_path / "init.safetensors"
    proc = _holder(target)
    try:
        with pytest.raises(LockedError, match=f"pid {proc.pid}"):
            with exclusive_lock(target):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with exclusive_lock(target) as lock:  # the kernel released it with the process
        assert lock.exists()
        assert f"pid {os.getpid()}" in lock.read_text()


def test_lock_of_a_folder_is_inside_and_of_a_file_beside(tmp_path):
    (tmp_path / "run").mkdir()
    with exclusive_lock(tmp_path / "run") as lock:
        assert lock == tmp_path / "run" / rundir.LOCK
    with exclusive_lock(tmp_path / "out" / "i.safetensors") as lock:
        assert lock == tmp_path / "out" / ".i.safetensors.lock"


def test_read_final_names_the_file_and_key(tmp_path):
    path = tmp_path / rundir.FINAL
    path.write_text(json.dumps({"final_top1": "high"}))
    with pytest.raises(rundir.RunFileError, match=r"final\.json: 'final_top1' must be a finite number"):
        rundir.read_final(path)
    path.write_text("{not json")
    with pytest.raises(rundir.RunFileError, match="not a readable final.json"):
        rundir.read_final(path)
    path.write_text(json.dumps({"final_top1": 81.5, "best_top1": 82.0}))
    assert rundir.read_final(path, required=("final_top1", "best_top1"))["best_top1"] == 82.0


def test_run_path_is_keyed_by_student_dataset_variant_seed(tmp_path):
    assert rundir.run_path(tmp_path, "vit_t", "cifar100", "ws_uniform", 2) == tmp_path / "vit_t/cifar100/ws_uniform/seed2"


@pytest.mark.parametrize("fails", [False, True])
def test_the_lock_file_is_gone_when_its_holder_is_done(tmp_path, fails):
    """Success or error, no `.lock` is left beside an output or in a run folder."""
    (tmp_path / "run").mkdir()
    for target in (tmp_path / "run", tmp_path / "i.safetensors"):
        try:
            with exclusive_lock(target) as lock:
                assert lock.exists()
                if fails:
                    raise KeyError("the writer's own error")
        except KeyError:
            pass
        assert not lock.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["run"]


def test_a_lock_taken_on_a_file_its_holder_deleted_is_taken_again(tmp_path, monkeypatch):
    """The race of a deleted lock file: a waiter that opened the old file before the holder deleted
    it gets its flock on a file no longer at the path; it must take the lock on the new file, or two
    writers would hold "the" lock at once."""
    import weightselect.io as wio

    target = tmp_path / "i.safetensors"
    path = tmp_path / ".i.safetensors.lock"
    path.write_text("old holder")
    real_open, opened = os.open, []

    def open_then_holder_deletes(p, *args):
        fd = real_open(p, *args)
        if not opened:  # the first open sees the old file; its holder then deletes it
            os.unlink(p)
        opened.append(fd)
        return fd

    monkeypatch.setattr(wio.os, "open", open_then_holder_deletes)
    with exclusive_lock(target) as lock:
        monkeypatch.setattr(wio.os, "open", real_open)
        assert len(opened) == 2 and lock.exists()
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):  # the new file is the one held
            with exclusive_lock(target):
                pass


def test_the_holder_line_keeps_undecodable_arguments(tmp_path):
    """A command line holding bytes that are not UTF-8 (a Latin-1 file name) still takes the lock."""
    code = b"import sys; from weightselect.io import exclusive_lock\n" \
           b"with exclusive_lock(sys.argv[1]) as l: print(open(l, 'rb').read().decode(errors='replace'))"
    done = subprocess.run([sys.executable.encode(), b"-c", code, str(tmp_path / "out").encode(), b"caf\xe9.safetensors"],
                          capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert b"caf\\udce9.safetensors" in done.stdout
