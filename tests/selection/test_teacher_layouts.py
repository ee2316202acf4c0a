"""Teachers as people bring them: wrapper prefixes, upstream layouts timm converts on load,
teacher-only modules, and refusals that name the real cause.

The right values come from timm: ``timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=PATH))`` loads the same files, and selecting from what it loads
must give the same bytes as selecting from the file."""
import re

import pytest
import timm
import torch
import torch.nn as nn
from timm.layers import resize_rel_pos_bias_table

from selection_helpers import model
from weightselect.selection import select

VIT_T = {"name": "vit_tiny_patch16_224", "kwargs": {"depth": 2, "img_size": 32}}


@pytest.fixture(scope="module")
def vit_s():
    return model("vit_small_patch16_224", depth=2, img_size=32).state_dict()


@pytest.mark.parametrize(
    "wrap, stripped",
    [
        (lambda s: {"model": {"module." + k: v for k, v in s.items()}}, ["module."]),  # DDP
        (lambda s: {"_orig_mod." + k: v for k, v in s.items()}, ["_orig_mod."]),  # torch.compile
        (lambda s: {"_orig_mod.module." + k: v for k, v in s.items()}, ["_orig_mod.", "module."]),
        (lambda s: {"state_dict": {"model." + k: v for k, v in s.items()}}, ["model."]),  # Lightning
    ],
    ids=["ddp", "compile", "compile+ddp", "lightning"],
)
def test_wrapper_prefixes_are_stripped_and_recorded(tmp_path, vit_s, wrap, stripped):
    path = tmp_path / "teacher.pth"
    torch.save(wrap(vit_s), path)
    result = select(path, VIT_T)
    reference = select(vit_s, VIT_T)
    assert result.manifest["stripped_prefixes"] == stripped
    assert set(result.state_dict) == set(reference.state_dict)
    for key, value in reference.state_dict.items():
        assert torch.equal(result.state_dict[key], value), key


def _swin_original(sd):
    """timm Swin weights in Microsoft's layout: downsampling at the end of a stage, ``head.``,
    ``relative_position_index`` buffers (the inverse of timm's filter)."""
    out = {}
    for key, value in sd.items():
        new = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        out[new.replace("head.fc.", "head.")] = value
        if key.endswith("relative_position_bias_table"):
            out[new.replace("bias_table", "index")] = torch.zeros(49, 49, dtype=torch.long)
    return out


def _convnext_original(sd):
    """timm ConvNeXt weights in Meta's layout (``downsample_layers``, ``dwconv``, ``pwconv``)."""
    out = {}
    for key, value in sd.items():
        new = key.replace("stem.", "downsample_layers.0.")
        new = re.sub(r"stages\.(\d+)\.downsample\.(\d+)", r"downsample_layers.\1.\2", new)
        new = re.sub(r"stages\.(\d+)\.blocks\.(\d+)", r"stages.\1.\2", new)
        new = new.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")
        out[new.replace("head.fc.", "head.").replace("head.norm.", "norm.")] = value
    return out


UPSTREAM = [
    ("swin_tiny_patch4_window7_224", _swin_original, {"embed_dim": 48, "depths": (2, 2, 2, 2), "num_heads": (3, 6, 12, 24)}),
    ("convnext_tiny", _convnext_original, {"dims": (48, 96, 192, 384), "depths": (2, 2, 2, 2)}),
]


@pytest.mark.parametrize("name, to_upstream, student_kwargs", UPSTREAM, ids=[u[0] for u in UPSTREAM])
def test_upstream_layout_is_converted_as_timm_loads_it(tmp_path, name, to_upstream, student_kwargs):
    teacher = model(name)
    path = tmp_path / "upstream.pth"
    torch.save(to_upstream(teacher.state_dict()), path)
    loaded = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    spec = {"name": name, "kwargs": student_kwargs}
    result = select(path, spec, method="random", seed=4)
    reference = select(loaded.state_dict(), spec, method="random", seed=4)
    assert result.manifest["teacher"]["converted"] == f"{type(loaded).__module__}.checkpoint_filter_fn"
    assert result.manifest["teacher_only"] == []
    for key, value in reference.state_dict.items():
        assert torch.equal(result.state_dict[key], value), key
    timm.create_model(name, **student_kwargs).load_state_dict(result.state_dict)  # strict


def test_timm_layout_teacher_is_not_converted(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "t.safetensors"
    save_file(model("convnext_atto").state_dict(), str(path))
    result = select(path, {"name": "convnext_atto", "kwargs": {"depths": (1, 1, 1, 1)}})
    assert "converted" not in result.manifest["teacher"]


def test_swin_window_size_resized_as_timm_does():
    teacher = model("swin_tiny_patch4_window7_224").state_dict()
    spec = {"name": "swin_tiny_patch4_window7_224", "kwargs": {"window_size": 4, "img_size": 128}}
    result = select(teacher, spec)
    for key in ("layers.0.blocks.1.attn.relative_position_bias_table", "layers.3.blocks.0.attn.relative_position_bias_table"):
        expected = resize_rel_pos_bias_table(teacher[key], new_window_size=(4, 4), new_bias_shape=(49, teacher[key].shape[1]))
        assert torch.equal(result.state_dict[key], expected), key
        assert key in result.manifest["resampled"]
    timm.create_model(spec["name"], **spec["kwargs"]).load_state_dict(result.state_dict)


def test_teacher_only_modules_are_skipped_and_listed(vit_s, caplog):
    # a CLIP ViT has norm_pre (and no patch bias); the paper's Table 5 student has neither norm_pre
    teacher = model("vit_base_patch16_clip_224", depth=2, img_size=32, embed_dim=384, num_heads=6).state_dict()
    with caplog.at_level("WARNING"):
        result = select(teacher, VIT_T, exclude=["patch_embed.proj.bias"])
    assert result.manifest["teacher_only"] == ["norm_pre.weight", "norm_pre.bias"]
    assert "norm_pre.weight" in caplog.text
    embed = torch.tensor(result.manifest["axes"]["embed"]["indices"])
    assert torch.equal(result.state_dict["norm.weight"], teacher["norm.weight"][embed])


@pytest.mark.parametrize(
    "teacher, student, message",
    [
        ("vit_small_patch16_224", {"global_pool": "avg"}, r"student's fc_norm .*--exclude fc_norm"),
        ("vgg16", "vgg13", r"features\.\d+\.weight.*same name holds a different layer.*VGG-13"),
        ("resnet50", "resnet18", r"bottleneck blocks, the student basic blocks"),
        ("swin_tiny_patch4_window7_224", None, r"window sizes differ|window_size"),
    ],
    ids=["fc_norm", "vgg16-vgg13", "resnet50-resnet18", "swin-window-unknown"],
)
def test_refusals_name_the_real_cause(teacher, student, message):
    if student is None:  # a window-size table whose owner has no window_size: say so
        from weightselect.selection.families import SWIN

        fn = SWIN.resampler("layers.0.blocks.0.attn.relative_position_bias_table")
        with pytest.raises(ValueError, match=message):
            fn(torch.zeros(169, 3), (49, 3), object())
        return
    t_sd = timm.create_model(teacher, **({"depth": 2, "img_size": 32} if "vit" in teacher else {})).state_dict()
    spec = {"name": "vit_tiny_patch16_224", "kwargs": {**VIT_T["kwargs"], **student}} if isinstance(student, dict) else student
    with pytest.raises(ValueError, match=message) as err:
        select(t_sd, spec)
    assert "\n" not in str(err.value)
    if isinstance(student, dict):  # the fix the message names works
        assert select(t_sd, spec, exclude=["fc_norm"]).manifest["reinitialized"] == ["fc_norm.weight", "fc_norm.bias"]


def test_hierarchical_model_with_vit_names_is_not_taken_for_a_vit():
    # Hiera has patch_embed.proj and blocks.N.attn.qkv like a ViT, but its width grows by stage
    from weightselect.selection.families import GENERIC, VIT, detect_family

    with torch.device("meta"):
        hiera = timm.create_model("hiera_tiny_224")
        vit = timm.create_model("vit_tiny_patch16_224")
    assert detect_family({k: tuple(v.shape) for k, v in hiera.state_dict().items()}) is GENERIC
    assert detect_family({k: tuple(v.shape) for k, v in vit.state_dict().items()}) is VIT
    teacher = model("hiera_tiny_224")
    result = select(teacher, "hiera_tiny_224")
    for key, value in teacher.state_dict().items():
        assert torch.equal(result.state_dict[key], value), key


def test_sam_vit_spatial_pos_embed_is_selected_on_its_last_dimension():
    teacher = model("samvit_base_patch16", depth=2, img_size=64, embed_dim=96, num_heads=2, global_attn_indexes=())
    spec = {"name": "samvit_base_patch16", "kwargs": {"depth": 1, "img_size": 64, "embed_dim": 96, "num_heads": 2,
                                                       "global_attn_indexes": ()}}
    result = select(teacher, spec)
    assert result.state_dict["pos_embed"].shape == (1, 4, 4, 96)
    assert torch.equal(result.state_dict["pos_embed"], teacher.state_dict()["pos_embed"])


def test_concatenated_inputs_are_refused_when_widths_change():
    teacher = model("densenet121", block_config=(3, 3, 3, 3))
    result = select(teacher, {"name": "densenet121", "kwargs": {"block_config": (3, 3, 3, 3)}})  # identity is fine
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in result.state_dict.items())
    with pytest.raises(ValueError, match=r"features\.transition1\.norm are a concatenation \(torch\.cat\) of its input channels"):
        select(teacher, {"name": "densenet121", "kwargs": {"block_config": (2, 2, 2, 2)}})


def test_fused_tensor_of_equal_blocks_is_kept_whole():
    from weightselect.selection.families import Fused, fused_dims

    assert fused_dims("a.kv.weight", (9, 4), (9, 2)) == (None, "size4->2")  # nothing selected on the fused rows
    declared = nn.Module()
    declared.a = nn.MultiheadAttention(4, 1)  # declared [q | k | v] (FUSED_LAYOUTS)
    assert fused_dims("a.qkv.weight", (12, 4), (6, 2), declared) == (Fused("size4->2", 3), "size4->2")
    with pytest.raises(ValueError, match=r"'a\.qkv\.weight' fuses 3 projections whose layout in unknown is not declared"):
        fused_dims("a.qkv.weight", (12, 4), (6, 2))  # no model: the layout is not guessed from the name
    assert fused_dims("a.fc1.weight", (12, 4), (6, 2)) is None
