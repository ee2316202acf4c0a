import numpy as np
import pytest
import torch

from weightselect.training.data import (
    DATASETS, LETTERS, SYMBOLS, DatasetNotFoundError, as_tensor_dataset, build_dataset, build_transform,
    dataset_info, needs_sample_transforms,
)
from weightselect.training.recipe import resolve_recipe

PAPER = {"imagenet": 1000, "cifar10": 10, "cifar100": 100, "svhn": 10, "food101": 101, "eurosat": 10,
         "stl10": 10, "flowers102": 102, "pets": 37, "dtd": 47}


def test_registry_has_the_papers_ten_and_the_offline_sets():
    for name, classes in PAPER.items():
        assert DATASETS[name].num_classes == classes and DATASETS[name].img_size == 224
    assert {"imagefolder", "digits", "letters", "symbols"} <= set(DATASETS)
    assert dataset_info("letters").num_classes == 26 and dataset_info("symbols").in_chans == 1


def test_digits_is_the_fixed_real_split():
    train = build_dataset("digits", train=True, img_size=16)
    test = build_dataset("digits", train=False, img_size=32, in_chans=3)
    assert len(train) == 1000 and len(test) == 797
    assert train.images.shape == (1000, 1, 16, 16) and test.images.shape == (797, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) > 200
    assert sorted(train.targets.unique().tolist()) == list(range(10))
    assert torch.equal(test.images[:, 0], test.images[:, 2])  # grey repeated into 3 channels
    assert torch.equal(build_dataset("digits", img_size=16).images, train.images)


def test_letters_and_symbols_are_deterministic_and_disjoint():
    a = build_dataset("letters", train=True, img_size=16, n_per_class=3)
    b = build_dataset("letters", train=True, img_size=16, n_per_class=3)
    c = build_dataset("letters", train=True, img_size=16, n_per_class=3, seed=1)
    t = build_dataset("letters", train=False, img_size=16, n_per_class=3)
    assert len(a) == 78 and torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images) and not torch.equal(a.images, t.images)
    assert np.bincount(a.targets.numpy()).tolist() == [3] * 26
    # every image has ink, and glyphs of one class vary (random font, size, shift, rotation)
    assert (a.images.flatten(1).amax(1) > 100).all()
    assert not torch.equal(a.images[0], a.images[26])
    s = build_dataset("symbols", train=False, img_size=16, n_per_class=2)
    assert len(s) == 2 * len(SYMBOLS) and 10 <= len(SYMBOLS) <= 15
    assert not any(ch.isalnum() for ch in SYMBOLS) and set(SYMBOLS).isdisjoint(LETTERS)


def test_font_digits_are_typeset_digits_with_the_handwritten_digits_classes():
    fonts = build_dataset("font_digits", train=True, img_size=16, n_per_class=4)
    hand = build_dataset("digits", train=True, img_size=16)
    assert fonts.classes == hand.classes == [str(i) for i in range(10)]  # a teacher's logits are the digits'
    assert np.bincount(fonts.targets.numpy()).tolist() == [4] * 10
    assert (fonts.images.flatten(1).amax(1) > 100).all()
    test = build_dataset("font_digits", train=False, img_size=16, n_per_class=4)
    assert not torch.equal(fonts.images, test.images)


def test_cifar100_pickle_folder(cifar100_root):
    train = build_dataset("cifar100", cifar100_root, train=True)
    test = build_dataset("cifar100", cifar100_root, train=False)
    assert len(train) == 64 and len(test) == 32
    mem = as_tensor_dataset(train, 32, 3)
    assert mem.images.shape == (64, 3, 32, 32)
    assert torch.equal(mem.images[5].permute(1, 2, 0), torch.from_numpy(train.data[5]))
    assert mem.targets[:4].tolist() == [0, 1, 2, 3]
    assert as_tensor_dataset(train, 224, 3) is None  # upsampling goes through the transforms


def test_offline_without_files_names_the_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"cifar-10-batches-py.*download=True.*--download"):
        build_dataset("cifar10", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="data root"):
        build_dataset("svhn", None)


def test_image_folder(imagefolder_root, tmp_path):
    r = resolve_recipe("vit_t", "imagefolder", {"img_size": 32})
    info = dataset_info("imagefolder")
    ds = build_dataset("imagefolder", imagefolder_root, train=False, transform=build_transform(r, info, 3, False))
    assert len(ds) == 12 and ds.classes == ["blue", "green", "red"]
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and y == 0
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="val/ or test/"):
        build_dataset("imagefolder", tmp_path / "empty", train=False)


def test_paper_transforms_on_grey_and_colour():
    on = resolve_recipe("vit_t", "digits", {"randaugment": "rand-m9-mstd0.5-inc1", "reprob": 0.25,
                                            "hflip": 0.5, "train_crop": "auto"})
    assert needs_sample_transforms(on) and not needs_sample_transforms(resolve_recipe("vit_t", "digits"))
    ds = build_dataset("digits", train=True, img_size=16, transform=build_transform(on, dataset_info("digits"), 1, True))
    x, _ = ds[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32
    big = resolve_recipe("convnext_f", "cifar100")
    tf = build_transform(big, dataset_info("cifar100"), 3, True)
    names = [type(t).__name__ for t in tf.transforms]
    assert "RandomResizedCropAndInterpolation" in names and "RandAugment" in names and "RandomErasing" in names
    from PIL import Image

    assert tf(Image.new("RGB", (32, 32))).shape == (3, 224, 224)
    ev = build_transform(big, dataset_info("cifar100"), 3, False)
    assert ev(Image.new("RGB", (32, 32))).shape == (3, 224, 224)


def test_unknown_option_is_an_error():
    with pytest.raises(ValueError, match="n_per_class"):
        build_dataset("digits", n_per_class=3)


def test_cifar_files_that_fail_the_checksum_are_never_unpickled(cifar100_root, tmp_path):
    import pickle

    assert len(build_dataset("cifar100", cifar100_root, train=True)) == 64  # the verified files read
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (cifar100_root / "cifar-100-python" / "train").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DatasetNotFoundError, match="md5 checksums.*not read"):
        build_dataset("cifar100", cifar100_root, train=True)
    assert not marker.exists()


def test_in_memory_sets_are_kept_under_the_data_root_and_read_back(tmp_path, monkeypatch):
    """digits / symbols built once are read back from {root}/.weightselect-cache (no scikit-learn
    import or glyph rendering in the next process), equal to a fresh build; a corrupt cached file
    is rebuilt; without a root nothing is written."""
    from weightselect.training import data

    built = {n: data.build_dataset(n, None, train=False, **o) for n, o in (("digits", {}), ("symbols", {"n_per_class": 3}))}
    assert not (tmp_path / ".weightselect-cache").exists()
    for name, options in (("digits", {}), ("symbols", {"n_per_class": 3})):
        first = data.build_dataset(name, tmp_path, train=False, **options)
        path = data.cache_file(name, tmp_path, False, 16, options)
        assert path.is_file() and path.parent == tmp_path / ".weightselect-cache"
        monkeypatch.setattr(data, "_digits", lambda *a: pytest.fail("digits built again"))
        monkeypatch.setattr(data, "_glyphs", lambda *a: pytest.fail("glyphs rendered again"))
        again = data.build_dataset(name, tmp_path, train=False, **options)
        monkeypatch.undo()
        for ds in (first, again):
            assert torch.equal(ds.images, built[name].images) and torch.equal(ds.targets, built[name].targets)
            assert ds.classes == built[name].classes
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
        assert torch.equal(data.build_dataset(name, tmp_path, train=False, **options).images, built[name].images)
    # another option or split is another file
    assert data.cache_file("symbols", tmp_path, False, 16, {"n_per_class": 4}) != data.cache_file("symbols", tmp_path, False, 16, {"n_per_class": 3})
    assert data.cache_file("digits", tmp_path, True, 16, {}) != data.cache_file("digits", tmp_path, False, 16, {})


def test_randaugment_posterize_at_full_magnitude_runs():
    """The paper's RandAugment (timm, "rand-m9-mstd0.5-inc1") keeps 0 bits in PosterizeIncreasing at
    magnitude 10, which Pillow 13 refuses ("bits must be between or equal to 1 and 8"): the locked
    Pillow must run it, giving a black image as timm intends."""
    from PIL import Image
    from timm.data.auto_augment import AugmentOp

    op = AugmentOp("PosterizeIncreasing", prob=1.0, magnitude=10, hparams={"magnitude_std": 0})
    img = Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8), "RGB")
    assert np.asarray(op(img)).max() == 0


def test_validation_option_holds_out_part_of_the_training_split(tmp_path):
    full = build_dataset("digits", tmp_path, train=True)
    held = build_dataset("digits", tmp_path, train=False, validation=300)
    rest = build_dataset("digits", tmp_path, train=True, validation=300)
    assert len(held) == 300 and len(rest) == len(full) - 300
    # every image of the two parts is a training image, each training image in exactly one part
    key = lambda img: img.numpy().tobytes()  # noqa: E731
    counts = {}
    for img in full.images:
        counts[key(img)] = counts.get(key(img), 0) + 1
    for img in torch.cat([held.images, rest.images]):
        counts[key(img)] -= 1
    assert all(v == 0 for v in counts.values())
    again = build_dataset("digits", tmp_path, train=False, validation=300)
    assert torch.equal(again.images, held.images) and torch.equal(again.targets, held.targets)
    with pytest.raises(ValueError, match="option validation must be a number of images between 1 and 999"):
        build_dataset("digits", tmp_path, train=False, validation=1000)
