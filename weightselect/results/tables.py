"""The paper's tables from our runs, beside the paper's numbers.

``table2``: one student, one row per dataset, random init vs weight selection (paper Table 2).
``table3``: one dataset, one row per init, a column group per student (paper Table 3).
``write_table``: CSV plus a Markdown twin, both written atomically.

Missing runs are listed, never filled in: with ``expected`` (the runs a study asked for) each cell
says how many seeds were expected and which are missing. A student or dataset without a paper
counterpart gets empty (NaN) paper columns.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pandas as pd

from weightselect.io import write_text
from weightselect.results.paper import PAPER_DATASETS, init_label, paper_numbers, paper_value
from weightselect.results.runs import Expected, expected_frame, format_seeds, summarize

__all__ = ["TABLE3_VARIANTS", "table2", "table3", "build_table", "read_finals", "paper_gap", "write_table", "read_table", "to_markdown"]

#: Table 3's rows, in the paper's order.
TABLE3_VARIANTS = ("random", "xavier", "kaiming", "ws_uniform", "ws_consecutive", "ws_random", "ws_random_nocons")

_STAT_COLUMNS = ("mean", "std", "paper", "diff", "n", "n_expected", "seeds", "missing_seeds")


def _check_paper_model(paper_model: Optional[str]) -> None:
    if paper_model is None:
        return
    known = sorted(paper_numbers()["model"].unique())
    if paper_model not in known:
        raise ValueError(f"unknown paper model {paper_model!r}; use one of {known}, or None for no paper columns")


def _paper_dataset(dataset: str, dataset_map: Optional[Mapping[str, str]]) -> Optional[str]:
    if dataset_map and dataset in dataset_map:
        return dataset_map[dataset]
    return dataset if dataset in PAPER_DATASETS else None


def _cell(summary: pd.DataFrame, student: str, dataset: str, variant: str, paper: float) -> dict:
    """mean, std, paper, diff, n, n_expected, seeds, missing_seeds for one table cell."""
    hit = summary[(summary["student"] == student) & (summary["dataset"] == dataset) & (summary["variant"] == variant)]
    if hit.empty:
        stats = dict(mean=math.nan, std=math.nan, n=0, n_expected=math.nan, seeds=None, missing_seeds=None)
    else:
        stats = hit.iloc[0][["mean", "std", "n", "n_expected", "seeds", "missing_seeds"]].to_dict()
    stats["paper"] = paper
    stats["diff"] = stats["mean"] - paper
    return {name: stats[name] for name in _STAT_COLUMNS}


def _order_datasets(names) -> list:
    paper_order = {name: i for i, name in enumerate(PAPER_DATASETS)}
    return sorted(set(names), key=lambda d: (paper_order.get(d, len(paper_order)), d))


def _student_rows(runs_df: pd.DataFrame, exp: Optional[pd.DataFrame], student: str) -> tuple:
    runs = runs_df[runs_df["student"] == student]
    wanted = exp[exp["student"] == student] if exp is not None else None
    if runs.empty and (wanted is None or wanted.empty):
        found = sorted(runs_df["student"].unique())
        raise ValueError(f"no runs for student {student!r}; students with runs: {found}")
    return runs, wanted


def table2(
    runs_df: pd.DataFrame,
    student: str,
    expected: Expected = None,
    paper_model: Optional[str] = None,
    datasets: Optional[Sequence[str]] = None,
    variants: Sequence[str] = ("random", "ws_uniform"),
    dataset_map: Optional[Mapping[str, str]] = None,
    variant_map: Optional[Mapping[str, str]] = None,
    metric: str = "final_top1",
) -> pd.DataFrame:
    """Paper Table 2 for one student: one row per dataset.

    Columns: ``student, dataset, paper_model, paper_dataset``; for each variant ``v``:
    ``v_mean, v_std, v_paper, v_diff`` (ours minus paper), ``v_n, v_n_expected, v_seeds,
    v_missing_seeds``; for each variant after the first: ``v_change`` (our ``v`` minus our first
    variant) and ``v_change_paper`` (the same in the paper).

    ``paper_model`` is ``vit_t`` or ``convnext_f`` (None: no paper columns). ``dataset_map`` and
    ``variant_map`` translate study names to the paper's (default: the same name when the paper
    has it). ``datasets`` defaults to every dataset with a run or an expected run for the student,
    in the paper's order.
    """
    _check_paper_model(paper_model)
    variants = list(variants)
    if not variants:
        raise ValueError("table2 needs at least one variant")
    exp = expected_frame(expected)
    runs, wanted = _student_rows(runs_df, exp, student)
    if datasets is None:
        names = list(runs["dataset"]) + (list(wanted["dataset"]) if wanted is not None else [])
        datasets = _order_datasets(names)
    summary = summarize(runs, wanted, metric=metric)
    variant_map = dict(variant_map or {})
    rows = []
    for dataset in datasets:
        pds = _paper_dataset(dataset, dataset_map)
        row = dict(student=student, dataset=dataset, paper_model=paper_model, paper_dataset=pds)
        for v in variants:
            paper = paper_value(paper_model, pds, variant_map.get(v, v), table="table2")
            for name, value in _cell(summary, student, dataset, v, paper).items():
                row[f"{v}_{name}"] = value
        base = variants[0]
        for v in variants[1:]:
            row[f"{v}_change"] = row[f"{v}_mean"] - row[f"{base}_mean"]
            row[f"{v}_change_paper"] = row[f"{v}_paper"] - row[f"{base}_paper"]
        rows.append(row)
    return _tidy(pd.DataFrame(rows))


def table3(
    runs_df: pd.DataFrame,
    dataset: str = "cifar100",
    students: Optional[Sequence[str]] = None,
    variants: Sequence[str] = TABLE3_VARIANTS,
    expected: Expected = None,
    paper_models: Optional[Mapping[str, str]] = None,
    paper_dataset: Optional[str] = None,
    variant_map: Optional[Mapping[str, str]] = None,
    metric: str = "final_top1",
) -> pd.DataFrame:
    """Paper Table 3 on one dataset: one row per variant (init), a column group per student.

    Columns: ``variant, label``; for each student ``s``: ``s_mean, s_std, s_paper, s_diff, s_n,
    s_n_expected, s_seeds, s_missing_seeds``. ``paper_models`` maps a student to ``vit_t`` or
    ``convnext_f`` (students not in it get NaN paper columns). ``paper_dataset`` is the paper's
    name for ``dataset`` (default: the same name if the paper has it). ``students`` defaults to
    every student with a run or an expected run on ``dataset``.
    """
    paper_models = dict(paper_models or {})
    for model in paper_models.values():
        _check_paper_model(model)
    exp = expected_frame(expected)
    if students is None:
        names = set(runs_df.loc[runs_df["dataset"] == dataset, "student"])
        if exp is not None:
            names |= set(exp.loc[exp["dataset"] == dataset, "student"])
        if not names:
            raise ValueError(f"no runs on dataset {dataset!r}; datasets with runs: {sorted(runs_df['dataset'].unique())}")
        students = sorted(names)
    pds = paper_dataset if paper_dataset is not None else _paper_dataset(dataset, None)
    variant_map = dict(variant_map or {})
    summaries = {}
    for s in students:
        runs, wanted = _student_rows(runs_df, exp, s)
        on_dataset = runs[runs["dataset"] == dataset]
        summaries[s] = summarize(on_dataset, None if wanted is None else wanted[wanted["dataset"] == dataset], metric)
    rows = []
    for v in variants:
        row = dict(variant=v, label=init_label(v))
        for s in students:
            paper = paper_value(paper_models.get(s), pds, variant_map.get(v, v), table="table3")
            for name, value in _cell(summaries[s], s, dataset, v, paper).items():
                row[f"{s}_{name}"] = value
        rows.append(row)
    return _tidy(pd.DataFrame(rows))


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Counts as integers (a NaN count stays float), everything else as computed."""
    for col in df.columns:
        if col.endswith("_n"):
            df[col] = df[col].astype(int)
        elif col.endswith("_n_expected") and df[col].notna().all():
            df[col] = df[col].astype(int)
    return df


def _format_cell(value, floatfmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return format(value, floatfmt)
    return str(value).replace("|", "\\|")


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned, NaN as an empty cell."""
    header = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if n else ":---" for n in numeric) + " |"]
    for record in df.itertuples(index=False):
        lines.append("| " + " | ".join(_format_cell(v, floatfmt) for v in record) + " |")
    return "\n".join(lines) + "\n"


def reading_view(df: pd.DataFrame) -> pd.DataFrame:
    """A compact copy of a table2/table3 frame for reading: one cell per group.

    Each group of ``<g>_mean``, ``<g>_std``, ``<g>_n``, ``<g>_n_expected`` columns becomes one text
    cell ``"83.10 +- 1.80 (3/3)"`` (mean +- sample std over seeds, then seeds found / expected);
    ``<g>_paper``, ``<g>_diff``, ``<g>_change`` and ``<g>_change_paper`` are kept only where they hold
    a number, ``<g>_missing_seeds`` only where a seed is missing; seed lists and empty paper keys go.
    """
    groups = [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]
    members = {f"{g}_{k}" for g in groups for k in
               ("value", "mean", "std", "n", "n_expected", "seeds", "missing_seeds", "paper", "diff", "change",
                "change_paper", "aggregation")}
    out = pd.DataFrame(index=df.index)
    for c in df.columns:
        if c not in members and not (c.startswith("paper_") and df[c].isna().all()):
            out[c] = df[c]
    for g in groups:
        out[g] = [_mean_std_cell(row, g) for _, row in df.iterrows()]
        for key, label in (("paper", "paper"), ("diff", "ours - paper"), ("change", "change"),
                           ("change_paper", "change (paper)")):
            col = f"{g}_{key}"
            if col in df and df[col].notna().any():
                out[f"{g} {label}"] = df[col]
        col = f"{g}_missing_seeds"
        if col in df and df[col].notna().any():
            out[f"{g} missing seeds"] = df[col]
    return out.reset_index(drop=True)


def _mean_std_cell(row: pd.Series, group: str) -> str:
    mean = row.get(f"{group}_value", row.get(f"{group}_mean"))
    if mean is None or pd.isna(mean):
        text = "-"
    else:
        std = row.get(f"{group}_std")
        text = f"{mean:.2f}" if std is None or pd.isna(std) else f"{mean:.2f} +- {std:.2f}"
    n, n_expected = row.get(f"{group}_n"), row.get(f"{group}_n_expected")
    if n is not None and not pd.isna(n):
        found = f"{int(n)}/{int(n_expected)}" if n_expected is not None and not pd.isna(n_expected) else f"{int(n)}"
        text += f" ({found})"
    return text


def write_table(df: pd.DataFrame, csv_path, title: Optional[str] = None, float_format: str = "%.6g",
                claims: Optional[pd.DataFrame] = None) -> Path:
    """Write ``df`` to ``csv_path`` and a Markdown twin beside it (``.md``), each atomically.

    The CSV keeps every column with 6 significant digits; the Markdown is :func:`reading_view`
    (mean +- std and seeds found per cell, 2 decimals), with ``title`` as a heading. With
    ``claims`` (:func:`weightselect.results.claims.claim_verdicts`) they are written beside it as
    ``{stem}.claims.csv`` and the Markdown ends with their verdicts.
    Returns the CSV path.
    """
    csv_path = Path(csv_path)
    if csv_path.suffix != ".csv":
        raise ValueError(f"table path {csv_path} should end in .csv (the Markdown twin gets .md)")
    write_text(csv_path, df.to_csv(index=False, float_format=float_format, lineterminator="\n"))
    text = to_markdown(reading_view(df))
    if title:
        text = f"## {title}\n\n{text}"
    if claims is not None:
        from weightselect.results.claims import claims_markdown

        write_text(csv_path.with_suffix(".claims.csv"),
                   claims.to_csv(index=False, float_format=float_format, lineterminator="\n"))
        if not claims.empty:
            text = f"{text}\n{claims_markdown(claims)}"
    write_text(csv_path.with_suffix(".md"), text)
    return csv_path


def read_table(csv_path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`; seed lists stay text (``"0"``, ``"0,1,2"``)."""
    header = pd.read_csv(csv_path, nrows=0).columns
    text = {c: str for c in header if c.endswith("seeds") or c in ("student", "dataset", "variant", "label")}
    return pd.read_csv(csv_path, dtype=text)


# ------------------------------------------------------------------------------ any table, from data
def _run_keys(path) -> tuple:
    """(student, dataset, variant, seed) of ``.../{student}/{dataset}/{variant}/seed{seed}/final.json``."""
    parts = Path(path).parts
    if len(parts) < 5 or not parts[-2].startswith("seed") or not parts[-2][4:].isdigit():
        raise ValueError(f"{path}: not a run file (expected .../<student>/<dataset>/<variant>/seed<N>/final.json)")
    return parts[-5], parts[-4], parts[-3], int(parts[-2][4:])


def read_finals(paths: Sequence, metric: str = "final_top1") -> dict:
    """``{(student, dataset, variant, seed): metric}`` from exactly these final.json files.

    A listed file that does not exist is left out (the table reports its seed as missing); a file
    that breaks the final.json contract raises RunFileError naming it.
    """
    from weightselect.rundir import read_final

    out = {}
    for path in paths:
        if Path(path).is_file():
            out[_run_keys(path)] = float(read_final(path, required=(metric,))[metric])
    return out


def _group_name(cell: Mapping, axes: Sequence[str]) -> str:
    return "_".join(str(cell[a]) for a in axes)


def _cell_stats(cell: Mapping, values: Mapping, seeds: Sequence[int]) -> dict:
    """mean/std over every run of the cell; value: the mean, or the median over draws (median_of)."""
    draws = list(cell["draws"])
    per_draw, found, missing = [], [], []
    for d in draws:
        got = [s for s in seeds if (cell["student"], cell["dataset"], d, s) in values]
        found.append(got)
        missing.append([s for s in seeds if s not in got])
        per_draw.append([values[(cell["student"], cell["dataset"], d, s)] for s in got])
    flat = pd.Series([v for vs in per_draw for v in vs], dtype=float)
    mean = float(flat.mean()) if len(flat) else math.nan
    if len(draws) == 1:
        value, agg = mean, "mean over seeds"
        seeds_text, missing_text = format_seeds(found[0]), format_seeds(missing[0])
    else:
        means = [sum(vs) / len(vs) for vs in per_draw if vs]
        value = float(pd.Series(means).median()) if len(means) == len(draws) else math.nan
        agg = f"median over {len(draws)} selection draws of the mean over seeds"
        seeds_text = ";".join(f"{d}:{format_seeds(f) or ''}" for d, f in zip(draws, found))
        missing_text = ";".join(f"{d}:{format_seeds(m)}" for d, m in zip(draws, missing) if m) or None
    return dict(value=value, mean=mean, std=float(flat.std(ddof=1)) if len(flat) > 1 else math.nan,
                n=int(len(flat)), n_expected=len(seeds) * len(draws), seeds=seeds_text,
                missing_seeds=missing_text, aggregation=agg)


def _paper_number(spec: Mapping, cell: Mapping) -> float:
    if not spec.get("paper"):
        return math.nan
    key = spec["paper_settings"][cell["variant"]]
    args = (spec["paper_models"].get(cell["student"]), spec["paper_datasets"].get(cell["dataset"]), key["setting"])
    try:
        return paper_value(*args, table=spec["paper"], teacher=key.get("teacher"))
    except ValueError:  # one number per teacher (Tables 5, 8): the cell's own teacher picks it
        pass
    try:
        return paper_value(*args, table=spec["paper"], teacher=cell.get("teacher"))
    except ValueError as exc:
        raise ValueError(f"table {spec['name']}, variant {cell['variant']}: {exc} (variant key paper.teacher)") from None


def build_table(spec: Mapping, finals: Sequence) -> pd.DataFrame:
    """Any table of a study from its declared runs: the one library function behind every table.

    ``spec`` is :meth:`weightselect.study.Study.table_params` (rows: the axes of the rows; columns:
    the axes of the column groups; cells: student, dataset, variant and the variants of its draws;
    seeds; metric; paper table, models, datasets, settings; change_from). ``finals`` are the
    ``final.json`` files the workflow declared as the table's inputs: nothing else is read, so a run
    that is not part of the study never enters a table.

    One row per combination of the row axes; for each column group ``g`` (the column axes' values
    joined by ``_``, leaving out an axis with one value in the whole table, but keeping at least
    the first): ``g_value`` (what the
    table shows: the mean over seeds, or for a ``median_of`` cell the median over selection draws
    of each draw's mean, paper section 4), ``g_mean``, ``g_std`` (sample std over every run of the
    cell), ``g_paper``, ``g_diff`` (value minus paper), ``g_n``, ``g_n_expected``, ``g_seeds``,
    ``g_missing_seeds``, ``g_aggregation``, and with ``change_from`` ``g_change`` and
    ``g_change_paper`` (value minus the ``change_from`` variant's, ours and the paper's).
    Raises RunFileError for a final.json that breaks the contract.
    """
    values = read_finals(finals, spec["metric"])
    cells = list(spec["cells"])
    varying = [a for a in spec["columns"] if len({c[a] for c in cells}) > 1] or list(spec["columns"][:1])
    fixed = [a for a in spec["columns"] if a not in varying]
    stats = {}
    for cell in cells:
        st = _cell_stats(cell, values, spec["seeds"])
        st["paper"] = _paper_number(spec, cell)
        st["diff"] = st["value"] - st["paper"]
        stats[(cell["student"], cell["dataset"], cell["variant"])] = st
    base = spec.get("change_from")
    rows = {}
    for cell in cells:
        row_key = tuple(cell[a] for a in spec["rows"])
        row = rows.setdefault(row_key, {a: cell[a] for a in spec["rows"]} | {a: cell[a] for a in fixed})
        if "variant" in spec["rows"]:
            row["label"] = init_label(cell["variant"])
        g = _group_name(cell, varying)
        st = dict(stats[(cell["student"], cell["dataset"], cell["variant"])])
        if base is not None:
            ref = stats[(cell["student"], cell["dataset"], base)]
            same = cell["variant"] == base  # no change from itself: NaN, left out of the reading view
            st["change"] = math.nan if same else st["value"] - ref["value"]
            st["change_paper"] = math.nan if same else st["paper"] - ref["paper"]
        for name in ("value", "mean", "std", "paper", "diff", "n", "n_expected", "seeds", "missing_seeds",
                     "aggregation", "change", "change_paper"):
            if name in st:
                row[f"{g}_{name}"] = st[name]
    table = _tidy(pd.DataFrame(list(rows.values())))
    if spec.get("rehearsal"):  # a rehearsal's numbers (weightselect.rehearsal) are never results
        table.insert(0, "rehearsal", True)
    return table


def paper_gap(df: pd.DataFrame) -> str:
    """One sentence on how far a :func:`build_table` table lands from the paper (for captions)."""
    diffs = []
    for col in (c for c in df.columns if c.endswith("_diff")):
        group = col[: -len("_diff")]
        for i, value in df[col].items():
            if pd.notna(value):
                where = " / ".join(str(df.at[i, k]) for k in ("student", "dataset", "variant") if k in df.columns)
                diffs.append((abs(float(value)), float(value), f"{group} ({where})" if where else group))
    if not diffs:
        return "No cell has a number in the paper (not the paper's models or datasets, or no run finished)."
    diffs.sort()
    median = diffs[len(diffs) // 2][0] if len(diffs) % 2 else (diffs[len(diffs) // 2 - 1][0] + diffs[len(diffs) // 2][0]) / 2
    _, worst, where = diffs[-1]
    return (f"Against the paper ({len(diffs)} cells with a published number): median absolute difference "
            f"{median:.1f} points; largest {worst:+.1f} points at {where}.")
