"""Peak memory and time of weight selection from a sharded transformers teacher (printed, never asserted).

A Llama-style teacher with random weights is written as ``save_pretrained`` does for large models:
``config.json``, shards ``model-0000x-of-0000y.safetensors`` and ``model.safetensors.index.json``.
Each variant then runs in a fresh Python process, which reports its wall time (after imports), its
resident memory when the variant starts (after imports) and the peak while it runs (sampled every
5 ms from ``/proc/self/statm``; importing torch and transformers peaks higher than the selection
itself, so the process's lifetime peak would hide it):

- ``imports``    import torch, transformers and weightselect.hf only (the floor of the other rows);
- ``select``     ``weightselect.hf.select(folder, half-width student).save(out)``: streamed;
- ``in_memory``  ``AutoModelForCausalLM.from_pretrained(teacher)`` then the same selection from the
                 loaded model's state dict (what a script without streaming does).

Usage: ``python benchmarks/bench_hf.py [--size small|large] [--threads 2]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SIZES = {  # teacher configs; the student halves hidden size, heads, KV groups and MLP width
    "small": dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4, head_dim=64, vocab_size=8000),
    "large": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                  num_key_value_heads=4, head_dim=64, vocab_size=32000),
}
VARIANTS = ("imports", "select", "in_memory")


def student_of(cfg: dict) -> dict:
    return {k: cfg[k] // 2 for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")}


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakSampler:
    """The largest resident set size seen by a thread polling every 5 ms (Linux)."""

    def __enter__(self):
        import threading

        self.peak, self._stop = _rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def run_variant(variant: str, teacher: str, student_json: str, out: str) -> dict:
    import gc
    import time

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaForCausalLM  # noqa: F401  (import floor)

    import weightselect.hf  # noqa: F401

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    student = json.loads(student_json)
    gc.collect()
    start, before = time.perf_counter(), _rss_mib()
    with _PeakSampler() as sampler:
        _run(variant, teacher, student, out)
    return {"variant": variant, "seconds": time.perf_counter() - start, "rss_start_mib": before,
            "peak_mib": sampler.peak, "lifetime_peak_mib": _peak_rss_mib()}


def _run(variant: str, teacher: str, student: dict, out: str) -> None:
    import transformers

    import weightselect.hf as wh

    if variant == "select":
        wh.select(teacher, student).save(out)
    elif variant == "in_memory":
        from weightselect.hf.sources import open_hf_teacher
        from weightselect.io import TensorSource

        model = transformers.AutoModelForCausalLM.from_pretrained(teacher)
        source = open_hf_teacher(teacher)
        source.tensors.close()
        source.tensors = TensorSource.from_state_dict(model.state_dict(), "loaded model")
        wh.select(source, student).save(out)


def write_random_teacher(cfg: dict, folder: Path, shard_mib: int = 50) -> None:
    """Random normal weights of a Llama config, written shard by shard (the parent never holds a
    model: shapes come from a meta-device model) with its index."""
    import torch
    import transformers
    from safetensors.torch import save_file

    config = transformers.LlamaConfig(**cfg, tie_word_embeddings=False)
    config.architectures = ["LlamaForCausalLM"]
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in transformers.LlamaForCausalLM(config).state_dict().items()}
    groups, current, size = [], {}, 0
    for key, shape in shapes.items():
        n = 4 * int(torch.tensor(shape).prod())
        if current and size + n > shard_mib * 2**20:
            groups.append(current)
            current, size = {}, 0
        current[key], size = shape, size + n
    groups.append(current)
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    gen, weight_map, total = torch.Generator().manual_seed(0), {}, 0
    for i, group in enumerate(groups):
        name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {k: torch.randn(s, generator=gen) * 0.02 for k, s in group.items()}
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
        total += sum(t.numel() * 4 for t in tensors.values())
        weight_map.update({k: name for k in group})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def measure(variant: str, teacher: Path, student: dict, out: Path, threads: int) -> dict:
    env = {**os.environ, "BENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--child", variant, str(teacher), json.dumps(student), str(out)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mib(folder: Path, pattern: str) -> float:
    return sum(p.stat().st_size for p in folder.glob(pattern)) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=4, metavar=("VARIANT", "TEACHER", "STUDENT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_variant(*args.child)))
        return 0
    cfg = SIZES[args.size]
    student = student_of(cfg)
    print(f"transformers weight selection benchmark: {os.cpu_count()} CPUs, {args.threads} threads; each row a fresh process")
    with tempfile.TemporaryDirectory() as tmp:
        teacher = Path(tmp) / "teacher"
        write_random_teacher(cfg, teacher)
        shards = len(list(teacher.glob("model-*.safetensors")))
        print(f"teacher: Llama {cfg} -> student {student}")
        print(f"teacher weights {_mib(teacher, 'model-*.safetensors'):.0f} MiB in {shards} shards")
        rows = {v: measure(v, teacher, student, Path(tmp) / f"out_{v}", args.threads) for v in VARIANTS}
        s_size = _mib(Path(tmp) / "out_select", "*.safetensors")
        print(f"student weights {s_size:.0f} MiB")
        print(f"  {'variant':<10} {'seconds':>8} {'RSS at start MiB':>17} {'peak MiB':>9} {'peak - start MiB':>17}")
        for v, r in rows.items():
            print(f"  {v:<10} {r['seconds']:>8.2f} {r['rss_start_mib']:>17.0f} {r['peak_mib']:>9.0f} "
                  f"{r['peak_mib'] - r['rss_start_mib']:>17.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
