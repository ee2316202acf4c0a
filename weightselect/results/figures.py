"""Figures: training curves per (student, dataset) and a per-student summary against the paper.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot state, no display),
saved as PNG atomically, and the Axes is returned so callers and tests can inspect it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from weightselect.io import atomic_write
from weightselect.results.paper import init_label, paper_value

__all__ = ["FIGSIZE", "DPI", "plot_curves", "plot_summary", "variant_style", "save_figure", "plot_epoch_sweep",
           "plot_pretraining_sweep", "plot_attention_maps", "attention_maps", "crossing"]

FIGSIZE = (7.0, 4.2)  # inches
DPI = 150  # -> 1050 x 630 pixels

_BASELINE_COLORS = {"random": "#555555", "xavier": "#8c564b", "kaiming": "#e377c2", "mimetic": "#bcbd22"}
_WS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#17becf")


def variant_style(variant: str, index: int = 0) -> dict:
    """Line style for a variant: baselines dashed in muted colours, weight selection solid."""
    if variant.startswith("ws_"):
        return dict(color=_WS_COLORS[index % len(_WS_COLORS)], linestyle="-", linewidth=2.0)
    return dict(color=_BASELINE_COLORS.get(variant, "#7f7f7f"), linestyle="--", linewidth=1.8)


WATERMARK: Optional[str] = None  # set by a rehearsal's figure jobs (weightselect.rehearsal.MARK)


def save_figure(fig: Figure, path) -> Path:
    """Save ``fig`` as PNG at :data:`DPI`, atomically (temp file + rename)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figure path {path} should end in .png")
    if WATERMARK:
        fig.text(0.5, 0.5, WATERMARK, ha="center", va="center", rotation=20, wrap=True, fontsize="large",
                 color="#c00000", alpha=0.45, zorder=100)
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


def _finish(fig: Figure, ax: Axes, path) -> Axes:
    """Grid, legend in the lower right, tight layout; saved to ``path`` when given."""
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return ax


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
    return _finish(fig, ax, path)


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


# ------------------------------------------------------------------------------ sweeps (Figure 4)
def _sweep_points(finals, keys: Mapping) -> dict:
    """{x: [values over seeds]} per series from read_finals output and {variant: (series, x)}."""
    from weightselect.results.tables import read_finals

    values = read_finals(finals)
    out: dict = {}
    for (student, dataset, variant, seed), v in values.items():
        if variant in keys:
            series, x = keys[variant]
            out.setdefault(series, {}).setdefault(x, []).append(v)
    return out


def _mean_std(vs) -> tuple:
    s = pd.Series(vs, dtype=float)
    return float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else 0.0


def plot_epoch_sweep(spec: Mapping, finals, path=None) -> Axes:
    """Figure 4a: final top-1 against the training epoch budget, one line per variant.

    ``spec``: ``student``, ``dataset``, ``sweep`` ({derived variant: (variant, epochs)}, see
    weightselect.study); ``finals``: the sweep's final.json files. Warmup is kept in ratio to the
    epochs by the trainer. Mean over seeds with the sample std as error bars.
    """
    points = _sweep_points(finals, {k: tuple(v) for k, v in spec["sweep"].items()})
    if not points:
        raise ValueError(f"no finished runs among the {len(finals)} final.json files of the sweep")
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot(1, 1, 1)
    for i, (series, by_x) in enumerate(sorted(points.items(), key=lambda kv: kv[0].startswith("ws_"))):
        xs = sorted(by_x)
        stats = [_mean_std(by_x[x]) for x in xs]
        ax.errorbar(xs, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3,
                    label=init_label(series), **variant_style(series, i))
    ax.set_xlabel("training epochs")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(f"{spec['student']} on {spec['dataset']}: accuracy against the epoch budget")
    return _finish(fig, ax, path)


def crossing(xs: Sequence[float], ys: Sequence[float], level: float) -> float:
    """The first x where the piecewise-linear curve (xs, ys) reaches ``level``; NaN if it never does."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), list(zip(xs, ys))[1:]):
        if y0 >= level:
            return float(x0)
        if y1 >= level:
            return float(x0 + (x1 - x0) * (level - y0) / (y1 - y0))
    return float(xs[-1]) if len(xs) and ys[-1] >= level else math.nan


def compute_ratio(pretrain_epochs: float, pretrain_images: int, finetune_epochs: float, finetune_images: int) -> float:
    """Training compute of pretraining + fine-tuning over that of fine-tuning alone (weight
    selection pretrains nothing of the student), counted in images seen: (E_pre x N_pre + E_ft x
    N_ft) / (E_ft x N_ft). Paper section 4.5: 60 ImageNet-1K epochs (1,281,167 images) + 300
    CIFAR-100 epochs (50,000) over 300 CIFAR-100 epochs = 6.12x. NaN when an input is unknown."""
    values = (pretrain_epochs, pretrain_images, finetune_epochs, finetune_images)
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values) or not finetune_epochs * finetune_images:
        return math.nan
    return (pretrain_epochs * pretrain_images + finetune_epochs * finetune_images) / (finetune_epochs * finetune_images)


def _images_and_epochs(final_path) -> tuple:
    """(training images, epochs) of a finished run, from its run.json and final.json."""
    import json

    run_dir = Path(final_path).parent
    final = json.loads((run_dir / "final.json").read_text())
    meta = json.loads((run_dir / "run.json").read_text())
    return int(meta["dataset"]["train_images"]), float(final["epochs"])


def pretraining_summary(spec: Mapping, finals, teachers=()) -> dict:
    """Figure 4b's numbers: pretraining epochs that match weight selection (linear interpolation)
    and the compute ratio (:func:`compute_ratio`) from the runs; the paper's 60 epochs and 6.12x."""
    import json

    keys = {v: ("pretrained", e) for v, e in spec["sweep"].items()}
    keys[spec["reference"]] = (spec["reference"], 0)
    points = _sweep_points(finals, keys)
    xs = sorted(points.get("pretrained", {}))
    ys = [_mean_std(points["pretrained"][x])[0] for x in xs]
    level = _mean_std(points[spec["reference"]][0])[0] if spec["reference"] in points else math.nan
    epochs = crossing(xs, ys, level) if xs and not math.isnan(level) else math.nan
    reference = [f for f in finals if Path(f).parent.parent.name == spec["reference"] and Path(f).is_file()]
    ft_images, ft_epochs = _images_and_epochs(reference[0]) if reference else (None, None)
    pre_images = next((json.loads(Path(t).read_text()).get("train_images") for t in teachers), None)
    return {"pretrain_epochs_to_match": epochs, "reference_top1": level, "pretrain_images": pre_images,
            "finetune_images": ft_images, "finetune_epochs": ft_epochs,
            "compute_ratio": compute_ratio(epochs, pre_images, ft_epochs, ft_images),
            "paper": {"pretrain_epochs_to_match": 60, "compute_ratio": 6.12}}


def plot_pretraining_sweep(spec: Mapping, finals, path=None, teachers=()) -> Axes:
    """Figure 4b: fine-tuned top-1 against the student's pretraining epochs (on ``pretrain.dataset``).

    Weight selection (``reference``) and random init (``baseline``) are horizontal lines; the
    title prints how many pretraining epochs reach the weight-selection level (linear
    interpolation) and the compute ratio (:func:`pretraining_summary`; ``teachers``: the
    pretrained teachers' manifests, which give the pretraining set's size), also written to
    ``{path}.json`` beside the figure.
    """
    keys = {v: ("pretrained", e) for v, e in spec["sweep"].items()}
    keys[spec["reference"]] = (spec["reference"], 0)
    keys[spec["baseline"]] = (spec["baseline"], 0)
    points = _sweep_points(finals, keys)
    if "pretrained" not in points:
        raise ValueError(f"no finished pretrained runs among the {len(finals)} final.json files")
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot(1, 1, 1)
    xs = sorted(points["pretrained"])
    ys = [_mean_std(points["pretrained"][x])[0] for x in xs]
    ax.plot(xs, ys, marker="o", color="#555555", label=f"pretrained on {spec['pretrain']['dataset']}")
    title = f"{spec['student']} on {spec['dataset']}"
    for i, name in enumerate((spec["reference"], spec["baseline"])):
        if name in points:
            level = _mean_std(points[name][0])[0]
            ax.axhline(level, label=f"{init_label(name)} ({level:.1f})", **variant_style(name, i))
            if name == spec["reference"]:
                epochs = crossing(xs, ys, level)
                title += (f": pretraining matches weight selection after {epochs:.0f} epochs"
                          if not math.isnan(epochs) else f": no pretraining budget up to {xs[-1]} epochs matches weight selection")
    summary = pretraining_summary(spec, finals, teachers)
    if not math.isnan(summary["compute_ratio"]):
        title += f"\nweight selection saves {summary['compute_ratio']:.2f}x training compute (paper: 6.12x at 60 epochs)"
    if path is not None:
        from weightselect.io import write_json

        write_json(Path(path).with_suffix(".json"), summary)
    ax.set_xlabel(f"pretraining epochs on {spec['pretrain']['dataset']}")
    ax.set_ylabel("fine-tuned test top-1 accuracy (%)")
    ax.set_title(title, fontsize="medium")
    return _finish(fig, ax, path)


# ------------------------------------------------------------------------------ attention maps (Figure 5)
def attention_maps(state: Mapping, num_heads: int, block: int = 0, head: int = 0) -> tuple:
    """``W_q W_k^T`` and ``W_v W_proj`` of one head of one ViT block, each (D, D) (paper Figure 5).

    ``state``: a timm ViT state dict (``blocks.{block}.attn.qkv.weight`` of shape (3D, D) and
    ``blocks.{block}.attn.proj.weight`` of shape (D, D)). With torch's (out, in) layout, the head's
    query rows are ``qkv[h*d:(h+1)*d]`` (d = D / num_heads), so ``W_q = qkv_q.T`` (D, d) and
    ``W_q W_k^T = qkv_q.T @ qkv_k``; ``W_v W_proj = qkv_v.T @ proj[:, h*d:(h+1)*d].T``.
    Raises KeyError naming a missing tensor.
    """
    prefix = f"blocks.{block}.attn."
    for key in ("qkv.weight", "proj.weight"):
        if prefix + key not in state:
            raise KeyError(f"no {prefix + key} in the state dict: not a timm ViT")
    qkv = state[prefix + "qkv.weight"].float()
    proj = state[prefix + "proj.weight"].float()
    dim = qkv.shape[1]
    d = dim // num_heads
    rows = slice(head * d, (head + 1) * d)
    q, k, v = qkv[:dim][rows], qkv[dim:2 * dim][rows], qkv[2 * dim:][rows]
    return (q.T @ k).numpy(), (v.T @ proj[:, rows].T).numpy()


def _num_heads(model: Mapping) -> int:
    import timm
    import torch

    with torch.device("meta"):
        net = timm.create_model(model["name"].split(".")[0], pretrained=False, **(model.get("kwargs") or {}))
    return int(net.blocks[0].attn.num_heads)


def plot_attention_maps(spec: Mapping, teacher_file, init_file, path=None) -> Figure:
    """Figure 5: ``W_q W_k^T`` and ``W_v W_proj`` of one head of one block (``spec`` keys ``block``,
    ``head``, default 0), for the student at random init (timm's default init, seed 0), the teacher
    and the weight-selected student, each panel with its colour scale (symmetric about 0).

    ``spec``: ``student`` (its name), ``student_model`` and ``teacher_model`` ({name, kwargs}),
    optionally ``teacher`` (its name); the teacher and init files are safetensors. No training is
    involved. The panels' titles give each matrix's size (D x D, D the model's width), the figure's
    title the student, block and head. Returns the Figure (2 rows x 3 panels, each with a colorbar).
    """
    import timm
    import torch
    from safetensors.torch import load_file

    torch.manual_seed(int(spec.get("seed", 0)))
    block, head = int(spec.get("block", 0)), int(spec.get("head", 0))
    student = spec["student_model"]
    net = timm.create_model(student["name"].split(".")[0], pretrained=False, **(student.get("kwargs") or {}))
    heads = int(net.blocks[0].attn.num_heads)
    teacher = spec.get("teacher") or spec["teacher_model"]["name"]
    columns = [("random init", net.state_dict(), heads),
               (f"teacher {teacher}", load_file(str(teacher_file)), _num_heads(spec["teacher_model"])),
               ("weight selection", load_file(str(init_file)), heads)]
    fig = Figure(figsize=(10.5, 6.4))
    for col, (title, state, n_heads) in enumerate(columns):
        matrices = attention_maps(state, n_heads, block=block, head=head)
        for row, (matrix, name) in enumerate(zip(matrices, ("$W_q W_k^T$", "$W_v W_{proj}$"))):
            ax = fig.add_subplot(2, 3, row * 3 + col + 1)
            limit = float(np.abs(matrix).max()) or 1.0
            image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(f"{title}\n{name} ({matrix.shape[0]} x {matrix.shape[1]})", fontsize="small")
            ax.set_xticks([])
            ax.set_yticks([])
    name = spec.get("student") or student["name"]
    fig.suptitle(f"{name}, block {block}, head {head}: $W_q W_k^T$ and $W_v W_{{proj}}$")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
