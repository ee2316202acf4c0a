"""Fake run directories in the trainer's format (docs/architecture.md, "Runs")."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import pytest


def write_run(
    root: Path,
    student: str,
    dataset: str,
    variant: str,
    seed: int,
    curve: Sequence[float],
    finished: bool = True,
    best: Optional[float] = None,
) -> Path:
    """A run as the trainer leaves it: metrics.jsonl (one line per epoch) and, if finished, final.json.

    ``curve`` is test top-1 per epoch; the final accuracy is the last epoch's.
    """
    run = root / student / dataset / variant / f"seed{seed}"
    run.mkdir(parents=True)
    epochs = len(curve)
    lines = []
    for epoch, top1 in enumerate(curve, start=1):
        lines.append(json.dumps({
            "epoch": epoch, "lr": 1e-3 * epoch / epochs, "train_loss": 4.0 / epoch, "test_loss": 3.0 / epoch,
            "test_top1": top1, "test_top5": min(100.0, top1 + 10), "seconds": 1.5, "images_per_s": 1000.0,
        }))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if finished:
        final = {
            "model": {"name": "vit_tiny_patch16_224", "kwargs": {"img_size": 32}},
            "dataset": dataset, "init": variant, "seed": seed, "epochs": epochs,
            "final_top1": curve[-1], "final_top5": min(100.0, curve[-1] + 10),
            "best_top1": max(curve) if best is None else best,
            "train_seconds": 1.5 * epochs, "images_per_s": 1000.0,
        }
        (run / "final.json").write_text(json.dumps(final, indent=2))
    return run


@pytest.fixture
def make_run():
    """:func:`write_run`, for tests that build their own runs."""
    return write_run


@pytest.fixture
def runs_root(tmp_path) -> Path:
    """A small study with known numbers.

    demo_vit (paper model vit_t), 3 epochs each, final top-1:
      cifar100 random:     seeds 0,1,2 -> 70, 72, 74   (mean 72, std 2)
      cifar100 ws_uniform: seeds 0,1   -> 80, 81       (mean 80.5, std 0.7071...); seed 2 unfinished
      pets     random:     seed 0      -> 25.5         (std NaN)
      pets     ws_uniform: no runs
    demo_cnx (no paper model) on cifar100: random 60, 62 (seeds 0,1); ws_uniform 66 (seed 0)
    """
    root = tmp_path / "runs"
    for seed, final in zip((0, 1, 2), (70.0, 72.0, 74.0)):
        write_run(root, "demo_vit", "cifar100", "random", seed, [final - 20, final - 10, final])
    for seed, final in zip((0, 1), (80.0, 81.0)):
        write_run(root, "demo_vit", "cifar100", "ws_uniform", seed, [final - 8, final - 4, final])
    write_run(root, "demo_vit", "cifar100", "ws_uniform", 2, [70.0], finished=False)
    write_run(root, "demo_vit", "pets", "random", 0, [10.0, 26.0, 25.5])
    write_run(root, "demo_cnx", "cifar100", "random", 0, [40.0, 50.0, 60.0])
    write_run(root, "demo_cnx", "cifar100", "random", 1, [42.0, 52.0, 62.0])
    write_run(root, "demo_cnx", "cifar100", "ws_uniform", 0, [50.0, 60.0, 66.0])
    return root
