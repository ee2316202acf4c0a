"""Toy datasets in the real on-disk layouts (weightselect.training.toy_data), read back by the
project's loaders (torchvision's classes, the ImageFolder), and the eval_samples knob."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from weightselect.training.catalog import DATASETS
from weightselect.training.data import DatasetNotFoundError, build_dataset, dataset_classes
from weightselect.training.recipe import RecipeError
from weightselect.training.toy_data import CHECKSUMMED, TOY_DATASETS, write_toy_dataset


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    for name in TOY_DATASETS:
        write_toy_dataset(name, root, per_class=1, seed=3)
    return root


def _load(name, root, train):
    options = {"checksums": False} if name in CHECKSUMMED else {}
    return build_dataset(name, root, train=train, **options)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_every_toy_set_loads_with_the_real_loader_and_every_class(toy_root, name):
    info = DATASETS[name]
    written = json.loads((toy_root / f"{name}.weightselect-toy.json").read_text())
    train, test = _load(name, toy_root, True), _load(name, toy_root, False)
    if name == "eurosat":  # no official split: the project's seeded 80/20 split of all images
        assert len(train) + len(test) == written["images"]["all"] == 5 * info.num_classes
    else:
        assert (len(train), len(test)) == (written["images"]["train"], written["images"]["test"])
    image, _ = train[0]
    assert image.mode == "RGB" and min(image.size) >= 32
    labels = sorted({int(train[i][1]) for i in range(len(train))})
    assert labels == list(range(info.num_classes))  # every class of the real set, in the training split
    classes = dataset_classes(train)
    assert classes is None or len(classes) == info.num_classes
    assert written["checksums"] is (name not in CHECKSUMMED)


def test_lossless_formats_read_back_the_written_pixels(toy_root):
    with open(toy_root / "cifar-100-python" / "train", "rb") as fh:
        raw = pickle.load(fh, encoding="latin1")
    ds = _load("cifar100", toy_root, True)
    first = raw["data"][0].reshape(3, 32, 32).transpose(1, 2, 0)  # CIFAR rows: R, G, B planes of 1,024
    assert np.array_equal(np.asarray(ds[0][0]), first) and ds[0][1] == raw["fine_labels"][0]
    raw = np.fromfile(toy_root / "stl10_binary" / "test_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96)
    img = np.asarray(_load("stl10", toy_root, False)[1][0])
    assert np.array_equal(img, raw[1].transpose(2, 1, 0))  # STL-10 stores each plane column-major


def test_the_same_seed_writes_the_same_bytes_and_a_rerun_writes_nothing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_toy_dataset("cifar10", a, seed=1)
    write_toy_dataset("cifar10", b, seed=1)
    files = sorted(p.relative_to(a) for p in (a / "cifar-10-batches-py").iterdir())
    assert len(files) == 7 and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    batch = a / "cifar-10-batches-py" / "data_batch_1"
    before = batch.stat().st_mtime_ns
    write_toy_dataset("cifar10", a, seed=1)
    assert batch.stat().st_mtime_ns == before
    write_toy_dataset("cifar10", a, seed=2)
    assert batch.read_bytes() != (b / "cifar-10-batches-py" / "data_batch_1").read_bytes()


def test_checksummed_toy_files_are_refused_without_the_option(toy_root):
    with pytest.raises(DatasetNotFoundError, match="md5"):
        build_dataset("cifar100", toy_root, train=True)


def test_checksums_option_only_where_torchvision_has_a_check(toy_root):
    with pytest.raises(ValueError, match="only .*cifar10.* have an MD5 check"):
        build_dataset("pets", toy_root, train=True, checksums=False)
    with pytest.raises(ValueError, match="true or false"):
        build_dataset("svhn", toy_root, train=True, checksums="no")
    with pytest.raises(KeyError, match="these can be written"):
        write_toy_dataset("digits", toy_root)


def test_eval_samples_evaluates_a_fixed_subset(tmp_path, tiny_convnext):
    from weightselect.training import train

    recipe = {"epochs": 1, "warmup_epochs": 0, "batch_size": 50, "lr": 5e-3, "lr_scaling": "none",
              "train_samples": 100, "img_size": 32, "eval_samples": 37}
    train(tiny_convnext, "digits", tmp_path / "run", seed=0, recipe=recipe, progress=False)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["dataset"]["test_images"] == 37 and meta["dataset"]["train_images"] == 100
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert round(final["final_top1"] * 37 / 100) == pytest.approx(final["final_top1"] * 37 / 100, abs=1e-6)
    for bad in (0, -5, 798):
        knob = "eval_samples" if bad != -5 else "train_samples"
        with pytest.raises((RecipeError, ValueError)):
            train(tiny_convnext, "digits", tmp_path / f"bad{bad}", recipe={**recipe, knob: bad}, progress=False)


@pytest.mark.parametrize("name", sorted(CHECKSUMMED))
def test_download_true_finds_the_toy_files_without_a_network(toy_root, name):
    """prepare_dataset asks with download=True: the unchecked classes see the files are there
    (torchvision's SVHN downloads without looking first), so no network is touched."""
    train = build_dataset(name, toy_root, train=True, download=True, checksums=False)
    assert len(train) > 0


def test_unchecked_sets_still_need_their_files(tmp_path):
    with pytest.raises(DatasetNotFoundError):
        build_dataset("svhn", tmp_path, train=True, checksums=False)
