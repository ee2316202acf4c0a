"""``weightselect select --method activation --calibration DATASET`` and ``--target-params``."""
import json

import pytest
import timm
import torch

from selection_helpers import model
from weightselect.cli import main
from weightselect.io import load_init, save_state_dict


@pytest.fixture()
def cached_atto(tmp_path, monkeypatch):
    """convnext_atto.d2_in1k in a hub cache of this test (offline), random weights."""
    import huggingface_hub.constants as constants

    snap = tmp_path / "hub" / "models--timm--convnext_atto.d2_in1k" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0" * 40)
    save_state_dict(model("convnext_atto").state_dict(), snap / "model.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return "convnext_atto.d2_in1k"


def test_budget_and_activation_on_catalog_images(cached_atto, tmp_path, capsys):
    out = tmp_path / "s.safetensors"
    argv = ["select", "--teacher", cached_atto, "--target-params", "1500000", "--student-kwargs",
            json.dumps({"num_classes": 10}), "--method", "activation", "--calibration", "digits",
            "--calibration-samples", "6", "--calibration-seed", "2", "--calibration-batch", "4", "-o", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("budget: dims (")
    sd, manifest = load_init(out)
    cal = manifest["calibration"]
    assert cal["data"] == {"source": "digits train", "seed": 2, "input_size": [3, 224, 224],
                           "normalization": "timm pretrained_cfg"}  # a hub name: its data config
    assert cal["samples"] == 6 and cal["batch_size"] == 4 and cal["unscored"] == []
    assert manifest["budget"]["params"] <= 1_500_000
    student = timm.create_model("convnext_atto", **manifest["student"]["kwargs"])
    res = student.load_state_dict(sd, strict=False)
    assert not res.unexpected_keys and set(res.missing_keys) == set(manifest["reinitialized"])
    again = tmp_path / "again.safetensors"
    assert main(argv[:-1] + [str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()  # same seed, same data: the same bytes


def test_pt_images_and_one_line_errors(tmp_path, capsys):
    teacher = tmp_path / "t.safetensors"
    save_state_dict(model("convnext_atto").state_dict(), teacher)
    base = ["select", "--teacher", str(teacher), "--student", "convnext_atto", "-o", str(tmp_path / "o.safetensors")]
    assert main(base + ["--method", "activation"]) == 2
    assert "add --calibration" in capsys.readouterr().err
    assert main(base + ["--calibration", "digits"]) == 2
    assert "not uniform: add --method activation" in capsys.readouterr().err
    assert main(base[:3] + base[5:]) == 2
    assert "(--student) or a budget (--target-params N" in capsys.readouterr().err
    images = tmp_path / "x.pt"
    torch.save(torch.randn(2, 3, 64, 64), images)
    assert main(base + ["--method", "activation", "--calibration", str(images)]) == 2
    err = capsys.readouterr().err
    assert "names no architecture" in err and len(err.strip().splitlines()) == 1
    assert main(base + ["--method", "activation", "--calibration", "nosuchset"]) == 2
    assert "neither a dataset of the catalog" in capsys.readouterr().err
    assert main(base + ["--method", "activation", "--calibration", "digits"]) == 2
    assert "--teacher-model" in capsys.readouterr().err
    assert main(base + ["--method", "activation", "--calibration", str(images), "--teacher-model", "convnext_atto"]) == 0
    _, manifest = load_init(tmp_path / "o.safetensors")
    assert manifest["calibration"]["data"] == {"source": str(images)} and manifest["calibration"]["samples"] == 2
