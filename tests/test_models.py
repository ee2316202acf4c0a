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


def test_stored_spec_takes_classes_and_channels_from_the_stored_weights(tmp_path):
    """The manifest beside a weights file first (its dataset's classes and channels), else the
    stored classifier's rows, else the pretrained tag's class count; the spec's own kwargs win."""
    import json

    from weightselect.models import stored_spec

    tiny = {"img_size": 16, "patch_size": 4, "depth": 1, "embed_dim": 32, "num_heads": 2}
    name = "vit_tiny_patch16_224"
    head26 = {k: tuple(v.shape) for k, v in create_model(name, num_classes=26, **tiny).state_dict().items()}
    assert stored_spec({"name": name, "kwargs": tiny}, head26).kwargs == {**tiny, "num_classes": 26}
    weights = tmp_path / "t.safetensors"
    (tmp_path / "t.json").write_text(json.dumps({"final": {"dataset": "letters"}}))
    assert stored_spec({"name": name, "kwargs": tiny}, head26, weights).kwargs == {**tiny, "num_classes": 26, "in_chans": 1}
    assert stored_spec({"name": name, "kwargs": {**tiny, "in_chans": 3}}, head26, weights).kwargs["in_chans"] == 3
    own = {"name": name, "kwargs": {**tiny, "num_classes": 5}}
    assert stored_spec(own, head26) == ModelSpec.from_any(own)
    headless = {k: s for k, s in head26.items() if not k.startswith("head.")}
    mae = {"name": "vit_base_patch16_224.mae", "kwargs": tiny}
    assert stored_spec(mae, headless).kwargs == {**tiny, "num_classes": 0}  # the tag's pretrained config
    assert stored_spec(name + ".augreg_in21k", headless).kwargs == {"num_classes": 21843}
    assert stored_spec(name, headless) == ModelSpec(name, {})


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
