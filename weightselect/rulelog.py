"""The log of one Snakemake job: where a workflow script's messages and errors go.

Every workflow script starts with :func:`start`. The log is appended to, never truncated, and
reopened when its file is gone: a second workflow that starts the same job (after ``snakemake
--unlock``, while the first job still runs) deletes the job's log before its own job starts, and
the live job's next lines must not go to the deleted file. Each job's lines follow a header
naming its pid and host.

The person at the console still sees the job's progress: :func:`progress` writes one line to the
job's own stderr (which Snakemake shows), at most one per :data:`CONSOLE_INTERVAL` seconds unless
forced, each naming the job (its log's name) and the time since the job started. Outside a job
(the library, the command line) :func:`progress` writes nothing: stderr already carries the lines.
"""
from __future__ import annotations

import io
import logging
import os
import socket
import sys
import time
from pathlib import Path

__all__ = ["start", "progress", "progress_due", "CONSOLE_INTERVAL"]

#: The fewest seconds between two unforced progress lines of one job at the console.
CONSOLE_INTERVAL = 30.0


class _Console:
    """Progress lines of one job on the stream it started with, rate-limited."""

    def __init__(self, stream, label: str):
        self.stream, self.label = stream, label
        self.started = time.monotonic()
        self.last: float | None = None

    def due(self) -> bool:
        return self.last is None or time.monotonic() - self.last >= CONSOLE_INTERVAL

    def write(self, message: str) -> None:
        now = time.monotonic()
        minutes, seconds = divmod(int(now - self.started), 60)
        self.stream.write(f"[{self.label}] {message}  ({minutes}m{seconds:02d}s into the job)\n")
        self.stream.flush()
        self.last = now


_console: _Console | None = None


def progress_due() -> bool:
    """Whether an unforced :func:`progress` line would be shown now (cheap; for per-batch callers)."""
    return _console is not None and _console.due()


def progress(message: str, force: bool = False) -> bool:
    """Show ``message`` (one line) at the console of the running job: on the stderr the job had
    before :func:`start`, prefixed by the job's name and followed by the time since it started.
    Unless ``force``, at most one line per :data:`CONSOLE_INTERVAL` seconds. Returns whether it was
    shown (False outside a workflow job, or too soon after the last line). The rule's log is not
    written: callers log their own lines."""
    if _console is None or not (force or _console.due()):
        return False
    try:
        _console.write(message.strip().replace("\n", " "))
    except (OSError, ValueError):  # a closed console (the workflow ended) must not stop the job
        return False
    return True


def _job_label(path: Path) -> str:
    """The job's name at the console: its log path below ``logs/``, without ``.log``."""
    parts = path.with_suffix("").parts
    return "/".join(parts[parts.index("logs") + 1:]) if "logs" in parts[:-1] else path.stem


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
    of another run). The stderr the job started with stays the console of :func:`progress`.
    """
    global _console
    console = _console.stream if _console is not None and isinstance(sys.stderr, _WatchedLog) else sys.stderr
    _console = _Console(console, _job_label(Path(path)))
    log = _WatchedLog(Path(path))
    log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} job started: pid {os.getpid()} "
              f"on {socket.gethostname()} ====\n")
    sys.stderr = log
    sys.excepthook = _hook
    logging.basicConfig(stream=log, level=logging.INFO, force=True)
