"""Token grids and prefix tokens read from the models; fused projections outside the ViT family.

Right values come from timm's own ``resample_abs_pos_embed`` and from hand-computed q/k/v blocks."""
import pytest
import timm
import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed

from selection_helpers import model
from weightselect.selection import select
from weightselect.selection.elements import random_indices, uniform_indices
from weightselect.selection.select import NonFiniteTeacherError

SMALL = {"depth": 2}


def _spec(name, **kwargs):
    return {"name": name, "kwargs": {**SMALL, **kwargs}}


@pytest.mark.parametrize(
    "teacher_kwargs, student_kwargs, new, old, prefix",
    [
        ({}, {"img_size": [288, 128]}, [18, 8], [14, 14], 1),  # 144 tokens, like the teacher's 12x12
        ({}, {"img_size": [256, 128]}, [16, 8], [14, 14], 1),
        ({"img_size": 64}, {"img_size": [48, 96]}, [3, 6], [4, 4], 1),
        # class + 8 register tokens, all with position embeddings, at another image size
        ({"reg_tokens": 8, "no_embed_class": False}, {"img_size": 160, "reg_tokens": 8, "no_embed_class": False}, [10, 10], [14, 14], 9),
        # registers without position embeddings (no_embed_class): the grid alone is resampled
        ({"reg_tokens": 4, "no_embed_class": True}, {"img_size": [96, 160], "reg_tokens": 4, "no_embed_class": True}, [6, 10], [14, 14], 0),
    ],
)
@pytest.mark.parametrize("as_file", [False, True])
def test_pos_embed_follows_the_models_grid_and_prefix(teacher_kwargs, student_kwargs, new, old, prefix, as_file):
    teacher = model("vit_small_patch16_224", **SMALL, **teacher_kwargs)
    t_sd = teacher.state_dict()
    result = select(t_sd if as_file else teacher, _spec("vit_tiny_patch16_224", **student_kwargs))
    expected = resample_abs_pos_embed(t_sd["pos_embed"], new, old, num_prefix_tokens=prefix)
    embed = torch.tensor(result.manifest["axes"]["embed"]["indices"])
    assert torch.equal(result.state_dict["pos_embed"], expected[..., embed])
    assert result.manifest["resampled"] == ["pos_embed"]
    student = timm.create_model("vit_tiny_patch16_224", **SMALL, **student_kwargs)
    student.load_state_dict(result.state_dict)  # strict


def test_non_square_teacher_grid_read_from_the_teacher_model():
    # audio-style spectrogram grids: 1024x128 -> 512x128 (64x8 -> 32x8 patches)
    teacher = model("vit_tiny_patch16_224", depth=1, img_size=(1024, 128))
    result = select(teacher, {"name": "vit_tiny_patch16_224", "kwargs": {"depth": 1, "img_size": (512, 128)}})
    expected = resample_abs_pos_embed(teacher.state_dict()["pos_embed"], [32, 8], [64, 8], num_prefix_tokens=1)
    assert torch.equal(result.state_dict["pos_embed"], expected)


def test_non_square_teacher_file_is_refused_with_the_cause():
    teacher = model("vit_tiny_patch16_224", depth=1, img_size=(1024, 128)).state_dict()
    with pytest.raises(ValueError, match=r"513 tokens.*no square patch grid.*grid_size"):
        select(teacher, {"name": "vit_tiny_patch16_224", "kwargs": {"depth": 1, "img_size": (512, 128)}})


def test_register_tokens_the_teacher_lacks_are_named():
    teacher = model("vit_small_patch16_224", **SMALL).state_dict()
    with pytest.raises(ValueError, match=r"reg_token.*--exclude"):
        select(teacher, _spec("vit_tiny_patch16_224", reg_tokens=4, no_embed_class=True))
    with pytest.raises(ValueError, match=r"1 prefix tokens.*5 prefix tokens.*exclude pos_embed"):
        select(teacher, _spec("vit_tiny_patch16_224", reg_tokens=4), exclude=["reg_token"])
    # excluding both leaves them at the student's init
    result = select(teacher, _spec("vit_tiny_patch16_224", reg_tokens=4), exclude=["reg_token", "pos_embed"])
    assert set(result.manifest["reinitialized"]) == {"reg_token", "pos_embed"}


# --- fused projections outside the ViT family -------------------------------------------------
def _encoder(width, ff, layers, seed=0):
    torch.manual_seed(seed)
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(width, 4, ff, batch_first=True), layers, enable_nested_tensor=False)


@pytest.mark.parametrize("method, width", [("uniform", 40), ("random", 48), ("consecutive", 40)])
def test_multihead_attention_in_proj_is_selected_block_by_block(method, width):
    teacher, student = _encoder(96, 192, 4), _encoder(width, 80, 2)
    result = select(teacher, student, method=method, seed=5)
    axis = f"size96->{width}"
    idx = uniform_indices(96, width) if method == "uniform" else torch.tensor(result.manifest["axes"][axis]["indices"])
    if method == "random":
        assert torch.equal(idx, random_indices(96, width, 5, axis))
    t, out = teacher.state_dict(), result.state_dict
    for layer in (0, 1):
        p = f"layers.{layer}."
        w = t[p + "self_attn.in_proj_weight"]
        rows = torch.cat([idx + b * 96 for b in range(3)])  # q, k and v take the same dimensions
        assert torch.equal(out[p + "self_attn.in_proj_weight"], w[rows][:, idx])
        assert torch.equal(out[p + "self_attn.in_proj_bias"], t[p + "self_attn.in_proj_bias"][rows])
        assert torch.equal(out[p + "self_attn.out_proj.weight"], t[p + "self_attn.out_proj.weight"][idx][:, idx])
        assert torch.equal(out[p + "norm1.weight"], t[p + "norm1.weight"][idx])
    student.load_state_dict(out)  # strict


class _GPT2Attn(nn.Module):
    """Stands for transformers' GPT2Attention: c_attn's output split(width) into q, k and v."""


class _GPT2Attention(nn.Module):
    """GPT-2's attention parameters: Conv1D weights are (in, out); c_attn packs q, k, v in its columns."""

    def __init__(self, width):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = _GPT2Attn()
        self.attn.c_attn = nn.Module()
        self.attn.c_attn.weight = nn.Parameter(torch.randn(width, 3 * width))
        self.attn.c_attn.bias = nn.Parameter(torch.randn(3 * width))
        self.attn.c_proj = nn.Module()
        self.attn.c_proj.weight = nn.Parameter(torch.randn(width, width))


class _GPT2(nn.Module):
    def __init__(self, width, layers):
        super().__init__()
        self.h = nn.ModuleList(_GPT2Attention(width) for _ in range(layers))


def test_gpt2_c_attn_columns_are_selected_block_by_block(monkeypatch):
    """Declared as [q | k | v] blocks (as transformers' GPT-2 splits c_attn: split(width, dim=2))."""
    from weightselect.selection import families

    torch.manual_seed(0)
    teacher, student = _GPT2(64, 3), _GPT2(24, 2)
    with pytest.raises(ValueError, match=r"h\.0\.attn\.c_attn\.weight' fuses 3 projections whose layout"):
        select(teacher, student)  # not declared: not guessed from the name
    monkeypatch.setitem(families.FUSED_LAYOUTS, f"{__name__}._GPT2Attn", lambda module: True)
    result = select(teacher, student, method="random", seed=2)
    idx = torch.tensor(result.manifest["axes"]["size64->24"]["indices"])
    w = teacher.state_dict()["h.1.attn.c_attn.weight"]
    cols = torch.cat([idx + b * 64 for b in range(3)])
    assert torch.equal(result.state_dict["h.1.attn.c_attn.weight"], w[idx][:, cols])
    assert torch.equal(result.state_dict["h.1.attn.c_attn.bias"], teacher.state_dict()["h.1.attn.c_attn.bias"][cols])


def test_fused_projection_with_unequal_blocks_is_refused_naming_it():
    teacher = {"blk.0.attn.kv.weight": torch.randn(9, 4), "blk.1.attn.kv.weight": torch.randn(9, 4)}
    student = {"blk.0.attn.kv.weight": torch.zeros(6, 4)}
    with pytest.raises(ValueError, match=r"blk\.0\.attn\.kv\.weight.*2 blocks"):
        select(teacher, _FromState(student))


class _FromState(nn.Module):
    def __init__(self, state):
        super().__init__()
        for k, v in state.items():
            mod = self
            parts = k.split(".")
            for p in parts[:-1]:
                if not hasattr(mod, p):
                    mod.add_module(p, nn.Module())
                mod = getattr(mod, p)
            mod.register_parameter(parts[-1], nn.Parameter(v))


# --- per-channel parameters of the ViT-like timm families -------------------------------------
VIT_LIKE = [
    # (name, teacher kwargs, student kwargs)
    ("beit_base_patch16_224", dict(embed_dim=64, num_heads=4), dict(embed_dim=32, num_heads=4)),
    ("cait_xxs24_224", dict(depth_token_only=2), dict(embed_dim=96, num_heads=2, depth_token_only=1)),
    ("deit3_small_patch16_224", {}, dict(embed_dim=192, num_heads=3)),
    ("eva02_tiny_patch14_224", dict(img_size=28), dict(embed_dim=96, num_heads=3, img_size=28)),
    ("eva02_small_patch14_224", dict(img_size=28), dict(embed_dim=192, num_heads=3, img_size=28)),
]


@pytest.mark.parametrize("name, t_kwargs, s_kwargs", VIT_LIKE, ids=[v[0] for v in VIT_LIKE])
def test_vit_like_families_select_every_tensor_on_its_axis(name, t_kwargs, s_kwargs):
    t_kwargs = {"img_size": 32, **SMALL, **t_kwargs}
    s_kwargs = {"img_size": 32, **SMALL, **s_kwargs}
    teacher = model(name, **t_kwargs)
    result = select(teacher, {"name": name, "kwargs": s_kwargs}, method="random", seed=7)
    t, out, axes = teacher.state_dict(), result.state_dict, result.manifest["axes"]
    timm.create_model(name, **s_kwargs).load_state_dict(out)  # strict
    e = torch.tensor(axes["embed"]["indices"])
    for key, value in out.items():
        leaf = key.split(".")[-1]
        if leaf in ("gamma_1", "gamma_2", "gamma") or key.endswith(("norm1.weight", "norm2.bias", "attn.proj.bias", "mlp.fc2.bias")):
            assert torch.equal(value, t[key][e]), key  # layer scales and norms share the residual axis
        if leaf in ("q_bias", "v_bias"):
            att = torch.tensor(axes[key.rsplit(".", 2)[0] + ".attn"]["indices"])
            assert torch.equal(value, t[key][att]), key
        if key.endswith("attn.qkv.weight"):
            att = torch.tensor(axes[key.rsplit(".", 3)[0] + ".attn"]["indices"])
            n = t[key].shape[0] // 3
            rows = torch.cat([att + b * n for b in range(3)])
            assert torch.equal(value, t[key][rows][:, e]), key
        if key.endswith("mlp.fc1.weight"):
            hid = torch.tensor(axes[key.rsplit(".", 3)[0] + ".mlp_hidden"]["indices"])
            n = t[key].shape[0] // (value.shape[0] // len(hid))  # a gated MLP fuses two blocks
            rows = torch.cat([hid + b * n for b in range(value.shape[0] // len(hid))])
            assert torch.equal(value, t[key][rows][:, e]), key
            fc2 = key.replace("fc1", "fc2")
            assert torch.equal(out[fc2], t[fc2][e][:, hid]), fc2


def test_eva02_gated_mlp_depth_only_is_the_teacher_through_its_blocks():
    teacher = model("eva02_tiny_patch14_224", img_size=28, depth=3)
    result = select(teacher, {"name": "eva02_tiny_patch14_224", "kwargs": {"img_size": 28, "depth": 2}})
    student = timm.create_model("eva02_tiny_patch14_224", img_size=28, depth=2).eval()
    student.load_state_dict(result.state_dict)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        t_tokens = teacher.patch_embed(x)
        t_tokens, rope = teacher._pos_embed(t_tokens)
        for blk in teacher.blocks[:2]:
            t_tokens = blk(t_tokens, rope=rope)
        t_tokens = teacher.norm(t_tokens)
        assert torch.allclose(student.forward_features(x), t_tokens, atol=1e-6)


def test_uncovered_tensor_of_a_known_family_is_refused_when_ambiguous():
    # a per-channel parameter no rule names, whose size matches both the residual and attention widths
    teacher = dict(model("vit_small_patch16_224", **SMALL).state_dict())
    teacher["blocks.0.attn.extra_scale"] = torch.randn(384)
    student = timm.create_model("vit_tiny_patch16_224", **SMALL)
    student.blocks[0].attn.register_parameter("extra_scale", nn.Parameter(torch.zeros(192)))
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.extra_scale.*could be any of embed, blocks\.0\.attn"):
        select(teacher, student, method="random")


def test_non_finite_teacher_is_refused_naming_the_tensors():
    teacher = dict(model("vit_small_patch16_224", **SMALL).state_dict())
    teacher["blocks.1.mlp.fc1.weight"] = teacher["blocks.1.mlp.fc1.weight"].clone()
    teacher["blocks.1.mlp.fc1.weight"][4, 6] = float("nan")  # selected by uniform (even rows and columns)
    teacher["norm.bias"] = torch.full_like(teacher["norm.bias"], float("inf"))
    with pytest.raises(NonFiniteTeacherError) as err:
        select(teacher, _spec("vit_tiny_patch16_224"))
    message = str(err.value)
    assert "\n" not in message
    assert "blocks.1.mlp.fc1.weight" in message and "norm.bias" in message and "2 of its tensors" in message
    # a NaN the selection does not take leaves the init finite
    teacher["norm.bias"] = torch.zeros_like(teacher["norm.bias"])
    teacher["blocks.1.mlp.fc1.weight"][4, 6] = 0.0
    teacher["blocks.1.mlp.fc1.weight"][3, 5] = float("nan")
    result = select(teacher, _spec("vit_tiny_patch16_224"))
    assert all(bool(torch.isfinite(v).all()) for v in result.state_dict.values())
    # a NaN in a teacher block that layer selection leaves out does not matter
    deeper = dict(model("vit_small_patch16_224", depth=3).state_dict())
    deeper["blocks.2.attn.qkv.weight"] = torch.full_like(deeper["blocks.2.attn.qkv.weight"], float("nan"))
    result = select(deeper, _spec("vit_tiny_patch16_224"))
    assert all(bool(torch.isfinite(v).all()) for v in result.state_dict.values())
