"""A rehearsal of a study: every job of its grid once, offline on CPU, at toy size.

``snakemake --cores all --config study=paper rehearsal=true`` runs the paper study's every job
(same names, tables, figures, variants, teachers and runs, so the same job count as
``snakemake -n --config study=paper``) through the same rules, workflow scripts, library calls and
command lines as a cluster run. Only sizes change (:class:`RehearsalStudy`):

* hub teachers: random weights of the exact timm architecture and pretrained config of each tag,
  written into a Hugging Face hub cache (:func:`write_hub_teacher`) that the real fetch code reads
  offline (``HF_HUB_OFFLINE=1``, ``HF_HUB_CACHE``);
* datasets: tiny sets in each dataset's real on-disk layout (:mod:`weightselect.training.toy_data`;
  the MD5-checked ones read with the dataset option ``checksums: false``);
* every run and every pretraining: :data:`SIZES` on top of its recipe (one epoch, a few steps, a
  small batch, a few test images); students keep their real architectures and input size;
* a multi-GPU job runs as ``processes: 2`` CPU processes (torchrun, gloo) and asks for no GPU.

Outputs go to the rehearsal's own working directory (``rehearsal/`` beside the Snakefile, see
``Snakefile``), and every table, figure and report caption is marked as a rehearsal. No torch
import at module level: the Snakefile reads this module at parse time.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from weightselect.study import Run, Study

__all__ = ["RehearsalStudy", "SIZES", "MARK", "WORKDIR", "HUB_CACHE", "DATA_ROOT", "hub_repo_folder",
           "write_hub_teacher"]

WORKDIR = "rehearsal"  # beside the Snakefile; git-ignored
HUB_CACHE = "hf_cache"  # under the working directory
DATA_ROOT = "data"
MARK = "REHEARSAL (random-weight teachers, toy data, one short epoch): checks that every job runs; not results"
# What every run and pretraining of a rehearsal gets on top of its recipe. batch_size 8 = 4 per
# process x 2 processes on the multi-process datasets (an even batch for mixup); 16 training
# images give 2 (1 process) or 2 x 1 (2 processes) optimizer steps; 8 test images.
SIZES: Dict[str, Any] = {"epochs": 1, "batch_size": 8, "update_freq": 1, "train_samples": 16,
                         "eval_samples": 8, "eval_batch_size": 8}
PROCESSES = 2  # CPU processes standing in for a multi-GPU job


class RehearsalStudy(Study):
    """``Study(config, name)`` at toy size (see the module docstring); every name stays.

    ``sizes``: recipe overrides applied last to every run and pretraining (default :data:`SIZES`);
    ``seeds``: the training seeds (default: the study's own, so the job count is the study's).
    """

    def __init__(self, config: Mapping[str, Any], name: str, sizes: Optional[Mapping[str, Any]] = None,
                 seeds: Optional[list] = None):
        if seeds is not None and name in config["studies"]:
            # before the study resolves its tables and figures, so that every one of them (a table's
            # own `seeds` too) plans these seeds only
            seeds = [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]
            study = dict(config["studies"][name], seeds=seeds)
            study["tables"] = {t: {k: v for k, v in spec.items() if k != "seeds"}
                               for t, spec in study.get("tables", {}).items()}
            config = dict(config, studies=dict(config["studies"], **{name: study}))
        super().__init__(config, name)
        self.sizes = dict(SIZES if sizes is None else sizes)
        from weightselect.training.toy_data import CHECKSUMMED  # noqa: PLC0415 (no torch import)

        self.spec = dict(self.spec, data_root=DATA_ROOT, download=True, resources={"threads": 1, "mem_mb": 4000})
        for dataset, spec in self.datasets.items():
            spec = dict(spec)
            spec.pop("data_root", None)  # every toy set under the rehearsal's data root
            spec.pop("mem_mb", None)  # a cluster node's memory (ImageNet: 128 GB), not a toy job's
            if int(spec.get("gpus", 0)) > 1:
                spec["processes"] = PROCESSES
            spec["gpus"] = 0
            if self.source_dataset(dataset) in CHECKSUMMED:
                spec["options"] = dict(spec.get("options", {}), checksums=False)
            self.datasets[dataset] = spec
        for teacher in self.teachers.values():
            if teacher["source"] == "pretrain":
                pre = teacher["pretrain"]
                teacher["pretrain"] = dict(pre, recipe=dict(pre.get("recipe", {}), **self.sizes))

    def epochs(self, student: str, dataset: str, variant: str) -> int:
        """The run's epochs as it trains: the rehearsal's ``sizes["epochs"]`` once the study is
        built, so that runtime estimates and retry counts (rules/common.smk) are the rehearsal's,
        not the paper's (a failing job would otherwise be retried as a multi-day run is). While
        ``Study.__init__`` resolves the figure sweeps it is the paper's value, so Figure 4a's
        sweep keeps its variants and names.
        """
        if getattr(self, "sizes", None) and "epochs" in self.sizes:
            return int(self.sizes["epochs"])
        return super().epochs(student, dataset, variant)

    def train_params(self, run: Run) -> dict:
        params = super().train_params(run)
        params["recipe"] = dict(params["recipe"], **self.sizes)
        return params

    def table_params(self, table: str) -> dict:
        params = super().table_params(table)
        return dict(params, title=f"{MARK} - {params['title']}", rehearsal=True)


# ------------------------------------------------------------------------------ hub teachers
def hub_repo_folder(cache: str | os.PathLike, repo_id: str) -> Path:
    """huggingface_hub's cache folder of a model repo: ``{cache}/models--{org}--{name}``."""
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def write_hub_teacher(name: str, cache: str | os.PathLike, seed: int = 0) -> Path:
    """Random weights of timm model ``name`` (architecture and tag: the tag's pretrained config,
    e.g. its number of classes) as the hub repo's ``model.safetensors`` in a Hugging Face hub cache,
    laid out as ``huggingface_hub.hf_hub_download`` reads it offline:
    ``{cache}/models--timm--{name}/refs/main`` (a revision) and
    ``.../snapshots/{revision}/model.safetensors``. Seeded (``torch.manual_seed(seed)``). Returns
    the weights file. Raises ValueError when the tag has no hub repo in timm's pretrained config.
    """
    import timm
    import torch

    from weightselect.io import save_state_dict, write_text

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise ValueError(f"'{name}' has no Hugging Face hub repo in timm's pretrained config")
    repo = cfg.hf_hub_id.split("@")[0]
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False)
    revision = hashlib.sha1(f"weightselect-rehearsal:{name}:{seed}".encode()).hexdigest()
    folder = hub_repo_folder(cache, repo)
    path = folder / "snapshots" / revision / "model.safetensors"
    save_state_dict({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    write_text(folder / "refs" / "main", revision)
    return path

