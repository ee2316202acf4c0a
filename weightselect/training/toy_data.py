"""Tiny datasets written in each dataset's real on-disk layout, for a rehearsal of the paper grid.

:func:`write_toy_dataset` writes a few seeded random images per class of one of the paper's ten
datasets under ``root``, in the files and folders that torchvision's dataset class (or the
ImageFolder, for ImageNet) reads: CIFAR's pickled batches and meta file, SVHN's ``.mat`` files,
STL-10's binary files, Food-101's ``images/`` and ``meta/{train,test}.json``, the Oxford-IIIT
Pets' ``images/`` and ``annotations/{trainval,test}.txt``, Flowers-102's ``jpg/`` with
``imagelabels.mat`` and ``setid.mat``, DTD's ``images/`` and ``labels/{train,val,test}1.txt``,
EuroSAT's ``2750/<class>/``, ImageNet's ``train/<wnid>/`` and ``val/<wnid>/``. Every class of the
real set appears in every split, so heads and class lists are the real ones.

torchvision verifies the MD5 sums of some files against the official ones (:data:`CHECKSUMMED`:
CIFAR-10/100, SVHN, STL-10, Flowers-102), which a written file cannot match: those sets are read
through the same torchvision classes with the dataset option ``checksums: false``
(``build_dataset(..., checksums=False)``), which skips only that check. Rehearsal data only.
"""
from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

from weightselect.training.catalog import DATASETS

__all__ = ["write_toy_dataset", "TOY_DATASETS", "CHECKSUMMED", "MARKER"]

# The sets whose files torchvision checks against the official MD5 sums (torchvision 0.29:
# CIFAR10/CIFAR100._check_integrity and _load_meta, SVHN, STL10, Flowers102._check_integrity).
CHECKSUMMED = frozenset({"cifar10", "cifar100", "svhn", "stl10", "flowers102"})
MARKER = ".weightselect-toy.json"


def _write(path: Path, data: bytes) -> None:
    """One file of the set (plain write: the set as a whole is marked done by its marker, last)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """n seeded RGB images (n, size, size, 3) uint8: a per-image colour plus noise."""
    base = rng.integers(0, 256, size=(n, 1, 1, 3))
    noise = rng.integers(-40, 41, size=(n, size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _jpeg(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=90)
    _write(path, buf.getvalue())


def _labels(num_classes: int, per_class: int) -> np.ndarray:
    return np.tile(np.arange(num_classes), per_class)


def _pickle(path: Path, obj) -> None:
    _write(path, pickle.dumps(obj, protocol=2))


def _cifar(root: Path, rng, per_class: int, name: str) -> Dict[str, int]:
    n_cls = DATASETS[name].num_classes
    sizes = {}
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        _pickle(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(n_cls)]})
        key = "labels"
    else:
        folder = root / "cifar-100-python"
        files = {"train": ["train"], "test": ["test"]}
        _pickle(folder / "meta", {"fine_label_names": [f"class{i:02d}" for i in range(n_cls)],
                                  "coarse_label_names": [f"super{i:02d}" for i in range(20)]})
        key = "fine_labels"
    for split, names in files.items():
        labels = _labels(n_cls, per_class)
        chunks = np.array_split(np.arange(len(labels)), len(names))
        sizes[split] = len(labels)
        for fname, idx in zip(names, chunks):
            data = _images(rng, len(idx), 32).transpose(0, 3, 1, 2).reshape(len(idx), -1)
            entry = {"data": data, key: labels[idx].tolist()}
            if name == "cifar100":
                entry["coarse_labels"] = (labels[idx] % 20).tolist()
            _pickle(folder / fname, entry)
    return sizes


def _svhn(root: Path, rng, per_class: int, name: str) -> Dict[str, int]:
    from scipy.io import savemat

    sizes = {}
    for split in ("train", "test"):
        labels = _labels(10, per_class)
        images = _images(rng, len(labels), 32).transpose(1, 2, 3, 0)  # (32, 32, 3, N) as the real files
        buf = io.BytesIO()
        savemat(buf, {"X": images, "y": np.where(labels == 0, 10, labels)[:, None].astype(np.uint8)})
        _write(root / f"{split}_32x32.mat", buf.getvalue())
        sizes[split] = len(labels)
    return sizes


def _stl10(root: Path, rng, per_class: int, name: str) -> Dict[str, int]:
    folder = root / "stl10_binary"
    sizes = {}
    for split in ("train", "test"):
        labels = _labels(10, per_class)
        # STL-10 stores each image channel-major and column-major: (N, 3, W, H)
        data = _images(rng, len(labels), 96).transpose(0, 3, 2, 1)
        _write(folder / f"{split}_X.bin", np.ascontiguousarray(data).tobytes())
        _write(folder / f"{split}_y.bin", (labels + 1).astype(np.uint8).tobytes())
        sizes[split] = len(labels)
    _write(folder / "unlabeled_X.bin", _images(rng, 1, 96).transpose(0, 3, 2, 1).tobytes())
    _write(folder / "class_names.txt", "".join(f"class{i}\n" for i in range(10)).encode())
    return sizes


def _food101(root: Path, rng, per_class: int, name: str) -> Dict[str, int]:
    base = root / "food-101"
    classes = [f"dish_{i:03d}" for i in range(DATASETS[name].num_classes)]
    sizes = {}
    for split in ("train", "test"):
        meta = {}
        for c in classes:
            ids = [f"{c}/{split}{k}" for k in range(per_class)]
            for rel, img in zip(ids, _images(rng, per_class, 48)):
                _jpeg(base / "images" / f"{rel}.jpg", img)
            meta[c] = ids
        _write(base / "meta" / f"{split}.json", json.dumps(meta).encode())
        sizes[split] = per_class * len(classes)
    return sizes


def _pets(root: Path, rng, per_class: int, name: str) -> Dict[str, int]:
    base = root / "oxford-iiit-pet"
    sizes = {}
    for split in ("trainval", "test"):
        lines = []
        for label in range(DATASETS[name].num_classes):
            breed = f"{'Cat' if label % 2 else 'dog'}_breed_{label:02d}"  # cats capitalised, as the real names
            for k, img in enumerate(_images(rng, per_class, 48)):
                image_id = f"{breed}_{split}{k}"
                _jpeg(base / "images" / f"{image_id}.jpg", img)
                lines.append(f"{image_id} {label + 1} {1 if label % 2 else 2} {label // 2 + 1}\n")
        _write(base / "annotations" / f"{split}.txt", "".join(lines).encode())
        sizes["train" if split == "trainval" else "test"] = len(lines)
    return sizes


def _flowers102(root: Path, rng, per_class: int, name: str) -> Dict[str, int]:
    from scipy.io import savemat

    base = root / "flowers-102"
    n_cls = DATASETS[name].num_classes
    labels = np.tile(np.arange(1, n_cls + 1), 3 * per_class)  # 1-based, as imagelabels.mat
    for i, img in enumerate(_images(rng, len(labels), 48), start=1):
        _jpeg(base / "jpg" / f"image_{i:05d}.jpg", img)
    ids = np.arange(1, len(labels) + 1).reshape(3, -1)  # train, val, test: each holds every class
    for fname, content in (("imagelabels.mat", {"labels": labels[None, :]}),
                           ("setid.mat", {"trnid": ids[0][None], "valid": ids[1][None], "tstid": ids[2][None]})):
        buf = io.BytesIO()
        savemat(buf, content)
        _write(base / fname, buf.getvalue())
    return {"train": 2 * ids.shape[1], "test": ids.shape[1]}  # the project trains on train + val


def _dtd(root: Path, rng, per_class: int, name: str) -> Dict[str, int]:
    data = root / "dtd" / "dtd"
    classes = [f"texture{i:02d}" for i in range(DATASETS[name].num_classes)]
    sizes = {}
    for split in ("train", "val", "test"):
        lines = []
        for c in classes:
            for k, img in enumerate(_images(rng, per_class, 48)):
                _jpeg(data / "images" / c / f"{c}_{split}{k}.jpg", img)
                lines.append(f"{c}/{c}_{split}{k}.jpg\n")
        _write(data / "labels" / f"{split}1.txt", "".join(lines).encode())
        sizes[split] = len(lines)
    return {"train": sizes["train"] + sizes["val"], "test": sizes["test"]}


def _image_folders(root: Path, rng, per_class: int, classes: List[str], splits: List[str], size: int) -> int:
    for split in splits:
        for c in classes:
            for k, img in enumerate(_images(rng, per_class, size)):
                _jpeg(root / split / c / f"{c}_{split}{k}.JPEG" if split else root / c / f"{c}_{k}.jpg", img)
    return per_class * len(classes)


def _eurosat(root: Path, rng, per_class: int, name: str) -> Dict[str, int]:
    classes = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
               "PermanentCrop", "Residential", "River", "SeaLake"]
    n = _image_folders(root / "eurosat" / "2750", rng, 5 * per_class, classes, [""], 64)
    return {"all": n}  # the project splits it 80/20 with a fixed seed


def _imagenet(root: Path, rng, per_class: int, name: str) -> Dict[str, int]:
    classes = [f"n{i:08d}" for i in range(DATASETS[name].num_classes)]  # WordNet-id-like folder names
    n = _image_folders(root, rng, per_class, classes, ["train", "val"], 32)
    return {"train": n, "test": n}


_WRITERS: Dict[str, Callable] = {
    "cifar10": _cifar, "cifar100": _cifar, "svhn": _svhn, "stl10": _stl10, "food101": _food101,
    "pets": _pets, "flowers102": _flowers102, "dtd": _dtd, "eurosat": _eurosat, "imagenet": _imagenet,
}
TOY_DATASETS = tuple(sorted(_WRITERS))


def write_toy_dataset(name: str, root: str | os.PathLike, *, per_class: int = 2, seed: int = 0) -> dict:
    """Write a tiny ``name`` under ``root`` in the real on-disk layout; return its description.

    ``per_class``: images per class and split (EuroSAT, which has no official split: 5x that in
    all); ``seed``: the pixels' seed (same seed, same arrays). Images: seeded random RGB at the
    set's stored size (CIFAR/SVHN 32 px, STL-10 96, EuroSAT 64) or small JPEGs (32-48 px).
    Writes the marker ``{root}/{name}.weightselect-toy.json`` last; when it is
    there with the same arguments nothing is written again. Returns ``{"dataset", "per_class",
    "seed", "images": {split: count}, "checksums": bool}`` (``checksums`` False for
    :data:`CHECKSUMMED` sets, which must be read with that dataset option).
    Raises KeyError for a name that has no writer (the list: :data:`TOY_DATASETS`), ValueError
    for ``per_class < 1``.
    """
    name = name.lower()
    if name not in _WRITERS:
        raise KeyError(f"no toy writer for dataset '{name}'; these can be written: {', '.join(TOY_DATASETS)}")
    if int(per_class) < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    root = Path(root)
    marker = root / f"{name}{MARKER}"
    want = {"dataset": name, "per_class": int(per_class), "seed": int(seed)}
    if marker.is_file():
        done = json.loads(marker.read_text())
        if {k: done.get(k) for k in want} == want:
            return done
    rng = np.random.default_rng([int(seed), sorted(_WRITERS).index(name)])
    sizes = _WRITERS[name](root, rng, int(per_class), name)
    out = dict(want, images=sizes, checksums=name not in CHECKSUMMED)
    from weightselect.io import write_json  # (imports torch: only when a set is written)

    write_json(marker, out)
    return out
