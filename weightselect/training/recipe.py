"""The training recipe as data: Table 13 (base) and Tables 14/15 (per dataset) of the paper.

``resolve_recipe("vit_t", "cifar100")`` gives a :class:`Recipe` with every knob of a run; a dict or
a YAML file overrides it key by key (unknown keys are an error). The numbers live in
``recipes.yaml`` beside this module.

Learning rate and batch size: the tables give, per dataset, the *total* batch size of one
optimizer step (``batch_size`` = batch per device x ``update_freq`` x devices) and the recipe's
codebase uses the base lr (4e-3 for ConvNeXt-F, 2e-3 for ViT-T) unchanged at that batch size (the
official commands: ViT-T on CIFAR-100 uses ``--lr 2e-3`` at 8 x 64 = 512 images). When a run
changes ``batch_size`` the lr is scaled linearly from that reference, ``lr * batch_size /
lr_base_batch`` (``lr_scaling: none`` turns this off).
"""
from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml

__all__ = [
    "Recipe",
    "RecipeError",
    "FAMILY_ALIASES",
    "PAPER_DATASETS",
    "model_family",
    "resolve_recipe",
    "load_overrides",
    "parse_set_options",
]

PAPER_DATASETS = (
    "cifar10", "cifar100", "pets", "flowers102", "stl10", "food101", "dtd", "svhn", "eurosat", "imagenet",
)

# Short names used in the paper and the workflow -> recipe family.
FAMILY_ALIASES = {
    "convnext": "convnext",
    "convnext_f": "convnext",
    "convnext_femto": "convnext",
    "vit": "vit",
    "vit_t": "vit",
    "vit_tiny": "vit",
}

# timm model module -> recipe family (for full timm names such as ``vit_small_patch16_224``).
_MODULE_FAMILIES = {"convnext": "convnext", "vision_transformer": "vit", "deit": "vit"}


class RecipeError(ValueError):
    """An unknown key, a value of the wrong type, or a model/dataset without a recipe."""


@dataclass
class Recipe:
    """Every knob of a training run (defaults: Table 13 with the ConvNeXt codebase's defaults)."""

    family: str = "convnext"
    dataset: str = "imagenet"
    # optimizer and schedule
    opt: str = "adamw"
    lr: float = 4e-3  # base lr at lr_base_batch
    lr_base_batch: int = 4096
    lr_scaling: str = "linear"  # linear | none
    weight_decay: float = 0.05
    opt_betas: Tuple[float, float] = (0.9, 0.999)
    opt_eps: float = 1e-8
    batch_size: int = 4096  # total per optimizer step
    update_freq: int = 1  # gradient accumulation steps
    epochs: int = 300
    sched: str = "cosine"
    warmup_epochs: float = 50
    min_lr: float = 1e-6
    layer_decay: Optional[float] = None
    clip_grad: Optional[float] = None
    # model
    drop_path: float = 0.0
    layer_scale: Optional[float] = 1e-6
    head_init_scale: Optional[float] = None
    # input and augmentation
    img_size: int = 224
    in_chans: Optional[int] = None  # None: the dataset's
    train_crop: Optional[str] = "auto"  # auto: random-resized crop (> 32 px) or padded crop; rrc | pad | null
    randaugment: Optional[str] = "rand-m9-mstd0.5-inc1"
    color_jitter: Optional[float] = 0.4  # timm applies it only when randaugment is off
    interpolation: str = "bicubic"
    hflip: float = 0.5
    reprob: float = 0.25
    remode: str = "pixel"
    recount: int = 1
    crop_pct: float = 0.875  # eval resize/crop for images larger than 32 pixels
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    smoothing: float = 0.1
    train_samples: Optional[int] = None  # a fixed, seeded subset of the training set
    # model EMA
    ema: bool = False
    ema_decay: float = 0.9999
    ema_eval: bool = False  # evaluate and export the EMA weights
    # hardware
    amp: bool = True  # mixed precision on CUDA (float16 + grad scaler); ignored on CPU
    eval_batch_size: Optional[int] = None  # None: 1.5 x the batch per device
    # distillation (Table 4)
    distill: Optional[str] = None  # None | logit | feature
    distill_alpha: float = 1.0
    distill_tau: float = 1.0
    distill_hidden: Optional[int] = None  # feature KD: hidden width of the MLP (None: teacher dim)

    # ------------------------------------------------------------------ derived values
    @property
    def scaled_lr(self) -> float:
        """The peak lr used for this run's total batch size."""
        if self.lr_scaling == "none":
            return self.lr
        return self.lr * self.batch_size / self.lr_base_batch

    @property
    def mixup_active(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def batch_per_device(self, world_size: int = 1) -> int:
        per = self.batch_size // (self.update_freq * world_size)
        if per * self.update_freq * world_size != self.batch_size or per < 1:
            raise RecipeError(
                f"batch_size {self.batch_size} is not divisible by update_freq {self.update_freq} x "
                f"{world_size} device(s); set batch_size or update_freq so that it is"
            )
        return per

    def validate(self) -> "Recipe":
        choices = {
            "lr_scaling": ("linear", "none"),
            "sched": ("cosine",),
            "opt": ("adamw", "adam", "sgd", "lamb", "lars"),
            "mixup_mode": ("batch", "pair", "elem"),
            "distill": (None, "logit", "feature"),
            "train_crop": (None, "auto", "rrc", "pad"),
            "family": tuple(sorted(set(FAMILY_ALIASES.values()))) + ("other",),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise RecipeError(f"recipe {key}={getattr(self, key)!r}: choose one of {list(allowed)}")
        for key in ("batch_size", "update_freq", "epochs", "img_size"):
            if getattr(self, key) < 1:
                raise RecipeError(f"recipe {key} must be >= 1, got {getattr(self, key)}")
        if self.warmup_epochs < 0 or self.lr <= 0:
            raise RecipeError("recipe warmup_epochs must be >= 0 and lr > 0")
        for key in ("mixup_prob", "mixup_switch_prob", "reprob", "hflip", "smoothing"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise RecipeError(f"recipe {key} must lie in [0, 1], got {getattr(self, key)}")
        if self.in_chans not in (None, 1, 3):
            raise RecipeError(f"recipe in_chans must be 1, 3 or null, got {self.in_chans}")
        return self

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["opt_betas"] = list(self.opt_betas)
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Recipe":
        return cls().replace(values)

    def replace(self, overrides: Optional[Mapping[str, Any]]) -> "Recipe":
        """A copy with ``overrides`` applied (values coerced to each field's type)."""
        if not overrides:
            return dataclasses.replace(self).validate()
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            import difflib

            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise RecipeError(
                f"unknown recipe key(s): {', '.join(hints)}. Known keys: {', '.join(sorted(known))}"
            )
        values = {k: _coerce(k, v) for k, v in overrides.items()}
        return dataclasses.replace(self, **values).validate()


@functools.lru_cache(maxsize=1)
def _tables() -> Dict[str, Any]:
    with open(Path(__file__).with_name("recipes.yaml")) as fh:
        return yaml.safe_load(fh)


@functools.lru_cache(maxsize=None)
def _field_types() -> Dict[str, Any]:
    return typing.get_type_hints(Recipe)


def _coerce(key: str, value: Any) -> Any:
    """Coerce ``value`` to the type of Recipe field ``key`` or raise a RecipeError naming both."""
    tp = _field_types()[key]
    optional = False
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0]
    if value is None or (optional and isinstance(value, str) and value.lower() in ("", "null", "none")):
        if optional:
            return None
        raise RecipeError(f"recipe {key} cannot be null")
    try:
        if tp is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, bool):
                return value
            raise TypeError
        if tp is int:
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError
            return int(float(value))
        if tp is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if typing.get_origin(tp) is tuple:
            items = tuple(float(v) for v in value)
            if len(items) != len(typing.get_args(tp)):
                raise TypeError
            return items
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise RecipeError(f"recipe {key}: {value!r} is not a valid {getattr(tp, '__name__', tp)}")


def model_family(model: Any) -> str:
    """The recipe family (``convnext`` or ``vit``) of a short name, a timm name or a ModelSpec."""
    from weightselect.models import ModelSpec

    if isinstance(model, str) and model.lower() in FAMILY_ALIASES:
        return FAMILY_ALIASES[model.lower()]
    spec = ModelSpec.from_any(model)
    arch = spec.architecture
    if arch.lower() in FAMILY_ALIASES:
        return FAMILY_ALIASES[arch.lower()]
    import timm

    if timm.is_model(arch):
        module = timm.models.model_entrypoint(arch).__module__.rsplit(".", 1)[-1]
        if module in _MODULE_FAMILIES:
            return _MODULE_FAMILIES[module]
    raise RecipeError(
        f"no recipe family for model '{arch}': the paper's recipes cover ConvNeXt and ViT "
        f"({', '.join(sorted(FAMILY_ALIASES))} or their timm names). Pass a full Recipe instead."
    )


def resolve_recipe(
    model_key: Any, dataset: str, overrides: Optional[Mapping[str, Any]] = None
) -> Recipe:
    """Table 13 + the (family, dataset) row of Table 14/15 + the family's base lr + overrides."""
    tables = _tables()
    family = model_family(model_key)
    dataset = str(dataset).lower()
    rows = tables["families"][family]["datasets"]
    extra = tables.get("extra_datasets", {})
    if dataset in rows:
        row = dict(rows[dataset])
    elif dataset in extra:
        ref = extra[dataset]
        row = dict(rows[ref]) if isinstance(ref, str) else dict(ref)
    else:
        from weightselect.training.data import DATASETS

        if dataset not in DATASETS:
            raise RecipeError(
                f"unknown dataset '{dataset}'; known: {', '.join(sorted(DATASETS))}"
            )
        row = dict(rows["imagenet"])
    values: Dict[str, Any] = dict(tables["base"])
    values.update({k: v for k, v in tables["families"][family].items() if k != "datasets"})
    values.update(row)
    values["family"] = family
    values["dataset"] = dataset
    values["lr_base_batch"] = row.get("batch_size", values["batch_size"])
    from weightselect.training.data import dataset_info

    try:
        values["img_size"] = dataset_info(dataset).img_size
    except KeyError:
        pass
    recipe = Recipe().replace(values)
    return recipe.replace(overrides) if overrides else recipe


def load_overrides(path: str | Path) -> Dict[str, Any]:
    """Read a YAML mapping of recipe keys to values."""
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe file is a YAML mapping of key: value, got {type(data).__name__}")
    return data


def parse_set_options(items) -> Dict[str, Any]:
    """``["epochs=10", "randaugment=null"]`` -> ``{"epochs": 10, "randaugment": None}`` (YAML values)."""
    out: Dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise RecipeError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return out
