"""Run directories -> tidy DataFrames.

Runs live at ``{runs_root}/{student}/{dataset}/{variant}/seed{seed}/`` (see docs/architecture.md):
``final.json`` is written once when a run finishes, ``metrics.jsonl`` holds one JSON object per
epoch. The directory names are the run's keys; the files give the numbers.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import pandas as pd

from weightselect.rundir import check_accuracy

__all__ = [
    "RUN_KEYS",
    "RUN_COLUMNS",
    "CURVE_COLUMNS",
    "collect_runs",
    "collect_curves",
    "read_curves",
    "unfinished_runs",
    "expected_runs",
    "expected_frame",
    "summarize",
    "format_seeds",
]

RUN_KEYS = ["student", "dataset", "variant", "seed"]
RUN_COLUMNS = RUN_KEYS + [
    "final_top1",
    "best_top1",
    "final_top5",
    "epochs",
    "train_seconds",
    "finished",
    "epochs_done",
    "path",
]
CURVE_COLUMNS = RUN_KEYS + ["epoch", "test_top1", "test_top5", "train_loss", "test_loss", "lr", "finished"]

_SEED_DIR = re.compile(r"^seed(\d+)$")

Expected = Union[pd.DataFrame, Iterable[Tuple[str, str, str, int]], None]


def _run_dirs(runs_root: Path) -> Iterator[Tuple[str, str, str, int, Path]]:
    """Every ``student/dataset/variant/seedN`` directory under ``runs_root``, sorted."""
    for seed_dir in sorted(runs_root.glob("*/*/*/seed*")):
        match = _SEED_DIR.match(seed_dir.name)
        if not seed_dir.is_dir() or not match:
            continue
        variant_dir = seed_dir.parent
        dataset_dir = variant_dir.parent
        yield dataset_dir.parent.name, dataset_dir.name, variant_dir.name, int(match.group(1)), seed_dir


def _check_root(runs_root) -> Path:
    root = Path(runs_root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"runs folder {root} does not exist; train first (the workflow writes "
            "results/runs/{student}/{dataset}/{variant}/seed{seed}/) or pass the right --runs"
        )
    return root


def _read_metrics(path: Path) -> List[dict]:
    """The epochs of a metrics.jsonl, one dict each; the last entry per epoch wins.

    A last line cut short (a run being written) is skipped; a bad line elsewhere is an error.
    """
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    by_epoch = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                warnings.warn(f"{path}: skipping an incomplete last line", stacklevel=3)
                continue
            raise ValueError(f"{path}, line {number}: not valid JSON ({exc}); fix or delete the line") from exc
        if "epoch" not in record:
            raise ValueError(f"{path}, line {number}: no 'epoch' key (the metrics.jsonl contract)")
        for key in ("test_top1", "test_top5"):
            if record.get(key) is not None:
                check_accuracy(record[key], key, f"{path}, line {number}")
        by_epoch[int(record["epoch"])] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def _float(value) -> float:
    return math.nan if value is None else float(value)


def collect_runs(runs_root, include_unfinished: bool = False) -> pd.DataFrame:
    """One row per run under ``runs_root``, with the columns :data:`RUN_COLUMNS`.

    ``final_top1``, ``final_top5``, ``best_top1`` (percent), ``epochs`` and ``train_seconds`` come
    from ``final.json``; ``epochs_done`` is the last epoch in ``metrics.jsonl``. Unfinished runs
    (no ``final.json``) are left out unless ``include_unfinished``; they then have
    ``finished == False`` and NaN numbers. :func:`unfinished_runs` lists them.

    Raises FileNotFoundError when ``runs_root`` does not exist and ValueError when it holds no
    finished run (or no run at all, with ``include_unfinished``).
    """
    root = _check_root(runs_root)
    rows = []
    for student, dataset, variant, seed, run_dir in _run_dirs(root):
        metrics = _read_metrics(run_dir / "metrics.jsonl")
        final_path = run_dir / "final.json"
        row = dict(
            student=student,
            dataset=dataset,
            variant=variant,
            seed=seed,
            final_top1=math.nan,
            best_top1=math.nan,
            final_top5=math.nan,
            epochs=math.nan,
            train_seconds=math.nan,
            finished=final_path.is_file(),
            epochs_done=int(metrics[-1]["epoch"]) if metrics else 0,
            path=str(run_dir),
        )
        if row["finished"]:
            try:
                final = json.loads(final_path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{final_path}: not valid JSON ({exc}); rerun the training with --force") from exc
            if "final_top1" not in final:
                raise ValueError(f"{final_path}: no 'final_top1' key (the final.json contract)")
            if final.get("seed") is not None and int(final["seed"]) != seed:
                warnings.warn(f"{final_path}: seed {final['seed']} differs from its folder seed{seed}", stacklevel=2)
            best = final.get("best_top1")
            if best is None and metrics:
                best = max(m["test_top1"] for m in metrics if m.get("test_top1") is not None)
            row.update(
                final_top1=_float(final["final_top1"]),
                best_top1=_float(best),
                final_top5=_float(final.get("final_top5")),
                epochs=_float(final.get("epochs")),
                train_seconds=_float(final.get("train_seconds")),
            )
        elif not include_unfinished:
            continue
        rows.append(row)
    if not rows:
        what = "runs" if include_unfinished else "finished runs (with final.json)"
        raise ValueError(
            f"no {what} under {root}; expected {root}/<student>/<dataset>/<variant>/seed<N>/final.json"
        )
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    df["seed"] = df["seed"].astype(int)
    df["epochs_done"] = df["epochs_done"].astype(int)
    df["finished"] = df["finished"].astype(bool)
    return df.sort_values(RUN_KEYS, ignore_index=True)


def unfinished_runs(runs_root) -> pd.DataFrame:
    """Runs that have a folder but no ``final.json`` (started, running or failed)."""
    df = collect_runs(runs_root, include_unfinished=True)
    return df[~df["finished"]].reset_index(drop=True)


def collect_curves(runs_root) -> pd.DataFrame:
    """One row per epoch of every run with a ``metrics.jsonl``: the columns :data:`CURVE_COLUMNS`.

    Unfinished runs are included (``finished == False``) so that progress can be plotted.
    """
    root = _check_root(runs_root)
    rows = []
    for student, dataset, variant, seed, run_dir in _run_dirs(root):
        finished = (run_dir / "final.json").is_file()
        for m in _read_metrics(run_dir / "metrics.jsonl"):
            rows.append(
                dict(
                    student=student,
                    dataset=dataset,
                    variant=variant,
                    seed=seed,
                    epoch=int(m["epoch"]),
                    test_top1=_float(m.get("test_top1")),
                    test_top5=_float(m.get("test_top5")),
                    train_loss=_float(m.get("train_loss")),
                    test_loss=_float(m.get("test_loss")),
                    lr=_float(m.get("lr")),
                    finished=finished,
                )
            )
    if not rows:
        raise ValueError(
            f"no metrics.jsonl under {root}; expected {root}/<student>/<dataset>/<variant>/seed<N>/metrics.jsonl"
        )
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).sort_values(RUN_KEYS + ["epoch"], ignore_index=True)


def expected_runs(
    students: Sequence[str], datasets: Sequence[str], variants: Sequence[str], seeds: Sequence[int]
) -> pd.DataFrame:
    """The full grid a study asks for, as a DataFrame with the columns :data:`RUN_KEYS`."""
    grid = itertools.product(students, datasets, variants, [int(s) for s in seeds])
    return pd.DataFrame(list(grid), columns=RUN_KEYS)


def expected_frame(expected: Expected) -> Optional[pd.DataFrame]:
    """Expected runs as a DataFrame with the columns :data:`RUN_KEYS` (None stays None)."""
    if expected is None:
        return None
    if isinstance(expected, pd.DataFrame):
        missing = set(RUN_KEYS) - set(expected.columns)
        if missing:
            raise ValueError(f"expected runs need the columns {RUN_KEYS}; missing {sorted(missing)}")
        df = expected[RUN_KEYS].copy()
    else:
        df = pd.DataFrame([tuple(e) for e in expected], columns=RUN_KEYS)
    df["seed"] = df["seed"].astype(int)
    return df.drop_duplicates()


def format_seeds(seeds: Iterable[int]) -> Optional[str]:
    """``[2, 0, 1]`` -> ``"0,1,2"``; an empty list -> None (NaN in the table)."""
    seeds = sorted(int(s) for s in seeds)
    return ",".join(str(s) for s in seeds) if seeds else None


def summarize(runs_df: pd.DataFrame, expected: Expected = None, metric: str = "final_top1") -> pd.DataFrame:
    """Seeds -> statistics: one row per (student, dataset, variant).

    Columns: student, dataset, variant, mean, std (sample std, ddof=1; NaN for one seed), n, seeds
    (``"0,1,2"``), n_expected, missing_seeds. Only finished runs count. With ``expected`` (a
    DataFrame or iterable of (student, dataset, variant, seed)), every expected combination gets a
    row, even with no run (mean NaN, n 0), and ``missing_seeds`` lists the expected seeds without a
    finished run; without it ``n_expected`` and ``missing_seeds`` are NaN.
    """
    if metric not in runs_df.columns:
        raise ValueError(f"no column {metric!r} in the runs table; choose one of {list(runs_df.columns)}")
    runs = runs_df
    if "finished" in runs.columns:
        runs = runs[runs["finished"].astype(bool)]
    groups = {key: grp for key, grp in runs.groupby(RUN_KEYS[:3], sort=True)}
    exp = expected_frame(expected)
    exp_groups = {} if exp is None else {k: set(g["seed"]) for k, g in exp.groupby(RUN_KEYS[:3], sort=True)}
    keys = sorted(set(groups) | set(exp_groups))
    rows = []
    for key in keys:
        grp = groups.get(key)
        values = grp[metric].astype(float) if grp is not None else pd.Series(dtype=float)
        found = set(grp["seed"].astype(int)) if grp is not None else set()
        row = dict(zip(RUN_KEYS[:3], key))
        row.update(
            mean=float(values.mean()) if len(values) else math.nan,
            std=float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            n=int(len(values)),
            seeds=format_seeds(found),
            n_expected=math.nan,
            missing_seeds=None,
        )
        if exp is not None:
            want = exp_groups.get(key, set())
            row["n_expected"] = len(want)
            row["missing_seeds"] = format_seeds(want - found)
        rows.append(row)
    columns = RUN_KEYS[:3] + ["mean", "std", "n", "seeds", "n_expected", "missing_seeds"]
    return pd.DataFrame(rows, columns=columns)


def read_curves(paths: Sequence) -> pd.DataFrame:
    """Like :func:`collect_curves`, from exactly these ``.../{student}/{dataset}/{variant}/seed{seed}/metrics.jsonl``
    files, or the runs' ``final.json`` beside them (a workflow rule's declared inputs): nothing else
    under the runs folder is read."""
    rows = []
    for path in paths:
        path = Path(path)
        if path.name == "final.json":
            path = path.with_name("metrics.jsonl")
        match = _SEED_DIR.match(path.parent.name)
        if not match:
            raise ValueError(f"{path}: not a run file (expected .../<student>/<dataset>/<variant>/seed<N>/metrics.jsonl)")
        variant_dir = path.parent.parent
        keys = dict(student=variant_dir.parent.parent.name, dataset=variant_dir.parent.name,
                    variant=variant_dir.name, seed=int(match.group(1)))
        finished = (path.parent / "final.json").is_file()
        for m in _read_metrics(path):
            rows.append(dict(keys, epoch=int(m["epoch"]), test_top1=_float(m.get("test_top1")),
                             test_top5=_float(m.get("test_top5")), train_loss=_float(m.get("train_loss")),
                             test_loss=_float(m.get("test_loss")), lr=_float(m.get("lr")), finished=finished))
    if not rows:
        raise ValueError(f"no epochs in the {len(paths)} metrics.jsonl files given")
    return pd.DataFrame(rows, columns=CURVE_COLUMNS).sort_values(RUN_KEYS + ["epoch"], ignore_index=True)
