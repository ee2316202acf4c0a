"""The zoo sweep's checks can fail: a silently wrong selection is reported as wrong."""

import pytest
import torch

from weightselect.selection import select as real_select



@pytest.fixture(scope="module")
def sweep(load_benchmark):
    return load_benchmark("zoo_sweep")


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


def _permuting_select(key_suffix):
    """Selection whose rows of one tensor kind are put in another order (the same for every call):
    each row is still a teacher row, but no longer beside the columns of the tensor that reads it."""
    def fake(*args, **kwargs):
        result = real_select(*args, **kwargs)
        for key, value in result.state_dict.items():
            if key.endswith(key_suffix):
                result.state_dict[key] = value.roll(1, 0)
        return result
    return fake


def test_inner_check_verifies_by_function_and_catches_units_out_of_step(sweep, monkeypatch):
    """The MLP halved: the student equals the teacher with the dropped units zeroed; fc1 rows rolled
    against fc2's columns (every tensor still an index selection) are caught by the outputs."""
    name, kwargs = "vit_tiny_patch16_224", {"depth": 2, "img_size": 32}
    teacher = sweep._build(name, kwargs)
    x = sweep._input(teacher, 32)
    status, detail = sweep.check_inner(name, kwargs, sweep.inner_args({"mlp_ratio": 4.0}), teacher, x)
    assert status == "right" and "outputs equal the masked teacher's" in detail, detail
    monkeypatch.setattr(sweep, "select", _permuting_select("mlp.fc1.weight"))
    status, detail = sweep.check_inner(name, kwargs, {"mlp_ratio": 2.0}, teacher, x)
    assert status == "wrong" and "masked teacher" in detail, detail


def test_function_check_is_not_compared_where_the_identity_cannot_hold(sweep):
    """A LayerNorm over a reduced width, a changed head count: decided from the modules."""
    small = sweep._build("vit_tiny_patch16_224", {"depth": 1, "img_size": 32})
    narrow = sweep._build("vit_tiny_patch16_224", {"depth": 1, "img_size": 32, "embed_dim": 96})
    fewer_heads = sweep._build("vit_tiny_patch16_224", {"depth": 1, "img_size": 32, "embed_dim": 96, "num_heads": 1})
    same_heads = sweep._build("vit_tiny_patch16_224", {"depth": 1, "img_size": 32, "mlp_ratio": 2.0})
    assert "LayerNorm over a reduced dimension" in sweep.not_separable(small, narrow)
    assert sweep.not_separable(narrow, fewer_heads) in ("attention head_dim changed (blocks.0.attn)",
                                                        "attention num_heads changed (blocks.0.attn)")
    assert sweep.not_separable(small, same_heads) is None


def test_width_check_by_function_on_a_batchnorm_convnet(sweep):
    """RepViT's widths halved (BatchNorm, squeeze-excitation, depthwise convolutions): the masked
    teacher computes the student's outputs."""
    name = "repvit_m1"
    args = sweep.model_args(name)
    kwargs = sweep.reduced(args, sweep.DEPTH_ARGS, lambda v: min(v, 2))
    teacher = sweep._finite(sweep._build(name, kwargs))
    x = sweep._input(teacher, 64)
    status, detail = sweep.check_width(name, kwargs, sweep._half_width(args), teacher, x)
    assert status == "right" and "outputs equal the masked teacher's" in detail, detail


def test_a_depthwise_convolution_with_a_channel_multiplier_is_refused(sweep):
    """FastViT's patch embedding: 2 outputs per input channel (groups = in_channels); selected as two
    independent axes its outputs would read other inputs (the function check found it)."""
    name = "fastvit_s12"
    args = sweep.model_args(name)
    kwargs = sweep.reduced(args, sweep.DEPTH_ARGS, lambda v: min(v, 2))
    teacher = sweep._finite(sweep._build(name, kwargs))
    x = sweep._input(teacher, 64)
    status, detail = sweep._outcome(lambda: sweep.check_width(name, kwargs, sweep._half_width(args), teacher, x))
    assert status == "refused" and "2 outputs per input channel" in detail, detail
