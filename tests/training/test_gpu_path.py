"""The GPU path's switches: mixed precision dtype, channels_last, torch.compile (CUDA tests skip without a GPU)."""
import json

import pytest
import torch

from weightselect.training import train
from weightselect.training.builder import amp_dtype
from weightselect.training.recipe import resolve_recipe

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_no_autocast_on_the_cpu():
    r = resolve_recipe("vit_t", "digits")
    assert r.amp is True and amp_dtype(r, torch.device("cpu")) is None


def test_channels_last_switch_on_the_cpu(tmp_path, tiny_convnext, fast_recipe):
    recipe = {**fast_recipe, "img_size": 32, "epochs": 1, "channels_last": True, "train_samples": 100}
    train(tiny_convnext, "digits", tmp_path / "run", recipe=recipe, progress=False)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["channels_last"] is True and meta["amp"] is None and meta["compile"] is False


@cuda
def test_cuda_run_bf16_or_fp16_and_channels_last(tmp_path, tiny_convnext, fast_recipe):
    recipe = {**fast_recipe, "img_size": 32, "epochs": 2}
    final = train(tiny_convnext, "digits", tmp_path / "run", recipe=recipe, device="cuda", progress=False)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["amp"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    assert meta["channels_last"] is True and meta["device"].startswith("cuda")
    assert final["best_top1"] > 30  # learns on the GPU path (chance is 10%)


@cuda
def test_cuda_resume_and_vit_without_channels_last(tmp_path, tiny_vit, fast_recipe):
    run = tmp_path / "run"
    assert train(tiny_vit, "digits", run, recipe=fast_recipe, device="cuda", stop_after_epochs=1, progress=False) is None
    final = train(tiny_vit, "digits", run, recipe=fast_recipe, device="cuda", progress=False)
    meta = json.loads((run / "run.json").read_text())
    assert meta["channels_last"] is False and final["epochs"] == 2
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


@cuda
def test_cuda_compile_switch(tmp_path, tiny_vit, fast_recipe):
    final = train(tiny_vit, "digits", tmp_path / "run", recipe={**fast_recipe, "epochs": 1, "compile": True},
                  device="cuda", progress=False)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["compile"] is True and final["epochs"] == 1
