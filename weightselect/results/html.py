"""A table of the study as a self-contained HTML page, for reading in the workflow's report.

:func:`table_page` renders a :func:`~weightselect.results.tables.build_table` frame (or a
``table2``/``table3`` one) as the paper lays it out: one row per row of the table, one column group
per cell group, and in each group our number as mean ± sample std over seeds, the paper's number,
ours minus the paper's, and the seeds found / declared. With a claims frame (one row per claim and
scope: ``claim, better, than, scope, effect, ci_low, ci_high, p_value, n_better, n_than, test,
verdict``) a "Claims" section follows, each verdict coloured. The page embeds its style and loads
nothing, so it shows the same from a file, a zip or the report's viewer.
"""
from __future__ import annotations

import html
import math
from typing import Mapping, Optional, Sequence

import pandas as pd

from weightselect.io import write_text

__all__ = ["CLAIM_COLUMNS", "VERDICTS", "table_page", "table_subtitle", "write_table_page"]

#: The columns a claims frame must have (one row per claim and scope; scope ``all``: the overall verdict).
CLAIM_COLUMNS = ("claim", "better", "than", "scope", "effect", "ci_low", "ci_high", "p_value", "n_better", "n_than",
                 "test", "verdict")
#: Each verdict and its colour in the page.
VERDICTS = {"holds": "#1a7f37", "inconclusive": "#9a6700", "contradicts": "#cf222e"}

_GROUP_KEYS = ("value", "mean", "std", "paper", "diff", "n", "n_expected", "seeds", "missing_seeds", "aggregation",
               "change", "change_paper")
_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 16px; }
h1 { font-size: 18px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 6px; }
p.sub, p.note { color: #57606a; margin: 2px 0 10px; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; }
th { background: #f6f8fa; font-weight: 600; }
thead th.group { text-align: center; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.ours { font-weight: 600; } td.key { white-space: nowrap; }
td.short { background: #fff8c5; } tr.all td { font-weight: 600; }
span.verdict { color: #fff; border-radius: 10px; padding: 1px 8px; font-weight: 600; }
"""


def _num(value, fmt: str = ".2f", sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return ""
    return format(float(value), ("+" if sign else "") + fmt)


def _groups(df: pd.DataFrame) -> list:
    """The cell groups ``g`` of the frame: a ``g_mean`` column (and ``g_value`` for build_table)."""
    return [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]


def _key_columns(df: pd.DataFrame, groups: Sequence[str]) -> list:
    """The columns that name a row (dataset, variant, label, ...), without empty ones."""
    members = {f"{g}_{k}" for g in groups for k in _GROUP_KEYS}
    return [c for c in df.columns if c not in members and not df[c].isna().all()]


def _sub_columns(df: pd.DataFrame, g: str) -> list:
    """(header, kind) of group ``g``'s columns: ours, then paper/diff/change where they hold a number, seeds."""
    out = [("ours (mean ± std)", "ours")]
    for key, header in (("paper", "paper"), ("diff", "ours − paper"), ("change", "change"),
                        ("change_paper", "change (paper)")):
        if f"{g}_{key}" in df and df[f"{g}_{key}"].notna().any():
            out.append((header, key))
    if f"{g}_n" in df:
        out.append(("seeds", "seeds"))
    return out


def _ours(row: pd.Series, g: str) -> str:
    value = row.get(f"{g}_value", row.get(f"{g}_mean"))
    if value is None or pd.isna(value):
        return "–"
    std = row.get(f"{g}_std")
    return _num(value) + ("" if std is None or pd.isna(std) else f" ± {_num(std)}")


def _seeds_cell(row: pd.Series, g: str) -> tuple:
    """(text, short): ``found/expected`` plus the missing seeds; short when a declared run is missing."""
    n, expected = row.get(f"{g}_n"), row.get(f"{g}_n_expected")
    if n is None or pd.isna(n):
        return "", False
    if expected is None or pd.isna(expected):
        return str(int(n)), False
    text = f"{int(n)}/{int(expected)}"
    missing = row.get(f"{g}_missing_seeds")
    if missing is not None and not pd.isna(missing) and str(missing):
        text += f" (missing {missing})"
    return text, int(n) < int(expected)


def _cell(row: pd.Series, g: str, kind: str) -> str:
    if kind == "ours":
        agg = row.get(f"{g}_aggregation")
        title = f' title="{html.escape(str(agg))}"' if isinstance(agg, str) else ""
        return f'<td class="num ours"{title}>{html.escape(_ours(row, g))}</td>'
    if kind == "seeds":
        text, short = _seeds_cell(row, g)
        return f'<td class="num{" short" if short else ""}">{html.escape(text)}</td>'
    return f'<td class="num">{_num(row.get(f"{g}_{kind}"), sign=kind != "paper")}</td>'


def _results_table(df: pd.DataFrame) -> str:
    groups = _groups(df)
    if not groups:
        raise ValueError(f"no cell group in the table (no '<group>_mean' column among {list(df.columns)})")
    keys = _key_columns(df, groups)
    subs = {g: _sub_columns(df, g) for g in groups}
    top = "".join(f'<th rowspan="2">{html.escape(str(k))}</th>' for k in keys)
    top += "".join(f'<th class="group" colspan="{len(subs[g])}">{html.escape(g)}</th>' for g in groups)
    second = "".join(f"<th>{html.escape(h)}</th>" for g in groups for h, _ in subs[g])
    body = []
    for _, row in df.iterrows():
        cells = "".join(f'<td class="key">{html.escape(_text(row[k]))}</td>' for k in keys)
        cells += "".join(_cell(row, g, kind) for g in groups for _, kind in subs[g])
        body.append(f"<tr>{cells}</tr>")
    return (f'<table class="results"><thead><tr>{top}</tr><tr>{second}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _text(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


def _count(value) -> str:
    """A run count as an integer ("3", also from 3.0 in a column with a NaN); empty for NaN."""
    return "" if value is None or pd.isna(value) else str(int(value))


def _claims_table(claims: pd.DataFrame) -> str:
    missing = [c for c in CLAIM_COLUMNS if c not in claims.columns]
    if missing:
        raise ValueError(f"the claims frame lacks columns {missing}; it needs {list(CLAIM_COLUMNS)}")
    unknown = sorted(set(claims["verdict"]) - set(VERDICTS))
    if unknown:
        raise ValueError(f"unknown verdicts {unknown}; a verdict is one of {list(VERDICTS)}")
    head = "".join(f"<th>{h}</th>" for h in ("claim", "scope", "effect (points)", "95% interval", "seeds", "p",
                                              "test", "verdict"))
    body = []
    for _, c in claims.iterrows():
        badge = f'<span class="verdict" style="background:{VERDICTS[c["verdict"]]}">{html.escape(c["verdict"])}</span>'
        interval = f"[{_num(c['ci_low'], sign=True)}, {_num(c['ci_high'], sign=True)}]"
        seeds = f"{_count(c['n_better'])} vs {_count(c['n_than'])}"
        claim = f"{c['claim']} ({c['better']} vs {c['than']})"
        cells = (f"<td>{html.escape(claim)}</td><td>{html.escape(_text(c['scope']))}</td>"
                 f'<td class="num">{_num(c["effect"], sign=True)}</td><td class="num">{interval}</td>'
                 f'<td class="num">{html.escape(seeds)}</td><td class="num">{_num(c["p_value"], ".3g")}</td>'
                 f"<td>{html.escape(_text(c['test']))}</td><td>{badge}</td>")
        body.append(f'<tr class="{"all" if c["scope"] == "all" else "scope"}">{cells}</tr>')
    return f'<table class="claims"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def table_subtitle(spec: Mapping) -> str:
    """One sentence on what a study table shows, from :meth:`weightselect.study.Study.table_params`
    (``paper``, ``metric``, ``seeds``, ``cells``): the paper's table it reproduces, the metric, the
    seeds, and the median over selection draws where a cell has several draws."""
    paper = spec.get("paper")
    reproduces = f"Reproduces the paper's {str(paper).replace('table', 'Table ')}. " if paper else ""
    seeds = ", ".join(str(s) for s in spec["seeds"])
    median = any(len(c.get("draws", ())) > 1 for c in spec.get("cells", ()))
    return (f"{reproduces}{spec['metric']} (%): mean ± sample std over seeds {seeds}"
            f"{' (a median_of cell: the median over selection draws)' if median else ''}; seeds: runs found / declared.")


def table_page(df: pd.DataFrame, title: str, subtitle: Optional[str] = None, note: Optional[str] = None,
               claims: Optional[pd.DataFrame] = None) -> str:
    """The HTML text (ASCII, other characters as references) of one table's page: heading,
    ``subtitle``, the table, ``note``, and the claims.

    ``df``: a table frame with ``<g>_mean`` columns per cell group ``g`` (build_table, table2,
    table3); numbers are percent points, shown with 2 decimals, mean ± sample std (``<g>_value``
    where build_table gives it: the median over selection draws for such a cell, its
    ``<g>_aggregation`` as the cell's tooltip). ``claims``: None, or a frame with
    :data:`CLAIM_COLUMNS` (effect and interval in points, verdict one of :data:`VERDICTS`); rows
    with scope ``all`` (the claim's overall verdict) are shown in bold. Raises ValueError for a
    frame without cell groups, or claims lacking a column or with an unknown verdict.
    """
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if subtitle:
        parts.append(f'<p class="sub">{html.escape(subtitle)}</p>')
    parts.append(_results_table(df))
    if note:
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    if claims is not None:
        parts.append("<h2>Claims</h2>")
        parts.append(_claims_table(claims) if len(claims) else '<p class="note">No claim is stated for this table.</p>')
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")  # the same bytes under any locale


def write_table_page(df: pd.DataFrame, path, title: str, subtitle: Optional[str] = None, note: Optional[str] = None,
                     claims: Optional[pd.DataFrame] = None) -> None:
    """Write :func:`table_page` to ``path`` (``.html``) atomically; raises ValueError for another suffix."""
    if not str(path).endswith(".html"):
        raise ValueError(f"table page {path} should end in .html")
    write_text(path, table_page(df, title, subtitle=subtitle, note=note, claims=claims))
