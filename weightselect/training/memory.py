"""Per-device batch from a declared GPU memory, and the host memory of a job's data loaders.

A recipe's ``batch_size`` is the total per optimizer step (per-device batch x ``update_freq`` x
devices; recipe.py). :func:`plan_batch` keeps that total and caps the per-device batch so that the
estimated training memory fits the GPU, making up the rest with gradient accumulation:

  memory(b) = fixed + b x per_sample x HEADROOM, with
  fixed = params x 16 bytes (fp32 weights, grads, AdamW's two moments) + 1 GiB (CUDA context, workspace),
  per_sample = the activation bytes autograd saves per sample at 224 px under AMP
  (memory_table.yaml, measured by benchmarks/bench_memory.py), scaled by (img_size / 224)^2,
  plus the float32 input image on the device.

A linear probe (Table 9) trains only its head: fixed = params x 4 bytes + 1 GiB, and a sample costs
its forward activations only (no graph kept: PROBE_FRACTION of the training figure, a bound).
:func:`loader_mem_mb` is the host memory of the loaders' prefetched batches (workers x
prefetch_factor x per-device batch x a float32 image, per training process). No torch import: the
Snakefile plans every job at parse time.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import yaml

__all__ = ["BatchPlan", "plan_batch", "loader_mem_mb", "model_memory", "UnknownModelMemory"]

HEADROOM = 1.5  # kernels' workspace and fragmentation on top of the saved tensors
PROBE_FRACTION = 0.25  # a forward without a graph keeps a few layers' activations at a time
CONTEXT_GIB = 1.0
PREFETCH_FACTOR = 2  # torch DataLoader's default


class UnknownModelMemory(KeyError):
    """The model has no entry in memory_table.yaml (measure it with benchmarks/bench_memory.py)."""


@dataclass(frozen=True)
class BatchPlan:
    """``per_device`` x ``update_freq`` x ``devices`` = the recipe's total batch."""

    per_device: int
    update_freq: int
    devices: int
    gpu_mem_gb: float
    estimated_gb: float


@functools.lru_cache(maxsize=1)
def _table() -> Dict[str, Any]:
    return yaml.safe_load((Path(__file__).with_name("memory_table.yaml")).read_text())


def model_memory(model: Mapping[str, Any]) -> Dict[str, float]:
    """``{params, activation_mib_per_sample}`` of ``{"name", "kwargs"}`` from memory_table.yaml.
    Raises UnknownModelMemory naming the benchmark that measures it."""
    name = model["name"].split(".")[0]
    kwargs = model.get("kwargs") or {}
    key = f"{name}@depth{kwargs['depth']}" if "depth" in kwargs else name
    other = set(kwargs) - {"depth", "pre_norm", "num_classes", "drop_path_rate"}
    table = _table()
    if key not in table or other:
        raise UnknownModelMemory(
            f"no training-memory figure for {key}{' with ' + str(sorted(other)) if other else ''}; measure it with "
            "benchmarks/bench_memory.py into weightselect/training/memory_table.yaml, or declare no gpu_mem_gb")
    return table[key]


def plan_batch(model: Mapping[str, Any], total_batch: int, devices: int, gpu_mem_gb: float,
               img_size: int = 224, mode: str = "finetune") -> BatchPlan:
    """The largest per-device batch that divides ``total_batch / devices`` and fits ``gpu_mem_gb``
    (GB, 10^9 bytes) by the estimate above; ``update_freq`` makes up the total. Raises ValueError
    when the total is not a multiple of the devices or even one sample does not fit."""
    devices = max(int(devices), 1)
    if total_batch % devices:
        raise ValueError(f"batch_size {total_batch} is not a multiple of the {devices} devices")
    mem = model_memory(model)
    scale = (img_size / 224) ** 2
    per_sample = mem["activation_mib_per_sample"] * 2**20 * scale * HEADROOM
    if mode == "probe":
        fixed, per_sample = mem["params"] * 4 + CONTEXT_GIB * 2**30, per_sample * PROBE_FRACTION
    else:
        fixed = mem["params"] * 16 + CONTEXT_GIB * 2**30
    per_sample += 3 * img_size**2 * 4  # the float32 input batch on the device
    fits = int((gpu_mem_gb * 1e9 - fixed) // per_sample)
    if fits < 1:
        raise ValueError(f"{model['name']} does not fit {gpu_mem_gb} GB by the estimate; declare a larger gpu_mem_gb")
    share = total_batch // devices
    per_device = max(d for d in range(1, min(share, fits) + 1) if share % d == 0)
    return BatchPlan(per_device, share // per_device, devices, float(gpu_mem_gb),
                     round((fixed + per_device * per_sample) / 1e9, 2))


def loader_mem_mb(per_device: int, workers: int, processes: int, img_size: int, in_chans: int = 3,
                  prefetch_factor: int = PREFETCH_FACTOR) -> int:
    """MB of host memory the data loaders' prefetched batches hold: per training process, workers
    x prefetch_factor batches (one in the main process without workers) of float32 images."""
    batches = max(workers, 1) * (prefetch_factor if workers else 1)
    return int(math.ceil(processes * batches * per_device * in_chans * img_size**2 * 4 / 2**20))


def job_mem_mb(declared_mb: Optional[int], plan: BatchPlan, workers: int, processes: int, img_size: int,
               base_mb: int = 8000) -> int:
    """A job's mem_mb: the declared value, raised to the loaders' prefetched batches plus
    ``base_mb`` per process (the interpreter, torch, the model and the dataset index)."""
    need = loader_mem_mb(plan.per_device, workers, processes, img_size) + base_mb * processes
    return max(int(declared_mb or 0), need)
