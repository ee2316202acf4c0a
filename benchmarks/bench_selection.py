"""Speed and memory of weight selection from a teacher file (printed, never asserted).

For each pair, random teacher weights are first saved as safetensors; then each variant runs in a
fresh Python process, which reports its wall time (after imports) and its peak resident memory:

- ``imports``     import torch, timm and weightselect's selection module only (the floor of every
                  other row; ``weightselect.selection`` loads ``select`` lazily, so it is imported by name);
- ``file_read``   one sequential read of the whole file (16 MiB chunks into one reused buffer),
                  run twice in the process and timed the second time (a warm read);
- ``sha256``      the sha256 of the whole (warm) file, as ``weightselect.io.sha256_file`` computes it;
- ``read``        read every teacher tensor from the file, one at a time, and drop it;
- ``two_pass``    the design this replaced: the teacher's sha256 in a pass of its own
                  (``sha256_file`` with an empty cache of its own), then ``select`` + ``save`` reading the tensors;
- ``select_cold`` ``weightselect.select(file, student)`` + ``save``, streamed, with an empty digest
                  cache: the teacher's sha256 is computed in the same pass that reads the tensors;
- ``select``      the same with the digest remembered by the cold run (weightselect.io.cached_sha256);
- ``header_id``   the same with ``teacher_identity="header"`` (header sha256 + size, no full pass);
- ``in_memory``   the paper's release: build the teacher with timm, load the whole file into it,
                  build the student, then select from the teacher's state dict.

Printed per pair: seconds, each row's time over the warm ``file_read`` (with and without writing
the init file, whose ``save`` fsyncs it), the CPU time (``time.process_time``: user + system, which
a busy machine's other work does not inflate as it does wall time) of the row and of its ``save``,
peak RSS, RSS above the import floor, and the memory goal's yardstick: the student's size + the
largest teacher tensor. The machine's load averages are printed at the start and after each pair.

Then the goal's own measure, interleaved: ``--rounds`` rounds (default 5) of ``file_read``,
``sha256``, ``select`` (digest known) and ``select_cold`` (an empty digest cache each round), one
after the other, so that a change of the machine's load hits every variant alike; printed are the
medians and the median of each round's ratio: ``select`` over ``file_read`` (the goal: <= 1.5) and
``select_cold`` over ``sha256 + 1.5 x file_read`` (the goal: <= 1); then the CPU-time medians and
``select`` over ``file_read`` in CPU time.

Usage: ``python benchmarks/bench_selection.py [--pairs vit_s_t vit_l_t vit_l_s convnext_b_f] [--threads 2]
[--rounds 5]``.
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
    "vit_s_t": ("vit_small_patch16_224", "vit_tiny_patch16_224"),
    "vit_l_t": ("vit_large_patch16_224", "vit_tiny_patch16_224"),
    "vit_l_s": ("vit_large_patch16_224", "vit_small_patch16_224"),
    "convnext_b_f": ("convnext_base", "convnext_femto"),
}
VARIANTS = ("imports", "file_read", "sha256", "read", "two_pass", "select_cold", "select", "header_id", "in_memory")
SELECTS = ("two_pass", "select_cold", "select", "header_id")


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

    import weightselect.selection.select  # noqa: F401  (part of the import floor: the package loads it lazily)
    from weightselect.io import open_tensor_source

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    start, cpu_start = time.perf_counter(), time.process_time()
    n_out, save, save_cpu = 0, None, None
    if variant == "file_read":
        buf = bytearray(16 << 20)
        for attempt in range(2):  # the first read warms the page cache; the second is timed
            start, cpu_start = time.perf_counter(), time.process_time()
            with open(teacher_file, "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    n_out += 1
    elif variant == "sha256":
        from weightselect.io import sha256_file

        sha256_file(teacher_file, cache=False)
    elif variant == "read":
        with open_tensor_source(teacher_file) as src:
            for key in src.keys():
                src.get(key)
                n_out += 1
    elif variant in SELECTS:
        import tempfile

        from weightselect.io import sha256_file
        from weightselect.selection import select

        if variant == "two_pass":  # run with an empty digest cache of its own: hashed here, then found
            sha256_file(teacher_file)
        result = select(teacher_file, student, teacher_identity="header" if variant == "header_id" else "sha256")
        selected, selected_cpu = time.perf_counter(), time.process_time()
        with tempfile.TemporaryDirectory() as out:
            result.save(Path(out) / "init.safetensors")
        n_out = len(result.state_dict)
        save, save_cpu = time.perf_counter() - selected, time.process_time() - selected_cpu
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
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"variant": variant, "seconds": seconds, "save_seconds": save, "cpu_seconds": cpu,
            "save_cpu_seconds": save_cpu, "peak_rss_mib": _peak_rss_mib(), "tensors": n_out}


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


def student_and_largest_mib(teacher: str, student: str) -> float:
    """The memory yardstick: the student's float32 size + the largest teacher tensor, in MiB."""
    code = (
        "import sys, torch, timm\n"
        "with torch.device('meta'):\n"
        "    t = timm.create_model(sys.argv[1]).state_dict(); s = timm.create_model(sys.argv[2]).state_dict()\n"
        "print((sum(v.numel() for v in s.values()) + max(v.numel() for v in t.values())) * 4 / 2**20)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, teacher, student], check=True, capture_output=True, text=True)
    return float(done.stdout.strip())


def measure(variant: str, teacher: str, teacher_file: Path, student: str, threads: int, cache: str) -> dict:
    env = {**os.environ, "BENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "WEIGHTSELECT_CACHE_DIR": cache}
    cmd = [sys.executable, __file__, "--child", variant, teacher, str(teacher_file), student]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=list(PAIRS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds for the ratios (0: none)")
    parser.add_argument("--child", nargs=4, metavar=("VARIANT", "TEACHER", "FILE", "STUDENT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_variant(*args.child)))
        return 0

    print(f"weight selection benchmark: {os.cpu_count()} CPUs, {args.threads} threads; each row a fresh process; "
          f"{_load()}")
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            teacher, student = PAIRS[pair]
            path = Path(tmp) / f"{teacher}.safetensors"
            write_random_teacher(teacher, path)
            size = path.stat().st_size / 2**20
            yardstick = student_and_largest_mib(teacher, student)
            print(f"\n{teacher} ({size:.0f} MiB file) -> {student}; student + largest teacher tensor {yardstick:.0f} MiB")
            print(f"  {'variant':<12} {'seconds':>8} {'x file_read':>11} {'w/o save':>9} {'CPU s':>6} {'save CPU s':>10} "
                  f"{'peak RSS MiB':>13} {'above imports MiB':>18}")
            cache = tempfile.mkdtemp(dir=tmp)  # empty for select_cold, which fills it for select
            rows = {v: measure(v, teacher, path, student, args.threads, tempfile.mkdtemp(dir=tmp) if v == "two_pass" else cache)
                    for v in VARIANTS}
            floor, read = rows["imports"]["peak_rss_mib"], rows["file_read"]["seconds"]
            for v, r in rows.items():
                ratio = f"{r['seconds'] / read:.1f}" if v != "imports" else "-"
                alone = f"{(r['seconds'] - r['save_seconds']) / read:.1f}" if r["save_seconds"] is not None else "-"
                save_cpu = f"{r['save_cpu_seconds']:.3f}" if r["save_cpu_seconds"] is not None else "-"
                print(f"  {v:<12} {r['seconds']:>8.2f} {ratio:>11} {alone:>9} {r['cpu_seconds']:>6.3f} {save_cpu:>10} "
                      f"{r['peak_rss_mib']:>13.0f} {r['peak_rss_mib'] - floor:>18.0f}")
            sel, mem = rows["select"], rows["in_memory"]
            print(
                f"  select vs in_memory: {mem['seconds'] / sel['seconds']:.1f}x faster, "
                f"{mem['peak_rss_mib'] / sel['peak_rss_mib']:.1f}x less peak memory "
                f"({(mem['peak_rss_mib'] - floor) / max(sel['peak_rss_mib'] - floor, 1):.1f}x above the import floor)"
            )
            if args.rounds:
                interleaved(teacher, path, student, args.threads, args.rounds, tmp)
            path.unlink()
    return 0


def interleaved(teacher: str, path: Path, student: str, threads: int, rounds: int, tmp: str) -> None:
    """Rounds of file_read, sha256, select (digest known) and select_cold, one after the other."""
    import statistics

    known = tempfile.mkdtemp(dir=tmp)
    measure("select_cold", teacher, path, student, threads, known)  # remembers the digest for select
    times = {v: [] for v in ("file_read", "sha256", "select", "select_cold")}
    cpu = {v: [] for v in times}
    for _ in range(rounds):
        for v in times:
            cache = known if v == "select" else tempfile.mkdtemp(dir=tmp)
            row = measure(v, teacher, path, student, threads, cache)
            times[v].append(row["seconds"])
            cpu[v].append(row["cpu_seconds"])
    med = {v: statistics.median(t) for v, t in times.items()}
    warm = statistics.median(s / r for s, r in zip(times["select"], times["file_read"]))
    cold = statistics.median(c / (h + 1.5 * r) for c, h, r in zip(times["select_cold"], times["sha256"], times["file_read"]))
    print(f"  interleaved, {rounds} rounds (medians, s): " + ", ".join(f"{v} {t:.2f}" for v, t in med.items()))
    print(f"  select / file_read = {warm:.2f} (goal <= 1.5); select_cold / (sha256 + 1.5 x file_read) = {cold:.2f} "
          "(goal <= 1)")
    print("  CPU seconds (medians): " + ", ".join(f"{v} {statistics.median(t):.3f}" for v, t in cpu.items())
          + f"; select / file_read in CPU time = {statistics.median(s / r for s, r in zip(cpu['select'], cpu['file_read'])):.2f}"
          + f"; {_load()}")


def _load() -> str:
    """The machine's load averages (1, 5, 15 min): wall-clock ratios mean little on a busy machine."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
