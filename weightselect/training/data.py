"""Datasets: the paper's ten, any ImageFolder, and three offline sets for CPU studies.

* ``imagenet`` (ImageFolder with ``train/`` and ``val/``), ``cifar10``, ``cifar100``, ``svhn``,
  ``food101``, ``eurosat``, ``stl10``, ``flowers102``, ``pets``, ``dtd``: torchvision datasets with
  their official splits, read from ``root`` (downloaded there only with ``download=True``).
* ``imagefolder``: any ``root`` with ``train/`` and ``val/`` (or ``test/``) class folders.
* ``digits``: scikit-learn's shipped 8x8 handwritten digits (1,797 real images; the first 1,000
  train, the last 797 test), upsampled to ``img_size``.
* ``letters`` (A-Z), ``symbols`` (13 non-alphanumeric glyphs) and ``font_digits`` (0-9 typeset,
  the classes of ``digits``) rendered from the TrueType fonts that matplotlib ships, with random
  font, size, shift and rotation drawn from a seed.

The small sets are held in memory as uint8 tensors (:class:`TensorImageDataset`) so that a run
without sample-level augmentation never goes through PIL.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

__all__ = [
    "DatasetInfo",
    "DATASETS",
    "DatasetNotFoundError",
    "TensorImageDataset",
    "dataset_info",
    "build_dataset",
    "build_transform",
    "as_tensor_dataset",
    "needs_sample_transforms",
    "LETTERS",
    "SYMBOLS",
]

from weightselect.training.catalog import (  # noqa: E402  (re-exported)
    DATASETS, GLYPH_SETS, IMAGENET_MEAN, IMAGENET_STD, LETTERS, SYMBOLS, DatasetInfo, dataset_info,  # noqa: F401
)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not under its root (and no download was asked for)."""


# --------------------------------------------------------------------------- in-memory images
class TensorImageDataset(Dataset):
    """Images as a uint8 tensor (N, C, H, W) with integer targets.

    ``ds[i]`` gives ``(PIL image or transform(PIL image), target)`` like a torchvision dataset; the
    trainer reads ``images``/``targets`` directly when no per-sample transform is needed.
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, classes: Sequence[str], transform=None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        self.images = images
        self.targets = targets.long()
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        from PIL import Image

        arr = self.images[i].permute(1, 2, 0).numpy()
        img = Image.fromarray(arr[..., 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr, "RGB")
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[i])


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    x = images.float()
    mode = "bilinear" if size > images.shape[-1] else "area"
    x = torch.nn.functional.interpolate(x, size=(size, size), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return x.round().clamp(0, 255).to(torch.uint8)


def _set_channels(images: torch.Tensor, in_chans: int) -> torch.Tensor:
    c = images.shape[1]
    if c == in_chans:
        return images
    if c == 1 and in_chans == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and in_chans == 1:  # ITU-R 601-2 luma, as PIL's convert("L")
        w = torch.tensor([299, 587, 114], dtype=torch.int32).view(1, 3, 1, 1)
        return ((images.int() * w).sum(1, keepdim=True) / 1000).round().to(torch.uint8)
    raise ValueError(f"cannot convert {c}-channel images to {in_chans} channels")


def _digits(train: bool, img_size: int) -> TensorImageDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(d.images).float().mul(255.0 / 16.0).round().to(torch.uint8)[:, None]
    targets = torch.from_numpy(d.target).long()
    sl = slice(0, 1000) if train else slice(1000, None)
    return TensorImageDataset(_resize_uint8(images[sl], img_size), targets[sl], [str(i) for i in range(10)])


@functools.lru_cache(maxsize=1)
def _font_files() -> Tuple[str, ...]:
    """TrueType text fonts that matplotlib ships (DejaVu and STIX families)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = [
        "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
        "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
        "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
        "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    ]
    found = tuple(str(folder / n) for n in names if (folder / n).is_file())
    if not found:
        raise DatasetNotFoundError(f"no TrueType fonts found under {folder} (matplotlib's fonts)")
    return found


@functools.lru_cache(maxsize=None)
def _codepoints(path: str) -> frozenset:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as tt:
        return frozenset(tt["cmap"].getBestCmap())


@functools.lru_cache(maxsize=None)
def _fonts_with(char: str) -> Tuple[str, ...]:
    out = [path for path in _font_files() if ord(char) in _codepoints(path)]
    if not out:
        raise ValueError(f"no bundled font has a glyph for {char!r}")
    return tuple(out)


@functools.lru_cache(maxsize=8)
def render_glyphs(chars: Tuple[str, ...], n_per_class: int, img_size: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Render each char ``n_per_class`` times: random font, size, shift and rotation from ``seed``.

    Drawn on a 64x64 canvas (white glyph on black), then reduced to ``img_size`` with antialiasing.
    Returns uint8 images (N, 1, S, S) and targets, class-interleaved.
    """
    from PIL import Image, ImageDraw, ImageFont

    canvas = 64
    rng = np.random.default_rng(seed)
    font_cache: Dict[Tuple[str, int], Any] = {}
    images = np.empty((n_per_class * len(chars), 1, img_size, img_size), dtype=np.uint8)
    targets = np.empty(n_per_class * len(chars), dtype=np.int64)
    k = 0
    for _ in range(n_per_class):
        for label, ch in enumerate(chars):
            fonts = _fonts_with(ch)
            path = fonts[rng.integers(len(fonts))]
            size = int(rng.integers(34, 58))
            dx, dy = rng.uniform(-6, 6, size=2)
            angle = float(rng.uniform(-15, 15))
            key = (path, size)
            if key not in font_cache:
                font_cache[key] = ImageFont.truetype(path, size)
            img = Image.new("L", (canvas, canvas), 0)
            ImageDraw.Draw(img).text((canvas / 2 + dx, canvas / 2 + dy), ch, fill=255, font=font_cache[key], anchor="mm")
            img = img.rotate(angle, resample=Image.BICUBIC)
            img = img.resize((img_size, img_size), resample=Image.LANCZOS)
            images[k, 0] = np.asarray(img)
            targets[k] = label
            k += 1
    return torch.from_numpy(images), torch.from_numpy(targets)


def _glyphs(chars: Tuple[str, ...], train: bool, img_size: int, n_per_class: Optional[int], seed: int) -> TensorImageDataset:
    n = n_per_class or (400 if train else 100)
    # train and test come from disjoint streams of the same generator family
    images, targets = render_glyphs(chars, n, img_size, seed * 2 + (0 if train else 1))
    return TensorImageDataset(images, targets, list(chars))


# What the in-memory sets are made with; bump CACHE_FORMAT when _digits or render_glyphs change
# what they produce, so that cached copies made by older code are not read.
CACHE_FORMAT = 1
_MADE_WITH = {"digits": ("scikit-learn",), **{name: ("matplotlib", "pillow") for name in GLYPH_SETS}}


def cache_file(name: str, root: Optional[str | Path], train: bool, img_size: int, options: Dict[str, Any]) -> Optional[Path]:
    """Where a built digits/letters/symbols split is kept under the data root, so that each
    training process reads 0.1-1 MB instead of importing scikit-learn or rendering glyphs again:
    ``{root}/.weightselect-cache/{name}-{split}-{img_size}px-{key}.safetensors``, the key a digest
    of the name, split, size, options, CACHE_FORMAT and the versions of the libraries that make
    the set. None without a root."""
    if root is None:
        return None
    import hashlib
    import json
    from importlib.metadata import PackageNotFoundError, version

    try:
        made_with = [f"{lib}=={version(lib)}" for lib in _MADE_WITH[name]]
    except PackageNotFoundError:
        return None
    key = json.dumps([CACHE_FORMAT, name, train, img_size, sorted(options.items()), made_with], default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    split = "train" if train else "test"
    return Path(root).expanduser() / ".weightselect-cache" / f"{name}-{split}-{img_size}px-{digest}.safetensors"


def _in_memory_set(name: str, root, train: bool, size: int, options: Dict[str, Any]) -> TensorImageDataset:
    """A digits/letters/symbols split from :func:`cache_file` when there, else built (and kept
    there, written atomically; an unreadable or unwritable cache only costs the rebuild)."""
    import contextlib

    from weightselect.io import WeightsFileError, open_tensor_source, save_state_dict

    chars = GLYPH_SETS.get(name, ())
    classes = [str(i) for i in range(10)] if name == "digits" else list(chars)
    path = cache_file(name, root, train, size, options)
    if path is not None and path.is_file():
        with contextlib.suppress(OSError, WeightsFileError, KeyError, ValueError):
            with open_tensor_source(path) as src:
                return TensorImageDataset(src.get("images"), src.get("targets"), classes)
    if name == "digits":
        ds = _digits(train, size)
    else:
        ds = _glyphs(chars, train, size, options.get("n_per_class"), int(options.get("seed", 0)))
    if path is not None:
        with contextlib.suppress(OSError):
            save_state_dict({"images": ds.images, "targets": ds.targets}, path)
    return ds


# --------------------------------------------------------------------------- torchvision sets
def _missing(name: str, root: Path, exc: Exception) -> DatasetNotFoundError:
    info = DATASETS[name]
    return DatasetNotFoundError(
        f"dataset '{name}' not found under '{root}' ({exc}). Put the files there as {info.source}, "
        f"or pass download=True (CLI: --download) to fetch them with torchvision; "
        f"use data_root (CLI: --data-root) to point elsewhere."
    )


def _split_indices(n: int, fraction: float, seed: int, train: bool) -> List[int]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = int(round(n * fraction))
    return sorted(perm[:cut] if train else perm[cut:])


def _without_checksums(cls):
    """``cls`` (a torchvision dataset class) with its MD5 check of the files against the official
    sums skipped (and nothing else changed): for the rehearsal's toy files only (see toy_data)."""

    class Unchecked(cls):
        def _check_integrity(self) -> bool:
            """The files torchvision would check are there (their MD5 sums are not compared)."""
            root = Path(self.root)
            if hasattr(self, "train_list"):  # CIFAR-10/100, STL-10
                files = [root / self.base_folder / f for f, _ in self.train_list + self.test_list]
            elif hasattr(self, "split_list"):  # SVHN
                files = [root / self.filename]
            else:  # Flowers-102: its jpg folder and its two .mat files
                files = [self._images_folder] + [self._base_folder / self._file_dict[k][0] for k in ("label", "setid")]
            return all(f.exists() for f in files)

        def download(self) -> None:  # SVHN downloads without looking first
            if not self._check_integrity():
                super().download()

        def _load_meta(self) -> None:  # CIFAR checks its meta file's MD5 here
            import pickle

            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as fh:
                data = pickle.load(fh, encoding="latin1")
            self.classes = data[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    Unchecked.__name__ = Unchecked.__qualname__ = f"{cls.__name__}Unchecked"
    return Unchecked


def _torchvision(name: str, root: Path, train: bool, download: bool, transform, checksums: bool = True) -> Dataset:
    from torchvision import datasets as tv

    if not checksums:
        from types import SimpleNamespace

        from weightselect.training.toy_data import CHECKSUMMED

        tv = SimpleNamespace(**{k: _without_checksums(getattr(tv, k)) if k.lower() in CHECKSUMMED else getattr(tv, k)
                                for k in ("CIFAR10", "CIFAR100", "SVHN", "STL10", "Flowers102", "Food101",
                                          "OxfordIIITPet", "DTD", "EuroSAT")})
    kw = dict(transform=transform, download=download)
    split = "train" if train else "test"
    if name == "cifar10":
        return tv.CIFAR10(root, train=train, **kw)
    if name == "cifar100":
        return tv.CIFAR100(root, train=train, **kw)
    if name == "svhn":
        return tv.SVHN(root, split=split, **kw)
    if name == "stl10":
        return tv.STL10(root, split=split, **kw)
    if name == "food101":
        return tv.Food101(root, split=split, **kw)
    if name == "pets":
        return tv.OxfordIIITPet(root, split="trainval" if train else "test", **kw)
    if name == "flowers102":  # train + val (2,040 images) for training, the 6,149 test images
        if train:
            return ConcatDataset([tv.Flowers102(root, split="train", **kw), tv.Flowers102(root, split="val", **kw)])
        return tv.Flowers102(root, split="test", **kw)
    if name == "dtd":  # partition 1: train + val for training, test
        if train:
            return ConcatDataset([tv.DTD(root, split="train", **kw), tv.DTD(root, split="val", **kw)])
        return tv.DTD(root, split="test", **kw)
    if name == "eurosat":  # no official split: a fixed, seeded 80/20 split of the 27,000 images
        full = tv.EuroSAT(root, **kw)
        return Subset(full, _split_indices(len(full), 0.8, seed=0, train=train))
    raise KeyError(name)


# torchvision checks each CIFAR file's md5 against the official sums before unpickling it (also for
# files it did not download); tests/training/test_data.py holds it to that.
_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _image_folder(root: Path, train: bool, transform) -> Dataset:
    from torchvision.datasets import ImageFolder

    candidates = ["train"] if train else ["val", "test"]
    for sub in candidates:
        if (root / sub).is_dir():
            return ImageFolder(str(root / sub), transform=transform)
    raise DatasetNotFoundError(
        f"no {' or '.join(s + '/' for s in candidates)} folder under '{root}': an image folder dataset "
        f"is <root>/train/<class>/<image> and <root>/val/<class>/<image> (or test/)"
    )


def _validation_split(name: str, root, train: bool, count: Any, **kwargs: Any) -> Dataset:
    """The held-out part (``train=False``) or the rest of the training split (see build_dataset)."""
    full = build_dataset(name, root, True, **kwargs)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count < len(full):
        raise ValueError(f"dataset '{name}': option validation must be a number of images between 1 and "
                         f"{len(full) - 1} (its training split has {len(full)}), got {count!r}")
    held = _split_indices(len(full), count / len(full), seed=0, train=True)
    index = held if not train else sorted(set(range(len(full))) - set(held))
    if isinstance(full, TensorImageDataset):
        return TensorImageDataset(full.images[index], full.targets[index], full.classes, full.transform)
    return Subset(full, index)


def build_dataset(
    name: str,
    root: Optional[str | Path] = None,
    train: bool = True,
    *,
    img_size: Optional[int] = None,
    in_chans: Optional[int] = None,
    transform: Optional[Callable] = None,
    download: bool = False,
    **options: Any,
) -> Dataset:
    """Build the train or test split of a dataset.

    ``img_size``/``in_chans`` shape the in-memory sets (digits, letters, symbols); for file-based
    sets they are applied by ``transform``. Options: ``n_per_class`` and ``seed`` for letters and
    symbols; ``checksums`` (default True) for the sets torchvision checks against the official MD5
    sums (``toy_data.CHECKSUMMED``): False skips only that check, for the rehearsal's toy files
    (an unverified CIFAR file is unpickled: never for downloaded data). ``validation``: N (every
    dataset) holds out N images of the training split, drawn with seed 0: the "test" split is then
    those N and the training split the rest, for choosing hyper-parameters without the test set.
    Returns a torchvision-style dataset (``ds[i] -> (image, target)``).
    """
    if "validation" in options:
        return _validation_split(name, root, train, options.pop("validation"), img_size=img_size,
                                 in_chans=in_chans, transform=transform, download=download, **options)
    name = name.lower()
    info = dataset_info(name)
    size = int(img_size or info.img_size)
    chans = int(in_chans or info.in_chans)
    from weightselect.training.toy_data import CHECKSUMMED

    allowed = {"n_per_class", "seed"} if name in GLYPH_SETS else set()
    if name in CHECKSUMMED:
        allowed = {"checksums"}
    if set(options) - allowed:
        raise ValueError(f"dataset '{name}' takes no option(s) {sorted(set(options) - allowed)}; allowed: "
                         f"{sorted(allowed)}" + ("" if "checksums" not in options else
                                                 f" (checksums: only {', '.join(sorted(CHECKSUMMED))} have an MD5 check)"))
    checksums = options.pop("checksums", True)
    if not isinstance(checksums, bool):
        raise ValueError(f"dataset '{name}': option checksums must be true or false, got {checksums!r}")
    if name == "digits" or name in GLYPH_SETS:
        ds = _in_memory_set(name, root, train, size, options)
        ds = TensorImageDataset(_set_channels(ds.images, chans), ds.targets, ds.classes, transform)
        return ds
    if root is None:
        raise DatasetNotFoundError(
            f"dataset '{name}' needs a data root (data_root=..., CLI --data-root) holding {info.source}"
        )
    root = Path(root).expanduser()
    if name in ("imagenet", "imagefolder"):
        return _image_folder(root, train, transform)
    try:
        return _torchvision(name, root, train, download, transform, checksums)
    except OSError as exc:  # urllib's URLError and socket errors are OSErrors; so are full disks
        if not download or isinstance(exc, FileNotFoundError) or getattr(exc, "filename", None):
            raise
        raise DatasetNotFoundError(
            f"dataset '{name}': the download failed ({getattr(exc, 'reason', exc)}): this machine may have no "
            f"network; download it where there is internet and copy the files into --data-root {root} "
            f"({info.source})"
        ) from None
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted ..."
        if download:
            raise
        folder = _CIFAR_FOLDERS.get(name)
        if folder and (root / folder).is_dir():
            raise DatasetNotFoundError(
                f"dataset '{name}': the files under '{root / folder}' do not match the official CIFAR md5 "
                "checksums, so they are not read (torchvision unpickles them: only verified files are opened). "
                "Download them again with --download into an empty --data-root."
            ) from None
        raise _missing(name, root, exc) from exc
    except FileNotFoundError as exc:
        if download:
            raise
        raise _missing(name, root, exc) from exc


def dataset_classes(ds: Dataset) -> Optional[List[str]]:
    while isinstance(ds, Subset):
        ds = ds.dataset
    if isinstance(ds, ConcatDataset):
        ds = ds.datasets[0]
    return list(getattr(ds, "classes", []) or []) or None


def as_tensor_dataset(ds: Dataset, img_size: int, in_chans: int) -> Optional[TensorImageDataset]:
    """An in-memory copy of ``ds`` at ``img_size``/``in_chans`` when its images are stored as an
    array at that size already (in-memory sets, CIFAR, SVHN, STL-10); otherwise None."""
    if isinstance(ds, TensorImageDataset):
        if ds.images.shape[-1] != img_size:
            return None
        return TensorImageDataset(_set_channels(ds.images, in_chans), ds.targets, ds.classes)
    data = getattr(ds, "data", None)
    labels = getattr(ds, "targets", None)
    if labels is None:
        labels = getattr(ds, "labels", None)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 4 or labels is None:
        return None
    images = torch.from_numpy(data)
    if images.shape[-1] == 3 and images.shape[1] != 3:  # CIFAR stores NHWC
        images = images.permute(0, 3, 1, 2)
    if images.shape[-1] != img_size or images.shape[-2] != img_size:
        return None
    return TensorImageDataset(
        _set_channels(images.contiguous(), in_chans), torch.as_tensor(np.asarray(labels)), getattr(ds, "classes", [])
    )


# --------------------------------------------------------------------------- transforms
class _ToMode:
    """Convert a PIL image to ``L`` or ``RGB`` (picklable, for loader workers)."""

    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, img):
        return img if img.mode == self.mode else img.convert(self.mode)

    def __repr__(self) -> str:
        return f"ToMode({self.mode})"


def needs_sample_transforms(recipe) -> bool:
    """Whether the recipe's training input needs per-image (PIL) augmentation."""
    return bool(
        recipe.train_crop
        or recipe.randaugment
        or (recipe.color_jitter or 0) > 0
        or recipe.hflip > 0
        or recipe.reprob > 0
    )


def build_transform(recipe, info: DatasetInfo, in_chans: int, train: bool):
    """The ConvNeXt codebase's transforms, built with timm (train) or torchvision (eval).

    Train: random-resized crop (bicubic) or, at 32 px and below, a random crop with 4 px padding;
    horizontal flip; RandAugment or colour jitter; normalisation; random erasing. Each part is off
    when its recipe knob is null/0. Eval: resize to img_size / crop_pct and centre crop above 32 px.
    """
    from torchvision import transforms as T

    size = recipe.img_size
    mean, std = info.norm(in_chans)
    mode = _ToMode("L" if in_chans == 1 else "RGB")
    interp = T.InterpolationMode.BICUBIC if recipe.interpolation == "bicubic" else T.InterpolationMode.BILINEAR
    if train and needs_sample_transforms(recipe):
        from timm.data import create_transform

        tf = create_transform(
            input_size=(in_chans, size, size),
            is_training=True,
            hflip=recipe.hflip,
            color_jitter=recipe.color_jitter or 0.0,
            auto_augment=recipe.randaugment,
            interpolation=recipe.interpolation,
            re_prob=recipe.reprob,
            re_mode=recipe.remode,
            re_count=recipe.recount,
            mean=mean,
            std=std,
        )
        crop = recipe.train_crop
        if crop == "auto":
            crop = "rrc" if size > 32 else "pad"
        if crop == "pad":
            tf.transforms[0] = T.RandomCrop(size, padding=4)
        elif crop is None:
            tf.transforms[0] = T.Resize((size, size), interpolation=interp)
        if in_chans == 1:
            # timm's RandAugment and colour jitter expect RGB; work in RGB, return one channel
            tf.transforms.insert(0, _ToMode("RGB"))
        else:
            tf.transforms.insert(0, mode)
        return _fix_grey_order(tf, in_chans)
    steps: List[Any] = [mode]
    if size > 32 and (info.native_size or 0) != size:
        steps += [T.Resize(int(size / recipe.crop_pct), interpolation=interp), T.CenterCrop(size)]
    else:
        steps.append(T.Resize((size, size), interpolation=interp))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def _fix_grey_order(tf, in_chans: int):
    """Place the grey conversion just before ToTensor (PIL stages end there)."""
    if in_chans != 1:
        return tf
    from torchvision import transforms as T

    steps = [t for t in tf.transforms if not (isinstance(t, _ToMode) and t.mode == "L")]
    for i, t in enumerate(steps):
        if isinstance(t, (T.ToTensor, T.PILToTensor)) or type(t).__name__ in ("MaybeToTensor", "ToTensor", "ToNumpy"):
            steps.insert(i, _ToMode("L"))
            break
    else:
        raise ValueError("cannot find the tensor conversion in the timm transform")
    return T.Compose(steps)
