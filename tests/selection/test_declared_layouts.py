"""Fused and packed projections are selected only where their layout is declared (FUSED_LAYOUTS,
read from the module's forward) and refused otherwise, naming the tensor and the module. Right
values are judged from the module's own forward: the teacher's fused tensor holds its element
indices, and each student row must come from a teacher row of the same role."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn
from timm.layers.attention2d import Attention2d

from weightselect.selection import families, select


class _Block(nn.Module):
    def __init__(self, dim, heads, head_first):
        super().__init__()
        self.attn = Attention2d(dim, num_heads=heads, head_first=head_first)


class _Net(nn.Module):
    def __init__(self, dim, heads, head_first):
        super().__init__()
        self.blocks = nn.ModuleList([_Block(dim, heads, head_first) for _ in range(2)])


def _indexed(module: nn.Module) -> dict:
    """The module's tensors, each filled with its own element indices (row-major)."""
    return {k: torch.arange(v.numel(), dtype=torch.float32).reshape(v.shape) for k, v in module.state_dict().items()}


def _role_of_rows(dim, heads, head_first, rows):
    """q/k/v of each output row of Attention2d's qkv, as its forward splits it (timm.layers.attention2d)."""
    dim_head = dim // heads
    if head_first:  # view(B, heads, dim_head * 3, -1).chunk(3, dim=2)
        return [("qkv"[(r % (3 * dim_head)) // dim_head]) for r in rows]
    return [("qkv"[r // dim]) for r in rows]  # reshape(B, 3, heads, dim_head, -1)


def test_block_layout_selected_and_each_role_from_its_own_role():
    teacher, student = _Net(64, 4, head_first=False), _Net(32, 2, head_first=False)
    result = select(_indexed(teacher), student, method="uniform")
    w = result.state_dict["blocks.1.attn.qkv.weight"].reshape(96, -1)
    source_rows = (w[:, 0] // 64).long().tolist()  # teacher row of each student row (64 input channels)
    assert _role_of_rows(32, 2, False, range(96)) == _role_of_rows(64, 4, False, source_rows)


def test_per_head_layout_is_refused_naming_the_module():
    teacher, student = _Net(64, 4, head_first=True), _Net(32, 2, head_first=True)
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.qkv\.weight.*Attention2d is not declared as 3 blocks.*"
                                         r"keep the attention width"):
        select(_indexed(teacher), student)


def test_per_head_layout_of_equal_width_is_selected_whole():
    """Depth only: the fused tensor keeps its size, nothing is split; the student is the teacher's first block."""
    teacher, student = _Net(64, 4, head_first=True), _Net(64, 4, head_first=True)
    student.blocks = student.blocks[:1]
    result = select(_indexed(teacher), student)
    assert torch.equal(result.state_dict["blocks.0.attn.qkv.weight"], _indexed(teacher)["blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize("name, kwargs, tensor", [
    ("levit_128s", dict(num_heads=(2, 3, 4)), r"stages\.0\.blocks\.0\.attn\.qkv\.linear\.weight"),
    ("mambaout_femto", dict(dims=(32, 64, 128, 224)), r"stages\.0\.blocks\.0\.fc1\.weight"),
])
def test_packed_roles_are_refused_when_their_dimension_changes(name, kwargs, tensor):
    with torch.device("meta"):
        shapes = timm.create_model(name).state_dict()
    teacher = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}
    with pytest.raises(ValueError, match=tensor + r".*packs several roles"):
        select(teacher, {"name": name, "kwargs": kwargs})


def test_packed_roles_input_dimension_is_an_ordinary_axis():
    """An LSTM's gates are packed in the output rows; a change of its input width selects columns only."""
    t, s = nn.LSTM(16, 8), nn.LSTM(12, 8)
    teacher = _indexed(t)
    result = select(teacher, s, method="consecutive")
    assert torch.equal(result.state_dict["weight_ih_l0"], teacher["weight_ih_l0"][:, :12])
    assert torch.equal(result.state_dict["weight_hh_l0"], teacher["weight_hh_l0"])


def test_the_declaration_is_the_module_class_read_from_the_student():
    assert families.fused_layout_known(_Net(8, 2, False), "blocks.0.attn.qkv.weight") == (
        True, "timm.layers.attention2d.Attention2d")
    assert families.fused_layout_known(_Net(8, 2, True), "blocks.0.attn.qkv.weight")[0] is False


class _Grouped(nn.Module):
    def __init__(self, width, groups):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 1)
        self.conv = nn.Conv2d(width, width, 3, padding=1, groups=groups)
        self.proj = nn.Conv2d(width, 8, 1)


def test_a_grouped_convolution_whose_channels_change_is_refused():
    """RegNet/ResNeXt: a student group would read channels of two teacher groups (with group size
    16 -> 8 it was accepted); which teacher group a channel belongs to is not tracked, so it is refused."""
    with pytest.raises(ValueError, match=r"'conv\.weight' \(\(64, 16, 3, 3\) -> \(32, 8, 3, 3\)\) belongs to a grouped "
                                         r"convolution \(Conv2d with 4 groups\)"):
        select(_Grouped(64, 4).state_dict(), _Grouped(32, 4))


def test_a_depthwise_convolution_is_selected_channel_by_channel():
    """groups == channels (ConvNeXt, EfficientNet): each channel is its own group; uniform keeps every other."""
    teacher = _indexed(_Grouped(64, 64))
    result = select(teacher, _Grouped(32, 32), method="uniform")
    assert torch.equal(result.state_dict["conv.weight"], teacher["conv.weight"][::2])
    assert torch.equal(result.state_dict["stem.weight"], teacher["stem.weight"][::2])


def test_vit_with_a_latent_attention_pool_selects_the_pool_on_the_embedding_axis():
    """global_pool='map' (timm's AttentionPoolLatent): its kv is [k | v] (reshape(B, N, 2, heads,
    head_dim)); ViT-S -> ViT-T with uniform selection keeps every other channel of each block."""
    teacher = timm.create_model("vit_small_patch16_224", global_pool="map", img_size=32)
    t = _indexed(teacher)
    result = select(t, {"name": "vit_tiny_patch16_224", "kwargs": {"global_pool": "map", "img_size": 32}})
    s = result.state_dict
    rows = torch.cat([torch.arange(0, 384, 2), torch.arange(384, 768, 2)])
    assert torch.equal(s["attn_pool.kv.weight"], t["attn_pool.kv.weight"][rows][:, ::2])
    assert torch.equal(s["attn_pool.latent"], t["attn_pool.latent"][..., ::2])
    assert torch.equal(s["attn_pool.mlp.fc2.weight"], t["attn_pool.mlp.fc2.weight"][::2, ::2])


def test_edgenext_is_not_taken_for_a_convnext():
    """EdgeNeXt shares ConvNeXt's stem/stage/conv_dw names; its split-channel blocks are refused when
    their chunks change, naming them, not as a ConvNeXt tensor without a rule."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in timm.create_model("edgenext_x_small").state_dict().items()}
    assert families.detect_family(shapes).name == "generic"
    teacher = {k: torch.zeros(v) for k, v in shapes.items()}
    with pytest.raises(ValueError, match=r"convs\.0\.weight.*SplitTransposeBlock"):
        select(teacher, {"name": "edgenext_x_small", "kwargs": {"dims": (16, 32, 80, 144)}})


@pytest.mark.parametrize("as_file", [False, True])
def test_hiera_depth_is_mapped_stage_by_stage(as_file):
    """Hiera numbers its blocks across stages (blocks.0..11 for stages (1, 2, 7, 2)): a student with
    stages (1, 1, 2, 1) takes, per stage, the first blocks of that stage (0 | 1 | 3, 4 | 10); the
    student computes exactly the teacher run through those blocks (the model's own forward). From a
    file, the stages are read from the blocks that open one (their own `proj`)."""
    import copy

    torch.manual_seed(0)
    teacher = timm.create_model("hiera_tiny_224").eval()
    source = dict(teacher.state_dict()) if as_file else teacher
    result = select(source, {"name": "hiera_tiny_224", "kwargs": {"stages": (1, 1, 2, 1)}})
    student = timm.create_model("hiera_tiny_224", stages=(1, 1, 2, 1)).eval()
    student.load_state_dict(result.state_dict)
    truncated = copy.deepcopy(teacher)
    truncated.blocks = nn.ModuleList([teacher.blocks[i] for i in (0, 1, 3, 4, 10)])
    truncated.stage_ends = student.stage_ends
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(student(x), truncated(x))
    with pytest.raises(ValueError, match="stage 1 of the student has 3 blocks, the teacher's 2"):
        select(source, {"name": "hiera_tiny_224", "kwargs": {"stages": (1, 3, 2, 1)}})


def _suggested_exclude(message: str) -> str:
    import re

    return re.search(r"--exclude (\S+?)\)?(,? or|\)|$)", message).group(1)


def test_the_suggested_exclude_is_the_whole_fix():
    """Every tensor without a rule is named at once, and the --exclude the message gives selects: it
    used to name one tensor, and the error moved to the next one of the same module."""
    teacher = timm.create_model("vit_small_patch16_224", img_size=32)
    t = dict(teacher.state_dict())
    student = timm.create_model("vit_tiny_patch16_224", img_size=32)
    for i in (0, 1):
        t[f"blocks.{i}.attn.extra"] = torch.randn(100)
        student.blocks[i].attn.register_parameter("extra", nn.Parameter(torch.zeros(50)))
    with pytest.raises(ValueError, match=r"1 more tensors alike.*--exclude blocks\.0\.attn\.extra,blocks\.1\.attn\.extra\)") as err:
        select(t, student)
    result = select(t, student, exclude=[_suggested_exclude(str(err.value))])
    assert {"blocks.0.attn.extra", "blocks.1.attn.extra"} <= set(result.manifest["reinitialized"])


def test_the_comma_separated_exclude_of_missing_modules_selects():
    """"--exclude a,b,c", as the missing-module message writes it, is read as three prefixes."""
    teacher = timm.create_model("vit_small_patch16_224", img_size=32)
    student = timm.create_model("vit_tiny_patch16_224", img_size=32, qk_norm=True)
    with pytest.raises(ValueError, match=r"--exclude ") as err:
        select(teacher, student)
    result = select(teacher, student, exclude=[_suggested_exclude(str(err.value))])
    assert "blocks.11.attn.q_norm.weight" in result.manifest["reinitialized"]


def test_resnext_depth_only_is_the_teacher_through_its_first_blocks():
    """ResNeXt's grouped conv2 takes in_channels / groups inputs: it was refused as "not the same
    structure". Depth only, the student computes exactly the teacher's first block of each stage."""
    import copy

    torch.manual_seed(0)
    teacher = timm.create_model("resnet26", cardinality=32, base_width=4).eval()
    kwargs = dict(layers=(1, 1, 1, 1), cardinality=32, base_width=4)
    student = timm.create_model("resnet26", **kwargs).eval()
    student.load_state_dict(select(teacher, {"name": "resnet26", "kwargs": kwargs}).state_dict)
    truncated = copy.deepcopy(teacher)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        setattr(truncated, name, getattr(teacher, name)[:1])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(student(x), truncated(x))
    with pytest.raises(ValueError, match=r"layer1\.0\.conv2\.weight.*grouped convolution \(Conv2d with 32 groups\)"):
        select(teacher, {"name": "resnet26", "kwargs": dict(cardinality=32, base_width=2)})


def test_other_meanings_of_stage_ends_keep_the_name_layer_map():
    """GhostNet's stage_ends ([-1, 1, 3, ...], feature stages over nested blocks) is not Hiera's."""
    teacher = timm.create_model("ghostnet_050")
    result = select(teacher, {"name": "ghostnet_050"})
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in result.state_dict.items())
