import json
import math

import pytest
import timm
import torch

from weightselect.io import save_state_dict
from weightselect.models import create_model
from weightselect.training import train
from weightselect.training import distill
from weightselect.training.distill import (
    StudentWithProjector, Teacher, TeacherSpec, feature_distill_loss, load_teacher, logit_distill_loss, teacher_norm,
)


def test_logit_loss_hand_made_values():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[0.0, math.log(3.0)]])  # p_t = (1/4, 3/4), p_s = (1/2, 1/2)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert logit_distill_loss(s, t).item() == pytest.approx(expected, abs=1e-6)
    # batch mean: a second row where student and teacher agree adds nothing
    both = logit_distill_loss(torch.cat([s, t]), torch.cat([t, t]))
    assert both.item() == pytest.approx(expected / 2, abs=1e-6)
    # temperature: softmax(t / tau), scaled by tau^2
    p = torch.softmax(t / 2, dim=-1)[0]
    kl = sum(p[i] * math.log(p[i] / 0.5) for i in range(2)) * 4
    assert logit_distill_loss(s, t, tau=2.0).item() == pytest.approx(float(kl), abs=1e-6)
    assert logit_distill_loss(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_feature_loss_hand_made_values():
    student = torch.tensor([[1.0, 2.0], [0.0, -2.0]])
    assert feature_distill_loss(student, torch.zeros(2, 2)).item() == pytest.approx(1.25)


def test_projector_wraps_the_student(tiny_vit):
    student = create_model(tiny_vit, num_classes=10, in_chans=1)
    net = StudentWithProjector(student, teacher_dim=48, hidden=16)
    logits, projected = net(torch.randn(3, 1, 16, 16))
    assert logits.shape == (3, 10) and projected.shape == (3, 48)
    assert {"student.pos_embed", "student.cls_token"} <= net.no_weight_decay()


def test_teacher_needs_weights(tmp_path, tiny_vit):
    with pytest.raises(ValueError, match="has no weights"):
        TeacherSpec.from_any(tiny_vit)
    model = create_model(tiny_vit, num_classes=10, in_chans=1)
    save_state_dict(model.state_dict(), tmp_path / "t.safetensors")
    teacher = load_teacher({**tiny_vit, "kwargs": {**tiny_vit["kwargs"], "num_classes": 10, "in_chans": 1},
                            "weights": str(tmp_path / "t.safetensors")})
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match="does not fit.*head.weight"):
        load_teacher({**tiny_vit, "kwargs": {**tiny_vit["kwargs"], "num_classes": 5, "in_chans": 1},
                      "weights": str(tmp_path / "t.safetensors")})


@pytest.fixture
def digits_teacher(tmp_path, tiny_vit):
    kwargs = {**tiny_vit["kwargs"], "num_classes": 10, "in_chans": 1, "embed_dim": 48, "num_heads": 3}
    torch.manual_seed(7)
    model = create_model({"name": tiny_vit["name"], "kwargs": kwargs})
    with torch.no_grad():  # a confident teacher: most of its probability on class 0
        model.head.bias.zero_()
        model.head.bias[0] = 5.0
    save_state_dict(model.state_dict(), tmp_path / "teacher.safetensors")
    return {"name": tiny_vit["name"], "kwargs": kwargs, "weights": str(tmp_path / "teacher.safetensors")}


def test_logit_distillation_with_alpha_zero_equals_plain_training(tmp_path, tiny_vit, fast_recipe, digits_teacher):
    recipe = {**fast_recipe, "epochs": 1}
    plain = train(tiny_vit, "digits", tmp_path / "plain", recipe=recipe, progress=False)
    zero = train(tiny_vit, "digits", tmp_path / "zero", recipe=recipe, distill={"kind": "logit", "alpha": 0.0},
                 teacher=digits_teacher, progress=False)
    train(tiny_vit, "digits", tmp_path / "kd", recipe=recipe, distill="logit", teacher=digits_teacher,
               progress=False)
    lines = {k: json.loads((tmp_path / k / "metrics.jsonl").read_text()) for k in ("plain", "zero", "kd")}
    assert lines["zero"]["train_loss"] == lines["plain"]["train_loss"] and zero["final_top1"] == plain["final_top1"]
    assert lines["kd"]["train_loss"] > lines["plain"]["train_loss"]  # KL to a confident, wrong teacher adds loss
    meta = json.loads((tmp_path / "kd" / "run.json").read_text())
    assert meta["distill"] == {"kind": "logit", "alpha": 1.0, "tau": 1.0}
    assert meta["teacher"]["weights"] == digits_teacher["weights"]


def _same_weights(a, b):
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("kind", ["logit", "feature"])
def test_distillation_kill_and_resume_is_bit_identical(tmp_path, tiny_vit, fast_recipe, digits_teacher, kind):
    recipe = {**fast_recipe, "distill": kind, "distill_alpha": 2.0}
    ref = train(tiny_vit, "digits", tmp_path / "ref", recipe=recipe, teacher=digits_teacher, progress=False)
    run = tmp_path / "run"
    assert train(tiny_vit, "digits", run, recipe=recipe, teacher=digits_teacher, stop_at_update=5,
                 progress=False) is None
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["partial"]["batches"] == 5 and any(k.startswith("projector.") for k in ckpt["net"]) == (kind == "feature")
    assert train(tiny_vit, "digits", run, recipe=recipe, teacher=digits_teacher, stop_after_epochs=1,
                 progress=False) is None
    final = train(tiny_vit, "digits", run, recipe=recipe, teacher=digits_teacher, progress=False)
    for key in ("final_top1", "final_top5", "best_top1", "best_epoch"):
        assert final[key] == ref[key]
    exact = ["epoch", "lr", "train_loss", "test_loss", "test_top1", "test_top5"]
    lines = [[{k: json.loads(x)[k] for k in exact} for x in (d / "metrics.jsonl").read_text().splitlines()]
             for d in (run, tmp_path / "ref")]
    assert lines[0] == lines[1] and _same_weights(run, tmp_path / "ref")


def test_teacher_renormalizes_the_students_input():
    s_mean, s_std, t_mean, t_std = (0.5,), (0.5,), (0.2, 0.3, 0.4), (0.25, 0.2, 0.1)
    teacher = Teacher(torch.nn.Identity(), (s_mean, s_std), (t_mean, t_std))
    raw = torch.randint(0, 256, (2, 1, 4, 4)).float() / 255  # a grey image; the teacher takes RGB
    x_student = (raw - 0.5) / 0.5
    expected = torch.cat([(raw - m) / s for m, s in zip(t_mean, t_std)], dim=1)
    assert torch.allclose(teacher.renormalize(x_student), expected, atol=1e-6)


def test_teacher_normalization_comes_from_the_teacher(tmp_path, tiny_vit):
    conv = create_model({"name": "convnext_atto", "kwargs": {"in_chans": 3}})
    spec = TeacherSpec({"name": "convnext_atto", "kwargs": {}}, "t.safetensors")
    mean, std, source = teacher_norm(spec, conv)  # timm's pretrained_cfg: ImageNet's
    assert (mean, std, source) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "timm pretrained_cfg")
    explicit = TeacherSpec.from_any({"name": "convnext_atto", "weights": "t.safetensors", "mean": [0.1] * 3, "std": [0.2] * 3})
    assert teacher_norm(explicit, conv)[:2] == ((0.1,) * 3, (0.2,) * 3)
    (tmp_path / "t.json").write_text(json.dumps({"final": {"dataset": "cifar10"}}))  # a pretrained teacher's manifest
    from_manifest = TeacherSpec({"name": "convnext_atto", "kwargs": {}}, str(tmp_path / "t.safetensors"))
    assert teacher_norm(from_manifest, conv)[2] == "t.json: trained on cifar10"


def test_teacher_in_a_run_sees_its_own_normalization(tmp_path, tiny_vit, fast_recipe, digits_teacher, monkeypatch):
    seen = {}
    load = distill.load_teacher

    def recording_teacher(spec, device):
        model = load(spec, device)
        model.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].clone()))
        return model

    monkeypatch.setattr(distill, "load_teacher", recording_teacher)
    teacher = {**digits_teacher, "mean": [0.3], "std": [0.1]}  # the student's digits use 0.5 / 0.5
    train(tiny_vit, "digits", tmp_path / "kd", recipe={**fast_recipe, "epochs": 1}, distill="logit",
          teacher=teacher, progress=False)
    pixels = (seen["x"] * 0.1 + 0.3) * 255  # back to the uint8 images the data holds
    assert torch.allclose(pixels, pixels.round(), atol=1e-3) and pixels.min() >= -1e-3 and pixels.max() <= 255.001
    assert seen["x"].min().item() == pytest.approx((0 - 0.3) / 0.1, abs=1e-5)  # black pixels, the teacher's way
    meta = json.loads((tmp_path / "kd" / "run.json").read_text())
    assert meta["teacher"]["input_norm"] == {"mean": [0.3], "std": [0.1], "from": "teacher spec"}


def test_distillation_errors(tmp_path, tiny_vit, fast_recipe, digits_teacher):
    with pytest.raises(ValueError, match="needs a teacher"):
        train(tiny_vit, "digits", tmp_path / "a", recipe=fast_recipe, distill="logit")
    other = {**digits_teacher, "kwargs": {**digits_teacher["kwargs"], "num_classes": 26}}
    save_state_dict(create_model({"name": other["name"], "kwargs": other["kwargs"]}).state_dict(), tmp_path / "t26.safetensors")
    other["weights"] = str(tmp_path / "t26.safetensors")
    with pytest.raises(ValueError, match="same|student's 10 classes"):
        train(tiny_vit, "digits", tmp_path / "b", recipe=fast_recipe, distill="logit", teacher=other)


def test_a_workflow_pretrained_teacher_gets_its_classes_from_its_manifest(tmp_path, tiny_vit):
    """A teacher pretrained by the workflow on letters (26 classes, one channel) whose spec, like the
    study's teacher specs, leaves num_classes and in_chans to the dataset: the manifest beside its
    weights supplies both, so feature distillation from a selection teacher loads its weights as
    they are; without the manifest the stored head still gives the 26 classes, but not the channel."""
    kwargs = dict(tiny_vit["kwargs"])
    trained = create_model({"name": tiny_vit["name"], "kwargs": {**kwargs, "num_classes": 26, "in_chans": 1}})
    path = tmp_path / "letters_teacher.safetensors"
    save_state_dict(trained.state_dict(), path)
    spec = {"name": tiny_vit["name"], "kwargs": kwargs, "weights": str(path)}
    with pytest.raises(ValueError, match="patch_embed"):  # without the manifest: timm's 3 channels do not fit
        load_teacher(spec)
    one_channel = load_teacher({**spec, "kwargs": {**kwargs, "in_chans": 1}})  # the classes: the stored head's rows
    assert one_channel.num_classes == 26
    (tmp_path / "letters_teacher.json").write_text(json.dumps({"final": {"dataset": "letters"}}))
    model = load_teacher(spec)
    assert model.num_classes == 26 and not model.training
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_a_hub_teacher_gets_its_classes_from_its_tag(tmp_path):
    """Table 4's CIFAR-100 rows distil features from the IN-21K ViT-S: its weights (the hub teacher
    file) carry the tag's 21,843-class head, which timm's pretrained config of the tag gives."""
    name = "vit_small_patch16_224.augreg_in21k"
    kwargs = {"img_size": 32}
    trained = timm.create_model(name, pretrained=False, **kwargs)  # the tag's config: 21,843 classes
    path = tmp_path / "vit_s_in21k.safetensors"
    save_state_dict(trained.state_dict(), path)
    model = load_teacher({"name": name, "kwargs": kwargs, "weights": str(path)})
    assert model.num_classes == 21843 == timm.models.get_pretrained_cfg(name).num_classes
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.state_dict().items())
