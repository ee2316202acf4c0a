"""The offline all-tables studies: `cpu` (every table and figure of the paper at CPU scale) and its
tiny twin `ci_all`, which runs end to end here (marked slow).

Dry runs check the plan (every paper table and figure, offline teachers only, the demo's runs reused
as they are); the slow test checks what is robust in a real run of `ci_all`: every table has every
cell with every seed, every figure file decodes to a non-blank image, and weight selection beats
random init where the margin is far above the seeds' spread (the ConvNeXt on digits).
"""
from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"

PAPER_TABLES = [f"table{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 17)]
PAPER_FIGURES = {"fig3": "curves", "fig4a": "epochs", "fig4b": "pretraining", "fig5": "attention"}
ALL_TABLE_STUDIES = ("cpu", "ci_all")


def snakemake(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


def load_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def study_of(name: str):
    from weightselect.study import Study

    return Study(load_config(), name)


# ------------------------------------------------------------------------------ the plan (fast)
@pytest.mark.parametrize("name", ALL_TABLE_STUDIES)
def test_study_declares_every_paper_table_and_figure(name):
    study = study_of(name)
    paper = {t for t in study.tables if re.fullmatch(r"table\d+", t)}
    assert sorted(paper) == sorted(PAPER_TABLES)
    # any other table is beyond the paper: no paper numbers beside it, every claim its own
    for table in set(study.tables) - paper:
        assert study.tables[table]["claims"] and not study.table_params(table)["paper"], table
    assert {f: spec["kind"] for f, spec in study.figures.items()} == PAPER_FIGURES


@pytest.mark.parametrize("name", ALL_TABLE_STUDIES)
def test_study_is_offline(name):
    """Every teacher is pretrained by the workflow on a dataset that needs no download."""
    study = study_of(name)
    assert study.spec["download"] is False
    for teacher, spec in study.teachers.items():
        assert spec["source"] == "pretrain", teacher
        assert spec["pretrain"]["dataset"] in ("letters", "symbols", "digits", "font_digits"), teacher
    for dataset in study.datasets:
        assert study.source_dataset(dataset) in ("letters", "symbols", "digits"), dataset


def test_cpu_study_reuses_the_demo_runs_unchanged():
    """The cpu study's shared names (teachers, students, datasets, seeds) are the demo's, spec for spec,
    so that a demo already run is reused and the same folder never holds two meanings."""
    studies = load_config()["studies"]
    demo, cpu = studies["demo"], studies["cpu"]
    for part in ("teachers", "students", "datasets"):
        for name in demo[part]:
            assert cpu[part][name] == demo[part][name], (part, name)
    assert cpu["seeds"] == demo["seeds"]
    cpu_study, demo_study = study_of("cpu"), study_of("demo")
    shared = set(cpu_study.runs()) & set(demo_study.runs())
    assert set(demo_study.runs()) <= set(cpu_study.runs())
    for run in shared:
        assert cpu_study.train_params(run) == demo_study.train_params(run), run


def test_cpu_study_stand_ins_have_the_shapes_the_docs_give():
    """Table 8: teachers of 2x, 4x and 6x the student's width; Table 16: same width, twice the depth;
    Table 17: wider and deeper; Table 4: a teacher trained on the student's own dataset."""
    from weightselect.study import model_shape

    study = study_of("cpu")

    def shape(kind: str, name: str):
        spec = study.students[name] if kind == "student" else study.teachers[name]
        return model_shape(spec["model"])

    def cell_teachers(table: str):
        return [study.init_teacher(c["student"], c["variant"]) for c in study.table_cells(table)]

    student_width = shape("student", "vit_w32")[1]
    widths = [shape("teacher", t)[1] for t in dict.fromkeys(cell_teachers("table8")) if t]
    assert widths == [2 * student_width, 4 * student_width, 6 * student_width]
    for table, wider in (("table16", False), ("table17", True)):
        (student,) = study.tables[table]["students"]
        _, s_width, s_depth = shape("student", student)
        for teacher in set(cell_teachers(table)):
            _, t_width, t_depth = shape("teacher", teacher)
            assert t_depth == 2 * s_depth and (t_width > s_width if wider else t_width == s_width)
    # Table 4 distils features from the students' own selection teacher, as the paper's CIFAR-100 rows,
    # and logits from a teacher of the students' own classes learnt from other data (typeset digits),
    # as its ImageNet rows
    (student,) = study.tables["table4"]["students"]
    kinds = {}
    for cell in study.table_cells("table4"):
        teacher = study.distill_teacher(cell["variant"])
        if teacher:
            kinds.setdefault(study.variant(cell["variant"])["distill"]["kind"], set()).add(teacher)
    assert kinds["feature"] == {study.students[student]["teacher"]}
    (logit_teacher,) = kinds["logit"]
    from weightselect.training.catalog import dataset_info
    from weightselect.training.data import build_dataset

    pretrain = study.teachers[logit_teacher]["pretrain"]["dataset"]
    assert pretrain != "digits" and (build_dataset(pretrain, n_per_class=1).classes
                                     == build_dataset("digits").classes)
    assert dataset_info(pretrain).num_classes == dataset_info("digits").num_classes


@pytest.mark.parametrize("name", ALL_TABLE_STUDIES)
def test_dry_run_plans_every_table_and_figure_offline(name, tmp_path):
    done = snakemake("-n", "--config", f"study={name}", "--directory", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout + done.stderr
    study = study_of(name)
    for target in study.targets():
        assert target in out, target
    assert "rule fetch_hub_teacher" not in out and "rule prepare_dataset" not in out
    assert out.count("rule pretrain_teacher:") == len(study.teachers)
    assert out.count("rule train:") == len(study.runs())


# ------------------------------------------------------------------------------ end to end (slow)
@pytest.mark.slow
def test_ci_all_study_end_to_end(tmp_path):
    """`ci_all` with the real rules into a temporary folder: every table and figure of the paper."""
    done = snakemake("--cores", "2", "--config", "study=ci_all", "--directory", str(tmp_path),
                     cwd=tmp_path, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    results = tmp_path / "results"
    study = study_of("ci_all")
    for table in study.tables:
        check_every_cell(results / "tables" / f"{table}.csv", study, table)
        assert (results / "tables" / f"{table}.md").read_text().count("\n") >= 3
    check_figures(results, study)
    check_claims(results, study)
    check_weight_selection_beats_random(results, study)


def check_claims(results: Path, study) -> None:
    """Every claim of every table and figure has a verdict per scope, from every run it compares;
    results/claims.csv has each claim once, with the verdict of its own file's overall row."""
    from weightselect.results.claims import VERDICTS

    files = [(results / "tables" / f"{t}.claims.csv", spec["claims"]) for t, spec in study.tables.items()]
    files += [(results / "figures" / f"{f}.claims.csv", spec["claims"]) for f, spec in study.figures.items()
              if spec["claims"]]
    summary = pd.read_csv(results / "claims.csv")
    assert len(summary) == sum(len(claims) for _, claims in files)
    for path, claims in files:
        df = pd.read_csv(path)
        assert set(df["verdict"]) <= set(VERDICTS), path
        for claim in claims:
            rows = df[(df["better"] == claim["better"]) & (df["than"] == claim["than"])]
            scoped = rows[rows["scope"] != "all"]
            assert len(scoped) == len(claim["scopes"]), (path, claim["claim"])
            if path.parent.name == "tables":  # runs: every seed of every draw on each side
                for scope, (_, row) in zip(claim["scopes"], scoped.iterrows()):
                    assert row["n_better"] == len(scope["better"]) * len(study.seeds), (path, claim["claim"])
                    assert row["n_than"] == len(scope["than"]) * len(study.seeds), (path, claim["claim"])
            overall = rows[rows["scope"] == "all"] if len(scoped) > 1 else scoped
            mine = summary[(summary["result"] == path.name[: -len(".claims.csv")])
                           & (summary["better"] == claim["better"]) & (summary["than"] == claim["than"])]
            assert list(mine["verdict"]) == list(overall["verdict"]), (path, claim["claim"])


def check_every_cell(csv: Path, study, table: str) -> None:
    """One row per combination of the row axes, one column group per combination of the other axes
    that vary, and in every cell every seed (of every selection draw) and a top-1 in [0, 100]."""
    spec = study.tables[table]
    df = pd.read_csv(csv)
    values = {"student": spec["students"], "dataset": spec["datasets"], "variant": spec["variants"]}
    rows = list(itertools.product(*(values[a] for a in spec["rows"])))
    assert [tuple(r) for r in df[spec["rows"]].astype(str).itertuples(index=False)] == rows, table
    groups = [c[: -len("_n")] for c in df.columns if c.endswith("_n")]
    varying = [a for a in spec["columns"] if len(values[a]) > 1] or spec["columns"][:1]
    assert len(groups) == len(list(itertools.product(*(values[a] for a in varying)))), (table, groups)
    for g in groups:
        assert (df[f"{g}_n"] == df[f"{g}_n_expected"]).all(), (table, g)
        assert df[f"{g}_missing_seeds"].isna().all(), (table, g)
        assert df[f"{g}_value"].between(0, 100).all(), (table, g)
        assert (df[f"{g}_std"] >= 0).all(), (table, g)
    if spec.get("change_from"):
        base = df.set_index(spec["rows"][0]) if spec["rows"] == ["variant"] else None
        if base is not None:
            for g in groups:
                change = base[f"{g}_value"] - base.loc[spec["change_from"], f"{g}_value"]
                assert (base[f"{g}_change"] - change).abs().max() < 1e-3  # the CSV keeps 6 digits


def check_figures(results: Path, study) -> None:
    import matplotlib.image

    for figure in study.figures:
        for png in study.figure_outputs(figure):
            image = matplotlib.image.imread(results.parent / png)
            assert image.shape[0] > 200 and image.shape[1] > 300, png
            assert image[..., :3].std() > 0.05, png  # not a blank canvas


def check_weight_selection_beats_random(results: Path, study) -> None:
    """Table 2 on digits, ConvNeXt: weight selection beats random init by far more than the seeds'
    spread. A direct run of the same settings gave 73.3 / 72.4 (random) against 78.3 / 78.0 (weight
    selection) for seeds 0 / 1. The tiny ViT is not asserted: at this size both of its inits stay
    near chance after 2 epochs (10.4 % on digits), so no margin there is robust."""
    t2 = pd.read_csv(results / "tables" / "table2.csv").set_index("dataset")
    on = t2.loc["digits"]
    student = "tiny_convnext"
    noise = max(on[f"{student}_random_std"], on[f"{student}_ws_uniform_std"])
    assert on[f"{student}_ws_uniform_change"] > max(2.0, 4 * noise), on.to_dict()
