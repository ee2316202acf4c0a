"""Start-up of each kind of workflow job: what a fresh process imports before it does any work
(printed, never asserted).

Each job kind runs its workflow script's imports, and what its entry function imports before its
first step, in a fresh Python process (``-c``); the wall time is the median of ``--rounds`` runs,
interleaved across kinds, less the median of a bare ``python -c pass``. The heavy packages each
kind ends up with are listed. ``--pythonpath`` measures another checkout of the package (for a
before/after comparison: a ``git worktree`` of the older commit).

Usage: ``python benchmarks/bench_startup.py [--rounds 5] [--pythonpath PATH]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "timm", "torchvision", "pandas", "matplotlib", "transformers", "safetensors")
KINDS = {  # the imports of workflow_scripts/<kind>.py and of the entry function before its first step
    "select": "from weightselect import rulelog\nfrom weightselect.selection import select\nimport timm",
    "train": "from weightselect import rulelog\nfrom weightselect.training.launch import run_job\n"
             "import weightselect.training.run, weightselect.training.loop, weightselect.training.data",
    "table": "from weightselect import rulelog\nfrom weightselect.io import write_text\n"
             "from weightselect.results import build_table, paper_gap, write_table",
    "figure": "from weightselect import rulelog\nfrom weightselect.results import figures",
    "cli": "from weightselect.cli import build_parser\nbuild_parser()",
}
REPORT = "\nimport json, sys\nprint(json.dumps([m for m in %r if m in sys.modules]))" % (HEAVY,)


def _run(code: str, pythonpath: str) -> tuple[float, list]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    start = time.perf_counter()  # run outside any checkout: ``-c`` puts the working folder first on sys.path
    done = subprocess.run([sys.executable, "-c", code + REPORT], capture_output=True, text=True, env=env, check=True,
                          cwd=tempfile.gettempdir())
    return time.perf_counter() - start, json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pythonpath", default=str(Path(__file__).resolve().parents[1]),
                        help="the checkout to import weightselect from (default: this one)")
    args = parser.parse_args(argv)
    times = {k: [] for k in ["bare", *KINDS]}
    heavy = {}
    for _ in range(args.rounds):
        for kind in times:
            seconds, mods = _run("pass" if kind == "bare" else KINDS[kind], args.pythonpath)
            times[kind].append(seconds)
            heavy[kind] = mods
    bare = statistics.median(times["bare"])
    print(f"start-up per job kind: {os.cpu_count()} CPUs, {args.rounds} interleaved rounds, medians "
          f"(a bare python -c pass: {bare:.2f} s, subtracted)")
    for kind in KINDS:
        print(f"  {kind:<7} {statistics.median(times[kind]) - bare:6.2f} s   {', '.join(heavy[kind]) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
