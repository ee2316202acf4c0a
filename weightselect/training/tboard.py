"""TensorBoard event files of a run, an option (``train(..., tensorboard=True)``, CLI ``--tensorboard``).

The ``tensorboard`` package is an optional extra (``pip install 'weightselect[tensorboard]'``);
``torch.utils.tensorboard`` is imported only when the option is on. The events go to the run's
``tensorboard/`` folder, one point per epoch (step = the epoch, counted from 1), from the same
records as ``metrics.jsonl``. A resumed run replays the checkpoint's records after a purge marker
(``SummaryWriter(purge_step=1)``), so TensorBoard shows each epoch once.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any, List, Mapping

__all__ = ["INSTALL", "TAGS", "TensorBoardMissing", "require_tensorboard", "EventLog"]

INSTALL = "pip install 'weightselect[tensorboard]'"
# metrics.jsonl key -> TensorBoard tag; another numeric key keeps its name.
TAGS = {
    "train_loss": "train/loss", "lr": "train/lr", "test_loss": "eval/loss", "test_top1": "eval/top1",
    "test_top5": "eval/top5", "seconds": "time/epoch_seconds", "images_per_s": "time/images_per_s",
}


class TensorBoardMissing(RuntimeError):
    """The run asked for TensorBoard event files and the tensorboard package is not installed."""


def require_tensorboard() -> None:
    """Raise TensorBoardMissing (one line naming the install command) unless ``tensorboard`` is
    importable; imports nothing itself."""
    if importlib.util.find_spec("tensorboard") is None:
        raise TensorBoardMissing(f"tensorboard=True (CLI --tensorboard) needs the tensorboard package, which is "
                                 f"not installed: {INSTALL}, or leave the option off")


class EventLog:
    """A ``SummaryWriter`` on ``folder`` that first replays ``history`` (the records a resumed run
    already has). ``add(record)`` writes one epoch's numbers as scalars at step ``record["epoch"]``."""

    def __init__(self, folder: str | Path, history: List[Mapping[str, Any]]):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder), purge_step=1)
        for record in history:
            self.add(record, flush=False)
        self.writer.flush()

    def add(self, record: Mapping[str, Any], flush: bool = True) -> None:
        step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(TAGS.get(key, key), value, global_step=step)
        if flush:
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()
