"""The run-directory contract and the exclusive lock shared by every writer."""
import json
import os
import signal
import subprocess
import sys
import time

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
