"""Teacher inputs (files, hub cache) and clear errors."""
import pytest
import timm
import torch

from selection_helpers import SMALL_VIT, sd
from weightselect.io import WeightsFileError, save_state_dict
from weightselect.models import UnknownModelError
from weightselect.selection import select
from weightselect.selection.sources import HubWeightsUnavailable

TINY = {"name": "vit_tiny_patch16_224", "kwargs": SMALL_VIT}


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory, vit_small):
    folder = tmp_path_factory.mktemp("teachers")
    st, pth = folder / "vit_s.safetensors", folder / "vit_s.pth"
    save_state_dict(vit_small.state_dict(), st)
    torch.save({"model": vit_small.state_dict()}, pth)
    return st, pth


def test_file_teachers_equal_in_memory(teacher_files, vit_small):
    st, pth = teacher_files
    ref = select(vit_small, TINY).state_dict
    for path in (st, pth, str(st)):
        result = select(path, TINY)
        assert all(torch.equal(result.state_dict[k], ref[k]) for k in ref)
        assert result.manifest["teacher"]["source"] == str(path)
        assert len(result.manifest["teacher"]["sha256"]) == 64


def test_student_wider_than_teacher():
    with pytest.raises(ValueError, match="wider"):
        select(sd("vit_tiny_patch16_224", **SMALL_VIT), {"name": "vit_small_patch16_224", "kwargs": SMALL_VIT})


def test_student_deeper_than_teacher():
    teacher = sd("vit_small_patch16_224", **SMALL_VIT, depth=6)
    with pytest.raises(ValueError, match="deeper"):
        select(teacher, TINY)


def test_mismatched_families():
    with pytest.raises(ValueError, match="same family"):
        select(sd("convnext_tiny"), TINY)


def test_unknown_student_name(vit_small):
    with pytest.raises(UnknownModelError, match="vit_tinyy"):
        select(vit_small, "vit_tinyy_patch16_224")


def test_unknown_teacher_name():
    with pytest.raises(UnknownModelError, match="vit_smal_patch16_224"):
        select("vit_smal_patch16_224.augreg_in21k", TINY)


def test_unknown_pretrained_tag():
    with pytest.raises(ValueError, match="no pretrained weights"):
        select("vit_small_patch16_224.no_such_tag", TINY)


def test_corrupt_safetensors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(WeightsFileError, match="not a valid safetensors"):
        select(bad, TINY)


def test_pickle_with_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "cfg": WeightsFileError("x")}, evil)
    with pytest.raises(WeightsFileError, match="weights_only"):
        select(evil, TINY)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsFileError, match="not found"):
        select(tmp_path / "nope.safetensors", TINY)


def test_offline_and_not_cached_names_the_fix(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(HubWeightsUnavailable, match="HF_HUB_OFFLINE") as err:
        select("vit_small_patch16_224.augreg_in21k", TINY)
    assert "timm/vit_small_patch16_224.augreg_in21k" in str(err.value)
    assert "local .safetensors" in str(err.value)


def test_cached_hub_file_is_read_lazily(tmp_path, monkeypatch, vit_small):
    """A pretrained name resolves to the hub cache's model.safetensors (offline, no download)."""
    import huggingface_hub.constants as constants

    repo = tmp_path / "models--timm--vit_small_patch16_224.augreg_in21k"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    save_state_dict(vit_small.state_dict(), snap / "model.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    result = select("vit_small_patch16_224.augreg_in21k", TINY)
    ref = select(vit_small, TINY)
    assert torch.equal(result.state_dict["blocks.3.attn.qkv.weight"], ref.state_dict["blocks.3.attn.qkv.weight"])
    assert result.manifest["teacher"]["source"] == "vit_small_patch16_224.augreg_in21k"
    assert result.manifest["teacher"]["hf_hub_id"] == "timm/vit_small_patch16_224.augreg_in21k"


def test_tag_without_hub_safetensors_falls_back_to_timm(monkeypatch, vit_small):
    from weightselect.selection import sources

    calls = []
    real = timm.create_model

    def fake_create_model(name, pretrained=False, **kwargs):
        if not pretrained:  # the student
            return real(name, **kwargs)
        calls.append(name)
        return vit_small

    monkeypatch.setattr(sources, "_hub_safetensors", lambda repo_id, name: None)
    monkeypatch.setattr("timm.create_model", fake_create_model)
    result = select("vit_small_patch16_224.augreg_in21k", TINY)
    assert calls == ["vit_small_patch16_224.augreg_in21k"]
    assert result.manifest["teacher"]["source"] == "vit_small_patch16_224.augreg_in21k"


def test_fallback_failure_names_the_fix(monkeypatch):
    from weightselect.selection import sources

    real = timm.create_model

    def failing(name, pretrained=False, **kwargs):
        if not pretrained:
            return real(name, **kwargs)
        raise OSError("no network")

    monkeypatch.setattr(sources, "_hub_safetensors", lambda repo_id, name: None)
    monkeypatch.setattr("timm.create_model", failing)
    with pytest.raises(HubWeightsUnavailable, match="HF_HUB_OFFLINE"):
        select("vit_small_patch16_224.augreg_in21k", TINY)


@pytest.mark.parametrize("method", ["uniform", "magnitude", "l1"])
def test_half_precision_teacher_gives_student_dtype(method, vit_small):
    teacher = {k: v.to(torch.bfloat16) for k, v in vit_small.state_dict().items()}
    result = select(teacher, TINY, method=method)
    w = result.state_dict["blocks.0.mlp.fc1.weight"]
    assert w.dtype == torch.float32
    if method == "uniform":
        assert torch.equal(w, teacher["blocks.0.mlp.fc1.weight"][::2, ::2].float())


def _hub_cache(root, repo_id, state_dict):
    """A Hugging Face cache holding ``model.safetensors`` of ``repo_id`` (huggingface_hub's layout)."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = "1" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_state_dict(state_dict, repo / "snapshots" / commit / "model.safetensors")


def test_without_network_the_cache_is_read_without_retries(tmp_path, monkeypatch, vit_small, no_network):
    """Online mode, but the hub's host does not resolve: the cache is read at once (local_files_only),
    not after huggingface_hub's retries; not cached, the error says why."""
    import huggingface_hub
    import huggingface_hub.constants as constants

    calls = []
    real = huggingface_hub.hf_hub_download
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kw: calls.append(kw) or real(**kw))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(HubWeightsUnavailable, match=r"cannot be reached \(its host name does not resolve\)") as err:
        select("vit_small_patch16_224.augreg_in21k", TINY)
    assert "HF_HUB_OFFLINE" not in str(err.value)  # it is not set: nothing to unset
    assert calls[-1]["local_files_only"] is True
    _hub_cache(tmp_path, "timm/vit_small_patch16_224.augreg_in21k", vit_small.state_dict())
    result = select("vit_small_patch16_224.augreg_in21k", TINY)
    ref = select(vit_small, TINY).state_dict
    assert torch.equal(result.state_dict["blocks.0.attn.qkv.weight"], ref["blocks.0.attn.qkv.weight"])
    assert result.manifest["teacher"]["hf_hub_id"] == "timm/vit_small_patch16_224.augreg_in21k"


def test_hub_resolves_reads_the_endpoint_host(monkeypatch):
    import socket

    from weightselect.io import hub_resolves

    asked = []

    def lookup(host, port, *args, **kwargs):
        asked.append((host, port))
        if host == "hub.example.org":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    assert hub_resolves("https://mirror.example.org") is True
    assert hub_resolves("https://hub.example.org/") is False
    assert asked == [("mirror.example.org", 443), ("hub.example.org", 443)]


def test_half_precision_teacher_is_said_and_kept_on_request(vit_small):
    """The conversion to the student's float32 is recorded; dtype='teacher' keeps the teacher's values as stored."""
    teacher = {k: v.to(torch.float16) for k, v in vit_small.state_dict().items()}
    default = select(teacher, TINY)
    assert default.manifest["dtype"] == {"teacher": ["float16"], "selected": ["float32"], "choice": "student"}
    kept = select(teacher, TINY, dtype="teacher")
    w = kept.state_dict["blocks.0.mlp.fc1.weight"]
    assert w.dtype == torch.float16 and torch.equal(w, teacher["blocks.0.mlp.fc1.weight"][::2, ::2])
    assert kept.manifest["dtype"]["selected"] == ["float16"] and kept.manifest["dtype"]["choice"] == "teacher"
    assert select(teacher, TINY, dtype="bfloat16").state_dict["blocks.0.mlp.fc1.weight"].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype 'half': choose one of student, teacher"):
        select(teacher, TINY, dtype="half")


def test_a_checkpoint_with_ema_weights_reads_the_chosen_state_dict(tmp_path, vit_small):
    """{'model': ..., 'model_ema': ...} (the release's and timm's checkpoints): the non-EMA weights by
    default, said in the manifest; checkpoint_key='model_ema' reads the EMA weights."""
    sd = vit_small.state_dict()
    ema = {k: v + 1 for k, v in sd.items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"model": sd, "model_ema": ema, "epoch": 299}, path)
    default = select(str(path), TINY)
    assert default.manifest["teacher"]["checkpoint_key"] == "model"
    assert default.manifest["teacher"]["checkpoint_entries"] == ["model", "model_ema"]
    assert torch.equal(default.state_dict["blocks.0.mlp.fc1.weight"], sd["blocks.0.mlp.fc1.weight"][::2, ::2])
    chosen = select(str(path), TINY, checkpoint_key="model_ema")
    assert chosen.manifest["teacher"]["checkpoint_key"] == "model_ema"
    assert torch.equal(chosen.state_dict["blocks.0.mlp.fc1.weight"], ema["blocks.0.mlp.fc1.weight"][::2, ::2])
    with pytest.raises(WeightsFileError, match=r"no state dict under 'state_dict_ema'; its state dicts: model, model_ema"):
        select(str(path), TINY, checkpoint_key="state_dict_ema")
