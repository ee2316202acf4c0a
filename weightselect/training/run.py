"""The run directory as an object: its paths, atomic writes, checkpoint save/load and the rules
for a finished run and for a checkpoint of another run.

File names come from :mod:`weightselect.rundir` (the contract the results code and the workflow
read); writes go through :mod:`weightselect.io` (atomic, and the folder's exclusive lock).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from weightselect import io as wio
from weightselect import rundir as names

__all__ = ["RunDirectory", "RunFinishedError", "RunMismatchError", "CheckpointError", "summary_csv"]

# summary.csv's first columns, in timm's order (epoch, losses, accuracies, lr, time), when the records
# have them; any other key of the records follows, in the order first seen.
SUMMARY_COLUMNS = ("epoch", "train_loss", "test_loss", "test_top1", "test_top5", "lr", "seconds", "images_per_s")


class RunFinishedError(RuntimeError):
    """The run directory holds a finished run (final.json)."""


class RunMismatchError(ValueError):
    """The run directory holds a checkpoint of a different run."""


class CheckpointError(ValueError):
    """The checkpoint file cannot be read (truncated, not a checkpoint, or unsafe to unpickle)."""


class RunDirectory:
    """One run folder. ``is_main`` is False on the ranks > 0 of a distributed run: they read, never write.

    Files (names in weightselect.rundir): metrics.jsonl, summary.csv, final.json, checkpoint.pt,
    recipe.yaml, run.json, model.safetensors, the folder tensorboard/ when asked for, and the lock
    file .lock held while a process writes the run.
    """

    OUTPUTS = (names.FINAL, names.CHECKPOINT, names.METRICS, names.SUMMARY, names.WEIGHTS, names.RECIPE,
               names.RUN_META)

    def __init__(self, path: str | Path, is_main: bool = True):
        self.path = Path(path)
        self.is_main = is_main

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint(self) -> Path:
        return self.path / names.CHECKPOINT

    @property
    def final(self) -> Path:
        return self.path / names.FINAL

    # ------------------------------------------------------------------ ownership and state
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's exclusive lock (rank 0 only); LockedError naming the holder if taken."""
        if not self.is_main:
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with wio.exclusive_lock(self.path, what="training run"):
            yield

    def prepare(self, force: bool) -> None:
        """Refuse a finished run (RunFinishedError) unless ``force``, which deletes its outputs; remove
        temporaries an earlier process left when it was killed (``.checkpoint.pt.*.tmp``)."""
        if self.final.exists() and not force:
            raise RunFinishedError(
                f"{self.path} holds a finished run ({names.FINAL}); pass force=True (CLI --force) to "
                "train it again from scratch"
            )
        if not self.is_main:
            return
        if force:
            for name in self.OUTPUTS:
                with contextlib.suppress(FileNotFoundError):
                    (self.path / name).unlink()
            shutil.rmtree(self.path / names.TENSORBOARD, ignore_errors=True)
        for name in self.OUTPUTS:  # we hold the lock: no live writer owns these
            for stale in self.path.glob(f".{name}.*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()

    def load_checkpoint(self, identity: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """The checkpoint's state, or None when there is none.

        Raises RunMismatchError when it belongs to other arguments (naming what differs) and
        CheckpointError when it cannot be read with ``torch.load(weights_only=True)``.
        """
        import torch

        if not self.checkpoint.exists():
            return None
        try:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            saved = state["identity"]
        except Exception as exc:  # truncated file, random bytes, a pickle payload, another format
            raise CheckpointError(
                f"{self.checkpoint} is not a readable training checkpoint ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); delete it to start the run over"
            ) from None
        if saved != identity:
            saved = saved if isinstance(saved, dict) else {}
            diff = sorted(k for k in set(identity) | set(saved) if identity.get(k) != saved.get(k))
            raise RunMismatchError(
                f"{self.checkpoint} belongs to a run with different {', '.join(diff)}; "
                "use another run directory, or force=True (CLI --force) to start over"
            )
        return state

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        import torch

        if self.is_main:
            with wio.atomic_write(self.checkpoint, "wb") as fh:
                torch.save(dict(state), fh)

    # ------------------------------------------------------------------ files of a run
    def start(self, recipe_yaml: str, meta: Mapping[str, Any], history: List[Mapping[str, Any]]) -> None:
        """recipe.yaml, run.json, and metrics.jsonl and summary.csv rewritten from the checkpoint's history."""
        if self.is_main:
            wio.write_text(self.path / names.RECIPE, recipe_yaml)
            wio.write_json(self.path / names.RUN_META, meta)
            self._write_metrics(history)

    def _write_metrics(self, history: List[Mapping[str, Any]]) -> None:
        wio.write_text(self.path / names.METRICS, "".join(json.dumps(h) + "\n" for h in history))
        wio.write_text(self.path / names.SUMMARY, summary_csv(history))

    def append_metrics(self, record: Mapping[str, Any], history: List[Mapping[str, Any]]) -> None:
        """One epoch's ``record`` appended to metrics.jsonl; summary.csv rewritten (atomically) from
        ``history``, the run's records so far (``record`` last), so a resumed run has each epoch once."""
        if self.is_main:
            with open(self.path / names.METRICS, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            wio.write_text(self.path / names.SUMMARY, summary_csv(history))

    def finish(self, state_dict: Mapping[str, Any], metadata: Mapping[str, str], final: Mapping[str, Any],
               history: List[Mapping[str, Any]]) -> None:
        """metrics.jsonl rewritten whole from ``history`` (a file another process deleted while the
        run was live held only the epochs after it), the final weights, then final.json (its
        presence marks the run finished)."""
        if self.is_main:
            self._write_metrics(history)
            wio.save_state_dict(state_dict, self.path / names.WEIGHTS, metadata=dict(metadata))
            wio.write_json(self.final, final)

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / names.TENSORBOARD

    def log(self, message: str) -> None:
        if self.is_main:
            print(message, file=sys.stderr, flush=True)


def summary_csv(history: List[Mapping[str, Any]]) -> str:
    """The text of summary.csv: a header and one row per record of ``history`` (metrics.jsonl's
    records, one per epoch). Columns: those of SUMMARY_COLUMNS the records have, in that order, then
    any other key in the order first seen; a key a record lacks is an empty cell. Floats are written
    in full (``repr``), so ``float(cell)`` gives the record's value back. No records: an empty text."""
    keys: Dict[str, None] = {}
    for record in history:
        keys.update(dict.fromkeys(record))
    columns = [k for k in SUMMARY_COLUMNS if k in keys] + [k for k in keys if k not in SUMMARY_COLUMNS]
    if not columns:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()
