"""Linear probing (Table 9): a frozen backbone's pooled features + a trained linear classifier.

Following the MAE recipe's idea: the features (``forward_head(forward_features(x),
pre_logits=True)``, eval transforms, no augmentation) are extracted once, then a
``BatchNorm1d(affine=False) -> Linear`` head is trained with SGD (momentum 0.9, no weight decay,
lr = ``lr * batch_size / 256``, linear warmup then cosine). The run directory gets
``metrics.jsonl`` and ``final.json`` with the keys of a training run (plus ``"mode":
"linear_probe"``), ``recipe.yaml`` and ``run.json``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from weightselect import io as wio
from weightselect.models import ModelSpec, create_model
from weightselect.training import data as wdata

__all__ = ["ProbeRecipe", "probe", "fit_linear_probe", "extract_features"]


@dataclass
class ProbeRecipe:
    epochs: int = 90
    batch_size: int = 256
    lr: float = 0.1  # at batch 256
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_epochs: int = 10
    img_size: Optional[int] = None  # None: the dataset's
    in_chans: Optional[int] = None
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    train_samples: Optional[int] = None

    def replace(self, overrides: Optional[Mapping[str, Any]]) -> "ProbeRecipe":
        from weightselect.training.recipe import RecipeError

        overrides = dict(overrides or {})
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise RecipeError(f"unknown linear-probe key(s) {unknown}; known: {sorted(known)}")
        types = {f.name: f.type for f in dataclasses.fields(self)}
        values = {}
        for k, v in overrides.items():
            if v is None:
                values[k] = None
            elif "int" in str(types[k]):
                values[k] = int(v)
            elif "float" in str(types[k]):
                values[k] = float(v)
            else:
                values[k] = v
        return dataclasses.replace(self, **values)


class _EvalRecipe:
    """The few recipe fields that ``data.build_transform`` reads for eval transforms."""

    def __init__(self, r: ProbeRecipe, img_size: int):
        self.img_size, self.crop_pct, self.interpolation = img_size, r.crop_pct, r.interpolation


@torch.no_grad()
def extract_features(model: nn.Module, batches, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pooled pre-logit features and targets for every batch, on the CPU."""
    model.eval()
    feats, targets = [], []
    for x, y in batches:
        f = model.forward_head(model.forward_features(x.to(device)), pre_logits=True)
        feats.append(f.float().cpu())
        targets.append(y.cpu())
    return torch.cat(feats), torch.cat(targets)


def fit_linear_probe(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
    num_classes: int, recipe: ProbeRecipe, seed: int = 0, log=None,
) -> Tuple[nn.Module, list]:
    """Train BatchNorm(affine=False) + Linear on fixed features; returns the head and per-epoch
    metrics (train loss, test loss, top-1/top-5 in percent)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = nn.Sequential(nn.BatchNorm1d(train_x.shape[1], affine=False), nn.Linear(train_x.shape[1], num_classes))
    nn.init.trunc_normal_(head[1].weight, std=0.01)
    nn.init.zeros_(head[1].bias)
    batch = min(recipe.batch_size, len(train_x))
    peak = recipe.lr * batch / 256
    opt = torch.optim.SGD(head.parameters(), lr=peak, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    steps = len(train_x) // batch
    total, warm = steps * recipe.epochs, min(steps * recipe.warmup_epochs, steps * recipe.epochs - 1)
    history = []
    update = 0
    for epoch in range(recipe.epochs):
        head.train()
        perm = torch.randperm(len(train_x), generator=g)
        t0 = time.perf_counter()
        loss_sum = 0.0
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            lr = peak * update / max(warm, 1) if update < warm else \
                peak * 0.5 * (1 + math.cos(math.pi * (update - warm) / max(total - warm, 1)))
            for group in opt.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(head(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            update += 1
            loss_sum += loss.item() * len(idx)
        seconds = time.perf_counter() - t0
        head.eval()
        with torch.no_grad():
            out = head(test_x)
            k = min(5, num_classes)
            hit = out.topk(k, dim=1).indices.eq(test_y.view(-1, 1))
            record = {
                "epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(steps * batch, 1),
                "test_loss": F.cross_entropy(out, test_y).item(),
                "test_top1": 100.0 * hit[:, 0].float().mean().item(),
                "test_top5": 100.0 * hit.any(1).float().mean().item(),
                "seconds": seconds, "images_per_s": steps * batch / max(seconds, 1e-9),
            }
        history.append(record)
        if log:
            log(record)
    return head, history


def _load_backbone_weights(model: nn.Module, path: str) -> Dict[str, Any]:
    """Load a weights file into ``model``; only the classifier may be missing or differ in shape."""
    sd = wio.load_state_dict(path)
    own = model.state_dict()
    classifier = model.get_classifier()
    head_names = {f"{name}.{p}" for name, m in model.named_modules() if m is classifier for p in m.state_dict()}
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable and k not in head_names]
    if missing:
        raise ValueError(f"weights {path} do not fit the backbone: missing or mis-shaped {missing[:5]}")
    model.load_state_dict(usable, strict=False)
    return {"weights": str(path), "sha256": wio.sha256_file(path), "head_loaded": all(k in usable for k in head_names)}


def probe(
    model: Any,
    dataset: Any,
    run_dir,
    *,
    init: Optional[str] = None,
    weights: Optional[str] = None,
    seed: int = 0,
    recipe: Any = None,
    data_root=None,
    download: bool = False,
    device: Optional[str] = None,
    force: bool = False,
    num_workers: int = 0,
    progress: Optional[bool] = None,
) -> Dict[str, Any]:
    """Linear-probe ``model`` (initialized by ``init`` or loaded from ``weights``) on ``dataset``.

    Returns the content of ``run_dir/final.json``.
    """
    from weightselect.training.loop import (
        FINAL, METRICS, RUN_META, RunFinishedError, _Batches, _apply_init, _describe_init,
        _resolve_dataset_arg, _versions,
    )

    run_dir = Path(run_dir)
    if (run_dir / FINAL).exists() and not force:
        raise RunFinishedError(f"{run_dir} holds a finished probe ({FINAL}); pass force=True (CLI --force) to redo it")
    if init is not None and weights is not None:
        raise ValueError("give either init or weights, not both")
    spec = ModelSpec.from_any(model)
    ds_name, ds_options = _resolve_dataset_arg(dataset)
    info = wdata.dataset_info(ds_name)
    r = recipe if isinstance(recipe, ProbeRecipe) else ProbeRecipe().replace(recipe)
    img_size = r.img_size or info.img_size
    in_chans = r.in_chans or info.in_chans
    device_t = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    tf = wdata.build_transform(_EvalRecipe(r, img_size), info, in_chans, train=False)
    kw = dict(img_size=img_size, in_chans=in_chans, download=download, **ds_options)
    sets = [wdata.build_dataset(ds_name, data_root, split, transform=tf, **kw) for split in (True, False)]
    num_classes = info.num_classes or len(wdata.dataset_classes(sets[0]) or [])
    mean, std = info.norm(in_chans)

    torch.manual_seed(seed)
    net = create_model(spec, num_classes=num_classes, in_chans=in_chans)
    if weights is not None:
        init_desc = {"init": None, "kind": "weights", **_load_backbone_weights(net, weights)}
    else:
        init_desc = _describe_init(init)
        init_desc["result"] = _apply_init(net, init, seed)
    net.requires_grad_(False)
    net.to(device_t)
    feats = []
    t0 = time.perf_counter()
    for split, ds in zip(("train", "test"), sets):
        index = torch.arange(len(ds))
        if split == "train" and r.train_samples is not None:
            index = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[: r.train_samples]
        batches = _Batches(ds, wdata.as_tensor_dataset(ds, img_size, in_chans), mean, std, device_t, num_workers)
        feats.append(extract_features(net, batches(list(torch.split(index, 256)), loader_seed=0), device_t))
    extract_s = time.perf_counter() - t0

    def log(record):
        print(f"probe epoch {record['epoch']}/{r.epochs}  train_loss {record['train_loss']:.4f}  "
              f"top1 {record['test_top1']:.2f}", flush=True, file=__import__("sys").stderr)

    _, history = fit_linear_probe(*feats[0], *feats[1], num_classes, r, seed=seed,
                                  log=log if progress is not False else None)
    train_s = sum(h["seconds"] for h in history)
    final = {
        "model": spec.to_dict(), "dataset": ds_name, "init": init_desc["init"] if weights is None else str(weights),
        "seed": seed, "epochs": r.epochs, "final_top1": history[-1]["test_top1"],
        "final_top5": history[-1]["test_top5"], "best_top1": max(h["test_top1"] for h in history),
        "train_seconds": train_s, "images_per_s": sum(h["images_per_s"] * h["seconds"] for h in history) / max(train_s, 1e-9),
        "mode": "linear_probe",
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    wio.write_text(run_dir / "recipe.yaml", yaml.safe_dump(dataclasses.asdict(r), sort_keys=False))
    wio.write_json(run_dir / RUN_META, {
        "mode": "linear_probe", "model": spec.to_dict(), "init": init_desc, "seed": seed,
        "dataset": {"name": ds_name, "options": ds_options, "num_classes": num_classes, "in_chans": in_chans,
                    "img_size": img_size, "train_images": len(feats[0][0]), "test_images": len(feats[1][0])},
        "feature_dim": int(feats[0][0].shape[1]), "extract_seconds": extract_s, "device": str(device_t),
        "versions": _versions(),
    })
    wio.write_text(run_dir / METRICS, "".join(json.dumps(h) + "\n" for h in history))
    wio.write_json(run_dir / FINAL, final)
    return final
