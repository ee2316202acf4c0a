"""The rehearsal of the paper study (`--config study=paper rehearsal=true`, weightselect.rehearsal).

Fast: the derived study keeps every name and run of the paper study and changes only sizes; the dry
run plans the paper's every job plus the rehearsal's inputs; a random-weight hub teacher written in
the Hugging Face cache layout is read back by the real fetch code offline. Slow (CI): a sample of
the rehearsal runs end to end through the real rules and covers every rule and kind of job.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from weightselect.rehearsal import MARK, PROCESSES, SIZES, RehearsalStudy, write_hub_teacher
from weightselect.study import Study
from weightselect.training.toy_data import CHECKSUMMED

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"


def snakemake(*args: str, cwd: Path, timeout: int = 600, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def job_counts(log: str) -> dict:
    table = log[log.index("Job stats:"):]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def config():
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(cfg, str(REPO / "schemas" / "config.schema.yaml"))
    return cfg


def test_the_rehearsal_keeps_every_run_and_changes_only_sizes(config):
    paper, rehearsal = Study(config, "paper"), RehearsalStudy(config, "paper")
    assert rehearsal.runs() == paper.runs() and rehearsal.targets() == paper.targets()
    assert set(rehearsal.teachers) == set(paper.teachers) and set(rehearsal.variants) == set(paper.variants)
    for run in paper.runs():
        ours, theirs = rehearsal.train_params(run), paper.train_params(run)
        assert ours["recipe"] == {**theirs["recipe"], **SIZES}
        assert {k: v for k, v in ours.items() if k not in ("recipe", "dataset")} == \
               {k: v for k, v in theirs.items() if k not in ("recipe", "dataset")}  # same models, inits, teachers
        # the epochs the job trains, which its runtime and retries are estimated from (rules/common.smk)
        assert rehearsal.epochs(run.student, run.dataset, run.variant) == SIZES["epochs"]
    assert paper.epochs("convnext_f", "imagenet", "ws_uniform_long") == 600  # the paper's, unchanged
    assert rehearsal.figures == paper.figures  # Figure 4a's sweep keeps the paper's epochs and names
    for name, spec in rehearsal.datasets.items():
        assert spec["gpus"] == 0 and "mem_mb" not in spec
        assert spec.get("processes", 1) == (PROCESSES if paper.datasets[name].get("gpus", 0) > 1 else 1)
        assert spec.get("options", {}).get("checksums", True) is (name not in CHECKSUMMED)
    for name, teacher in rehearsal.teachers.items():
        if teacher["source"] == "pretrain":
            assert teacher["pretrain"]["recipe"]["epochs"] == SIZES["epochs"]
            assert teacher["model"] == paper.teachers[name]["model"]
    params = rehearsal.table_params("table2")
    assert params["rehearsal"] is True and params["title"].startswith(MARK)
    assert [int(s) for s in RehearsalStudy(config, "paper", seeds=["0"]).seeds] == [0]


def test_the_rehearsal_plans_every_job_of_the_paper_study(tmp_path):
    paper = snakemake("-n", "--config", "study=paper", cwd=tmp_path)
    rehearsal = snakemake("-n", "--config", "study=paper", "rehearsal=true", cwd=tmp_path)
    assert paper.returncode == 0 and rehearsal.returncode == 0, rehearsal.stderr[-3000:]
    ours, theirs = job_counts(rehearsal.stdout), job_counts(paper.stdout)
    study = Study(yaml.safe_load((REPO / "config.yaml").read_text()), "paper")
    hub = sum(t["source"] == "hub" for t in study.teachers.values())
    assert ours.pop("rehearsal_hub_teacher") == hub and ours.pop("rehearsal_dataset") == theirs["prepare_dataset"]
    assert ours.pop("total") - hub - theirs["prepare_dataset"] == theirs.pop("total")
    assert ours == theirs
    assert (tmp_path / "rehearsal").is_dir() and not (tmp_path / "results").exists()


def test_a_hub_teacher_in_the_cache_is_read_by_the_real_fetch_offline(tmp_path):
    """timm's pretrained config names the hub repo; huggingface_hub reads the written cache with
    HF_HUB_OFFLINE=1, and open_teacher gives back exactly the written tensors."""
    from safetensors.torch import load_file

    name = "vit_tiny_patch16_224.augreg_in21k"
    written = load_file(str(write_hub_teacher(name, tmp_path / "hub", seed=3)))
    assert written["head.weight"].shape[0] == 21843  # the tag's pretrained config: IN-21K classes
    script = (
        "import sys, torch\n"
        "from safetensors.torch import load_file\n"
        "from weightselect.selection.sources import open_teacher\n"
        f"src = open_teacher({name!r})\n"
        "sd = {k: src.tensors.get(k) for k in src.tensors.keys()}\n"
        f"ref = load_file({str(tmp_path / 'ref.safetensors')!r})\n"
        "assert sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in ref)\n"
        "print(src.description['source'])\n"
    )
    from safetensors.torch import save_file

    save_file(written, str(tmp_path / "ref.safetensors"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert name in done.stdout


# Every rule and kind of job of the paper grid, once (seed 0): hub teachers of every architecture
# (IN-21K ViT-S, ViT-L, ViT-T, ConvNeXt-T, DeiT-S, CLIP, MAE, DINO), weight selection, baselines
# (random, xavier, kaiming, mimetic), logit distillation in a 2-process torchrun job (ImageNet) and
# feature distillation, the probe, the long recipe, layer maps, Figure 4b's pretraining, the table,
# curves, epoch-sweep and attention figures.
SAMPLE = ["results/tables/table4.csv", "results/tables/table9.csv", "results/tables/table16.csv",
          "results/runs/vit_t/cifar10/ws_vit_b_clip/seed0/final.json",
          "results/inits/vit_t/ws_vit_b_mae.safetensors", "results/inits/vit_t/ws_vit_b_dino.safetensors",
          "results/runs/vit_s/cifar100/ws_uniform_layers_mid/seed0/final.json",
          "results/runs/vit_t/cifar100/xavier/seed0/final.json", "results/runs/vit_t/cifar100/kaiming/seed0/final.json",
          "results/runs/vit_t/cifar10/mimetic/seed0/final.json",
          "results/runs/convnext_f/imagenet/ws_uniform_long/seed0/final.json",
          "results/runs/vit_t/cifar100/pretrained_imagenet_ep10/seed0/final.json",
          "results/figures/fig3_vit_t_cifar100.png", "results/figures/fig4a.png", "results/figures/fig5.png"]


@pytest.mark.slow
def test_rehearsal_sample_runs_every_kind_of_job(tmp_path):
    done = snakemake(*SAMPLE, "--cores", "2", "--config", "study=paper", "rehearsal=true", "rehearsal_seeds=0",
                     cwd=tmp_path, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    root = tmp_path / "rehearsal" / "results"
    assert not (tmp_path / "results").exists()  # never beside a study's results
    table = pd.read_csv(root / "tables" / "table4.csv")
    assert table["rehearsal"].all() and MARK in (root / "tables" / "table4.md").read_text()
    assert (table.filter(regex="_n$") == 1).all().all()  # every cell has its seed-0 run
    imagenet = json.loads((root / "runs/vit_t/imagenet/distill_ws_uniform/seed0/run.json").read_text())
    assert imagenet["world_size"] == PROCESSES and imagenet["distill"]["kind"] == "logit"
    assert "deit_vit_s_in1k" in json.dumps(imagenet["init"])  # Table 4: DeiT-S selects on ImageNet
    clip = json.loads((root / "inits/vit_t/ws_vit_b_clip.json").read_text())
    assert clip["student"]["kwargs"]["pre_norm"] is True and clip["reinitialized"] == ["head.weight", "head.bias"]
    pretrained = json.loads((root / "runs/vit_t/cifar100/pretrained_imagenet_ep10/seed0/run.json").read_text())
    assert pretrained["init"]["result"]["head"].startswith("reinitialized")  # ImageNet's 1,000 classes, CIFAR-100's 100
    assert json.loads((root / "teachers/vit_t_imagenet_ep10.json").read_text())["train_images"] == SIZES["train_samples"]
