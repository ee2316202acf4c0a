"""Command line: ``weightselect <subcommand> ...``.

Each part of the library registers its own subcommands (``register(subparsers)`` in
``weightselect.<part>.cli``); this module only dispatches.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from weightselect import __version__

# Modules that each define ``register(subparsers)``; every subcommand sets ``func`` via set_defaults.
_PARTS = (
    "weightselect.selection.cli",
    "weightselect.training.cli",
    "weightselect.results.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="weightselect",
        description="Initialize small models with larger pretrained ones (weight selection).",
    )
    parser.add_argument("--version", action="version", version=f"weightselect {__version__}")
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
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as exc:
        # Library errors carry the fix in their message; show it without a traceback.
        print(f"weightselect {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
