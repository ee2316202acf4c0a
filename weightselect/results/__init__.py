"""Results: run directories -> tidy DataFrames -> the paper's tables (CSV + Markdown) and figures.

See docs/results.md for the functions, their columns and the command line.
"""
from __future__ import annotations

from weightselect._lazy import lazy_package

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
    "table_page",
    "to_markdown",
    "unfinished_runs",
    "write_table",
    "write_table_page",
]


_HOMES = {  # pandas (and matplotlib, for figures) load when a name is first asked for
    "weightselect.results.paper": ("PAPER_DATASETS", "PAPER_MODELS", "init_label", "paper_numbers", "paper_value"),
    "weightselect.results.runs": ("collect_curves", "collect_runs", "expected_runs", "read_curves", "summarize",
                                  "unfinished_runs"),
    "weightselect.results.tables": ("build_table", "paper_gap", "read_finals", "read_table", "reading_view", "table2",
                                    "table3", "to_markdown", "write_table"),
    "weightselect.results.figures": ("plot_curves", "plot_summary"),
    "weightselect.results.html": ("table_page", "write_table_page"),
}
_LAZY = {name: module for module, names in _HOMES.items() for name in names}


lazy_package(__name__, _LAZY)
