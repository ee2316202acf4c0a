"""Two Snakemake processes on one live training run: the sequence Snakemake's own lock message leads
to (`snakemake --unlock`, then `--rerun-incomplete` while the first workflow still trains). The
second workflow's job must be refused by the run's lock without deleting the live run's records."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 400  # tens of seconds of training: long enough to still be live when the second workflow starts
RUN = "results/runs/s/digits/random/seed0"
STUDY = {
    "description": "one long random-init run",
    "data_root": "data",
    "download": False,
    "teachers": {"t": {
        "source": "pretrain",
        "model": {"name": "vit_small_patch16_224",
                  "kwargs": {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 32, "depth": 1, "num_heads": 1}},
        "pretrain": {"dataset": "letters", "recipe": {"epochs": 1}},
    }},
    "students": {"s": {
        "model": {"name": "vit_tiny_patch16_224",
                  "kwargs": {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 16, "depth": 1, "num_heads": 1}},
        "teacher": "t",
    }},
    "datasets": {"digits": {"recipe": {"epochs": EPOCHS, "warmup_epochs": 0, "train_samples": 400}}},
    "seeds": [0],
    "tables": {},
    "figures": {},
    "resources": {"gpus": 0, "threads": 1},
}


def _command(workdir: Path, *args: str) -> list:
    # targets first: --configfile and --config take every argument after them
    return [sys.executable, "-m", "snakemake", *args, "--snakefile", str(REPO / "Snakefile"), "--directory",
            str(workdir), "--cores", "1", "--configfile", str(REPO / "config.yaml"), str(workdir / "extra.yaml"),
            "--config", "study=unlock_test"]


def test_unlock_and_rerun_leave_the_live_runs_records_whole(tmp_path):
    (tmp_path / "extra.yaml").write_text(yaml.safe_dump({"studies": {"unlock_test": STUDY}}))
    target = f"{RUN}/final.json"
    metrics = tmp_path / RUN / "metrics.jsonl"
    first = subprocess.Popen(_command(tmp_path, target), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        deadline = time.monotonic() + 300
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            assert first.poll() is None, first.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the first workflow never started training"
            time.sleep(0.5)
        unlock = subprocess.run(_command(tmp_path, "--unlock"), cwd=REPO, capture_output=True, text=True)
        assert unlock.returncode == 0, unlock.stderr[-3000:]
        second = subprocess.run(_command(tmp_path, target, "--rerun-incomplete"), cwd=REPO, capture_output=True,
                                text=True, timeout=600)
        assert first.poll() is None, "the first run ended before the second workflow: raise EPOCHS"
        assert second.returncode != 0  # its job was refused by the run's lock
        assert json.loads(metrics.read_text().splitlines()[0])["epoch"] == 1  # not deleted under the live run
        out, _ = first.communicate(timeout=1200)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out[-3000:]
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == list(range(1, EPOCHS + 1))  # every epoch recorded, once
    final = json.loads((tmp_path / RUN / "final.json").read_text())
    assert final["epochs"] == EPOCHS and final["final_top1"] == json.loads(metrics.read_text().splitlines()[-1])["test_top1"]
    log = (tmp_path / "results/logs/runs/s/digits/random/seed0.log").read_text()
    refused = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(refused) == 1 and "is being written by pid" in refused[0] and "Traceback" not in log
    assert f"epoch {EPOCHS}/{EPOCHS}" in log  # the live job's lines after the deletion reached the log
    assert not (tmp_path / RUN / ".lock").exists()
    again = subprocess.run(_command(tmp_path, target, "-n"), cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
