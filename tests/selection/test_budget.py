"""Students chosen by a parameter budget (timm ViT and ConvNeXt): within the budget, the widest
width at the teacher's depth (the next one is over it, counted on a real build), valid shapes, and
a selection that loads strictly."""
import pytest
import timm

from selection_helpers import SMALL_VIT, model
from weightselect.selection import select
from weightselect.selection.budget import timm_budget_student


def _real_count(name, kwargs):
    return sum(p.numel() for p in timm.create_model(name, **kwargs).parameters())


@pytest.mark.parametrize("target", [3_000_000, 8_000_000])
def test_vit_budget_keeps_depth_and_head_dim_and_is_the_widest_within(target):
    choice = timm_budget_student("vit_small_patch16_224", target, {"img_size": 32, "num_classes": 10})
    kw = choice.student["kwargs"]
    assert kw["depth"] == 12 and kw["embed_dim"] == 64 * kw["num_heads"] and kw["num_heads"] < 6
    assert choice.params == _real_count("vit_small_patch16_224", kw) <= target
    wider = dict(kw, embed_dim=kw["embed_dim"] + 64, num_heads=kw["num_heads"] + 1)
    assert _real_count("vit_small_patch16_224", wider) > target
    assert f"{target:,}" in choice.rationale and "\n" not in choice.rationale


def test_vit_select_by_budget_loads_strictly_and_records_the_choice():
    teacher = model("vit_small_patch16_224", **SMALL_VIT)
    result = select(teacher, target_params=6_000_000, student_kwargs=dict(SMALL_VIT))
    budget = result.manifest["budget"]
    kw = result.manifest["student"]["kwargs"]
    assert budget["params"] <= 6_000_000 and budget["shape"]["num_heads"] == kw["num_heads"]
    student = timm.create_model("vit_small_patch16_224", **kw)
    student.load_state_dict(result.state_dict, strict=True)
    assert sum(p.numel() for p in student.parameters()) == budget["params"]


def test_convnext_budget_scales_every_stage_and_loads():
    teacher = model("convnext_atto")  # dims (40, 80, 160, 320), depths (2, 2, 6, 2)
    result = select(teacher, target_params=1_500_000, student_kwargs={"num_classes": 10})
    kw = result.manifest["student"]["kwargs"]
    dims, depths = tuple(kw["dims"]), tuple(kw["depths"])
    assert depths == (2, 2, 6, 2) and dims[0] % 8 == 0 and dims == (dims[0], 2 * dims[0], 4 * dims[0], 8 * dims[0])
    student = timm.create_model("convnext_atto", **kw)
    res = student.load_state_dict(result.state_dict, strict=False)  # the head of 10 classes is new
    assert not res.unexpected_keys and set(res.missing_keys) == set(result.manifest["reinitialized"]) == {
        "head.fc.weight", "head.fc.bias"}
    assert sum(p.numel() for p in student.parameters()) == result.manifest["budget"]["params"] <= 1_500_000
    wider = tuple(d + d // dims[0] * 8 for d in dims)
    assert _real_count("convnext_atto", dict(kw, dims=wider)) > 1_500_000


def test_convnext_budget_below_the_narrowest_full_depth_reduces_depth():
    choice = timm_budget_student("convnext_tiny", 150_000, {"num_classes": 10})
    kw = choice.student["kwargs"]
    assert tuple(kw["depths"]) != (3, 3, 9, 3) and all(1 <= d <= t for d, t in zip(kw["depths"], (3, 3, 9, 3)))
    assert choice.params == _real_count("convnext_tiny", kw) <= 150_000
    assert "depth reduced" in choice.rationale


def test_budget_errors_name_the_fix():
    with pytest.raises(ValueError, match="smallest candidate .* raise the budget"):
        timm_budget_student("vit_small_patch16_224", 1000, {"num_classes": 10})
    with pytest.raises(ValueError, match="nothing to select"):
        timm_budget_student("vit_small_patch16_224", 10**9)
    with pytest.raises(ValueError, match="not both"):
        select("vit_small_patch16_224", "vit_tiny_patch16_224", target_params=10**6)
    with pytest.raises(ValueError, match="defined for the vit and convnext families"):
        timm_budget_student("resnet18", 10**6)
