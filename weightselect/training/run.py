"""The run directory as an object: its paths, atomic writes, checkpoint save/load and the rules
for a finished run and for a checkpoint of another run.

File names come from :mod:`weightselect.rundir` (the contract the results code and the workflow
read); writes go through :mod:`weightselect.io` (atomic, and the folder's exclusive lock).
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from weightselect import io as wio
from weightselect import rundir as names

__all__ = ["RunDirectory", "RunFinishedError", "RunMismatchError", "CheckpointError"]


class RunFinishedError(RuntimeError):
    """The run directory holds a finished run (final.json)."""


class RunMismatchError(ValueError):
    """The run directory holds a checkpoint of a different run."""


class CheckpointError(ValueError):
    """The checkpoint file cannot be read (truncated, not a checkpoint, or unsafe to unpickle)."""


class RunDirectory:
    """One run folder. ``is_main`` is False on the ranks > 0 of a distributed run: they read, never write.

    Files (names in weightselect.rundir): metrics.jsonl, final.json, checkpoint.pt, recipe.yaml,
    run.json, model.safetensors and the lock file .lock held while a process writes the run.
    """

    OUTPUTS = (names.FINAL, names.CHECKPOINT, names.METRICS, names.WEIGHTS, names.RECIPE, names.RUN_META)

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
        """recipe.yaml, run.json, and metrics.jsonl rewritten from the checkpoint's history."""
        if self.is_main:
            wio.write_text(self.path / names.RECIPE, recipe_yaml)
            wio.write_json(self.path / names.RUN_META, meta)
            self._write_metrics(history)

    def _write_metrics(self, history: List[Mapping[str, Any]]) -> None:
        wio.write_text(self.path / names.METRICS, "".join(json.dumps(h) + "\n" for h in history))

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        if self.is_main:
            with open(self.path / names.METRICS, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def finish(self, state_dict: Mapping[str, Any], metadata: Mapping[str, str], final: Mapping[str, Any],
               history: List[Mapping[str, Any]]) -> None:
        """metrics.jsonl rewritten whole from ``history`` (a file another process deleted while the
        run was live held only the epochs after it), the final weights, then final.json (its
        presence marks the run finished)."""
        if self.is_main:
            self._write_metrics(history)
            wio.save_state_dict(state_dict, self.path / names.WEIGHTS, metadata=dict(metadata))
            wio.write_json(self.final, final)

    def log(self, message: str) -> None:
        if self.is_main:
            print(message, file=sys.stderr, flush=True)
