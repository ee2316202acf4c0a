"""The zoo sweep's checks can fail: a silently wrong selection is reported as wrong."""
import importlib.util
from pathlib import Path

import pytest
import torch

from weightselect.selection import select as real_select

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sweep():
    spec = importlib.util.spec_from_file_location("zoo_sweep", ROOT / "benchmarks" / "zoo_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vit_family_is_right_in_all_three_checks(sweep):
    row = sweep.sweep_family("vision_transformer")
    assert (row["identity"], row["depth"], row["width"]) == ("right", "right", "right"), row["detail"]


def _mixing_select(*args, **kwargs):
    """Selection with q, k and v rows taken from the whole qkv tensor (the old generic fault)."""
    result = real_select(*args, **kwargs)
    teacher = args[0]
    t_sd = teacher if isinstance(teacher, dict) else teacher.state_dict()
    for key, value in result.state_dict.items():
        if key.endswith("attn.qkv.weight") and value.shape != t_sd[key].shape:
            rows = torch.round(torch.linspace(0, t_sd[key].shape[0] - 1, value.shape[0])).long()
            e = torch.tensor(result.manifest["axes"]["embed"]["indices"])
            result.state_dict[key] = t_sd[key][rows][:, e].to(value.dtype)
    return result


def test_width_check_reports_mixed_fused_blocks_as_wrong(sweep, monkeypatch):
    name, kwargs = "vit_tiny_patch16_224", {"depth": 2, "img_size": 32}
    teacher = sweep._build(name, kwargs)
    x = sweep._input(teacher, 32)
    assert sweep.check_width(name, kwargs, {"embed_dim": 96}, teacher, x)[0] == "right"
    monkeypatch.setattr(sweep, "select", _mixing_select)
    status, detail = sweep.check_width(name, kwargs, {"embed_dim": 96}, teacher, x)
    assert status == "wrong" and "qkv.weight" in detail


def test_identity_check_reports_a_changed_tensor_as_wrong(sweep, monkeypatch):
    name, kwargs = "vit_tiny_patch16_224", {"depth": 2, "img_size": 32}
    teacher = sweep._build(name, kwargs)
    x = sweep._input(teacher, 32)

    def off_by_one(*args, **kw):
        result = real_select(*args, **kw)
        result.state_dict["blocks.1.mlp.fc1.weight"] = result.state_dict["blocks.1.mlp.fc1.weight"].roll(1, 0)
        return result

    monkeypatch.setattr(sweep, "select", off_by_one)
    assert sweep.check_identity(name, kwargs, teacher, x)[0] == "wrong"
