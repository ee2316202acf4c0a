"""ViT / DeiT pairs: exact uniform selection, q/k/v alignment, consistency, layer maps."""
import hashlib

import pytest
import timm
import torch

from selection_helpers import SMALL_VIT, model, reference_uniform, sd
from weightselect.selection import select
from weightselect.selection.elements import uniform_indices


def _load_strict(spec, state_dict, allowed=()):
    student = timm.create_model(spec["name"], **spec["kwargs"])
    res = student.load_state_dict(state_dict, strict=False)
    assert not res.unexpected_keys
    assert set(res.missing_keys) == set(allowed)
    return student


@pytest.mark.parametrize("teacher_name", ["vit_small_patch16_224", "vit_base_patch16_224"])
def test_uniform_reproduces_the_release_bit_for_bit(teacher_name, vit_tiny_spec):
    teacher = sd(teacher_name, **SMALL_VIT)
    result = select(teacher, vit_tiny_spec)
    student_sd = model("vit_tiny_patch16_224", **SMALL_VIT).state_dict()
    assert set(result.state_dict) == set(student_sd)
    for key, value in result.state_dict.items():
        expected = reference_uniform(teacher[key], student_sd[key].shape)
        assert torch.equal(value, expected), key
    assert result.manifest["head"] == "selected"
    assert result.manifest["reinitialized"] == []
    _load_strict(vit_tiny_spec, result.state_dict)


def test_qkv_is_selected_block_by_block():
    # 384 -> 256 is not a multiple: whole-tensor linspace would mix q, k and v rows
    teacher = sd("vit_small_patch16_224", **SMALL_VIT)
    spec = {"name": "vit_small_patch16_224", "kwargs": {**SMALL_VIT, "embed_dim": 256, "num_heads": 4}}
    result = select(teacher, spec)
    idx = uniform_indices(384, 256)
    w_t = teacher["blocks.0.attn.qkv.weight"]
    w_s = result.state_dict["blocks.0.attn.qkv.weight"]
    for b in range(3):  # q, k, v
        block_t = w_t[b * 384:(b + 1) * 384]
        assert torch.equal(w_s[b * 256:(b + 1) * 256], block_t[idx][:, idx])
    assert result.manifest["axes"]["blocks.0.attn"]["indices"] == idx.tolist()


@pytest.mark.parametrize("method", ["uniform", "consecutive", "random"])
def test_consistency_one_index_set_per_axis(method, vit_small, vit_tiny_spec):
    teacher = vit_small.state_dict()
    result = select(teacher, vit_tiny_spec, method=method, seed=3)
    axes = result.manifest["axes"]
    embed = torch.tensor(axes["embed"]["indices"])
    assert len(embed) == 192
    out = result.state_dict
    # every tensor carrying the embedding axis uses the same indices
    assert torch.equal(out["cls_token"], teacher["cls_token"][..., embed])
    assert torch.equal(out["patch_embed.proj.weight"], teacher["patch_embed.proj.weight"][embed])
    assert torch.equal(out["norm.weight"], teacher["norm.weight"][embed])
    for i in (0, 7):
        hid = torch.tensor(axes[f"blocks.{i}.mlp_hidden"]["indices"])
        att = torch.tensor(axes[f"blocks.{i}.attn"]["indices"])
        p = f"blocks.{i}."
        assert torch.equal(out[p + "mlp.fc1.weight"], teacher[p + "mlp.fc1.weight"][hid][:, embed])
        assert torch.equal(out[p + "mlp.fc2.weight"], teacher[p + "mlp.fc2.weight"][embed][:, hid])
        assert torch.equal(out[p + "attn.proj.weight"], teacher[p + "attn.proj.weight"][embed][:, att])
        rows = torch.cat([att + k * 384 for k in range(3)])
        assert torch.equal(out[p + "attn.qkv.weight"], teacher[p + "attn.qkv.weight"][rows][:, embed])
        assert torch.equal(out[p + "norm2.bias"], teacher[p + "norm2.bias"][embed])
    if method == "random":  # per-block axes are drawn independently
        assert axes["blocks.0.mlp_hidden"]["indices"] != axes["blocks.1.mlp_hidden"]["indices"]
        assert axes["embed"]["indices"] != uniform_indices(384, 192).tolist()


def _coded(state_dict):
    """A copy where every 2-D tensor holds ``row * 4096 + column`` (exact in float32)."""
    out = dict(state_dict)
    for key, value in state_dict.items():
        if value.dim() == 2:
            r, c = value.shape
            out[key] = (torch.arange(r)[:, None] * 4096 + torch.arange(c)[None, :]).float()
    return out


def _rows_cols(selected: torch.Tensor):
    code = selected.long()
    return (code[:, 0] // 4096).tolist(), (code[0] % 4096).tolist()


def test_random_without_consistency_differs_per_tensor(vit_small, vit_tiny_spec):
    teacher = _coded(vit_small.state_dict())
    result = select(teacher, vit_tiny_spec, method="random_nocons", seed=0)
    assert result.manifest["axes"]["embed"]["indices"] is None
    out = result.state_dict
    _, fc1_embed = _rows_cols(out["blocks.0.mlp.fc1.weight"])
    fc2_embed, _ = _rows_cols(out["blocks.0.mlp.fc2.weight"])
    _, qkv_embed = _rows_cols(out["blocks.0.attn.qkv.weight"])
    _, fc1_next = _rows_cols(out["blocks.1.mlp.fc1.weight"])
    assert len({tuple(fc1_embed), tuple(fc2_embed), tuple(qkv_embed), tuple(fc1_next)}) == 4
    assert all(len(set(x)) == 192 for x in (fc1_embed, fc2_embed, qkv_embed))
    # with consistency the same tensors share one index set
    cons = select(teacher, vit_tiny_spec, method="random", seed=0).state_dict
    embed = result.manifest["axes"]["embed"]
    assert embed["teacher"] == 384
    same = {tuple(_rows_cols(cons["blocks.0.mlp.fc1.weight"])[1]), tuple(_rows_cols(cons["blocks.0.mlp.fc2.weight"])[0]),
            tuple(_rows_cols(cons["blocks.1.attn.qkv.weight"])[1])}
    assert len(same) == 1
    # the same seed gives the same result, another seed another one
    again = select(teacher, vit_tiny_spec, method="random_nocons", seed=0)
    other = select(teacher, vit_tiny_spec, method="random_nocons", seed=1)
    assert torch.equal(again.state_dict["blocks.0.mlp.fc1.weight"], out["blocks.0.mlp.fc1.weight"])
    assert not torch.equal(other.state_dict["blocks.0.mlp.fc1.weight"], out["blocks.0.mlp.fc1.weight"])


@pytest.mark.parametrize(
    "layers, expected",
    [
        ("first", [0, 1, 2, 3, 4, 5]),
        ("uniform", [0, 2, 4, 6, 8, 10]),
        ("mid", [3, 4, 5, 6, 7, 8]),
        ("last", [6, 7, 8, 9, 10, 11]),
    ],
)
def test_deit_small_to_six_layer_tiny(layers, expected):
    teacher = sd("deit_small_patch16_224", **SMALL_VIT)
    spec = {"name": "deit_tiny_patch16_224", "kwargs": {**SMALL_VIT, "depth": 6}}
    result = select(teacher, spec, layers=layers)
    assert result.manifest["layer_map"] == {f"blocks.{i}": f"blocks.{t}" for i, t in enumerate(expected)}
    for i, t in enumerate(expected):
        key = f"blocks.{i}.mlp.fc2.weight"
        assert torch.equal(result.state_dict[key], reference_uniform(teacher[f"blocks.{t}.mlp.fc2.weight"], (192, 768)))
    _load_strict(spec, result.state_dict)


def test_head_reinitialized_when_class_count_differs(vit_small):
    spec = {"name": "vit_tiny_patch16_224", "kwargs": {**SMALL_VIT, "num_classes": 100}}
    result = select(vit_small, spec)
    assert result.manifest["head"] == "reinitialized"
    assert result.manifest["reinitialized"] == ["head.weight", "head.bias"]
    assert "head.weight" not in result.state_dict
    _load_strict(spec, result.state_dict, allowed=["head.weight", "head.bias"])


@pytest.mark.parametrize(
    "component, names",
    [
        ("patch_embed", {"patch_embed.proj.weight", "patch_embed.proj.bias"}),
        ("pos_embed", {"pos_embed"}),
    ],
)
def test_component_ablation_small(component, names, vit_small, vit_tiny_spec):
    result = select(vit_small, vit_tiny_spec, exclude=[component])
    assert set(result.manifest["reinitialized"]) == names
    assert result.manifest["excluded"] == [component]
    _load_strict(vit_tiny_spec, result.state_dict, allowed=names)


@pytest.mark.parametrize("component, marker", [("attention", ".attn."), ("mlp", ".mlp."), ("norm", "norm")])
def test_component_ablation_blocks(component, marker, vit_small, vit_tiny_spec):
    result = select(vit_small, vit_tiny_spec, exclude=[component])
    gone = set(result.manifest["reinitialized"])
    assert gone and all(marker in k for k in gone)
    assert not any(marker in k for k in result.state_dict)
    assert len(gone) + len(result.state_dict) == len(vit_small.state_dict())
    _load_strict(vit_tiny_spec, result.state_dict, allowed=gone)


def test_unknown_component_is_an_error(vit_small, vit_tiny_spec):
    with pytest.raises(ValueError, match="patch_embed, pos_embed"):
        select(vit_small, vit_tiny_spec, exclude=["attn_typo"])


@pytest.mark.parametrize("method", ["uniform", "random", "random_nocons"])
def test_same_seed_same_bytes(method, tmp_path, vit_small, vit_tiny_spec):
    digests = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.safetensors"
        select(vit_small, vit_tiny_spec, method=method, seed=5).save(out)
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_l1_prunes_embedding_per_tensor(vit_small, vit_tiny_spec):
    teacher = vit_small.state_dict()
    result = select(teacher, vit_tiny_spec, method="l1")
    w_t = teacher["blocks.0.mlp.fc1.weight"]
    cols = w_t.abs().sum(0).topk(192).indices.sort().values
    hid = torch.tensor(result.manifest["axes"]["blocks.0.mlp_hidden"]["indices"])
    assert torch.equal(result.state_dict["blocks.0.mlp.fc1.weight"], w_t[hid][:, cols])
    assert result.manifest["axes"]["embed"]["indices"] is None
    assert hid.tolist() == uniform_indices(1536, 768).tolist()


def test_magnitude_keeps_largest_elements(vit_small, vit_tiny_spec):
    teacher = vit_small.state_dict()
    result = select(teacher, vit_tiny_spec, method="magnitude")
    w_t = teacher["blocks.2.attn.proj.weight"]
    w_s = result.state_dict["blocks.2.attn.proj.weight"]
    assert w_s.shape == (192, 192)
    threshold = w_t.abs().flatten().kthvalue(w_t.numel() - w_s.numel()).values
    assert bool((w_s.abs() >= threshold).all())
    _load_strict(vit_tiny_spec, result.state_dict)


def test_manifest_keys(vit_small, vit_tiny_spec):
    m = select(vit_small, vit_tiny_spec, method="random", layers="uniform", seed=7).manifest
    for key in ("format", "method", "layers", "seed", "teacher", "student", "layer_map", "axes", "head",
                "reinitialized", "excluded"):
        assert key in m
    assert m["format"] == "weightselect-init/1"
    assert (m["method"], m["layers"], m["seed"]) == ("random", "uniform", 7)
    assert m["student"] == vit_tiny_spec
    assert len(m["teacher"]["sha256"]) == 64
    assert m["axes"]["embed"]["teacher"] == 384 and m["axes"]["embed"]["student"] == 192
    assert list(m).index("pretrained_cfg") == list(m).index("student") + 1


def test_other_image_and_patch_size_resamples_position_and_patch_embeddings():
    from timm.layers import resample_abs_pos_embed, resample_patch_embed

    teacher = sd("vit_small_patch16_224", img_size=64)  # 4x4 grid of 16-pixel patches
    spec = {"name": "vit_tiny_patch16_224", "kwargs": {"img_size": 32, "patch_size": 4}}  # 8x8 grid
    result = select(teacher, spec)
    assert result.manifest["resampled"] == ["pos_embed", "patch_embed.proj.weight"]
    embed = uniform_indices(384, 192)
    pos = resample_abs_pos_embed(teacher["pos_embed"], [8, 8], [4, 4], num_prefix_tokens=1)
    assert torch.allclose(result.state_dict["pos_embed"], pos[..., embed])
    assert torch.equal(result.state_dict["pos_embed"][:, 0], teacher["pos_embed"][:, 0, embed])
    kernel = resample_patch_embed(teacher["patch_embed.proj.weight"], [4, 4])
    assert torch.allclose(result.state_dict["patch_embed.proj.weight"], kernel[embed])
    _load_strict(spec, result.state_dict)


def test_other_input_channels_is_an_error():
    with pytest.raises(ValueError, match="input channels"):
        select(sd("vit_small_patch16_224", **SMALL_VIT), {"name": "vit_tiny_patch16_224", "kwargs": {**SMALL_VIT, "in_chans": 1}})


def test_clip_teacher_into_a_student_built_with_its_structure():
    """Table 5's CLIP row: the CLIP ViT-B is pre-norm with no patch-embedding bias; a ViT-T built
    with the same structure (pre_norm=True) is selected from it as the release does, every tensor
    equal to the release's uniform selection of the teacher's, norm_pre included; the plain ViT-T
    is refused (it has a patch-embedding bias the teacher lacks)."""
    teacher = sd("vit_base_patch16_clip_224", **SMALL_VIT, num_classes=512)  # the openai tag: 512-d head
    spec = {"name": "vit_tiny_patch16_224", "kwargs": {**SMALL_VIT, "pre_norm": True}}
    result = select(teacher, spec)
    student_sd = model("vit_tiny_patch16_224", **SMALL_VIT, pre_norm=True).state_dict()
    assert "norm_pre.weight" in student_sd and "patch_embed.proj.bias" not in student_sd
    assert set(result.state_dict) == set(student_sd) - {"head.weight", "head.bias"}
    for key, value in result.state_dict.items():
        assert torch.equal(value, reference_uniform(teacher[key], student_sd[key].shape)), key
    assert result.manifest["reinitialized"] == ["head.weight", "head.bias"]  # CLIP's 512-d head
    _load_strict(spec, result.state_dict, allowed=("head.weight", "head.bias"))
    with pytest.raises(Exception, match="patch_embed.proj.bias"):
        select(teacher, {"name": "vit_tiny_patch16_224", "kwargs": dict(SMALL_VIT)})
