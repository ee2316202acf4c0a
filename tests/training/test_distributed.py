"""Two processes with torchrun (gloo on the CPU): the same code path as multi-GPU training."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from weightselect.training.batches import Dist as _Dist, epoch_batches as _epoch_batches


def test_ranks_get_disjoint_shards_of_the_epoch():
    one, two = _Dist(), _Dist()
    one.world = two.world = 2
    one.rank, two.rank = 0, 1
    a = _epoch_batches(100, 10, seed=0, epoch=3, dist=one, update_freq=1)
    b = _epoch_batches(100, 10, seed=0, epoch=3, dist=two, update_freq=1)
    seen = [int(i) for batch in a + b for i in batch]
    assert len(a) == len(b) == 5 and sorted(seen) == list(range(100))
    assert _epoch_batches(100, 10, 0, 3, one, 1)[0].tolist() == a[0].tolist()  # reproducible
    assert _epoch_batches(100, 10, 0, 4, one, 1)[0].tolist() != a[0].tolist()  # reshuffled each epoch


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_torchrun_two_processes(tmp_path, tiny_vit):
    out = tmp_path / "run"
    cmd = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--standalone", "--nproc_per_node=2",
           "-m", "weightselect", "train", "--model", tiny_vit["name"], "--model-kwargs", json.dumps(tiny_vit["kwargs"]),
           "--dataset", "digits", "--set", "epochs=1", "--set", "batch_size=100", "--set", "warmup_epochs=0", "--set", "train_samples=400",
           "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["batch_per_device"] == 50 and meta["updates_per_epoch"] == 4
    final = json.loads((out / "final.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and final["final_top1"] == metrics[0]["test_top1"]
    # evaluation counted over both shards: a multiple of 1/797
    assert abs(final["final_top1"] * 797 / 100 - round(final["final_top1"] * 797 / 100)) < 1e-6
