"""Command line: ``weightselect <subcommand> ...``.

Each part of the library registers its own subcommands (``register(subparsers)`` in
``weightselect.<part>.cli``); this module only dispatches, and is the one place that turns errors
into messages: a command that fails on bad input ends with ONE line on stderr naming the file or
option and the fix, and exit code 2 (:func:`error_line`). ``--debug`` (or ``WEIGHTSELECT_DEBUG=1``)
shows the Python trace instead. An error that is not bad input (a bug) ends with one line asking for
``--debug`` and exit code 1.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import pickle
import re
import sys
from pathlib import Path
from typing import List, Optional

from weightselect import __version__

# Modules that each define ``register(subparsers)``; every subcommand sets ``func`` via set_defaults.
_PARTS = (
    "weightselect.selection.cli",
    "weightselect.training.cli",
    "weightselect.results.cli",
    "weightselect.completion",
)
DEBUG_ENV = "WEIGHTSELECT_DEBUG"
# The option naming the output of each command, for messages about unwritable outputs.
_OUTPUT_OPTION = {"train": "--out", "probe": "--out"}


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with a usage error as one line (the usage itself is in ``--help``)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="weightselect",
        description="Initialize small models with larger pretrained ones (weight selection).",
        epilog=f"On bad input a command prints one line and exits with 2; --debug or {DEBUG_ENV}=1 "
        "shows the Python trace.",
    )
    parser.add_argument("--version", action="version", version=f"weightselect {__version__}")
    parser.add_argument("--debug", action="store_true", help=f"show Python traces of errors (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    for command in sub.choices.values():  # also accepted after the command
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the Python trace of an error")
    return parser


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if _debug(args):
            raise
        line = error_line(exc, args)
        if line is None:
            print(f"weightselect {args.command}: internal error ({type(exc).__name__}: {_one_line(str(exc))}); "
                  f"rerun with --debug for the trace and report it", file=sys.stderr)
            return 1
        print(f"weightselect {args.command}: error: {line}", file=sys.stderr)
        return 2


def _one_line(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_line(exc: BaseException, args: argparse.Namespace) -> Optional[str]:
    """The one-line message for an error caused by bad input, or None for anything else (a bug).

    Bad input is: the project's errors (all ValueError, KeyError, FileNotFoundError or RuntimeError
    subclasses whose message names the file or option and the fix), OSError (unwritable folder,
    full disk, missing file; the message names the file and the option that chose it), invalid JSON
    in an option (named from its value), YAML and pickle errors.
    """
    if isinstance(exc, json.JSONDecodeError):
        return _one_line(_json_error(exc, args))
    if isinstance(exc, OSError):
        return _one_line(_os_error(exc, args))
    if isinstance(exc, (pickle.UnpicklingError, EOFError)):
        from weightselect.io import torch_load_reason

        return _one_line(f"a file is not a readable PyTorch file ({torch_load_reason(exc)}); rerun with "
                         "--debug to see which, then delete or replace it")
    if _is_yaml_error(exc):
        return _one_line(_yaml_error(exc, args))
    if isinstance(exc, KeyError):  # the project's carry a sentence; a bare key is a failed lookup (a bug)
        message = exc.args[0] if exc.args else ""
        return _one_line(message) if isinstance(message, str) and " " in message.strip() else None
    if isinstance(exc, (ValueError, RuntimeError)):
        return _one_line(_name_kwargs_option(str(exc), getattr(exc, "keyword", None), args))
    return None


def _name_kwargs_option(message: str, keyword: Optional[str], args: argparse.Namespace) -> str:
    """A misspelt model keyword (ModelKwargsError.keyword): name the option that gave it."""
    if not keyword:
        return message
    for dest, value in vars(args).items():
        given = keyword in value if isinstance(value, dict) else isinstance(value, str) and json.dumps(keyword) in value
        if dest.endswith("kwargs") and given:
            return message.replace("in the model's kwargs", f"in --{dest.replace('_', '-')}")
    return message


def _json_error(exc: json.JSONDecodeError, args: argparse.Namespace) -> str:
    for dest, value in vars(args).items():
        if isinstance(value, str) and value == exc.doc:
            option = "--" + dest.replace("_", "-")
            return (f"{option} is not valid JSON ({exc.msg}, column {exc.colno}): {value!r}; "
                    "give a JSON object, e.g. '{\"num_classes\": 10}'")
    return f"not valid JSON ({exc})"


def _written_file(filename: str) -> Path:
    """The file a write was for: temp files ``.name.host-pid.X.tmp`` and locks ``.name.lock`` map to ``name``."""
    path = Path(filename)
    m = re.match(r"^\.(.+?)\.[^.]*-\d+\.[^.]+\.tmp$", path.name) or re.match(r"^\.(.+)\.lock$", path.name)
    return path.with_name(m.group(1)) if m else path


def _os_error(exc: OSError, args: argparse.Namespace) -> str:
    if exc.errno is None:  # raised by the project with its own message
        return str(exc)
    if exc.filename is None:
        return (f"{exc.strerror or exc} ({type(exc).__name__}, errno {exc.errno}) reading or writing a file; "
                "rerun with --debug to see which")
    filename = exc.filename
    target = _written_file(str(filename))
    option = _OUTPUT_OPTION.get(getattr(args, "command", ""), "-o/--output")
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device writing {target} ({reason}); free space there or choose "
                f"another folder with {option}, then rerun")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        folder = target.parent if not target.is_dir() else target
        if exc.errno == errno.EROFS or str(target) != str(filename) or not target.exists():  # a write
            return (f"cannot write {target} ({reason}); make {folder} writable or choose another folder "
                    f"with {option}")
        return f"cannot read or write {target} ({reason}); check its permissions and those of {folder}"
    looped = next((p for p in [Path(target), *Path(target).parents] if p.is_symlink() and not p.exists()), None)
    if exc.errno == errno.ELOOP or looped is not None:
        return (f"{looped or target}: a symbolic link loop or a link to nothing; remove the link or choose another "
                f"path ({option})")
    if exc.errno == errno.ENOENT:
        return f"{target}: no such file or folder; check the path"
    if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
        return (f"{target}: {reason}; a file and a folder have the same name: rename one or choose another "
                f"path ({option})")
    return f"{target}: {reason}"


def _yaml_error(exc, args: argparse.Namespace) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    name = getattr(mark, "name", "") or ""
    if name and not name.startswith("<"):
        return f"{name} is not valid YAML ({problem}, {where}); fix the file"
    buffer = (getattr(mark, "buffer", None) or "").rstrip("\0")
    for item in getattr(args, "set", None) or ():  # a --set KEY=VALUE whose value is YAML
        if "=" in item and item.split("=", 1)[1] == buffer:
            return f"--set {item}: the value is not valid YAML ({problem}); quote or fix it"
    return f"not valid YAML ({problem}, {where}); fix it"


def _is_yaml_error(exc: BaseException) -> bool:
    yaml = sys.modules.get("yaml")
    return yaml is not None and isinstance(exc, yaml.YAMLError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
