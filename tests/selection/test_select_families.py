"""ConvNeXt, Swin, ResNet and the generic fallback."""
import pytest
import timm
import torch

from selection_helpers import model, reference_uniform, sd
from weightselect.selection import select
from weightselect.selection.elements import uniform_indices

SWIN = {"img_size": 64, "window_size": 4}


def _strict(spec, state_dict):
    student = timm.create_model(spec["name"], **spec.get("kwargs", {}))
    student.load_state_dict(state_dict, strict=True)
    return student


def _release_reference(teacher, student_sd, skip_head=True):
    """The paper's release loop: every student name, in order, uniform selection of the teacher
    tensor of the same name; names containing 'head' are skipped."""
    out = {}
    for key, s_value in student_sd.items():
        if skip_head and "head" in key:
            continue
        t = teacher[key]
        if t.dim() < s_value.dim():  # femto's 1x1 convolutions vs tiny's linear layers
            t = t.reshape(tuple(t.shape) + (1,) * (s_value.dim() - t.dim()))
        out[key] = reference_uniform(t, s_value.shape)
    return out


def test_convnext_tiny_to_femto_matches_the_release(tmp_path):
    from weightselect.selection import apply_init

    teacher = sd("convnext_tiny")
    spec = {"name": "convnext_femto", "kwargs": {}}
    result = select(teacher, spec, skip_head_keys=True)
    student = model("convnext_femto").state_dict()
    # femto's MLP is made of 1x1 convolutions, tiny's of linear layers: the same component
    assert student["stages.0.blocks.0.mlp.fc1.weight"].shape == (192, 48, 1, 1)
    assert teacher["stages.0.blocks.0.mlp.fc1.weight"].shape == (384, 96)
    expected = _release_reference(teacher, student)
    assert set(result.state_dict) == set(expected)  # head.norm and head.fc are left out, as the release does
    for key, value in expected.items():
        assert torch.equal(result.state_dict[key], value), key
    assert set(result.manifest["reinitialized"]) == {"head.norm.weight", "head.norm.bias", "head.fc.weight", "head.fc.bias"}
    assert result.manifest["head"] == "reinitialized" and result.manifest["skip_head_keys"] is True
    # loaded as the trainer does: the head keeps the student's seeded default init
    path = result.save(tmp_path / "release.safetensors")
    m = timm.create_model("convnext_femto")
    apply_init(m, path, seed=3)
    for key, value in expected.items():
        assert torch.equal(m.state_dict()[key], value), key
    assert torch.equal(m.head.norm.weight, torch.ones(384))  # LayerNorm default, not the teacher's


def test_convnext_default_inherits_head_norm():
    teacher = sd("convnext_tiny")
    result = select(teacher, "convnext_femto")
    expected = _release_reference(teacher, model("convnext_femto").state_dict(), skip_head=False)
    for key, value in expected.items():  # head.norm (the last stage's LayerNorm) and head.fc selected too
        assert torch.equal(result.state_dict[key], value), key
    assert result.manifest["layer_map"]["stages.2.blocks.5"] == "stages.2.blocks.5"
    assert result.manifest["axes"]["stages.3.channels"]["teacher"] == 768
    assert result.manifest["head"] == "selected" and result.manifest["reinitialized"] == []
    _strict({"name": "convnext_femto"}, result.state_dict)


def test_convnext_per_stage_layer_selection_and_consistency():
    teacher = sd("convnext_tiny")
    result = select(teacher, "convnext_femto", method="random", layers="uniform", seed=1)
    lm = result.manifest["layer_map"]
    assert [lm[f"stages.2.blocks.{i}"] for i in range(6)] == [f"stages.2.blocks.{t}" for t in (0, 2, 3, 5, 6, 8)]
    assert lm["stages.0.blocks.1"] == "stages.0.blocks.2"
    ch1 = torch.tensor(result.manifest["axes"]["stages.1.channels"]["indices"])
    ch0 = torch.tensor(result.manifest["axes"]["stages.0.channels"]["indices"])
    out = result.state_dict
    assert torch.equal(out["stages.1.downsample.1.weight"], teacher["stages.1.downsample.1.weight"][ch1][:, ch0])
    assert torch.equal(out["stages.1.blocks.1.conv_dw.weight"], teacher["stages.1.blocks.2.conv_dw.weight"][ch1])
    hid = torch.tensor(result.manifest["axes"]["stages.1.blocks.1.mlp_hidden"]["indices"])
    fc2 = teacher["stages.1.blocks.2.mlp.fc2.weight"][ch1][:, hid]
    assert torch.equal(out["stages.1.blocks.1.mlp.fc2.weight"], fc2[:, :, None, None])


def test_swin_base_to_tiny():
    teacher = sd("swin_base_patch4_window7_224", **SWIN)
    spec = {"name": "swin_tiny_patch4_window7_224", "kwargs": SWIN}
    result = select(teacher, spec)
    out, axes = result.state_dict, result.manifest["axes"]
    assert axes["layers.0.channels"]["teacher"] == 128 and axes["layers.0.channels"]["student"] == 96
    heads = uniform_indices(4, 3)
    assert axes["layers.0.heads"]["indices"] == heads.tolist()
    table = teacher["layers.0.blocks.1.attn.relative_position_bias_table"]
    assert torch.equal(out["layers.0.blocks.1.attn.relative_position_bias_table"], table[:, heads])
    # patch merging: 4 concatenated copies of the previous stage's channels, selected block by block
    c0 = uniform_indices(128, 96)
    c1 = uniform_indices(256, 192)
    cols = torch.cat([c0 + k * 128 for k in range(4)])
    red = teacher["layers.1.downsample.reduction.weight"]
    assert torch.equal(out["layers.1.downsample.reduction.weight"], red[c1][:, cols])
    assert result.manifest["layer_map"]["layers.2.blocks.5"] == "layers.2.blocks.5"
    _strict(spec, out)


def test_resnet50_to_narrower_resnet26():
    teacher = sd("resnet50")
    spec = {"name": "resnet26", "kwargs": {"base_width": 32}}
    result = select(teacher, spec, layers="last")
    lm = result.manifest["layer_map"]
    # block 0 of a stage holds the downsampling shortcut: it stays block 0
    assert lm["layer3.0"] == "layer3.0" and lm["layer3.1"] == "layer3.5"
    axes = result.manifest["axes"]
    assert axes["layer3.1.width1"]["teacher"] == 256 and axes["layer3.1.width1"]["student"] == 128
    assert axes["layer3.channels"]["indices"] == list(range(1024))  # equal widths: all kept
    w1 = uniform_indices(256, 128)
    got = result.state_dict["layer3.1.conv2.weight"]
    assert torch.equal(got, teacher["layer3.5.conv2.weight"][w1][:, w1])
    assert torch.equal(result.state_dict["layer3.1.bn1.running_var"], teacher["layer3.5.bn1.running_var"][w1])
    _strict(spec, result.state_dict)


def test_generic_mixer_pair():
    teacher = sd("mixer_b16_224", img_size=64)
    spec = {"name": "mixer_s16_224", "kwargs": {"img_size": 64}}
    result = select(teacher, spec, method="random", seed=0)
    assert result.manifest["family"] == "generic"
    assert result.manifest["layer_map"]["blocks.7"] == "blocks.7"
    embed = torch.tensor(result.manifest["axes"]["size768->512"]["indices"])
    out = result.state_dict
    assert torch.equal(out["blocks.0.norm1.weight"], teacher["blocks.0.norm1.weight"][embed])
    assert torch.equal(out["stem.proj.bias"], teacher["stem.proj.bias"][embed])
    _strict(spec, out)


def test_generic_refuses_rank_mismatch():
    teacher = {"a.weight": torch.zeros(4, 4, 3), "b": torch.zeros(2)}
    student = torch.nn.Module()
    student.a = torch.nn.Linear(4, 2, bias=False)
    student.b = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="dimensions"):
        select(teacher, student)


def test_convnext_ablation_and_l1():
    teacher = sd("convnext_tiny")
    result = select(teacher, "convnext_femto", exclude=["mlp"])
    gone = result.manifest["reinitialized"]
    assert gone and all(".mlp." in k for k in gone) and len(gone) == 12 * 4
    student = timm.create_model("convnext_femto")
    res = student.load_state_dict(result.state_dict, strict=False)
    assert sorted(res.missing_keys) == sorted(gone) and not res.unexpected_keys

    l1 = select(teacher, "convnext_femto", method="l1")
    w = teacher["stages.0.blocks.0.conv_dw.weight"]
    keep = w.abs().reshape(96, -1).sum(1).topk(48).indices.sort().values
    assert torch.equal(l1.state_dict["stages.0.blocks.0.conv_dw.weight"], w[keep])
    assert l1.manifest["axes"]["stages.0.channels"]["indices"] is None


def test_missing_teacher_tensor_is_named():
    teacher = dict(sd("convnext_tiny"))
    del teacher["stages.1.blocks.0.conv_dw.bias"]
    with pytest.raises(ValueError, match=r"stages\.1\.blocks\.0\.conv_dw\.bias"):
        select(teacher, "convnext_femto")


def test_unruled_tensor_gets_shape_axes_with_a_warning(caplog):
    teacher = dict(sd("vit_small_patch16_224", img_size=32))
    teacher["extra"] = torch.arange(384.0)
    student = timm.create_model("vit_tiny_patch16_224", img_size=32)
    student.register_buffer("extra", torch.zeros(192))
    with caplog.at_level("WARNING"):
        result = select(teacher, student)
    assert "extra" in caplog.text
    assert torch.equal(result.state_dict["extra"], torch.arange(0.0, 384.0, 2.0))
