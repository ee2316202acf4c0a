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


@pytest.mark.parametrize("name", ["convnext_femto", "vit_tiny_patch16_224", "resnet18"])
def test_on_meta_builds_what_the_meta_device_builds_without_the_init_writes(name):
    import torch
    import torch.nn.init

    from weightselect.models import on_meta

    with torch.device("meta"):
        plain = create_model(name)
    with on_meta():
        fast = create_model(name)
    shapes = lambda m: [(k, tuple(v.shape), v.dtype, v.is_meta) for k, v in m.state_dict().items()]  # noqa: E731
    assert shapes(fast) == shapes(plain)
    assert [(n, type(m)) for n, m in fast.named_modules()] == [(n, type(m)) for n, m in plain.named_modules()]
    assert all(p.requires_grad for p in fast.parameters())
    assert torch.empty(2).device.type == "cpu"  # the device is restored after
