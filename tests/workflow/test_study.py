"""weightselect.study: a study's runs, tables and checks from names only (no torch at parse time)."""
from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from weightselect.study import BASELINES, LAYER_METHODS, SELECTION_METHODS, Run, Study, StudyConfigError, model_shape

REPO = Path(__file__).resolve().parents[2]


def config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_names_agree_with_the_selection_library():
    from weightselect.selection import BASELINES as LIB_BASELINES
    from weightselect.selection import LAYER_METHODS as LIB_LAYERS
    from weightselect.selection import METHODS

    assert tuple(SELECTION_METHODS) == tuple(METHODS)
    assert tuple(LAYER_METHODS) == tuple(LIB_LAYERS)
    assert tuple(BASELINES) == tuple(LIB_BASELINES)


def test_importing_the_study_and_recipe_modules_imports_neither_torch_nor_timm():
    code = ("import sys, weightselect.study, weightselect.training.recipe; "
            "print(sorted(m for m in ('torch', 'timm', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("model, shape", [
    ({"name": "vit_tiny_patch16_224"}, ("vit", 192, 12)),
    ({"name": "vit_small_patch16_224.augreg_in21k"}, ("vit", 384, 12)),
    ({"name": "vit_base_patch16_clip_224.openai"}, ("vit", 768, 12)),
    ({"name": "vit_tiny_patch16_224", "kwargs": {"depth": 6}}, ("vit", 192, 6)),
    ({"name": "convnext_femto"}, ("convnext", 384, 12)),
    ({"name": "convnext_tiny", "kwargs": {"dims": [32, 64, 128, 256], "depths": [2, 2, 2, 2]}}, ("convnext", 256, 8)),
])
def test_model_shape_from_names_matches_timm(model, shape):
    import timm
    import torch

    assert model_shape(model) == shape
    with torch.device("meta"):
        net = timm.create_model(model["name"].split(".")[0], **model.get("kwargs", {}))
    if shape[0] == "vit":
        assert (net.embed_dim, len(net.blocks)) == shape[1:]
    else:
        assert (net.num_features, sum(len(s.blocks) for s in net.stages)) == shape[1:]


def test_paper_study_runs_share_init_files_and_key_folders_by_variant():
    study = Study(config(), "paper")
    runs = study.runs()
    assert len(runs) == len(set(runs)) and len({r.path for r in runs}) == len(runs)
    # Table 4's ImageNet rows: DeiT-S for both distillation and selection (paper section 4.4)
    assert study.init_file("vit_t", "distill_ws_uniform") == study.init_file("vit_t", "ws_uniform_deit")
    assert study.init_teacher("vit_t", "distill_ws_uniform") == study.distill_teacher("distill_ws_uniform") \
        == "deit_vit_s_in1k"
    assert study.cell_variants("table4", "imagenet", "ws_uniform") == ["ws_uniform_deit"]
    assert study.init_teacher("vit_t", "ws_uniform") == "vit_s_in21k"  # Tables 2 and 3 keep the IN-21K ViT-S
    assert study.student_model("vit_t", "ws_vit_b_clip")["kwargs"] == {"pre_norm": True}  # Table 5's CLIP row
    assert study.train_params(Run("vit_t", "cifar10", "ws_vit_b_clip", 0))["model"]["kwargs"] == {"pre_norm": True}
    assert sorted(study.figures["fig4b"]["sweep"].values()) == [10, 30, 60, 100, 300]
    assert study.init_file("vit_t", "ws_uniform_long") == "results/inits/vit_t/ws_uniform.safetensors"
    assert study.init_file("vit_t", "ws_uniform_ep50") == "results/inits/vit_t/ws_uniform.safetensors"
    assert study.init_teacher("vit_t", "ws_vit_b_clip") == "vit_b_clip"
    assert study.epochs("vit_t", "cifar100", "random_ep50") == 50
    assert study.epochs("vit_t", "cifar100", "random") == 300  # Table 15's row, read as data
    # Figure 4a: a budget equal to the variant's own epochs is the variant's runs, not a copy of them
    sweep = study.figures["fig4a"]["sweep"]
    assert sweep["ws_uniform"] == ("ws_uniform", 300) and sweep["ws_uniform_ep50"] == ("ws_uniform", 50)
    assert "ws_uniform_ep300" not in study.variants
    spec = study.train_params(Run("vit_t", "imagenet", "distill", 0))
    assert spec["mode"] == "distill" and spec["distill"] == {"kind": "logit", "alpha": 1.0}
    assert spec["teacher"]["weights"] == "results/teachers/deit_vit_s_in1k.safetensors"
    assert spec["init"] == "random"


def test_tensorboard_reaches_the_train_params_only_when_on():
    cfg = config()
    run = Run("vit_t", "cifar10", "random", 0)
    assert "tensorboard" not in Study(cfg, "paper").train_params(run)  # existing runs' params unchanged
    cfg["studies"]["paper"]["tensorboard"] = True
    assert Study(cfg, "paper").train_params(run)["tensorboard"] is True


def test_table3_cells_hold_three_selection_draws():
    study = Study(config(), "paper")
    cell = next(c for c in study.table_cells("table3") if c["student"] == "vit_t" and c["variant"] == "ws_random")
    assert cell["draws"] == ["ws_random", "ws_random_s1", "ws_random_s2"] and len(cell["runs"]) == 9


def test_a_recipe_row_edit_changes_only_that_rows_runs():
    study = Study(config(), "paper")
    assert study.recipe_source("vit_t", "cifar100") != study.recipe_source("vit_t", "pets")
    assert study.recipe_source("vit_t", "cifar100") == study.recipe_source("vit_a", "cifar100")


@pytest.mark.parametrize("change, message", [
    (lambda c: c["variants"].update(loop_a={"init": "loop_b"}, loop_b={"init": "loop_a"})
     or c["studies"]["ci"]["tables"]["table3"]["variants"].append("loop_a"), "loop"),
    (lambda c: c["studies"]["ci"]["tables"]["table3"].update(median_of={"nope": ["random"]}), "median_of names 'nope'"),
    (lambda c: c["studies"]["ci"]["tables"]["table2"].update(change_from="kaiming"), "change_from 'kaiming'"),
    (lambda c: c["variants"]["ws_uniform"]["init"].update(teacher="nobody"), "unknown teacher ['nobody']"),
    (lambda c: c["studies"]["ci"]["figures"]["fig5"].update(student="convnext_w8"), "need a ViT student"),
    (lambda c: c["studies"]["ci"]["figures"].update(fig4a={"kind": "epochs", "student": "nobody", "dataset": "digits",
                                                           "variants": ["random"], "epochs": [1]}),
     "figure 'fig4a': unknown student ['nobody']"),
])
def test_inconsistent_studies_fail_with_one_line(change, message):
    cfg = copy.deepcopy(config())
    change(cfg)
    with pytest.raises(StudyConfigError, match=re.escape(message)) as info:
        Study(cfg, "ci")
    assert "\n" not in str(info.value)


def test_a_table_with_its_own_seeds_runs_and_judges_those_seeds():
    cfg = config()
    spec = cfg["studies"]["cpu"]
    spec["tables"]["table6"]["seeds"] = [0, 1, 2, 3, 4]
    spec["tables"]["table7"].pop("seeds", None)
    study = Study(cfg, "cpu")
    assert study.seeds == [0, 1, 2]
    six = study.table_runs("table6")
    assert sorted({r.seed for r in six}) == [0, 1, 2, 3, 4]
    assert len(six) == 5 * len(spec["tables"]["table6"]["variants"])
    assert sorted({r.seed for r in study.table_runs("table7")}) == [0, 1, 2]  # the others keep the study's
    assert study.table_params("table6")["seeds"] == [0, 1, 2, 3, 4]
    assert set(six) <= set(study.runs())  # the extra seeds are planned
