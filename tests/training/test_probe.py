"""The linear probe (Table 9) as a mode of the engine: MAE's head, LARS, recipe, resume."""
import json

import pytest
import torch
from safetensors.torch import load_file

from weightselect.models import create_model
from weightselect.training import builder, train
from weightselect.training.recipe import resolve_recipe


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_probe_recipe_is_maes():
    r = resolve_recipe("vit_t", "cifar100", mode="probe")
    assert (r.mode, r.opt, r.batch_size, r.epochs, r.warmup_epochs) == ("probe", "lars", 16384, 90, 10)
    assert r.scaled_lr == pytest.approx(0.1 * 16384 / 256) and r.weight_decay == 0 and r.min_lr == 0
    assert r.train_crop == "rrc" and r.randaugment is None and r.mixup == 0 and r.cutmix == 0
    assert r.reprob == 0 and r.smoothing == 0 and r.drop_path == 0 and r.hflip == 0.5
    # overrides apply to the probe recipe; an epoch override keeps warm-up at 10/90 of the run
    small = resolve_recipe("convnext_f", "digits", {"batch_size": 64, "epochs": 9}, mode="probe")
    assert small.opt == "lars" and small.scaled_lr == pytest.approx(0.1 * 64 / 256)
    assert small.warmup_epochs == pytest.approx(1.0)
    assert resolve_recipe("vit_t", "cifar100", {"mode": "probe"}).opt == "lars"


@pytest.mark.parametrize("spec", ["tiny_vit", "tiny_convnext"])
def test_probe_head_is_batchnorm_without_affine_and_linear_trained_with_lars(spec, request):
    from timm.optim import Lars

    model = create_model(request.getfixturevalue(spec), num_classes=10, in_chans=1)
    width = model.num_features
    head = builder.probe_head(model)
    assert isinstance(head[0], torch.nn.BatchNorm1d) and not head[0].affine and head[0].eps == 1e-6
    assert isinstance(head[1], torch.nn.Linear) and (head[1].in_features, head[1].out_features) == (width, 10)
    assert model.get_classifier() is head  # put where timm's pretrained_cfg says the classifier is
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    name = head.classifier_name
    assert trainable == {f"{name}.1.weight", f"{name}.1.bias"}
    assert torch.all(head[1].bias == 0) and head[1].weight.std() < 0.02
    recipe = resolve_recipe(request.getfixturevalue(spec)["name"], "digits", {"batch_size": 512}, mode="probe")
    opt = builder.build_optimizer(model, recipe)
    assert isinstance(opt, Lars) and opt.defaults["momentum"] == 0.9 and opt.defaults["trust_coeff"] == 0.001
    groups = {tuple(p.shape): g["always_adapt"] for g in opt.param_groups for p in g["params"]}
    assert groups == {(10, width): True, (10,): False}  # LARS adapts the weight, not the bias (MAE)
    assert all(g["lr"] == pytest.approx(0.2) for g in opt.param_groups)  # 0.1 x 512 / 256


def test_probe_run_trains_only_the_head_and_resumes_bit_for_bit(tmp_path, tiny_convnext):
    recipe = {"img_size": 32, "epochs": 2, "batch_size": 100, "train_samples": 400, "lr": 2.0}
    ref = train(tiny_convnext, "digits", tmp_path / "ref", mode="probe", recipe=recipe, seed=4, progress=False)
    run = tmp_path / "run"
    assert train(tiny_convnext, "digits", run, mode="probe", recipe=recipe, seed=4, stop_at_update=3,
                 progress=False) is None
    assert torch.load(run / "checkpoint.pt", weights_only=True)["partial"]["batches"] == 3
    final = train(tiny_convnext, "digits", run, mode="probe", recipe=recipe, seed=4, progress=False)
    assert final == {**ref, "train_seconds": final["train_seconds"], "images_per_s": final["images_per_s"]}
    a, b = load_file(str(run / "model.safetensors")), load_file(str(tmp_path / "ref" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    exact = ["epoch", "lr", "train_loss", "test_loss", "test_top1", "test_top5"]
    assert [{k: m[k] for k in exact} for m in _metrics(run)] == [{k: m[k] for k in exact} for m in _metrics(tmp_path / "ref")]
    # the backbone is the seeded random init, untouched; the head moved
    torch.manual_seed(4)
    init = create_model(tiny_convnext, num_classes=10, in_chans=1, drop_path_rate=0.0, ls_init_value=1e-6)
    from weightselect.selection.baselines import apply_baseline

    apply_baseline(init, "random", 4)
    backbone = {k: v for k, v in init.state_dict().items() if not k.startswith("head.fc")}
    assert all(torch.equal(a[k], v) for k, v in backbone.items())
    assert {"head.fc.0.running_mean", "head.fc.1.weight"} <= set(a) and a["head.fc.0.running_mean"].abs().sum() > 0
    assert final["mode"] == "probe" and json.loads((run / "run.json").read_text())["probe_head"]["classifier"] == "head.fc"


def test_probe_command_is_train_mode_probe(tmp_path, tiny_vit, capsys):
    from weightselect.cli import main

    argv = ["probe", "--model", tiny_vit["name"], "--model-kwargs", json.dumps(tiny_vit["kwargs"]),
            "--dataset", "digits", "--init", "random", "--set", "epochs=1", "--set", "batch_size=200",
            "--set", "train_crop=null", "--set", "train_samples=200", "--out", str(tmp_path / "p")]
    assert main(argv) == 0
    final = json.loads(capsys.readouterr().out)
    assert final["mode"] == "probe" and final["epochs"] == 1
    assert main(argv) == 2  # finished: not overwritten without --force
    same = ["train", "--mode", "probe"] + argv[1:-1] + [str(tmp_path / "t")]
    assert main(same) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert again["final_top1"] == final["final_top1"]
