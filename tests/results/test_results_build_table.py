"""The generic table function on hand-made run folders: declared inputs only, missing seeds, Table 3's median."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import yaml

from weightselect.cli import main
from weightselect.results import build_table, read_finals, read_table, write_table
from weightselect.rundir import RunFileError
from weightselect.study import Study

CONFIG = {
    "variants": {
        "random": {"init": {"baseline": "random"}},
        "ws_uniform": {"init": {"method": "uniform", "layers": "first"}},
        "ws_random": {"init": {"method": "random", "seed": 0}},
        "ws_random_s1": {"init": {"method": "random", "seed": 1}, "paper": {"setting": "ws_random"}},
        "ws_random_s2": {"init": {"method": "random", "seed": 2}, "paper": {"setting": "ws_random"}},
    },
    "studies": {
        "t": {
            "teachers": {"vit_s_in21k": {"source": "hub", "model": {"name": "vit_small_patch16_224.augreg_in21k"}}},
            "students": {"vit_t": {"model": {"name": "vit_tiny_patch16_224"}, "teacher": "vit_s_in21k",
                                   "paper_model": "vit_t"}},
            "datasets": {"cifar100": {}, "pets": {}},
            "seeds": [0, 1, 2],
            "tables": {
                "table2": {"paper": "table2", "rows": "dataset", "variants": ["random", "ws_uniform"],
                           "change_from": "random"},
                "table3": {"paper": "table3", "rows": "variant", "datasets": ["cifar100"],
                           "variants": ["random", "ws_random"],
                           "median_of": {"ws_random": ["ws_random", "ws_random_s1", "ws_random_s2"]}},
            },
        }
    },
}


@pytest.fixture
def study(tmp_path, monkeypatch, make_run):
    """Runs under tmp_path/results/runs with known final top-1 (random 70/72/74, ws_uniform 80/81/82)."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "results" / "runs"
    for dataset in ("cifar100", "pets"):
        for seed, top1 in enumerate((70.0, 72.0, 74.0)):
            make_run(root, "vit_t", dataset, "random", seed, [top1 - 5, top1])
        for seed, top1 in enumerate((80.0, 81.0, 82.0)):
            make_run(root, "vit_t", dataset, "ws_uniform", seed, [top1 - 5, top1])
    # three selection draws, means 60, 90, 75 -> median 75 (the mean of all nine runs is 75 too: shift one)
    for draw, base in (("ws_random", 60.0), ("ws_random_s1", 90.0), ("ws_random_s2", 76.0)):
        for seed, delta in enumerate((-1.0, 0.0, 1.0)):
            make_run(root, "vit_t", "cifar100", draw, seed, [base + delta])
    return Study(CONFIG, "t")


def build(study, name):
    finals = [r.final for r in study.table_runs(name)]
    return build_table(study.table_params(name), finals), finals


def test_table2_cells_are_mean_and_sample_std_over_seeds_beside_the_paper(study):
    table, _ = build(study, "table2")
    row = table.set_index("dataset").loc["cifar100"]
    assert row["random_value"] == pytest.approx(72.0) and row["random_std"] == pytest.approx(2.0)
    assert row["ws_uniform_value"] == pytest.approx(81.0) and row["ws_uniform_std"] == pytest.approx(1.0)
    assert row["random_paper"] == 72.3 and row["ws_uniform_paper"] == 81.4  # paper_numbers.csv, Table 2
    assert row["ws_uniform_diff"] == pytest.approx(81.0 - 81.4)
    assert row["ws_uniform_change"] == pytest.approx(9.0) and row["ws_uniform_change_paper"] == pytest.approx(9.1)
    assert row["random_seeds"] == "0,1,2" and row["random_n"] == 3 and row["random_n_expected"] == 3
    assert list(table["dataset"]) == ["cifar100", "pets"]


def test_a_stray_run_folder_is_not_read(study, tmp_path, make_run):
    before, finals = build(study, "table2")
    make_run(tmp_path / "results" / "runs", "vit_t", "cifar100", "random", 3, [99.0])  # not in the study
    after, _ = build(study, "table2")
    assert after.equals(before)
    assert not any("seed3" in f for f in finals)


def test_a_missing_seed_is_reported_not_filled(study, tmp_path):
    (tmp_path / "results/runs/vit_t/pets/ws_uniform/seed1/final.json").unlink()
    table, _ = build(study, "table2")
    row = table.set_index("dataset").loc["pets"]
    assert row["ws_uniform_n"] == 2 and row["ws_uniform_n_expected"] == 3
    assert row["ws_uniform_missing_seeds"] == "1" and row["ws_uniform_seeds"] == "0,2"
    assert row["ws_uniform_value"] == pytest.approx(81.0)  # (80 + 82) / 2
    assert "missing seeds" in write_table(table, tmp_path / "t.csv").with_suffix(".md").read_text()


def test_table3_random_selection_is_the_median_over_draws(study):
    table, finals = build(study, "table3")
    assert len(finals) == 12  # random x 3 seeds + 3 draws x 3 seeds
    row = table.set_index("variant").loc["ws_random"]
    assert row["vit_t_value"] == pytest.approx(76.0)  # median of the draw means 60, 90, 76
    assert row["vit_t_mean"] == pytest.approx((60 + 90 + 76) / 3)
    assert row["vit_t_n"] == 9 and row["vit_t_n_expected"] == 9
    assert row["vit_t_paper"] == 81.7 and row["vit_t_diff"] == pytest.approx(76.0 - 81.7)
    assert "median over 3" in row["vit_t_aggregation"]
    assert table.set_index("variant").loc["random", "vit_t_value"] == pytest.approx(72.0)
    assert row["label"] == "weight selection (random w/ consistency)" and row["dataset"] == "cifar100"


def test_table3_median_needs_every_draw(study, tmp_path):
    for seed in range(3):
        (tmp_path / f"results/runs/vit_t/cifar100/ws_random_s1/seed{seed}/final.json").unlink()
    table, _ = build(study, "table3")
    row = table.set_index("variant").loc["ws_random"]
    assert math.isnan(row["vit_t_value"]) and row["vit_t_n"] == 6
    assert row["vit_t_missing_seeds"] == "ws_random_s1:0,1,2"


def test_a_final_json_without_the_metric_is_named(tmp_path):
    path = tmp_path / "runs" / "s" / "d" / "v" / "seed0" / "final.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"final_top1": "high"}')
    with pytest.raises(RunFileError, match="final_top1"):
        read_finals([path])


# ------------------------------------------------------------------------------ `weightselect table --table`
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workflow_dir(study, tmp_path):
    """A workflow folder as the CLI reads it: config.yaml (study ``t``) and its schema, runs under results/."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"study": "t", **CONFIG}))
    (tmp_path / "schemas").mkdir()
    shutil.copy(REPO / "schemas" / "config.schema.yaml", tmp_path / "schemas")
    return tmp_path


def test_table_command_builds_a_study_table_from_its_runs_only(workflow_dir, make_run, capsys):
    make_run(workflow_dir / "results" / "runs", "vit_t", "cifar100", "random", 3, [99.0])  # not in the study
    (workflow_dir / "results/runs/vit_t/pets/ws_uniform/seed2/final.json").unlink()
    out = workflow_dir / "tables" / "t2.csv"
    assert main(["table", "--table", "table2", "-o", str(out)]) == 0
    row = read_table(out).set_index("dataset").loc["cifar100"]
    assert row["random_value"] == pytest.approx(72.0) and row["random_std"] == pytest.approx(2.0)  # 70, 72, 74
    assert row["ws_uniform_paper"] == 81.4 and row["random_paper"] == 72.3  # paper Table 2, ViT-T CIFAR-100
    pets = read_table(out).set_index("dataset").loc["pets"]
    assert pets["ws_uniform_missing_seeds"] == "2" and pets["ws_uniform_value"] == pytest.approx(80.5)
    assert out.with_suffix(".md").read_text().startswith("## table2")
    captured = capsys.readouterr()
    assert "median absolute difference" in captured.out  # no |...|: reST reads it as a substitution
    assert "1 of 12 runs of study 't' not finished" in captured.err and "pets/ws_uniform/seed2" in captured.err


def test_table_command_prints_the_median_over_draws_without_output(workflow_dir, capsys):
    assert main(["table", "--configfile", str(workflow_dir / "config.yaml"), "--study", "t",
                 "--table", "table3"]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("| ws_random "))
    assert "76.00 +- " in row and "(9/9)" in row  # median of the draw means 60, 90, 76


def test_table_command_lists_tables_and_names_bad_input(workflow_dir, capsys):
    assert main(["table", "--list"]) == 0
    head, *rows = capsys.readouterr().out.splitlines()
    assert head.startswith("study 't' of config.yaml") and [r.split()[0] for r in rows] == ["table2", "table3"]
    assert main(["table", "--table", "table9"]) == 2
    assert "--table table9: study 't' has no such table; its tables: table2, table3" in capsys.readouterr().err
    assert main(["table", "--study", "paper", "--table", "table2"]) == 2
    assert "study 'paper' is not in config.yaml" in capsys.readouterr().err
    assert main(["table", "--configfile", "nope.yaml", "--table", "table2"]) == 2
    assert "--configfile nope.yaml: no such file" in capsys.readouterr().err
    (workflow_dir / "config.yaml").write_text(yaml.safe_dump({"study": "t", "studies": {"t": {"seeds": "x"}}}))
    assert main(["table", "--table", "table2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("weightselect table: error: config.yaml breaks config.schema.yaml: ") and len(err.strip().splitlines()) == 1
    assert main(["table"]) == 2
    assert "needs --table NAME" in capsys.readouterr().err
