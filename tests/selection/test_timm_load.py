"""An init file is a timm pretrained-weights file: it loads with ``timm.create_model(name,
pretrained=True, pretrained_cfg_overlay=dict(file=path, ...))``, and its manifest carries the
student's ``pretrained_cfg`` (data config and classifier name) for that overlay."""
import json

import pytest
import timm
import torch
from safetensors.torch import load_file
from selection_helpers import SMALL_VIT

from weightselect.io import manifest_path
from weightselect.selection import select
from weightselect.selection.select import student_pretrained_cfg


def _timm_model(spec, path, cfg, **kwargs):
    return timm.create_model(spec["name"], pretrained=True, pretrained_cfg_overlay=dict(cfg, file=str(path)),
                             **spec["kwargs"], **kwargs)


def test_an_init_file_loads_into_timm_as_its_pretrained_weights(tmp_path, vit_small, vit_tiny_spec):
    path = select(vit_small, vit_tiny_spec, method="uniform").save(tmp_path / "vit_tiny.safetensors")
    cfg = json.loads(manifest_path(path).read_text())["pretrained_cfg"]
    default = timm.create_model(vit_tiny_spec["name"], pretrained=False).pretrained_cfg
    assert cfg["input_size"] == [3, 32, 32] and cfg["num_classes"] == 1000 and cfg["classifier"] == "head"
    assert cfg["mean"] == list(default["mean"]) and cfg["std"] == list(default["std"])
    assert cfg["architecture"] == "vit_tiny_patch16_224" and cfg["first_conv"] == "patch_embed.proj"

    model = _timm_model(vit_tiny_spec, path, cfg)
    tensors, state = load_file(str(path)), model.state_dict()
    assert state.keys() == tensors.keys()
    for key, value in tensors.items():
        assert torch.equal(state[key], value), key
    data = timm.data.resolve_data_config(model=model)
    assert tuple(data["input_size"]) == (3, 32, 32) and tuple(data["mean"]) == tuple(default["mean"])


def test_a_reinitialized_head_loads_with_pretrained_strict_false(tmp_path, vit_small):
    spec = {"name": "vit_tiny_patch16_224", "kwargs": {**SMALL_VIT, "num_classes": 10}}
    result = select(vit_small, spec)
    assert result.manifest["head"] == "reinitialized"
    path = result.save(tmp_path / "vit_tiny_10.safetensors")
    cfg = result.manifest["pretrained_cfg"]
    assert cfg["num_classes"] == 10
    with pytest.raises(RuntimeError, match="Missing key"):  # the head is not in the file
        _timm_model(spec, path, cfg)
    model = _timm_model(spec, path, cfg, pretrained_strict=False)
    tensors, state = load_file(str(path)), model.state_dict()
    assert set(state) - set(tensors) == {"head.weight", "head.bias"}
    assert all(torch.equal(state[k], v) for k, v in tensors.items())


def test_student_pretrained_cfg_is_json_and_follows_the_students_keywords():
    with torch.device("meta"):
        model = timm.create_model("convnext_atto", num_classes=7, in_chans=1)
    cfg = student_pretrained_cfg(model, {"num_classes": 7, "in_chans": 1})
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["num_classes"] == 7 and cfg["input_size"][0] == 1 and cfg["classifier"] == "head.fc"
    assert student_pretrained_cfg(torch.nn.Linear(2, 2)) == {}
