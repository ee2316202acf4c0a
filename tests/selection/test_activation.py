"""method="activation": units ranked by mean |activation| on calibration data, with consistency.

The expected rankings are computed here, independently: by hand on a two-layer MLP, and with this
test's own forward hooks on timm models."""
import pytest
import timm
import torch
import torch.nn as nn

from selection_helpers import SMALL_VIT, model
from weightselect.selection import select
from weightselect.selection.importance import Calibration


class TwoLayer(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    return torch.tensor(sorted(torch.argsort(scores, descending=True)[:k].tolist()))


def test_two_layer_mlp_keeps_the_hidden_units_of_largest_mean_activation():
    torch.manual_seed(0)
    teacher = TwoLayer(8).eval()
    x = torch.randn(64, 4)
    with torch.no_grad():  # by hand: h = relu(x W1^T + b1), the score of unit i is mean_n |h[n, i]|
        hidden = torch.relu(x @ teacher.fc1.weight.T + teacher.fc1.bias)
    keep = _top(hidden.abs().mean(dim=0), 5)
    result = select(teacher, TwoLayer(5), method="activation", calibration=x)
    (axis,) = result.manifest["axes"]
    assert result.manifest["axes"][axis]["indices"] == keep.tolist()
    assert keep.tolist() != [0, 2, 4, 5, 7] and keep.tolist() != [0, 1, 2, 3, 4]  # not uniform, not first
    sd = result.state_dict
    assert torch.equal(sd["fc1.weight"], teacher.fc1.weight[keep])
    assert torch.equal(sd["fc1.bias"], teacher.fc1.bias[keep])
    assert torch.equal(sd["fc2.weight"], teacher.fc2.weight[:, keep])
    cal = result.manifest["calibration"]
    assert cal["samples"] == 64 and cal["shape"] == [64, 4] and cal["dtype"] == "float32"
    assert cal["scores"][axis]["kept_share"] == pytest.approx(
        float(hidden.abs().mean(0)[keep].sum() / hidden.abs().mean(0).sum()), abs=1e-5)


def _input_means(teacher: nn.Module, x: torch.Tensor, names, channel: int = -1):
    """This test's own hooks: per module, mean over samples and positions of |input| per channel."""
    out, handles = {}, []
    modules = dict(teacher.named_modules())
    for name in names:
        def hook(m, args, name=name):
            a = args[0].abs().double()
            dims = [d for d in range(a.dim()) if d != channel % a.dim()]
            out[name] = a.mean(dim=dims)
        handles.append(modules[name].register_forward_pre_hook(hook))
    with torch.no_grad():
        teacher(x)
    for h in handles:
        h.remove()
    return out


def _vit_case():
    teacher = model("vit_small_patch16_224", **SMALL_VIT)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    spec = {"name": "vit_tiny_patch16_224", "kwargs": dict(SMALL_VIT)}
    return teacher, x, spec, select(teacher, spec, method="activation", calibration=Calibration(x, {"source": "noise"}, 3))


def test_vit_heads_hidden_units_and_residual_channels_match_own_hooks():
    teacher, x, spec, result = _vit_case()
    axes = result.manifest["axes"]
    readers = [f"blocks.{i}.{m}" for i in range(12) for m in ("attn.qkv", "mlp.fc1")] + ["head"]
    means = _input_means(teacher, x, readers + ["blocks.0.attn.proj", "blocks.0.mlp.fc2"])
    embed = _top(torch.stack([means[n] for n in readers]).mean(dim=0), 192)
    assert axes["embed"]["indices"] == embed.tolist()
    assert axes["blocks.0.mlp_hidden"]["indices"] == _top(means["blocks.0.mlp.fc2"], 768).tolist()
    heads = _top(means["blocks.0.attn.proj"].reshape(6, 64).mean(dim=1), 3)  # whole heads of 64
    assert axes["blocks.0.attn"]["indices"] == (heads[:, None] * 64 + torch.arange(64)).reshape(-1).tolist()
    assert result.manifest["calibration"]["whole_heads"]["blocks.0.attn"] == 64
    assert result.manifest["calibration"]["data"] == {"source": "noise"}


def test_vit_one_index_set_per_axis_in_every_tensor_and_strict_load():
    teacher, _, spec, result = _vit_case()
    t, s, axes = teacher.state_dict(), result.state_dict, result.manifest["axes"]
    e = torch.tensor(axes["embed"]["indices"])
    a = torch.tensor(axes["blocks.3.attn"]["indices"])
    h = torch.tensor(axes["blocks.3.mlp_hidden"]["indices"])
    qkv = torch.cat([a, a + 384, a + 768])
    assert torch.equal(s["cls_token"], t["cls_token"][..., e])
    assert torch.equal(s["pos_embed"], t["pos_embed"][..., e])
    assert torch.equal(s["patch_embed.proj.weight"], t["patch_embed.proj.weight"][e])
    assert torch.equal(s["blocks.3.norm1.weight"], t["blocks.3.norm1.weight"][e])
    assert torch.equal(s["blocks.3.attn.qkv.weight"], t["blocks.3.attn.qkv.weight"][qkv][:, e])
    assert torch.equal(s["blocks.3.attn.proj.weight"], t["blocks.3.attn.proj.weight"][e][:, a])
    assert torch.equal(s["blocks.3.mlp.fc1.weight"], t["blocks.3.mlp.fc1.weight"][h][:, e])
    assert torch.equal(s["blocks.3.mlp.fc2.weight"], t["blocks.3.mlp.fc2.weight"][e][:, h])
    assert torch.equal(s["head.weight"], t["head.weight"][:, e])
    timm.create_model(spec["name"], **spec["kwargs"]).load_state_dict(s, strict=True)


def test_convnext_hidden_units_match_own_hooks_and_load():
    teacher = model("convnext_atto")
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    spec = {"name": "convnext_atto", "kwargs": {"dims": (24, 48, 96, 192), "depths": (1, 1, 2, 1)}}
    result = select(teacher, spec, method="activation", calibration=x)
    fc2 = "stages.2.blocks.1.mlp.fc2"  # a 1x1 convolution: channels on dimension 1
    means = _input_means(teacher, x, [fc2], channel=1)
    assert result.manifest["axes"]["stages.2.blocks.1.mlp_hidden"]["indices"] == _top(means[fc2], 384).tolist()
    c = torch.tensor(result.manifest["axes"]["stages.2.channels"]["indices"])
    t = teacher.state_dict()
    assert torch.equal(result.state_dict["stages.2.blocks.1.conv_dw.weight"], t["stages.2.blocks.1.conv_dw.weight"][c])
    assert torch.equal(result.state_dict["stages.3.downsample.1.weight"],
                       t["stages.3.downsample.1.weight"][torch.tensor(result.manifest["axes"]["stages.3.channels"]["indices"])][:, c])
    timm.create_model(spec["name"], **spec["kwargs"]).load_state_dict(result.state_dict, strict=True)


def test_fixed_seed_and_data_give_identical_bytes():
    _, _, _, first = _vit_case()
    _, _, _, second = _vit_case()
    assert first.manifest["axes"] == second.manifest["axes"]
    assert all(torch.equal(v, second.state_dict[k]) for k, v in first.state_dict.items())


def test_calibration_goes_with_activation_only():
    teacher = TwoLayer(8)
    with pytest.raises(ValueError, match="ranks units on calibration data: pass calibration="):
        select(teacher, TwoLayer(5), method="activation")
    with pytest.raises(ValueError, match="method 'activation' only, not 'uniform'"):
        select(teacher, TwoLayer(5), method="uniform", calibration=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="state dict names no architecture"):
        select({k: v.detach() for k, v in teacher.state_dict().items()}, TwoLayer(5), method="activation",
               calibration=torch.zeros(2, 4))


def test_pretrained_name_runs_the_stored_weights_in_their_dtype(tmp_path, monkeypatch):
    """A timm name read from the hub cache (a meta model there) is built, loaded with the file's
    bfloat16 tensors, and run in bfloat16: the same ranking as the module itself in bfloat16."""
    import huggingface_hub.constants as constants
    from weightselect.io import save_state_dict

    torch.manual_seed(4)
    teacher = timm.create_model("vit_small_patch16_224").to(torch.bfloat16).eval()
    snap = tmp_path / "models--timm--vit_small_patch16_224.augreg_in21k" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("0" * 40)
    save_state_dict(teacher.state_dict(), snap / "model.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    spec = {"name": "vit_tiny_patch16_224", "kwargs": {"depth": 2}}
    by_name = select("vit_small_patch16_224.augreg_in21k", spec, method="activation", calibration=x)
    by_module = select(teacher, spec, method="activation", calibration=x)
    assert by_name.manifest["calibration"]["dtype"] == "bfloat16"
    assert by_name.manifest["axes"] == by_module.manifest["axes"]


def test_weights_file_runs_with_its_architecture(tmp_path):
    """A teacher file with teacher_model= (its timm spec) ranks as the module itself does."""
    from weightselect.io import save_state_dict

    teacher = model("convnext_atto")
    path = tmp_path / "t.safetensors"
    save_state_dict(teacher.state_dict(), path)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    spec = {"name": "convnext_atto", "kwargs": {"dims": (24, 48, 96, 192), "depths": (1, 1, 2, 1)}}
    by_file = select(path, spec, method="activation", calibration=x, teacher_model="convnext_atto")
    by_module = select(teacher, spec, method="activation", calibration=x)
    assert by_file.manifest["axes"] == by_module.manifest["axes"]
    assert by_file.manifest["teacher"]["source"] == str(path)


def test_workflow_calibration_spec_runs_a_teacher_file(tmp_path):
    """What the select rule does for a variant with method activation: images from the variant's
    calibration spec at the teacher's input size, the teacher file run through its model spec."""
    from weightselect.io import save_state_dict
    from weightselect.selection.importance import study_calibration
    from weightselect.training.catalog import dataset_info

    kwargs = {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 64, "depth": 2, "num_heads": 2}
    torch.manual_seed(6)
    # pretrained by the workflow on 26 letters: its stored head has 26 rows, its model spec says nothing
    teacher = timm.create_model("vit_small_patch16_224", num_classes=26, **kwargs).eval()
    save_state_dict(teacher.state_dict(), tmp_path / "t.safetensors")
    spec = {"dataset": "digits", "samples": 5, "seed": 1,
            "teacher_model": {"name": "vit_small_patch16_224", "kwargs": kwargs}}
    cal = study_calibration(spec)
    assert cal.data.shape == (5, 1, 16, 16) and cal.description["source"] == "digits train"
    mean, std = dataset_info("digits").norm(1)
    assert cal.data.min() >= (0 - mean[0]) / std[0] - 1e-6 and cal.data.max() <= (1 - mean[0]) / std[0] + 1e-6
    assert torch.equal(cal.data, study_calibration(spec).data)  # seeded draw
    student = {"name": "vit_small_patch16_224", "kwargs": dict(kwargs, embed_dim=32, num_heads=1)}
    result = select(tmp_path / "t.safetensors", student, method="activation", calibration=cal,
                    teacher_model=spec["teacher_model"])
    assert result.manifest["axes"] == select(teacher, student, method="activation", calibration=cal).manifest["axes"]


def test_a_teacher_file_takes_its_channels_from_its_manifest(tmp_path):
    """A teacher pretrained by the workflow on digits (one channel, 10 classes) whose teacher_model
    says neither: the manifest beside its weights gives both (``models.stored_spec``), as for a
    distillation teacher."""
    import json

    from weightselect.io import save_state_dict

    kwargs = {"img_size": 16, "patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 2}
    torch.manual_seed(7)
    teacher = timm.create_model("vit_small_patch16_224", num_classes=10, in_chans=1, **kwargs).eval()
    path = tmp_path / "t.safetensors"
    save_state_dict(teacher.state_dict(), path)
    (tmp_path / "t.json").write_text(json.dumps({"final": {"dataset": "digits"}}))
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    student = {"name": "vit_small_patch16_224", "kwargs": dict(kwargs, in_chans=1, num_classes=10, embed_dim=32)}
    by_file = select(path, student, method="activation", calibration=x,
                     teacher_model={"name": "vit_small_patch16_224", "kwargs": kwargs})
    assert by_file.manifest["axes"] == select(teacher, student, method="activation", calibration=x).manifest["axes"]


def test_calibration_is_normalized_as_the_teacher_expects(tmp_path):
    """Calibration images are normalized with the teacher's own input normalization, not with the
    calibration dataset's: a teacher file pretrained by the trainer on cifar10 (its manifest says so)
    gets ImageNet's mean/std (averaged for one channel); a timm model with no file gets its
    pretrained_cfg's (ImageNet's for convnext_atto), per channel, even on grey digits."""
    import json

    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from weightselect.selection.importance import study_calibration

    kwargs = {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 64, "depth": 2, "num_heads": 2}
    spec = {"dataset": "digits", "samples": 4, "seed": 2,
            "teacher_model": {"name": "vit_small_patch16_224", "kwargs": kwargs}}
    path = tmp_path / "t.safetensors"
    path.write_bytes(b"")  # only its manifest is read here
    (tmp_path / "t.json").write_text(json.dumps({"final": {"dataset": "cifar10"}, "recipe": {"img_size": 16}}))
    plain = study_calibration(spec)  # no file: vit_small_patch16_224's data config, mean 0.5, std 0.5
    assert plain.description["normalization"] == "timm pretrained_cfg"
    cal = study_calibration(spec, teacher=path)
    assert cal.description["normalization"] == "t.json: trained on cifar10"
    pixels = plain.data * 0.5 + 0.5
    mean, std = sum(IMAGENET_DEFAULT_MEAN) / 3, sum(IMAGENET_DEFAULT_STD) / 3
    assert torch.allclose(cal.data, (pixels - mean) / std, atol=1e-5)

    rgb = study_calibration({**spec, "img_size": 16, "teacher_model": "convnext_atto"})
    assert rgb.data.shape == (4, 3, 16, 16)
    per_channel = [rgb.data[:, c] * IMAGENET_DEFAULT_STD[c] + IMAGENET_DEFAULT_MEAN[c] for c in range(3)]
    assert torch.allclose(per_channel[0], per_channel[1], atol=1e-5)  # one grey image in every channel
    assert torch.allclose(per_channel[0], per_channel[2], atol=1e-5)
    assert torch.allclose(per_channel[0], pixels[:, 0], atol=1e-5)


def test_calibration_images_are_at_the_size_the_teacher_was_trained_at(tmp_path):
    """A teacher file of this project is calibrated at the resolution its manifest says it was
    trained at (its recipe's img_size, else its dataset's default), not at its timm data config's
    224: the cpu study's ConvNeXt letters teacher was trained on 32x32 glyphs."""
    import json

    from weightselect.selection.importance import study_calibration

    convnext = {"name": "convnext_tiny", "kwargs": {"in_chans": 1, "dims": [32, 64, 128, 256], "depths": [2, 2, 2, 2],
                                                    "patch_size": 4}}
    spec = {"dataset": "letters", "samples": 2, "seed": 0, "teacher_model": convnext}
    for name, manifest, size in (("at32", {"final": {"dataset": "letters"}, "recipe": {"img_size": 32}}, 32),
                                 ("default", {"final": {"dataset": "letters"}, "recipe": {}}, 16),
                                 ("hub", {"source": "hub"}, 224)):
        path = tmp_path / f"{name}.safetensors"
        (tmp_path / f"{name}.json").write_text(json.dumps(manifest))
        assert study_calibration(spec, teacher=path).data.shape == (2, 1, size, size), name
    assert study_calibration({**spec, "img_size": 24}, teacher=tmp_path / "at32.safetensors").data.shape[-1] == 24
