"""The run-directory contract: file names and ``final.json`` keys.

One module owns them; the trainer writes, the results code reads and the workflow declares the
same names (docs/architecture.md, "Runs and tables are data"). A run folder is
``results/runs/{student}/{dataset}/{variant}/seed{seed}/`` in the workflow, any folder elsewhere.

Files of a run folder:
  metrics.jsonl      one JSON object per epoch (keys: EPOCH_KEYS), written as the run goes
  summary.csv        the same records as a table, one row per epoch (as timm's train.py writes)
  tensorboard/       TensorBoard event files, only when the run was asked for them
  final.json         written once, when the run finishes (keys: FINAL_KEYS at least)
  checkpoint.pt      the resumable state (torch.load(weights_only=True)), atomically each epoch
  recipe.yaml        the resolved recipe;  run.json: model, dataset, init, teacher, versions
  model.safetensors  the final weights
  .lock              held (flock) by the one process writing the run, see weightselect.io
This module imports nothing heavy: the Snakefile reads it at parse time.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict

__all__ = [
    "METRICS", "SUMMARY", "TENSORBOARD", "FINAL", "CHECKPOINT", "RECIPE", "RUN_META", "WEIGHTS", "LOCK",
    "FINAL_KEYS", "EPOCH_KEYS", "METRIC_NAMES", "run_path", "read_final", "RunFileError",
]

METRICS = "metrics.jsonl"
SUMMARY = "summary.csv"
TENSORBOARD = "tensorboard"
FINAL = "final.json"
CHECKPOINT = "checkpoint.pt"
RECIPE = "recipe.yaml"
RUN_META = "run.json"
WEIGHTS = "model.safetensors"
LOCK = ".lock"

# final.json: top-1/top-5 in percent on the test split; best_epoch counts from 1.
FINAL_KEYS = ("final_top1", "best_top1", "final_top5", "best_epoch", "epochs")
# Metrics a table may show (``metric:`` of a table spec).
METRIC_NAMES = ("final_top1", "best_top1", "final_top5")
# metrics.jsonl: one line per epoch.
EPOCH_KEYS = ("epoch", "test_top1", "test_top5", "test_loss", "train_loss", "lr", "images_per_s")


class RunFileError(ValueError):
    """A run file breaks the contract (missing key, non-number value); the message names the file."""


def run_path(root: str | Path, student: str, dataset: str, variant: str, seed: int) -> Path:
    """The folder of one run under ``root`` (e.g. results/runs)."""
    return Path(root) / student / dataset / variant / f"seed{int(seed)}"


def read_final(path: str | Path, required=("final_top1",)) -> Dict[str, Any]:
    """Read a ``final.json`` and check that ``required`` keys hold finite numbers.

    Raises RunFileError naming the file and the key (unreadable JSON, a missing key, a value that
    is not a finite number).
    """
    path = Path(path)
    try:
        final = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFileError(f"{path}: not a readable final.json ({exc}); delete the run folder and rerun it") from None
    if not isinstance(final, dict):
        raise RunFileError(f"{path}: final.json must hold a JSON object")
    present = [k for k in TOP_KEYS if k not in required and final.get(k) is not None]
    for key in list(required) + present:
        check_accuracy(final.get(key), key, str(path))
    return final


TOP_KEYS = ("final_top1", "best_top1", "final_top5", "best_top5", "test_top1", "test_top5")


def check_accuracy(value: Any, key: str, where: str) -> None:
    """Raise RunFileError unless ``value`` is a finite number, and, for an accuracy key (top-1 or
    top-5, in percent), one in [0, 100]. ``where``: the file (and line) it was read from."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RunFileError(f"{where}: '{key}' must be a finite number, got {value!r}; delete the run folder and rerun it")
    if key in TOP_KEYS and not 0 <= value <= 100:
        raise RunFileError(f"{where}: '{key}' must be a {'top-1' if 'top1' in key else 'top-5'} in [0, 100], got "
                           f"{value!r}; the file is not a run's own: delete the run folder and rerun it")
