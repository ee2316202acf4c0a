"""Speed and memory of weight selection from a teacher file (printed, never asserted).

For each pair, random teacher weights are first saved as safetensors; then each variant runs in a
fresh Python process, which reports its wall time (after imports) and its peak resident memory:

- ``imports``     import torch, timm and weightselect only (the floor of every other row);
- ``read``        read every teacher tensor from the file, one at a time, and drop it;
- ``select``      ``weightselect.select(file, student)``: streamed, tensor by tensor;
- ``in_memory``   the paper's release: build the teacher with timm, load the whole file into it,
                  build the student, then select from the teacher's state dict.

Usage: ``python benchmarks/bench_selection.py [--pairs small large] [--threads 2]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PAIRS = {
    "small": ("vit_small_patch16_224", "vit_tiny_patch16_224"),
    "large": ("vit_large_patch16_224", "vit_small_patch16_224"),
}
VARIANTS = ("imports", "read", "select", "in_memory")


# ---------------------------------------------------------------------------------------------
# child process side
def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _release_uniform(wt, s_shape):
    """Uniform element selection as in the paper's release (Algorithm 1)."""
    import torch

    ws = wt.clone()
    for dim in range(wt.dim()):
        if wt.shape[dim] % s_shape[dim] == 0:
            indices = torch.arange(s_shape[dim]) * (wt.shape[dim] // s_shape[dim])
        else:
            indices = torch.round(torch.linspace(0, wt.shape[dim] - 1, s_shape[dim])).long()
        ws = torch.index_select(ws, dim, indices)
    return ws


def run_variant(variant: str, teacher: str, teacher_file: str, student: str) -> dict:
    import time

    import timm
    import torch

    import weightselect.selection  # noqa: F401  (part of the import floor)
    from weightselect.io import open_tensor_source

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    start = time.perf_counter()
    n_out = 0
    if variant == "read":
        with open_tensor_source(teacher_file) as src:
            for key in src.keys():
                src.get(key)
                n_out += 1
    elif variant == "select":
        from weightselect.selection import select

        n_out = len(select(teacher_file, student).state_dict)
    elif variant == "in_memory":
        from safetensors.torch import load_file

        model = timm.create_model(teacher)
        model.load_state_dict(load_file(teacher_file))
        teacher_sd = model.state_dict()
        student_sd = timm.create_model(student).state_dict()
        out = {}
        for key, value in student_sd.items():
            if "head" in key:
                continue
            out[key] = _release_uniform(teacher_sd[key], value.shape)
        n_out = len(out)
    return {"variant": variant, "seconds": time.perf_counter() - start, "peak_rss_mib": _peak_rss_mib(), "tensors": n_out}


# ---------------------------------------------------------------------------------------------
# parent side
def write_random_teacher(name: str, path: Path) -> None:
    """Random normal weights of ``name`` saved as safetensors (built on the meta device, so the
    parent never holds a model)."""
    code = (
        "import sys, torch, timm\n"
        "from safetensors.torch import save_file\n"
        "with torch.device('meta'):\n"
        "    shapes = timm.create_model(sys.argv[1]).state_dict()\n"
        "g = torch.Generator().manual_seed(0)\n"
        "save_file({k: torch.randn(v.shape, generator=g) for k, v in shapes.items()}, sys.argv[2])\n"
    )
    subprocess.run([sys.executable, "-c", code, name, str(path)], check=True)


def measure(variant: str, teacher: str, teacher_file: Path, student: str, threads: int) -> dict:
    env = {**os.environ, "BENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--child", variant, teacher, str(teacher_file), student]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=["small", "large"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=4, metavar=("VARIANT", "TEACHER", "FILE", "STUDENT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_variant(*args.child)))
        return 0

    print(f"weight selection benchmark: {os.cpu_count()} CPUs, {args.threads} threads; each row a fresh process")
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            teacher, student = PAIRS[pair]
            path = Path(tmp) / f"{teacher}.safetensors"
            write_random_teacher(teacher, path)
            size = path.stat().st_size / 2**20
            print(f"\n{teacher} ({size:.0f} MiB file) -> {student}")
            print(f"  {'variant':<10} {'seconds':>8} {'peak RSS MiB':>13} {'above imports MiB':>18}")
            rows = {v: measure(v, teacher, path, student, args.threads) for v in VARIANTS}
            floor = rows["imports"]["peak_rss_mib"]
            for v, r in rows.items():
                print(f"  {v:<10} {r['seconds']:>8.2f} {r['peak_rss_mib']:>13.0f} {r['peak_rss_mib'] - floor:>18.0f}")
            sel, mem = rows["select"], rows["in_memory"]
            print(
                f"  select vs in_memory: {mem['seconds'] / sel['seconds']:.1f}x faster, "
                f"{mem['peak_rss_mib'] / sel['peak_rss_mib']:.1f}x less peak memory "
                f"({(mem['peak_rss_mib'] - floor) / max(sel['peak_rss_mib'] - floor, 1):.1f}x above the import floor)"
            )
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
