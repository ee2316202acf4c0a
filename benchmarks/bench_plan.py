"""How fast the command line and the workflow plan start (printed, never asserted).

- ``weightselect --help``: wall time of a fresh process (median of ``--repeat`` runs);
- the modules a ``select --help`` process and a ``table --help`` process end up importing
  (pandas, matplotlib, torchvision, timm, torch);
- ``snakemake -n --profile slurm all`` (the paper study's dry run): wall time and jobs planned,
  for the study as configured and for the same study with 10x its training seeds (the plan
  should grow linearly with the grid).

Usage: ``python benchmarks/bench_plan.py [--repeat 3]`` from the repository root.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "torchvision", "pandas", "matplotlib")
PROBE = (
    "import json, sys\n"
    "from weightselect.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}), file=sys.stderr)\n"
)


def timed(cmd, **kw) -> tuple:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, **kw)
    return time.perf_counter() - start, done


def imported_by(args) -> dict:
    _, done = timed([sys.executable, "-c", PROBE, *args])
    return json.loads(done.stderr.strip().splitlines()[-1])


def dry_run(extra, repeat: int) -> tuple:
    snakemake = [sys.executable, "-m", "snakemake"]
    cmd = snakemake + ["-n", "--profile", "slurm", "all", "--quiet", "rules", *extra]
    times, jobs = [], None
    for _ in range(repeat):
        seconds, done = timed(cmd)
        if done.returncode != 0:
            raise SystemExit(f"dry run failed:\n{done.stderr[-2000:]}")
        times.append(seconds)
        total = re.search(r"^total\s+(\d+)", done.stdout + done.stderr, re.M)
        jobs = int(total.group(1)) if total else None
    return statistics.median(times), jobs


def ten_times_seeds(tmp: Path) -> Path:
    """A config file that gives the paper study 10x its seeds (merged over config.yaml)."""
    import yaml

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    seeds = config["studies"]["paper"]["seeds"]
    path = tmp / "seeds10x.yaml"
    path.write_text(yaml.safe_dump({"studies": {"paper": {"seeds": list(range(10 * len(seeds)))}}}))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"plan and start-up benchmark: {os.cpu_count()} CPUs; medians of {args.repeat} fresh processes")
    helps = [timed([sys.executable, "-m", "weightselect", "--help"])[0] for _ in range(args.repeat)]
    print(f"  weightselect --help: {statistics.median(helps):.2f} s")
    for command in (["select", "--help"], ["table", "--help"]):
        mods = imported_by(command)
        heavy = ", ".join(m for m, on in mods.items() if on) or "none of " + ", ".join(HEAVY)
        print(f"  weightselect {' '.join(command)} imports: {heavy}")
    seconds, jobs = dry_run([], args.repeat)
    print(f"  snakemake -n --profile slurm all (paper study): {seconds:.2f} s, {jobs} jobs")
    with tempfile.TemporaryDirectory() as tmp:
        seconds10, jobs10 = dry_run(["--configfile", str(ROOT / "config.yaml"), str(ten_times_seeds(Path(tmp)))], args.repeat)
    print(f"  the same with 10x seeds: {seconds10:.2f} s, {jobs10} jobs "
          f"({(seconds10 - seconds) / max((jobs10 or 0) - (jobs or 0), 1) * 1000:.2f} ms per extra job)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
