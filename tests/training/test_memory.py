"""Per-device batch from a declared GPU memory (weightselect.training.memory)."""
import importlib.util
from pathlib import Path

import pytest

from weightselect.training.memory import (
    HEADROOM, BatchPlan, UnknownModelMemory, job_mem_mb, loader_mem_mb, model_memory, plan_batch,
)

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_memory.py"


def test_the_table_matches_a_fresh_measurement():
    """The tabulated per-sample figure is what the benchmark measures today (saved tensors under
    bf16 autocast), so a wrong table shows here."""
    spec = importlib.util.spec_from_file_location("bench_memory", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    table = model_memory({"name": "vit_tiny_patch16_224", "kwargs": {"depth": 6}})
    measured = bench.saved_bytes_per_sample("vit_tiny_patch16_224", {"depth": 6}) / 2**20
    assert measured == pytest.approx(table["activation_mib_per_sample"], rel=0.05)
    assert bench.params("vit_tiny_patch16_224", {"depth": 6}) == table["params"]


def test_plan_keeps_the_total_batch_and_fits_the_memory():
    model = {"name": "vit_tiny_patch16_224"}
    mem = model_memory(model)
    per_sample = mem["activation_mib_per_sample"] * 2**20 * HEADROOM + 3 * 224 * 224 * 4
    fixed = mem["params"] * 16 + 2**30
    plan = plan_batch(model, 4096, 4, 24)
    fits = int((24e9 - fixed) // per_sample)  # by hand: the largest per-device batch under 24 GB
    assert plan.per_device * plan.update_freq * plan.devices == 4096
    assert plan.per_device <= fits and 1024 % plan.per_device == 0
    assert plan.per_device == max(d for d in range(1, fits + 1) if 1024 % d == 0)
    assert plan_batch(model, 4096, 4, 80) == BatchPlan(1024, 1, 4, 80.0, plan_batch(model, 4096, 4, 80).estimated_gb)
    probe40, probe80 = (plan_batch(model, 16384, 1, m, mode="probe") for m in (40, 80))
    assert probe40.per_device * probe40.update_freq == 16384 and probe80.per_device >= probe40.per_device
    assert probe40.update_freq > 1  # MAE's 16,384 does not fit one 40 GB card at once


def test_plan_errors_name_the_fix():
    with pytest.raises(UnknownModelMemory, match="bench_memory.py"):
        plan_batch({"name": "resnet50"}, 256, 1, 40)
    with pytest.raises(ValueError, match="multiple of the 3 devices"):
        plan_batch({"name": "vit_tiny_patch16_224"}, 4096, 3, 40)
    with pytest.raises(ValueError, match="larger gpu_mem_gb"):
        plan_batch({"name": "vit_small_patch16_224"}, 64, 1, 0.5)


def test_loader_memory_and_job_memory():
    # 7 workers x 2 prefetched batches x 512 images x 3 x 224 x 224 float32, per process
    assert loader_mem_mb(512, 7, 1, 224) == -(-7 * 2 * 512 * 3 * 224 * 224 * 4 // 2**20)
    assert loader_mem_mb(512, 0, 2, 224) == -(-2 * 512 * 3 * 224 * 224 * 4 // 2**20)
    plan = BatchPlan(4096, 4, 1, 40.0, 37.0)
    assert job_mem_mb(32000, plan, 7, 1, 224) == loader_mem_mb(4096, 7, 1, 224) + 8000 > 32000
    assert job_mem_mb(200000, plan, 7, 1, 224) == 200000
