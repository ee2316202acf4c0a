import json
import os
import signal

import pytest
import torch
import yaml
from safetensors.torch import load_file

from weightselect import rundir
from weightselect.io import save_init
from weightselect.models import create_model
from weightselect.training import batches
from weightselect.training.loop import (
    NonFiniteLossError, RunFinishedError, RunMismatchError, TrainingInterrupted, train,
)
from weightselect.training.recipe import resolve_recipe

METRIC_KEYS = ["epoch", "lr", "train_loss", "test_loss", "test_top1", "test_top5", "seconds", "images_per_s"]
FINAL_KEYS = ["model", "dataset", "init", "seed", "mode", "epochs", "final_top1", "final_top5", "best_top1",
              "best_top5", "best_epoch", "train_seconds", "images_per_s"]
# fields that must match between an interrupted-and-resumed run and an uninterrupted one
EXACT = ["epoch", "lr", "train_loss", "test_loss", "test_top1", "test_top5"]


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _same_weights(a, b):
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_one_run_writes_the_run_directory(tmp_path, tiny_vit, fast_recipe):
    run = tmp_path / "run"
    final = train(tiny_vit, "digits", run, seed=1, recipe=fast_recipe, progress=False)
    assert sorted(os.listdir(run)) == sorted(
        ["metrics.jsonl", "summary.csv", "final.json", "checkpoint.pt", "recipe.yaml", "run.json", "model.safetensors"])
    metrics = _metrics(run)
    assert [list(m) for m in metrics] == [METRIC_KEYS] * 2 and [m["epoch"] for m in metrics] == [1, 2]
    assert list(final) == FINAL_KEYS and json.loads((run / "final.json").read_text()) == final
    assert set(rundir.FINAL_KEYS) <= set(final) and set(rundir.EPOCH_KEYS) <= set(metrics[0])
    assert final["final_top1"] == metrics[-1]["test_top1"] and final["dataset"] == "digits"
    best = max(metrics, key=lambda m: m["test_top1"])
    assert final["best_top1"] == best["test_top1"] and final["best_epoch"] == best["epoch"]
    assert final["best_top5"] == max(m["test_top5"] for m in metrics) and final["mode"] == "finetune"
    assert final["init"] == "random" and final["seed"] == 1 and final["epochs"] == 2
    assert 0 <= final["final_top1"] <= 100 and final["images_per_s"] > 0
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recipe == resolve_recipe("vit_tiny_patch16_224", "digits", fast_recipe).to_dict()
    meta = json.loads((run / "run.json").read_text())
    assert meta["init"]["init"] == "random" and meta["dataset"]["num_classes"] == 10
    assert meta["dataset"]["train_images"] == 400 and meta["sample_transforms"] is False
    weights = load_file(str(run / "model.safetensors"))
    model = create_model(tiny_vit, num_classes=10, in_chans=1)
    model.load_state_dict(weights)  # exactly the student's parameters
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2


def test_learns_digits(tmp_path, tiny_convnext, fast_recipe):
    final = train(tiny_convnext, "digits", tmp_path / "run", recipe={**fast_recipe, "img_size": 32, "epochs": 3},
                  progress=False)
    assert final["best_top1"] > 50  # chance is 10%


def test_kill_and_resume_is_bit_identical(tmp_path, tiny_convnext):
    # the paper's batch-level augmentation (mixup/cutmix, label smoothing) and drop path use RNG
    recipe = {"epochs": 2, "warmup_epochs": 1, "batch_size": 64, "img_size": 32, "mixup": 0.8,
              "cutmix": 1.0, "drop_path": 0.1, "train_samples": 512}
    ref = train(tiny_convnext, "digits", tmp_path / "ref", seed=3, recipe=recipe, progress=False)
    run = tmp_path / "run"
    assert train(tiny_convnext, "digits", run, seed=3, recipe=recipe, stop_at_update=5, progress=False) is None
    assert not (run / "final.json").exists() and (run / "checkpoint.pt").exists()
    assert train(tiny_convnext, "digits", run, seed=3, recipe=recipe, stop_after_epochs=1, progress=False) is None
    assert len(_metrics(run)) == 1
    (run / "metrics.jsonl").unlink()  # a workflow manager may delete partial outputs
    final = train(tiny_convnext, "digits", run, seed=3, recipe=recipe, progress=False)
    for key in ("final_top1", "final_top5", "best_top1"):
        assert final[key] == ref[key]
    assert [{k: m[k] for k in EXACT} for m in _metrics(run)] == [
        {k: m[k] for k in EXACT} for m in _metrics(tmp_path / "ref")]
    assert _same_weights(run, tmp_path / "ref")


def test_signal_checkpoints_and_resumes(tmp_path, tiny_vit, fast_recipe, monkeypatch):
    ref = train(tiny_vit, "digits", tmp_path / "ref", recipe=fast_recipe, progress=False)
    calls = {"n": 0}
    normalize = batches.normalize

    def send_sigusr1_on_batch_4(x, mean, std):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGUSR1)  # what SLURM sends before a time limit
        return normalize(x, mean, std)

    monkeypatch.setattr(batches, "normalize", send_sigusr1_on_batch_4)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_vit, "digits", run, recipe=fast_recipe, progress=False)
    assert info.value.signum == signal.SIGUSR1
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["partial"]["batches"] == 4 and ckpt["num_updates"] == 4
    monkeypatch.setattr(batches, "normalize", normalize)
    final = train(tiny_vit, "digits", run, recipe=fast_recipe, progress=False)
    assert final["final_top1"] == ref["final_top1"] and _same_weights(run, tmp_path / "ref")
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handlers are put back


def test_finished_run_is_not_overwritten(tmp_path, tiny_vit, fast_recipe):
    run = tmp_path / "run"
    recipe = {**fast_recipe, "epochs": 1}
    first = train(tiny_vit, "digits", run, recipe=recipe, progress=False)
    before = (run / "final.json").read_bytes()
    with pytest.raises(RunFinishedError, match="force"):
        train(tiny_vit, "digits", run, recipe=recipe, progress=False)
    assert (run / "final.json").read_bytes() == before
    again = train(tiny_vit, "digits", run, recipe=recipe, seed=0, force=True, progress=False)
    assert again["final_top1"] == first["final_top1"] and len(_metrics(run)) == 1


def test_checkpoint_of_another_run_is_refused(tmp_path, tiny_vit, fast_recipe):
    run = tmp_path / "run"
    train(tiny_vit, "digits", run, recipe=fast_recipe, stop_after_epochs=1, progress=False)
    with pytest.raises(RunMismatchError, match="seed"):
        train(tiny_vit, "digits", run, recipe=fast_recipe, seed=5, progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_vit, fast_recipe, monkeypatch):
    run = tmp_path / "run"
    fast_recipe["smoothing"] = 0.0  # plain cross-entropy
    train(tiny_vit, "digits", run, recipe=fast_recipe, stop_after_epochs=1, progress=False)
    good = (run / "checkpoint.pt").read_bytes()

    class NaNLoss(torch.nn.CrossEntropyLoss):
        def forward(self, logits, target):
            return super().forward(logits, target) * float("nan")

    monkeypatch.setattr(torch.nn, "CrossEntropyLoss", NaNLoss)
    with pytest.raises(NonFiniteLossError, match="nan.*last good checkpoint"):
        train(tiny_vit, "digits", run, recipe=fast_recipe, progress=False)
    assert (run / "checkpoint.pt").read_bytes() == good and not (run / "final.json").exists()


def test_init_file_is_applied_and_recorded(tmp_path, tiny_convnext, fast_recipe):
    pytest.importorskip("weightselect.selection", reason="needs weightselect.selection.apply_init")
    from weightselect.selection import apply_init  # noqa: F401

    # a trained model's weights as the init: at lr ~ 0 the run keeps its accuracy
    trained = tmp_path / "trained"
    fast_recipe["img_size"] = 32
    train(tiny_convnext, "digits", trained, recipe={**fast_recipe, "epochs": 3}, progress=False)
    init = tmp_path / "inits" / "trained.safetensors"
    save_init(load_file(str(trained / "model.safetensors")),
              {"format": "weightselect-init/1", "method": "test", "student": tiny_convnext, "reinitialized": []}, init)
    frozen = {**fast_recipe, "epochs": 1, "lr": 1e-12, "min_lr": 0.0, "warmup_epochs": 0, "train_samples": 50}
    run = train(tiny_convnext, "digits", tmp_path / "from_init", init=str(init), recipe=frozen, progress=False)
    base = train(tiny_convnext, "digits", tmp_path / "from_random", recipe=frozen, progress=False)
    assert run["init"] == str(init)
    assert run["final_top1"] == pytest.approx(_metrics(trained)[-1]["test_top1"], abs=0.5)
    assert run["final_top1"] > base["final_top1"] + 10
    meta = json.loads((tmp_path / "from_init" / "run.json").read_text())
    assert meta["init"]["kind"] == "file" and len(meta["init"]["sha256"]) == 64
    assert meta["init"]["manifest"]["method"] == "test"


def test_named_baseline_init(tmp_path, tiny_vit, fast_recipe):
    pytest.importorskip("weightselect.selection", reason="needs weightselect.selection.apply_init")
    final = train(tiny_vit, "digits", tmp_path / "run", init="xavier", recipe={**fast_recipe, "epochs": 1},
                  progress=False)
    assert final["init"] == "xavier"


def test_unknown_init_is_a_clear_error(tmp_path, tiny_vit, fast_recipe):
    with pytest.raises(FileNotFoundError, match="neither a baseline"):
        train(tiny_vit, "digits", tmp_path / "run", init="nope.safetensors", recipe=fast_recipe)


def test_cifar_folder_with_the_papers_augmentation(tmp_path, cifar100_root):
    # RandAugment, random erasing, mixup/cutmix, label smoothing: the full per-sample (PIL) path
    vit32 = {"name": "vit_tiny_patch16_224",
             "kwargs": {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}}
    recipe = {"img_size": 32, "epochs": 1, "warmup_epochs": 0, "batch_size": 16, "update_freq": 2}
    final = train(vit32, "cifar100", tmp_path / "run", data_root=cifar100_root, recipe=recipe, progress=False)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["sample_transforms"] is True and meta["dataset"]["num_classes"] == 100
    assert meta["batch_per_device"] == 8 and meta["updates_per_epoch"] == 4
    assert 0 <= final["final_top1"] <= 100


def test_image_folder_run_and_ema(tmp_path, imagefolder_root, tiny_convnext):
    recipe = {"img_size": 32, "epochs": 1, "warmup_epochs": 0, "batch_size": 8, "randaugment": None,
              "mixup": 0, "cutmix": 0, "reprob": 0, "ema": True, "ema_decay": 0.5, "ema_eval": True}
    train(tiny_convnext, "imagefolder", tmp_path / "run", data_root=imagefolder_root, recipe=recipe, progress=False)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["dataset"]["num_classes"] == 3 and meta["dataset"]["test_images"] == 12
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["ema"] is not None


def test_model_kwargs_that_contradict_the_dataset(tmp_path, tiny_vit, fast_recipe):
    tiny_vit["kwargs"]["num_classes"] = 100
    with pytest.raises(ValueError, match="num_classes"):
        train(tiny_vit, "digits", tmp_path / "run", recipe=fast_recipe)
    tiny_vit["kwargs"].pop("num_classes")
    with pytest.raises(ValueError, match="img_size"):
        train(tiny_vit, "digits", tmp_path / "run", recipe={**fast_recipe, "img_size": 32})


def test_progress_bar_and_log_lines(tmp_path, tiny_vit, fast_recipe, capsys):
    recipe = {**fast_recipe, "epochs": 1, "train_samples": 100}
    train(tiny_vit, "digits", tmp_path / "bar", recipe=recipe, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "img/s" in err
    train(tiny_vit, "digits", tmp_path / "plain", recipe=recipe, progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch")]
    assert len(lines) == 1 and "ETA" in lines[0] and "top1" in lines[0]
