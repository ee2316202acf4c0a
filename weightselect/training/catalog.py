"""The dataset catalog: names, classes, channels, default size and normalisation (no torch import).

The Snakefile and ``recipe.resolve_recipe`` read it at parse time; ``data.py`` builds the datasets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

__all__ = ["DatasetInfo", "DATASETS", "dataset_info", "IMAGENET_MEAN", "IMAGENET_STD", "LETTERS", "SYMBOLS",
           "DIGIT_GLYPHS", "GLYPH_SETS", "per_channel"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# No letters or digits (and no glyph that reads as one: no O-like or l-like marks).
SYMBOLS = ("+", "\u2212", "\u00d7", "\u00f7", "=", "%", "#", "@", "&", "$", "?", "!", "*")
# The ten digits as typeset (fonts, not handwriting): classes "0".."9" as scikit-learn's digits
DIGIT_GLYPHS = tuple("0123456789")
# The sets rendered from fonts, by name
GLYPH_SETS = {"letters": LETTERS, "symbols": SYMBOLS, "font_digits": DIGIT_GLYPHS}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_chans: int
    img_size: int  # default training resolution
    native_size: Optional[int]  # stored resolution when fixed (CIFAR: 32)
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    source: str  # what the files are and where they go

    def norm(self, in_chans: int) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """Mean/std for ``in_chans`` channels (grey versions of RGB sets use the average)."""
        return per_channel(self.mean, in_chans), per_channel(self.std, in_chans)


def per_channel(values: Sequence[float], in_chans: int) -> Tuple[float, ...]:
    """``values`` (a mean or std per RGB channel) for ``in_chans`` input channels: as they are when
    the counts match, their average for one channel, else repeated and cut to ``in_chans``."""
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    if in_chans == 1:
        return (sum(values) / len(values),)
    return tuple((values * in_chans)[:in_chans])


_GREY = ((0.5,), (0.5,))
DATASETS: Dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo("imagenet", 1000, 3, 224, None, IMAGENET_MEAN, IMAGENET_STD,
                    "an ImageFolder: <root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG"),
        DatasetInfo("cifar10", 10, 3, 224, 32, IMAGENET_MEAN, IMAGENET_STD,
                    "torchvision CIFAR10: <root>/cifar-10-batches-py/"),
        DatasetInfo("cifar100", 100, 3, 224, 32, IMAGENET_MEAN, IMAGENET_STD,
                    "torchvision CIFAR100: <root>/cifar-100-python/{train,test,meta}"),
        DatasetInfo("svhn", 10, 3, 224, 32, IMAGENET_MEAN, IMAGENET_STD,
                    "torchvision SVHN: <root>/train_32x32.mat and <root>/test_32x32.mat"),
        DatasetInfo("food101", 101, 3, 224, None, IMAGENET_MEAN, IMAGENET_STD,
                    "torchvision Food101: <root>/food-101/"),
        DatasetInfo("eurosat", 10, 3, 224, 64, IMAGENET_MEAN, IMAGENET_STD,
                    "torchvision EuroSAT (RGB): <root>/eurosat/2750/"),
        DatasetInfo("stl10", 10, 3, 224, 96, IMAGENET_MEAN, IMAGENET_STD,
                    "torchvision STL10: <root>/stl10_binary/"),
        DatasetInfo("flowers102", 102, 3, 224, None, IMAGENET_MEAN, IMAGENET_STD,
                    "torchvision Flowers102: <root>/flowers-102/"),
        DatasetInfo("pets", 37, 3, 224, None, IMAGENET_MEAN, IMAGENET_STD,
                    "torchvision OxfordIIITPet: <root>/oxford-iiit-pet/"),
        DatasetInfo("dtd", 47, 3, 224, None, IMAGENET_MEAN, IMAGENET_STD,
                    "torchvision DTD: <root>/dtd/"),
        DatasetInfo("imagefolder", 0, 3, 224, None, IMAGENET_MEAN, IMAGENET_STD,
                    "<root>/train/<class>/* and <root>/val/<class>/* (or test/)"),
        DatasetInfo("digits", 10, 1, 16, None, *_GREY, "scikit-learn's bundled digits (no files)"),
        DatasetInfo("letters", len(LETTERS), 1, 16, None, *_GREY, "rendered from bundled fonts"),
        DatasetInfo("symbols", len(SYMBOLS), 1, 16, None, *_GREY, "rendered from bundled fonts"),
        DatasetInfo("font_digits", len(DIGIT_GLYPHS), 1, 16, None, *_GREY,
                    "digits 0-9 rendered from bundled fonts (typeset, not handwritten)"),
    ]
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown dataset '{name}'; known: {', '.join(sorted(DATASETS))}") from None
