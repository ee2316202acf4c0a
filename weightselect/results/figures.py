"""Figures: training curves per (student, dataset) and a per-student summary against the paper.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state, no display),
saved as PNG atomically, and the Axes is returned so callers and tests can inspect it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from weightselect.io import atomic_write
from weightselect.results.paper import init_label, paper_value

__all__ = ["FIGSIZE", "DPI", "plot_curves", "plot_summary", "variant_style", "save_figure"]

FIGSIZE = (7.0, 4.2)  # inches
DPI = 150  # -> 1050 x 630 pixels

_BASELINE_COLORS = {"random": "#555555", "xavier": "#8c564b", "kaiming": "#e377c2", "mimetic": "#bcbd22"}
_WS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#17becf")


def variant_style(variant: str, index: int = 0) -> dict:
    """Line style for a variant: baselines dashed in muted colours, weight selection solid."""
    if variant.startswith("ws_"):
        return dict(color=_WS_COLORS[index % len(_WS_COLORS)], linestyle="-", linewidth=2.0)
    return dict(color=_BASELINE_COLORS.get(variant, "#7f7f7f"), linestyle="--", linewidth=1.8)


def save_figure(fig: Figure, path) -> Path:
    """Save ``fig`` as PNG at :data:`DPI`, atomically (temp file + rename)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figure path {path} should end in .png")
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI)
    return path


def _ordered_variants(present: Sequence[str], variants: Optional[Sequence[str]]) -> list:
    if variants is None:
        # baselines first, then weight selection, each alphabetical
        return sorted(set(present), key=lambda v: (v.startswith("ws_"), v != "random", v))
    missing = [v for v in variants if v not in set(present)]
    if missing:
        raise ValueError(f"no curves for variants {missing}; variants with curves: {sorted(set(present))}")
    return list(variants)


def plot_curves(
    curves_df: pd.DataFrame,
    student: str,
    dataset: str,
    path=None,
    variants: Optional[Sequence[str]] = None,
    band: str = "minmax",
    metric: str = "test_top1",
    paper_model: Optional[str] = None,
    paper_dataset: Optional[str] = None,
) -> Axes:
    """Test top-1 vs epoch for one student on one dataset: one line per variant (mean over seeds).

    The band spans the seeds' ``"minmax"`` range or ``"std"`` (mean +- sample std); it is drawn only
    where a variant has two or more seeds. With ``paper_model`` the paper's final number for each
    variant (Table 2, or Table 3 for the other inits) is drawn as a dotted horizontal line.
    Saves a PNG to ``path`` when given; returns the Axes (``ax.figure`` is the Figure).
    """
    if band not in ("minmax", "std"):
        raise ValueError(f"band must be 'minmax' or 'std', not {band!r}")
    sel = curves_df[(curves_df["student"] == student) & (curves_df["dataset"] == dataset)]
    if sel.empty:
        pairs = sorted(set(zip(curves_df["student"], curves_df["dataset"])))
        raise ValueError(f"no curves for student {student!r} on {dataset!r}; available: {pairs}")
    variants = _ordered_variants(list(sel["variant"]), variants)

    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot(1, 1, 1)
    ws_index = 0
    for v in variants:
        runs = sel[sel["variant"] == v]
        stats = runs.groupby("epoch")[metric].agg(["mean", "min", "max", "std", "count"]).sort_index()
        style = variant_style(v, ws_index)
        ws_index += v.startswith("ws_")
        n_seeds = runs["seed"].nunique()
        seeds = "seed" if n_seeds == 1 else "seeds"
        ax.plot(stats.index, stats["mean"], label=f"{init_label(v)} ({n_seeds} {seeds})", **style)
        if n_seeds > 1:
            lo, hi = (stats["min"], stats["max"]) if band == "minmax" else (
                stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0))
            ax.fill_between(stats.index, lo, hi, color=style["color"], alpha=0.18, linewidth=0)
        if paper_model is not None:
            pds = paper_dataset or dataset
            ref = paper_value(paper_model, pds, v, "table2")
            if math.isnan(ref):
                ref = paper_value(paper_model, pds, v, "table3")
            if not math.isnan(ref):
                ax.axhline(ref, color=style["color"], linestyle=":", linewidth=1.2, label=f"paper: {init_label(v)} ({ref:.1f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 accuracy (%)" if metric == "test_top1" else metric.replace("_", " "))
    ax.set_title(f"{student} on {dataset}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return ax


def plot_summary(table: pd.DataFrame, path=None, variants: Optional[Sequence[str]] = None, title: Optional[str] = None) -> Axes:
    """Grouped bars from a :func:`~weightselect.results.tables.table2` table: one group per dataset.

    For each variant a solid bar for ours (mean, with the seeds' std as an error bar) and a hatched,
    lighter bar for the paper where it has a number. Returns the Axes; saves a PNG to ``path``.
    """
    if variants is None:
        variants = [c[: -len("_mean")] for c in table.columns if c.endswith("_mean")]
    if not variants or table.empty:
        raise ValueError("plot_summary needs a table2 table with at least one row and one '<variant>_mean' column")
    show_paper = any(table[f"{v}_paper"].notna().any() for v in variants)
    bars_per_group = len(variants) * (2 if show_paper else 1)
    width = 0.8 / bars_per_group
    x = np.arange(len(table))
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot(1, 1, 1)
    slot = 0
    ws_index = 0
    for v in variants:
        style = variant_style(v, ws_index)
        ws_index += v.startswith("ws_")
        offset = (slot - (bars_per_group - 1) / 2) * width
        ax.bar(x + offset, table[f"{v}_mean"], width, yerr=table[f"{v}_std"].fillna(0), color=style["color"],
               label=f"ours: {init_label(v)}", capsize=2)
        slot += 1
        if show_paper:
            offset = (slot - (bars_per_group - 1) / 2) * width
            ax.bar(x + offset, table[f"{v}_paper"], width, color=style["color"], alpha=0.35, hatch="//",
                   edgecolor=style["color"], label=f"paper: {init_label(v)}")
            slot += 1
    ax.set_xticks(x)
    ax.set_xticklabels(table["dataset"], rotation=30, ha="right")
    ax.set_ylabel("test top-1 accuracy (%)")
    student = table["student"].iloc[0] if "student" in table.columns else ""
    ax.set_title(title or f"{student}: random init vs weight selection")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return ax
