"""A table's HTML page: the paper's layout, our mean +- std beside the paper's number, seeds, claims."""
from __future__ import annotations

import html
import math
from html.parser import HTMLParser

import pandas as pd
import pytest

from weightselect.results.html import table_page, write_table_page


def frame() -> pd.DataFrame:
    """A build_table frame of two datasets, groups random and ws_uniform (change from random)."""
    rows = []
    for dataset, base, paper, missing in (("cifar100", 72.0, 72.3, None), ("pets", 60.0, math.nan, "2")):
        row = {"dataset": dataset, "student": "vit_t"}
        for g, mean, p in (("random", base, paper), ("ws_uniform", base + 9.0, paper + 9.1)):
            n = 2 if missing else 3
            row |= {f"{g}_value": mean, f"{g}_mean": mean, f"{g}_std": 1.5, f"{g}_paper": p, f"{g}_diff": mean - p,
                    f"{g}_n": n, f"{g}_n_expected": 3, f"{g}_seeds": "0,1" if missing else "0,1,2",
                    f"{g}_missing_seeds": missing, f"{g}_aggregation": "mean over seeds"}
        row |= {"ws_uniform_change": 9.0, "ws_uniform_change_paper": 9.1}
        rows.append(row)
    return pd.DataFrame(rows)


def claims() -> pd.DataFrame:
    base = dict(claim="weight selection beats random init", better="ws_uniform", than="random", test="Welch t-test")
    return pd.DataFrame([
        base | dict(scope="vit_t / cifar100", effect=9.0, ci_low=6.1, ci_high=11.9, p_value=0.0012, n_better=3,
                    n_than=3, verdict="holds"),
        base | dict(scope="vit_t / pets", effect=-0.5, ci_low=-4.0, ci_high=3.0, p_value=0.61, n_better=2, n_than=2,
                    verdict="contradicts"),
        base | dict(scope="all", effect=4.2, ci_low=-1.0, ci_high=9.4, p_value=0.08, n_better=5.0, n_than=5,
                    verdict="inconclusive"),
    ])


class Tables(HTMLParser):
    """Every table of a page as rows of cell texts (header rows included)."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(page: str) -> list:
    parser = Tables()
    parser.feed(page)
    return parser.tables


def test_a_row_shows_ours_with_std_the_paper_the_difference_and_the_seeds():
    page = table_page(frame(), "Table 2: random init vs weight selection", subtitle="Reproduces the paper's Table 2.")
    assert page.isascii() and "<script" not in page and "http" not in page  # self-contained under any locale
    (results,) = parse(page)
    assert results[0] == ["dataset", "student", "random", "ws_uniform"]
    assert results[1] == ["ours (mean ± std)", "paper", "ours − paper", "seeds",
                          "ours (mean ± std)", "paper", "ours − paper", "change", "change (paper)", "seeds"]
    assert results[2] == ["cifar100", "vit_t", "72.00 ± 1.50", "72.30", "-0.30", "3/3",
                          "81.00 ± 1.50", "81.40", "-0.40", "+9.00", "+9.10", "3/3"]
    # no paper number on pets: empty paper cells; a missing seed is named and the cell marked
    assert results[3][:6] == ["pets", "vit_t", "60.00 ± 1.50", "", "", "2/3 (missing 2)"]
    assert 'class="num short">2/3 (missing 2)' in page
    assert "Reproduces the paper&#x27;s Table 2." in page and "<h2>Claims</h2>" not in page


def test_claims_follow_the_table_with_effect_interval_seeds_and_a_coloured_verdict():
    page = table_page(frame(), "Table 2", claims=claims())
    results, shown = parse(page)
    assert len(results) == 4 and "<h2>Claims</h2>" in page
    assert shown[0] == ["claim", "scope", "effect (points)", "95% interval", "seeds", "p", "test", "verdict"]
    assert shown[1] == ["weight selection beats random init (ws_uniform vs random)", "vit_t / cifar100", "+9.00",
                        "[+6.10, +11.90]", "3 vs 3", "0.0012", "Welch t-test", "holds"]
    assert [r[-1] for r in shown[1:]] == ["holds", "contradicts", "inconclusive"]
    assert shown[3][:5] == ["weight selection beats random init (ws_uniform vs random)", "all", "+4.20",
                            "[-1.00, +9.40]", "5 vs 5"]  # counts stay integers in a float column
    assert 'background:#1a7f37">holds' in page and 'background:#cf222e">contradicts' in page
    assert '<tr class="all">' in page  # the overall verdict stands out


def test_an_empty_claims_frame_says_so_and_bad_claims_are_refused(tmp_path):
    assert "No claim is stated for this table." in table_page(frame(), "T", claims=claims().iloc[:0])
    with pytest.raises(ValueError, match=r"lacks columns \['verdict'\]"):
        table_page(frame(), "T", claims=claims().drop(columns="verdict"))
    with pytest.raises(ValueError, match=r"unknown verdicts \['maybe'\]"):
        table_page(frame(), "T", claims=claims().assign(verdict="maybe"))
    with pytest.raises(ValueError, match="no cell group"):
        table_page(pd.DataFrame({"dataset": ["x"]}), "T")
    with pytest.raises(ValueError, match="should end in .html"):
        write_table_page(frame(), tmp_path / "t.htm", "T")


def test_write_table_page_writes_the_page_and_escapes_text(tmp_path):
    df = frame().assign(dataset=["<b>", "pets"])
    write_table_page(df, tmp_path / "t.html", "A & B", note="median <of> draws")
    text = (tmp_path / "t.html").read_text()
    assert text == table_page(df, "A & B", note="median <of> draws")
    assert "<h1>A &amp; B</h1>" in text and "&lt;b&gt;" in text and "median &lt;of&gt; draws" in text
    assert html.unescape(text).count("±") == 2 + 4  # two group headers, four cells


def test_the_subtitle_names_the_paper_table_the_metric_and_the_seeds():
    from weightselect.results.html import table_subtitle

    cells = [{"draws": ["ws_random"]}, {"draws": ["ws_random", "ws_random_s1", "ws_random_s2"]}]
    text = table_subtitle({"paper": "table3", "metric": "final_top1", "seeds": [0, 1, 2], "cells": cells})
    assert text.startswith("Reproduces the paper's Table 3. final_top1 (%): mean ± sample std over seeds 0, 1, 2 "
                           "(a median_of cell: the median over selection draws)")
    assert "median" not in table_subtitle({"paper": "table3", "metric": "final_top1", "seeds": [0], "cells": cells[:1]})
    assert "Reproduces" not in table_subtitle({"paper": None, "metric": "best_top1", "seeds": [0]})
