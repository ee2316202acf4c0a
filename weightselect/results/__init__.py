"""Results: run directories -> tidy DataFrames -> the paper's tables (CSV + Markdown) and figures.

See docs/results.md for the functions, their columns and the command line.
"""
from __future__ import annotations

from weightselect.results.paper import PAPER_DATASETS, PAPER_MODELS, init_label, paper_numbers, paper_value
from weightselect.results.runs import (
    collect_curves,
    collect_runs,
    expected_runs,
    read_curves,
    summarize,
    unfinished_runs,
)
from weightselect.results.tables import build_table, paper_gap, read_finals, read_table, reading_view, table2, table3, to_markdown, write_table

__all__ = [
    "PAPER_DATASETS",
    "PAPER_MODELS",
    "build_table",
    "collect_curves",
    "collect_runs",
    "expected_runs",
    "init_label",
    "paper_gap",
    "paper_numbers",
    "paper_value",
    "plot_curves",
    "plot_summary",
    "read_curves",
    "read_finals",
    "read_table",
    "summarize",
    "table2",
    "table3",
    "reading_view",
    "to_markdown",
    "unfinished_runs",
    "write_table",
]


def __getattr__(name):
    # matplotlib is imported only when a figure is asked for
    if name in ("plot_curves", "plot_summary"):
        from weightselect.results import figures

        return getattr(figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
