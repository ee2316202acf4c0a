"""A run's logs in the formats people read: summary.csv (timm's per-epoch table) from the same
records as metrics.jsonl, and TensorBoard event files as an option (off by default)."""
import csv
import importlib.util
import json
import shutil
import sys

import pytest

from weightselect.cli import main
from weightselect.training.loop import train
from weightselect.training.run import SUMMARY_COLUMNS, summary_csv

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _summary(run):
    with open(run / "summary.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def _event_files(run):
    return sorted(p.name for p in run.rglob("*") if "tfevents" in p.name)


def _same_as_metrics(run):
    """summary.csv has metrics.jsonl's records, one row each, the same numbers."""
    header, rows = _summary(run)
    records = _metrics(run)
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        assert set(row) == set(record)
        assert {k: float(v) for k, v in row.items()} == {k: float(v) for k, v in record.items()}
    return header, rows


def test_summary_csv_has_one_row_per_epoch_from_the_records(tmp_path, tiny_vit, fast_recipe):
    run = tmp_path / "run"
    train(tiny_vit, "digits", run, seed=1, recipe=fast_recipe, progress=False)
    header, rows = _same_as_metrics(run)
    assert header == list(SUMMARY_COLUMNS)  # epoch, train_loss, test_loss, test_top1, test_top5, lr, seconds, ...
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["seconds"]) > 0 and 0 <= float(r["test_top1"]) <= 100 for r in rows)
    assert not (run / "tensorboard").exists() and _event_files(run) == []  # the option is off by default


def test_summary_columns_follow_the_records():
    history = [{"epoch": 1, "lr": 0.5, "test_top1": 10.0, "extra": 3}, {"epoch": 2, "lr": 0.25, "test_top1": 20.0}]
    lines = summary_csv(history).splitlines()
    assert lines == ["epoch,test_top1,lr,extra", "1,10.0,0.5,3", "2,20.0,0.25,"]
    assert summary_csv([]) == ""
    assert float(summary_csv([{"epoch": 1, "lr": 0.1 + 0.2}]).splitlines()[1].split(",")[1]) == 0.1 + 0.2


def test_summary_after_a_resume_has_each_epoch_once(tmp_path, tiny_vit, fast_recipe):
    recipe = {**fast_recipe, "epochs": 3}
    run = tmp_path / "run"
    assert train(tiny_vit, "digits", run, recipe=recipe, stop_after_epochs=1, progress=False) is None
    assert [int(r["epoch"]) for r in _summary(run)[1]] == [1]
    shutil.copy(run / "checkpoint.pt", tmp_path / "epoch1.pt")
    assert train(tiny_vit, "digits", run, recipe=recipe, stop_after_epochs=1, progress=False) is None
    assert [int(r["epoch"]) for r in _summary(run)[1]] == [1, 2]
    # a job preempted before its epoch-2 checkpoint reached the disk: epoch 2 is trained again
    shutil.copy(tmp_path / "epoch1.pt", run / "checkpoint.pt")
    train(tiny_vit, "digits", run, recipe=recipe, stop_at_update=12, progress=False)  # stops in epoch 2
    assert [int(r["epoch"]) for r in _summary(run)[1]] == [1]
    train(tiny_vit, "digits", run, recipe=recipe, progress=False)
    _, rows = _same_as_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_tensorboard_without_the_package_is_one_clear_error(tmp_path, tiny_vit, fast_recipe, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match=r"pip install 'weightselect\[tensorboard\]'"):
        train(tiny_vit, "digits", run, recipe=fast_recipe, progress=False, tensorboard=True)
    assert not run.exists()  # refused before the run folder is made
    code = main(["train", "--model", tiny_vit["name"], "--model-kwargs", json.dumps(tiny_vit["kwargs"]),
                 "--dataset", "digits", "--set", "epochs=1", "--out", str(run), "--tensorboard"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--tensorboard" in err and "pip install 'weightselect[tensorboard]'" in err
    assert not run.exists()


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="the tensorboard package (optional extra) is not installed")
def test_tensorboard_events_hold_each_epoch_once_after_a_resume(tmp_path, tiny_vit, fast_recipe):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = {**fast_recipe, "epochs": 3}
    run = tmp_path / "run"
    assert train(tiny_vit, "digits", run, recipe=recipe, stop_after_epochs=2, progress=False, tensorboard=True) is None
    shutil.copy(run / "checkpoint.pt", tmp_path / "epoch2.pt")
    train(tiny_vit, "digits", run, recipe=recipe, progress=False, tensorboard=True)
    # preempted after epoch 2 once more (older checkpoint): epoch 3 is trained and logged again
    (run / "final.json").unlink()
    shutil.copy(tmp_path / "epoch2.pt", run / "checkpoint.pt")
    train(tiny_vit, "digits", run, recipe=recipe, progress=False, tensorboard=True)
    assert len(_event_files(run)) == 3
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    records = _metrics(run)
    for key, tag in (("train_loss", "train/loss"), ("test_loss", "eval/loss"), ("test_top1", "eval/top1"),
                     ("test_top5", "eval/top5"), ("lr", "train/lr"), ("seconds", "time/epoch_seconds")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2, 3], tag
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in records], rel=1e-6), tag
