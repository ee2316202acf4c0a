import pandas as pd
import pytest

from weightselect.cli import main
from weightselect.results import read_table


def test_table2_command(tmp_path, runs_root, capsys):
    out = tmp_path / "tables" / "table2_demo_vit.csv"
    rc = main(["table", "--runs", str(runs_root), "--kind", "table2", "--student", "demo_vit",
               "--paper-model", "vit_t", "--seeds", "0", "1", "2", "-o", str(out)])
    assert rc == 0
    t = read_table(out).set_index("dataset")
    assert t.loc["cifar100", "ws_uniform_missing_seeds"] == "2"
    assert t.loc["pets", "ws_uniform_paper"] == 68.6
    assert out.with_suffix(".md").read_text().startswith("## Table 2: demo_vit vs paper vit_t")
    err = capsys.readouterr().err
    assert "1 unfinished run(s)" in err and "demo_vit/cifar100/ws_uniform/seed2 (epoch 1)" in err


def test_table3_command(tmp_path, runs_root):
    out = tmp_path / "table3.csv"
    rc = main(["table", "--runs", str(runs_root), "--kind", "table3", "--student", "demo_vit",
               "--student", "demo_cnx", "--paper-model", "demo_vit=vit_t", "--variants", "random", "ws_uniform",
               "-o", str(out)])
    assert rc == 0
    t = pd.read_csv(out).set_index("variant")
    assert t.loc["ws_uniform", "demo_vit_paper"] == 81.4 and t["demo_cnx_paper"].isna().all()
    assert t.loc["random", "demo_cnx_mean"] == pytest.approx(61.0)


def test_figures_commands(tmp_path, runs_root):
    out = tmp_path / "curves.png"
    assert main(["figures", "--runs", str(runs_root), "--student", "demo_vit", "--dataset", "cifar100",
                 "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "summary.png"
    assert main(["figures", "--runs", str(runs_root), "--kind", "summary", "--student", "demo_vit",
                 "--paper-model", "vit_t", "-o", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_summary_command(runs_root, capsys):
    assert main(["summary", "--runs", str(runs_root)]) == 0
    text = capsys.readouterr().out
    assert "final_top1 over seeds (9 finished runs)" in text
    row = next(line for line in text.splitlines() if "demo_vit" in line and "cifar100" in line and "random" in line)
    assert row.split()[3:6] == ["72.00", "2.00", "3"]
    assert "unfinished runs (1)" in text


def test_errors_name_the_fix(tmp_path, capsys):
    rc = main(["table", "--runs", str(tmp_path), "--student", "s", "-o", str(tmp_path / "t.csv")])
    assert rc == 2
    assert "no finished runs" in capsys.readouterr().err
    rc = main(["figures", "--runs", str(tmp_path), "--student", "s", "-o", str(tmp_path / "f.png")])
    assert rc == 2 and "needs --dataset" in capsys.readouterr().err
