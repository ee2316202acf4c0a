"""An init file's provenance: a manifest edited after selection, or another variant's pair copied
over a variant's, is refused before a run trains from it (library, run_job and the trainer)."""
from __future__ import annotations

import json
import shutil

import pytest
from selection_helpers import SMALL_VIT

from weightselect import io
from weightselect.selection import select
from weightselect.selection.provenance import InitProvenanceError, check_expected, check_indices, check_init_provenance

STUDENT = {"name": "vit_tiny_patch16_224", "kwargs": dict(SMALL_VIT)}


@pytest.fixture(scope="module")
def made(tmp_path_factory, vit_small):
    """A teacher file and two inits of it (uniform, consecutive) in a workflow-like layout."""
    root = tmp_path_factory.mktemp("prov")
    teacher = root / "teachers" / "t.safetensors"
    teacher.parent.mkdir()
    io.save_state_dict(vit_small.state_dict(), teacher)
    inits = {}
    for method in ("uniform", "consecutive"):
        path = root / "inits" / f"ws_{method}.safetensors"
        select(str(teacher), STUDENT["name"], student_kwargs=STUDENT["kwargs"], method=method).save(path)
        inits[method] = path
    return teacher, inits


def _expected(teacher, method="uniform"):
    return {"variant": f"ws_{method}", "method": method, "layers": "first", "seed": 0, "teacher": str(teacher),
            "student": STUDENT}


def _copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    shutil.copy2(io.manifest_path(src), io.manifest_path(dst))


def test_a_variants_own_init_passes(made):
    teacher, inits = made
    for method, path in inits.items():
        check_init_provenance(path, _expected(teacher, method))


def test_hand_written_index_sets_against_the_papers_methods(tmp_path):
    """consecutive: the first s; uniform with s dividing t: i * (t // s) (paper's release)."""
    ok = {"method": "consecutive", "seed": 0, "axes": {"embed": {"teacher": 8, "student": 4, "indices": [0, 1, 2, 3]}}}
    check_indices(ok, tmp_path / "i.safetensors")
    check_indices({**ok, "method": "uniform", "axes": {"embed": {"teacher": 8, "student": 4, "indices": [0, 2, 4, 6]}}},
                  tmp_path / "i.safetensors")
    with pytest.raises(InitProvenanceError, match="axis 'embed' are not those method 'uniform'"):
        check_indices({**ok, "method": "uniform"}, tmp_path / "i.safetensors")
    with pytest.raises(InitProvenanceError, match="axis 'embed'"):
        check_indices({**ok, "axes": {"embed": {"teacher": 8, "student": 4, "indices": [3, 2, 1, 0]}}},
                      tmp_path / "i.safetensors")


@pytest.mark.parametrize("edit", ["method", "reversed"])
def test_an_edited_manifest_is_refused(made, tmp_path, edit):
    teacher, inits = made
    path = tmp_path / "ws_uniform.safetensors"
    _copy(inits["uniform"], path)
    manifest = json.loads(io.manifest_path(path).read_text())
    if edit == "method":
        manifest["method"] = "consecutive"
    else:
        axis = next(iter(manifest["axes"]))
        manifest["axes"][axis]["indices"].reverse()
    io.manifest_path(path).write_text(json.dumps(manifest))
    with pytest.raises(InitProvenanceError, match=f"{path}: the manifest's indices of axis") as err:
        check_init_provenance(path)
    assert "delete" in str(err.value) and "\n" not in str(err.value)


def test_another_variants_pair_copied_over_is_refused(made, tmp_path):
    """Both files of ws_consecutive copied over ws_uniform's: the pair holds together (sha256) and its
    indices are its method's, but it is not the variant's."""
    teacher, inits = made
    path = tmp_path / "ws_uniform.safetensors"
    _copy(inits["consecutive"], path)
    check_init_provenance(path)  # a sound pair on its own
    with pytest.raises(InitProvenanceError, match="not made for variant 'ws_uniform': its manifest has method "
                                                  "'consecutive', not 'uniform'"):
        check_init_provenance(path, _expected(teacher))


def test_another_teacher_or_student_is_refused(made, tmp_path, vit_small):
    teacher, inits = made
    manifest = json.loads(io.manifest_path(inits["uniform"]).read_text())
    other = tmp_path / "t.safetensors"  # same path name, other bytes: compared by sha256
    io.save_state_dict({k: v + 1 for k, v in vit_small.state_dict().items()}, other)
    with pytest.raises(InitProvenanceError, match=r"teacher .*t\.safetensors \(sha256"):
        check_expected(manifest, inits["uniform"], _expected(other))
    with pytest.raises(InitProvenanceError, match="teacher .*, not elsewhere/t.safetensors"):
        check_expected(manifest, inits["uniform"], _expected("elsewhere/t.safetensors"))  # absent: by path
    wider = dict(_expected(teacher), student={"name": STUDENT["name"], "kwargs": {**SMALL_VIT, "embed_dim": 96}})
    with pytest.raises(InitProvenanceError, match="student vit_tiny_patch16_224"):
        check_expected(manifest, inits["uniform"], wider)


def test_run_job_refuses_before_training(made, tmp_path):
    from weightselect.training.launch import run_job

    teacher, inits = made
    path = tmp_path / "inits" / "ws_uniform.safetensors"
    _copy(inits["consecutive"], path)
    spec = {"model": STUDENT, "dataset": "digits", "recipe": {"epochs": 1}, "mode": "finetune",
            "expect_init": _expected(teacher)}
    run = tmp_path / "run"
    with pytest.raises(InitProvenanceError, match="method 'consecutive', not 'uniform'"):
        run_job(spec, str(run), seed=0, init=str(path))
    assert not run.exists()  # nothing written


def test_the_trainer_refuses_an_edited_manifest(made, tmp_path):
    from weightselect.training.weights import read_init

    _, inits = made
    path = tmp_path / "i.safetensors"
    _copy(inits["uniform"], path)
    manifest = json.loads(io.manifest_path(path).read_text())
    manifest["method"] = "random"
    io.manifest_path(path).write_text(json.dumps(manifest))
    with pytest.raises(InitProvenanceError):
        read_init(str(path))
