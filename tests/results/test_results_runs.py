import json
import math

import pandas as pd
import pytest

from weightselect.results.runs import (
    RUN_COLUMNS,
    collect_curves,
    collect_runs,
    expected_runs,
    summarize,
    unfinished_runs,
)


def test_collect_runs_one_row_per_finished_run(runs_root):
    df = collect_runs(runs_root)
    assert list(df.columns) == RUN_COLUMNS
    assert len(df) == 9  # 10 run folders, one unfinished
    assert df["finished"].all()
    row = df[(df.student == "demo_vit") & (df.dataset == "pets")].iloc[0]
    assert (row.variant, row.seed) == ("random", 0)
    assert row.final_top1 == 25.5 and row.best_top1 == 26.0 and row.final_top5 == 35.5
    assert row.epochs == 3 and row.train_seconds == 4.5 and row.epochs_done == 3
    assert row.path == str(runs_root / "demo_vit" / "pets" / "random" / "seed0")
    assert df["seed"].dtype.kind == "i"


def test_unfinished_runs_are_reported_not_tabled(runs_root):
    assert not ((collect_runs(runs_root).variant == "ws_uniform") & (collect_runs(runs_root).seed == 2)).any()
    todo = unfinished_runs(runs_root)
    assert list(zip(todo.student, todo.dataset, todo.variant, todo.seed)) == [("demo_vit", "cifar100", "ws_uniform", 2)]
    assert todo.epochs_done.tolist() == [1]
    assert math.isnan(todo.final_top1.iloc[0])
    everything = collect_runs(runs_root, include_unfinished=True)
    assert len(everything) == 10 and (~everything.finished).sum() == 1


def test_best_top1_falls_back_to_the_curve(tmp_path, make_run):
    run = make_run(tmp_path, "s", "d", "random", 0, [50.0, 60.0, 55.0])
    final = json.loads((run / "final.json").read_text())
    del final["best_top1"]
    (run / "final.json").write_text(json.dumps(final))
    assert collect_runs(tmp_path).best_top1.tolist() == [60.0]


def test_empty_or_absent_runs_folder_gives_a_clear_error(tmp_path, make_run):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_runs(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no finished runs"):
        collect_runs(tmp_path)
    with pytest.raises(ValueError, match="no metrics.jsonl"):
        collect_curves(tmp_path)
    make_run(tmp_path, "s", "d", "random", 0, [1.0], finished=False)
    with pytest.raises(ValueError, match="no finished runs"):
        collect_runs(tmp_path)


def test_folders_outside_the_layout_are_ignored(runs_root):
    (runs_root / "demo_vit" / "cifar100" / "random" / "seed_old").mkdir()
    (runs_root / "demo_vit" / "cifar100" / "random" / "notes.txt").write_text("x")
    assert len(collect_runs(runs_root)) == 9


def test_collect_curves_rows_per_epoch(runs_root):
    curves = collect_curves(runs_root)
    assert len(curves) == 3 * 9 + 1
    one = curves[(curves.student == "demo_vit") & (curves.variant == "random") & (curves.seed == 1)]
    assert one.epoch.tolist() == [1, 2, 3]
    assert one.test_top1.tolist() == [52.0, 62.0, 72.0]
    assert one.train_loss.tolist() == pytest.approx([4.0, 2.0, 4.0 / 3])
    assert one.lr.tolist() == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])
    assert not curves[(curves.variant == "ws_uniform") & (curves.seed == 2)].finished.any()


def test_metrics_last_line_cut_short_is_skipped_but_a_bad_middle_line_fails(tmp_path, make_run):
    run = make_run(tmp_path, "s", "d", "random", 0, [10.0, 20.0], finished=False)
    path = run / "metrics.jsonl"
    path.write_text(path.read_text() + '{"epoch": 3, "test_to')
    with pytest.warns(UserWarning, match="incomplete last line"):
        curves = collect_curves(tmp_path)
    assert curves.epoch.tolist() == [1, 2]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        collect_curves(tmp_path)


def test_repeated_epochs_keep_the_last_entry(tmp_path, make_run):
    run = make_run(tmp_path, "s", "d", "random", 0, [10.0, 20.0])
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"epoch": 2, "test_top1": 25.0, "train_loss": 1.0, "lr": 0.1}) + "\n")
    curves = collect_curves(tmp_path)
    assert curves.test_top1.tolist() == [10.0, 25.0]


def test_summarize_mean_std_and_missing_seeds(runs_root):
    runs = collect_runs(runs_root)
    expected = expected_runs(["demo_vit"], ["cifar100", "pets"], ["random", "ws_uniform"], [0, 1, 2])
    s = summarize(runs[runs.student == "demo_vit"], expected).set_index(["dataset", "variant"])
    assert s.loc[("cifar100", "random"), "mean"] == pytest.approx(72.0)
    assert s.loc[("cifar100", "random"), "std"] == pytest.approx(2.0)  # sqrt((4 + 0 + 4) / 2)
    assert s.loc[("cifar100", "ws_uniform"), "std"] == pytest.approx(math.sqrt(0.5))
    assert s.loc[("cifar100", "ws_uniform"), "seeds"] == "0,1"
    assert s.loc[("cifar100", "ws_uniform"), "missing_seeds"] == "2"
    assert pd.isna(s.loc[("cifar100", "random"), "missing_seeds"])
    assert math.isnan(s.loc[("pets", "random"), "std"])
    pets_ws = s.loc[("pets", "ws_uniform")]
    assert pets_ws["n"] == 0 and math.isnan(pets_ws["mean"]) and pets_ws["missing_seeds"] == "0,1,2"
    assert (s["n_expected"] == 3).all()


def test_summarize_without_expected_has_no_missing_information(runs_root):
    s = summarize(collect_runs(runs_root))
    assert len(s) == 5
    assert s["n_expected"].isna().all() and s["missing_seeds"].isna().all()
    with pytest.raises(ValueError, match="no column 'top1'"):
        summarize(collect_runs(runs_root), metric="top1")


def test_bad_final_json_names_the_file_and_the_fix(tmp_path, make_run):
    run = make_run(tmp_path, "s", "d", "random", 0, [50.0])
    (run / "final.json").write_text('{"final_top1": ')
    with pytest.raises(ValueError, match=r"seed0/final.json: not valid JSON.*--force"):
        collect_runs(tmp_path)
    (run / "final.json").write_text('{"epochs": 1}')
    with pytest.raises(ValueError, match="no 'final_top1' key"):
        collect_runs(tmp_path)


def test_a_misfiled_run_is_flagged(tmp_path, make_run):
    run = make_run(tmp_path, "s", "d", "random", 3, [50.0])
    final = json.loads((run / "final.json").read_text())
    final["seed"] = 4
    (run / "final.json").write_text(json.dumps(final))
    with pytest.warns(UserWarning, match="seed 4 differs from its folder seed3"):
        df = collect_runs(tmp_path)
    assert df.seed.tolist() == [3]  # the folder is the key
