"""weightselect.models: model specs."""
import pytest

from weightselect.models import ModelSpec, UnknownModelError, create_model


def test_spec_from_any_and_tag():
    spec = ModelSpec.from_any({"name": "vit_small_patch16_224.augreg_in21k", "kwargs": {"depth": 2}})
    assert spec.architecture == "vit_small_patch16_224" and spec.tag == "augreg_in21k"
    assert ModelSpec.from_any("convnext_femto") == ModelSpec("convnext_femto", {})
    assert ModelSpec.from_any(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="model spec"):
        ModelSpec.from_any({"model": "x"})


def test_create_model_applies_kwargs_without_downloading():
    model = create_model(
        {"name": "vit_tiny_patch16_224.augreg_in21k", "kwargs": {"img_size": 16, "patch_size": 4, "depth": 2}},
        num_classes=7,
    )
    assert len(model.blocks) == 2 and model.num_classes == 7


def test_unknown_model_names_the_fix():
    with pytest.raises(UnknownModelError, match="timm.list_models"):
        create_model("vit_tinyy_patch16")
