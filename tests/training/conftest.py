"""Tiny models, tiny recipes and tiny data in the real on-disk formats."""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

TINY_VIT = {
    "name": "vit_tiny_patch16_224",
    "kwargs": {"img_size": 16, "patch_size": 4, "depth": 2, "embed_dim": 32, "num_heads": 2},
}
TINY_CONVNEXT = {"name": "convnext_atto", "kwargs": {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]}}
# No sample-level augmentation, short schedule, small batch: the offline CPU path.
FAST = {"epochs": 2, "warmup_epochs": 0.5, "batch_size": 50, "lr": 5e-3, "lr_scaling": "none",
        "train_samples": 400}


@pytest.fixture
def tiny_vit():
    return {"name": TINY_VIT["name"], "kwargs": dict(TINY_VIT["kwargs"])}


@pytest.fixture
def tiny_convnext():
    return {"name": TINY_CONVNEXT["name"], "kwargs": dict(TINY_CONVNEXT["kwargs"])}


@pytest.fixture
def fast_recipe():
    return dict(FAST)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cifar100_root(tmp_path, monkeypatch):
    """A CIFAR-100 python-pickle folder (cifar-100-python/{train,test,meta}) with 64 + 32 images.

    torchvision checks the files' md5 sums against the official ones; the test points those
    checks at the files it wrote (the reading code is torchvision's, unchanged).
    """
    import torchvision.datasets as tv

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 64), ("test", 32)):
        labels = (np.arange(n) % 4).tolist()
        data = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        # class-dependent brightness so that the set is learnable
        data = (data // 2 + np.array(labels, dtype=np.uint8)[:, None] * 40).astype(np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, "fine_labels": labels, "coarse_labels": labels}, fh)
    names = [f"class{i}" for i in range(100)]
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": names, "coarse_label_names": names[:20]}, fh)
    monkeypatch.setattr(tv.CIFAR100, "train_list", [["train", _md5(folder / "train")]])
    monkeypatch.setattr(tv.CIFAR100, "test_list", [["test", _md5(folder / "test")]])
    monkeypatch.setattr(tv.CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": _md5(folder / "meta")})
    return tmp_path


@pytest.fixture
def imagefolder_root(tmp_path):
    """An ImageFolder: train/<class>/*.png and val/<class>/*.png, 3 classes of coloured squares."""
    from PIL import Image

    root = tmp_path / "folder"
    colours = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
    rng = np.random.default_rng(1)
    for split, n in (("train", 8), ("val", 4)):
        for cls, rgb in colours.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = np.clip(np.array(rgb) + rng.integers(-20, 20, size=(40, 48, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(root / split / cls / f"{i}.png")
    return root
