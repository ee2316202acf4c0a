"""Progress at the console of a workflow job: the training's epoch lines reach the job's own stderr
(which Snakemake shows), rate-limited, while the rule's log keeps every line."""
from __future__ import annotations

import logging
import sys

import pytest

from weightselect import rulelog
from weightselect.training.loop import train


@pytest.fixture
def job(tmp_path, monkeypatch):
    """Starts a workflow job's logging, as workflow scripts do, from the test itself (pytest sets
    sys.stderr anew between a fixture and the test); undone after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(rulelog, "_console", None)
    log = tmp_path / "results" / "logs" / "teachers" / "vit_letters.log"

    def start():
        monkeypatch.setattr(sys, "stderr", sys.stderr)  # the console: pytest's capture
        monkeypatch.setattr(sys, "excepthook", sys.excepthook)
        rulelog.start(log)
        return log

    yield start
    root.handlers[:], root.level = handlers, level


def test_a_training_job_shows_its_epochs_at_the_console_and_logs_them(job, tmp_path, capsys, tiny_vit,
                                                                       fast_recipe, monkeypatch):
    monkeypatch.setattr(rulelog, "CONSOLE_INTERVAL", 1e9)  # only the forced lines: start, first and last epoch
    recipe = {**fast_recipe, "epochs": 3, "train_samples": 100}
    log = job()
    train(tiny_vit, "digits", tmp_path / "run", recipe=recipe, progress=False)
    console = capsys.readouterr().err.splitlines()
    assert [line.split("  (")[0].split("  top-1")[0] for line in console] == [
        "[teachers/vit_letters] training vit_tiny_patch16_224 on digits from epoch 1 of 3 "
        "(2 updates per epoch, device cpu)",
        "[teachers/vit_letters] epoch 1/3", "[teachers/vit_letters] epoch 3/3"]
    assert all(line.endswith("s into the job)") and "top-1" in line for line in console[1:])
    top1 = float(console[-1].split("top-1 ")[1].split()[0])
    log = log.read_text()
    assert "job started" in log and "[teachers/vit_letters]" not in log  # the log: its own lines, not the console's
    assert [line.split("  lr")[0] for line in log.splitlines() if line.startswith("epoch ")] == [
        "epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert f"top1 {top1:.2f}" in [line for line in log.splitlines() if line.startswith("epoch 3/3")][0]


def test_with_no_interval_every_epoch_and_batch_is_shown(job, tmp_path, capsys, tiny_vit, fast_recipe,
                                                         monkeypatch):
    monkeypatch.setattr(rulelog, "CONSOLE_INTERVAL", 0.0)
    log = job()
    train(tiny_vit, "digits", tmp_path / "run", recipe={**fast_recipe, "train_samples": 100}, progress=False)
    console = capsys.readouterr().err
    assert "epoch 1/2: batch 1/2  loss" in console and "epoch 2/2: batch 2/2  loss" in console
    assert "epoch 2/2  top-1" in console
    assert "batch" not in log.read_text()  # batch lines are for the console only


def test_progress_outside_a_job_is_silent_and_a_job_is_named_by_its_log(capsys, monkeypatch):
    monkeypatch.setattr(rulelog, "_console", None)
    assert rulelog.progress("epoch 1/2", force=True) is False and not rulelog.progress_due()
    assert capsys.readouterr().err == ""
    assert rulelog._job_label(rulelog.Path("results/logs/runs/vit/digits/random/seed0.log")) == \
        "runs/vit/digits/random/seed0"
    assert rulelog._job_label(rulelog.Path("elsewhere/job.log")) == "job"


def test_a_torchrun_jobs_epoch_lines_are_relayed_to_the_console(monkeypatch):
    """With several processes the job relays torchrun's output: every line to the log, epoch lines
    also to the console."""
    import io

    from weightselect.training.launch import _run_relayed

    log, console = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(rulelog, "_console", rulelog._Console(console, "runs/x"))
    monkeypatch.setattr(rulelog, "CONSOLE_INTERVAL", 0.0)
    code = _run_relayed([sys.executable, "-c", "print('starting'); print('epoch 1/2  lr 1e-3  top1 50.00')"])
    assert code == 0 and log.getvalue() == "starting\nepoch 1/2  lr 1e-3  top1 50.00\n"
    assert console.getvalue().startswith("[runs/x] epoch 1/2  lr 1e-3  top1 50.00  (0m0")
    assert len(console.getvalue().splitlines()) == 1
