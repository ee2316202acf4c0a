import math

import pandas as pd
import pytest

from weightselect.results.runs import collect_runs, expected_runs
from weightselect.results.tables import read_table, reading_view, table2, table3, to_markdown, write_table


@pytest.fixture
def runs(runs_root):
    return collect_runs(runs_root)


@pytest.fixture
def expected():
    return expected_runs(["demo_vit"], ["cifar100", "pets"], ["random", "ws_uniform"], [0, 1, 2])


def test_table2_against_the_paper(runs, expected):
    t = table2(runs, "demo_vit", expected=expected, paper_model="vit_t").set_index("dataset")
    assert list(t.index) == ["cifar100", "pets"]  # the paper's order
    c = t.loc["cifar100"]
    assert c.random_mean == pytest.approx(72.0) and c.random_std == pytest.approx(2.0)
    assert c.random_n == 3 and c.random_n_expected == 3 and c.random_seeds == "0,1,2"
    assert pd.isna(c.random_missing_seeds)
    assert c.random_paper == 72.3 and c.random_diff == pytest.approx(-0.3)
    assert c.ws_uniform_mean == pytest.approx(80.5) and c.ws_uniform_std == pytest.approx(0.5 ** 0.5)
    assert c.ws_uniform_seeds == "0,1" and c.ws_uniform_missing_seeds == "2"  # seed 2 unfinished
    assert c.ws_uniform_paper == 81.4 and c.ws_uniform_diff == pytest.approx(-0.9)
    assert c.ws_uniform_change == pytest.approx(8.5) and c.ws_uniform_change_paper == pytest.approx(9.1)
    p = t.loc["pets"]
    assert p.random_mean == 25.5 and math.isnan(p.random_std) and p.random_missing_seeds == "1,2"
    assert p.ws_uniform_n == 0 and math.isnan(p.ws_uniform_mean) and p.ws_uniform_missing_seeds == "0,1,2"
    assert p.ws_uniform_paper == 68.6 and math.isnan(p.ws_uniform_diff) and math.isnan(p.ws_uniform_change)
    assert p.ws_uniform_change_paper == pytest.approx(43.6)


def test_table2_column_layout(runs):
    t = table2(runs, "demo_vit", paper_model="vit_t")
    stats = ["mean", "std", "paper", "diff", "n", "n_expected", "seeds", "missing_seeds"]
    assert list(t.columns) == (["student", "dataset", "paper_model", "paper_dataset"]
                               + [f"random_{s}" for s in stats] + [f"ws_uniform_{s}" for s in stats]
                               + ["ws_uniform_change", "ws_uniform_change_paper"])
    assert t["random_n_expected"].isna().all()  # nothing expected -> no missing information


def test_table2_without_a_paper_counterpart_has_empty_paper_columns(runs):
    t = table2(runs, "demo_cnx")
    assert t.dataset.tolist() == ["cifar100"]
    assert t[["random_paper", "ws_uniform_paper", "random_diff", "ws_uniform_change_paper"]].isna().all().all()
    assert t.random_mean.iloc[0] == pytest.approx(61.0) and t.ws_uniform_change.iloc[0] == pytest.approx(5.0)
    # a study dataset the paper lacks stays empty even for a paper model
    t = table2(runs, "demo_vit", paper_model="vit_t", datasets=["cifar100", "tiny_demo"]).set_index("dataset")
    assert math.isnan(t.loc["tiny_demo", "random_paper"]) and t.loc["tiny_demo", "random_n"] == 0
    # ... unless the study maps it to a paper dataset
    t = table2(runs, "demo_vit", paper_model="vit_t", datasets=["tiny_demo"], dataset_map={"tiny_demo": "dtd"})
    assert t.random_paper.iloc[0] == 49.4


def test_table2_errors(runs):
    with pytest.raises(ValueError, match="unknown paper model 'resnet'"):
        table2(runs, "demo_vit", paper_model="resnet")
    with pytest.raises(ValueError, match="no runs for student 'nobody'.*demo_cnx"):
        table2(runs, "nobody")


def test_table3_one_row_per_init_and_a_column_group_per_student(runs_root, runs):
    variants = ["random", "xavier", "ws_uniform"]
    expected = expected_runs(["demo_vit", "demo_cnx"], ["cifar100"], variants, [0, 1])
    t = table3(runs, "cifar100", variants=variants, expected=expected,
               paper_models={"demo_vit": "vit_t"}).set_index("variant")
    assert list(t.index) == variants
    assert t.loc["xavier", "label"] == "Xavier init"
    assert t.loc["xavier", "demo_vit_paper"] == 72.1 and t.loc["xavier", "demo_vit_n"] == 0
    assert t.loc["xavier", "demo_vit_missing_seeds"] == "0,1"
    assert t.loc["random", "demo_vit_mean"] == pytest.approx(72.0)
    assert t.loc["random", "demo_vit_seeds"] == "0,1,2" and pd.isna(t.loc["random", "demo_vit_missing_seeds"])
    assert t.loc["ws_uniform", "demo_vit_diff"] == pytest.approx(80.5 - 81.4)
    assert t["demo_cnx_paper"].isna().all()
    assert t.loc["random", "demo_cnx_std"] == pytest.approx(2 ** 0.5)
    assert t.loc["ws_uniform", "demo_cnx_missing_seeds"] == "1"
    assert [c for c in t.columns if c.startswith("demo_cnx")][:4] == [
        "demo_cnx_mean", "demo_cnx_std", "demo_cnx_paper", "demo_cnx_diff"]


def test_write_table_round_trip(tmp_path, runs, expected):
    t = table2(runs, "demo_vit", expected=expected, paper_model="vit_t")
    out = write_table(t, tmp_path / "tables" / "table2_demo_vit.csv", title="Table 2: demo_vit")
    assert out.is_file() and out.with_suffix(".md").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["table2_demo_vit.csv", "table2_demo_vit.md"]
    back = read_table(out)
    pd.testing.assert_frame_equal(back, t, check_dtype=False, rtol=1e-5)
    back = pd.read_csv(out)  # also plain pandas
    assert back.ws_uniform_mean.tolist()[0] == pytest.approx(80.5)
    md = out.with_suffix(".md").read_text().splitlines()
    assert md[0] == "## Table 2: demo_vit"
    # the Markdown is the reading view: one "mean +- std (found/expected)" cell per variant
    assert md[2].startswith(
        "| student | dataset | paper_model | paper_dataset | random | random paper | random ours - paper |")
    assert "ws_uniform missing seeds" in md[2] and "_std" not in md[2] and "_seeds" not in md[2]
    assert len(md) == 2 + 2 + len(t)
    pets = next(line for line in md if "| pets |" in line)
    # random: one seed of three (1 and 2 missing), 0.5 above the paper's 25.0; ws_uniform: none found
    assert "| 25.50 (1/3) | 25.00 | 0.50 | 1,2 | - (0/3) | 68.60 |" in pets


def test_reading_view_collapses_groups_and_drops_empty_columns():
    t = pd.DataFrame({
        "student": ["s", "s"], "dataset": ["a", "b"], "paper_model": [float("nan")] * 2,
        "random_mean": [50.0, float("nan")], "random_std": [2.0, float("nan")], "random_paper": [float("nan")] * 2,
        "random_n": [3, 0], "random_n_expected": [3, 3], "random_seeds": ["0,1,2", float("nan")],
        "random_missing_seeds": [float("nan"), "0,1,2"],
        "ws_mean": [60.0, 70.0], "ws_std": [float("nan"), 1.5], "ws_n": [1, 2], "ws_n_expected": [1, 2],
        "ws_change": [10.0, float("nan")],
    })
    view = reading_view(t)
    assert list(view.columns) == ["student", "dataset", "random", "random missing seeds", "ws", "ws change"]
    assert view["random"].tolist() == ["50.00 +- 2.00 (3/3)", "- (0/3)"]
    assert view["ws"].tolist() == ["60.00 (1/1)", "70.00 +- 1.50 (2/2)"]
    assert view["random missing seeds"].isna().tolist() == [True, False]


def test_write_table_needs_a_csv_name(tmp_path, runs):
    with pytest.raises(ValueError, match="should end in .csv"):
        write_table(table2(runs, "demo_cnx"), tmp_path / "out" / "t.txt")
    assert not (tmp_path / "out").exists()


def test_to_markdown_alignment_and_empty_cells():
    df = pd.DataFrame({"name": ["a|b", "c"], "x": [1.234, float("nan")], "n": [3, 0]})
    assert to_markdown(df).splitlines() == [
        "| name | x | n |", "| :--- | ---: | ---: |", "| a\\|b | 1.23 | 3 |", "| c |  | 0 |"]


def test_expected_as_a_list_of_tuples(runs):
    # the workflow passes its grid as (student, dataset, variant, seed) tuples
    t = table2(runs, "demo_vit", expected=[("demo_vit", "pets", "ws_uniform", 5), ("demo_vit", "dtd", "random", 0)],
               variants=["random", "ws_uniform"]).set_index("dataset")
    assert list(t.index) == ["cifar100", "pets", "dtd"]
    assert t.loc["pets", "ws_uniform_missing_seeds"] == "5" and t.loc["pets", "ws_uniform_n_expected"] == 1
    assert t.loc["dtd", "random_missing_seeds"] == "0" and t.loc["dtd", "random_n"] == 0
    assert t.loc["cifar100", "random_n_expected"] == 0 and t.loc["cifar100", "random_n"] == 3
