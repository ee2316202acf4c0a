import json

import pytest
import timm
import torch

from selection_helpers import SMALL_VIT
from weightselect.cli import main
from weightselect.io import load_init, save_init
from weightselect.selection import InitMismatchError, apply_init, select


@pytest.fixture(scope="module")
def init_file(tmp_path_factory, vit_small):
    path = tmp_path_factory.mktemp("inits") / "uniform.safetensors"
    spec = {"name": "vit_tiny_patch16_224", "kwargs": {**SMALL_VIT, "num_classes": 10}}
    select(vit_small, spec).save(path)
    return path, spec


def test_apply_init_file_loads_and_reinitializes_head(init_file):
    path, spec = init_file
    model = timm.create_model(spec["name"], **spec["kwargs"])
    info = apply_init(model, path, seed=3)
    sd, manifest = load_init(path)
    assert torch.equal(model.state_dict()["blocks.0.attn.qkv.weight"], sd["blocks.0.attn.qkv.weight"])
    assert info["kind"] == "file" and info["method"] == "uniform"
    assert info["reinitialized"] == ["head.weight", "head.bias"] == manifest["reinitialized"]
    again = timm.create_model(spec["name"], **spec["kwargs"])
    apply_init(again, path, seed=3)
    assert torch.equal(again.head.weight, model.head.weight)  # the head's init follows the seed


def test_apply_init_baseline_name():
    model = timm.create_model("vit_tiny_patch16_224", **SMALL_VIT)
    assert apply_init(model, "xavier", 0)["init"] == "xavier"


def test_apply_init_rejects_wrong_model(init_file):
    path, _ = init_file
    with pytest.raises(InitMismatchError, match="shape"):
        apply_init(timm.create_model("vit_small_patch16_224", **SMALL_VIT, num_classes=10), path, 0)


def test_apply_init_rejects_unlisted_missing_keys(init_file, tmp_path):
    path, spec = init_file
    sd, manifest = load_init(path)
    del sd["blocks.0.norm1.weight"]
    broken = tmp_path / "broken.safetensors"
    save_init(sd, manifest, broken)
    with pytest.raises(InitMismatchError, match="blocks.0.norm1.weight"):
        apply_init(timm.create_model(spec["name"], **spec["kwargs"]), broken, 0)


def test_apply_init_unknown_name():
    with pytest.raises(FileNotFoundError, match="neither a baseline"):
        apply_init(timm.create_model("resnet18"), "nonexistent-init", 0)


def test_cli_select_and_refuse_overwrite(tmp_path, vit_small, capsys):
    teacher = tmp_path / "teacher.safetensors"
    save_init(vit_small.state_dict(), {}, teacher)
    out = tmp_path / "out.safetensors"
    argv = ["select", "--teacher", str(teacher), "--student", "vit_tiny_patch16_224",
            "--student-kwargs", json.dumps(SMALL_VIT), "--method", "random", "--layers", "uniform",
            "--seed", "4", "--exclude", "pos_embed", "-o", str(out)]
    assert main(argv) == 0
    sd, manifest = load_init(out)
    assert manifest["method"] == "random" and manifest["seed"] == 4 and manifest["excluded"] == ["pos_embed"]
    assert manifest["teacher"]["source"] == str(teacher) and "pos_embed" not in sd
    before = out.read_bytes()
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    assert out.read_bytes() == before


def test_cli_baseline(tmp_path):
    out = tmp_path / "xavier.safetensors"
    kwargs = {**SMALL_VIT, "depth": 2}
    argv = ["baseline", "--student", "vit_tiny_patch16_224", "--student-kwargs", json.dumps(kwargs),
            "--name", "xavier", "--seed", "0", "-o", str(out)]
    assert main(argv) == 0
    sd, manifest = load_init(out)
    assert manifest["method"] == "xavier" and manifest["teacher"] is None
    assert manifest["pretrained_cfg"]["input_size"] == [3, 32, 32] and manifest["pretrained_cfg"]["classifier"] == "head"
    model = timm.create_model("vit_tiny_patch16_224", **kwargs)
    apply_init(model, out, seed=9)
    assert torch.equal(model.blocks[0].mlp.fc1.weight, sd["blocks.0.mlp.fc1.weight"])


def test_apply_init_classifier_mismatch_names_the_fix(tmp_path, vit_small):
    path = tmp_path / "head_selected.safetensors"
    result = select(vit_small, {"name": "vit_tiny_patch16_224", "kwargs": SMALL_VIT})
    assert result.manifest["head"] == "selected"
    result.save(path)
    model = timm.create_model("vit_tiny_patch16_224", **SMALL_VIT, num_classes=7)
    with pytest.raises(InitMismatchError, match="num_classes"):
        apply_init(model, path, 0)


def test_the_trainer_path_loads_the_same_weights_and_names_the_same_fix(init_file, tmp_path, vit_small):
    """The trainer reads the file once (read_init) and applies it the way apply_init does."""
    from weightselect.training.weights import read_init

    path, spec = init_file
    by_api = timm.create_model(spec["name"], **spec["kwargs"])
    info_api = apply_init(by_api, path, seed=5)
    by_trainer = timm.create_model(spec["name"], **spec["kwargs"])
    info_trainer = read_init(str(path)).apply(by_trainer, seed=5)
    assert by_api.state_dict().keys() == by_trainer.state_dict().keys()
    assert all(torch.equal(v, by_trainer.state_dict()[k]) for k, v in by_api.state_dict().items())
    assert info_trainer["sha256"] == info_api["sha256"] and info_trainer["reinitialized"] == info_api["reinitialized"]
    head_selected = tmp_path / "head_selected.safetensors"
    select(vit_small, {"name": "vit_tiny_patch16_224", "kwargs": SMALL_VIT}).save(head_selected)
    model = timm.create_model("vit_tiny_patch16_224", **SMALL_VIT, num_classes=7)
    with pytest.raises(InitMismatchError, match=r"head.weight: file \(1000, 192\) vs model \(7, 192\).*num_classes"):
        apply_init(model, head_selected, seed=0)  # the library stays strict


def test_the_trainer_starts_a_new_classifier_when_the_dataset_has_other_classes(tmp_path, vit_small):
    """A teacher's 1,000-class head selected into a 1,000-class student (Figure 4b: a ViT-T pretrained
    on ImageNet-1K), then fine-tuned on a 7-class set: the trainer keeps every other tensor of the
    file and gives the classifier the model's seeded default init, and says so."""
    from weightselect.selection import apply_baseline
    from weightselect.training.weights import read_init

    path = tmp_path / "head_selected.safetensors"
    result = select(vit_small, {"name": "vit_tiny_patch16_224", "kwargs": SMALL_VIT})
    result.save(path)
    model = timm.create_model("vit_tiny_patch16_224", **SMALL_VIT, num_classes=7)
    info = read_init(str(path)).apply(model, seed=4)
    default = timm.create_model("vit_tiny_patch16_224", **SMALL_VIT, num_classes=7)
    apply_baseline(default, "random", 4)
    for key, value in model.state_dict().items():
        expected = default.state_dict()[key] if key.startswith("head.") else result.state_dict[key]
        assert torch.equal(value, expected), key
    assert info["reinitialized"] == ["head.weight", "head.bias"]
    assert info["head"].startswith("reinitialized") and "(1000 classes)" in info["head"] and "(7)" in info["head"]
