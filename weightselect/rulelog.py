"""The log of one Snakemake job: where a workflow script's messages and errors go.

Every workflow script starts with :func:`start`. The log is appended to, never truncated, and
reopened when its file is gone: a second workflow that starts the same job (after ``snakemake
--unlock``, while the first job still runs) deletes the job's log before its own job starts, and
the live job's next lines must not go to the deleted file. Each job's lines follow a header
naming its pid and host.
"""
from __future__ import annotations

import io
import logging
import os
import socket
import sys
import time
from pathlib import Path

__all__ = ["start"]


def _expected_errors() -> tuple:
    """Errors whose message already names the cause and the fix: logged as one line, no traceback."""
    from weightselect.io import LockedError
    from weightselect.training.run import CheckpointError, RunFinishedError, RunMismatchError

    return LockedError, RunFinishedError, RunMismatchError, CheckpointError


def _hook(kind, error, tb) -> None:
    if issubclass(kind, _expected_errors()):
        print(f"error: {error}", file=sys.stderr, flush=True)
    else:
        sys.__excepthook__(kind, error, tb)


class _WatchedLog(io.TextIOBase):
    """A text stream appending to ``path``; before each write, reopens it if the file was deleted
    or replaced (the way :class:`logging.handlers.WatchedFileHandler` does for a handler)."""

    def __init__(self, path: Path):
        self.path = path
        self._file = None
        self._inode = None

    def _current(self):
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if self._file is None or inode != self._inode:
            if self._file is not None:
                self._file.close()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
            self._inode = os.fstat(self._file.fileno()).st_ino
        return self._file

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return self._current().write(text)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def fileno(self) -> int:
        return self._current().fileno()


def start(path: str | os.PathLike) -> None:
    """Send stderr and ``logging`` (level INFO) of this process to the rule's log ``path``, appended.

    Writes a header line (time, pid, host) first. Uncaught errors go there too: a traceback, or one
    line for the errors that name their own fix (another live writer, a finished run, a checkpoint
    of another run).
    """
    log = _WatchedLog(Path(path))
    log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} job started: pid {os.getpid()} "
              f"on {socket.gethostname()} ====\n")
    sys.stderr = log
    sys.excepthook = _hook
    logging.basicConfig(stream=log, level=logging.INFO, force=True)
