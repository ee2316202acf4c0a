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

# timm model-name prefix -> recipe family (timm's convnext.py, vision_transformer.py, deit.py).
NAME_PREFIXES = (("convnext", "convnext"), ("vit_", "vit"), ("deit_", "vit"), ("deit3_", "vit"))
MODES = ("finetune", "probe")


class RecipeError(ValueError):
    """An unknown key, a value of the wrong type, or a model/dataset without a recipe."""


@dataclass
class Recipe:
    """Every knob of a training run (defaults: Table 13 with the ConvNeXt codebase's defaults)."""

    family: str = "convnext"
    dataset: str = "imagenet"
    mode: str = "finetune"  # finetune | probe (linear probe: frozen backbone, BN + linear head)
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
    eval_samples: Optional[int] = None  # a fixed, seeded subset of the test set (None: all of it)
    # model EMA
    ema: bool = False
    ema_decay: float = 0.9999
    ema_eval: bool = False  # evaluate and export the EMA weights
    # hardware
    amp: bool = True  # mixed precision on CUDA: bfloat16 where supported, else float16 + grad scaler
    compile: bool = False  # torch.compile the training model
    channels_last: Optional[bool] = None  # None: on CUDA for convolutional families (convnext)
    eval_batch_size: Optional[int] = None  # None: 1.5 x the batch per device
    # distillation (Table 4)
    distill: Optional[str] = None  # None | logit | feature
    distill_alpha: float = 1.0
    distill_tau: float = 1.0
    distill_hidden: Optional[int] = None  # feature KD: hidden width of the MLP (None: teacher dim)
    # pretraining objective (weightselect.training.ssl; Table 5's teachers)
    objective: str = "supervised"  # supervised | masked (MAE) | contrastive (DINO) | image_text (CLIP)
    mask_ratio: float = 0.6  # masked: share of patches masked (SimMIM's 0.6)
    ssl_temperature: float = 0.2  # contrastive: NT-Xent temperature

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
        """Check the values against the schema and each other; returns self. Raises RecipeError."""
        _check_schema(self.to_dict())
        if self.warmup_epochs and self.warmup_epochs >= self.epochs:
            raise RecipeError(
                f"recipe warmup_epochs={self.warmup_epochs} >= epochs={self.epochs}: the whole run would be "
                "warm-up; lower warmup_epochs (or leave it out: it then keeps its ratio to epochs)"
            )
        if self.objective != "supervised":
            clash = [k for k, on in (("mixup", self.mixup > 0), ("cutmix", self.cutmix > 0),
                                     ("distill", bool(self.distill)), ("mode probe", self.mode == "probe")) if on]
            if clash:
                raise RecipeError(f"recipe objective {self.objective} trains without labels: it takes no "
                                  f"{', '.join(clash)}; set mixup 0, cutmix 0, no distill, mode finetune")
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
        """A copy with ``overrides`` applied (checked by the schema, numbers cast to the field type)."""
        overrides = _numbers(overrides or {})
        check_keys(overrides, [f.name for f in dataclasses.fields(self)], "recipe")
        _check_schema(overrides, partial=True)
        values = {k: _cast(k, v) for k, v in overrides.items()}
        return dataclasses.replace(self, **values).validate()


def check_keys(values: Mapping[str, Any], known, what: str) -> None:
    """Raise RecipeError for keys not in ``known``, with a "did you mean" hint for each."""
    import difflib

    unknown = sorted(set(values) - set(known))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise RecipeError(f"unknown {what} key(s): {', '.join(hints)}. Known keys: {', '.join(sorted(known))}")


_CHOICES = {
    "lr_scaling": ["linear", "none"], "sched": ["cosine"], "opt": ["adamw", "adam", "sgd", "lamb", "lars"],
    "mixup_mode": ["batch", "pair", "elem"], "distill": [None, "logit", "feature"],
    "train_crop": [None, "auto", "rrc", "pad"], "family": ["convnext", "vit", "other"], "mode": list(MODES),
    "in_chans": [None, 1, 3], "interpolation": ["bicubic", "bilinear"],
    "objective": ["supervised", "masked", "contrastive", "image_text"],
}
_MINIMUM = {"batch_size": 1, "update_freq": 1, "epochs": 1, "img_size": 1, "warmup_epochs": 0,
            "recount": 1, "eval_batch_size": 1, "train_samples": 1, "eval_samples": 1, "weight_decay": 0,
            "min_lr": 0, "clip_grad": 0, "mixup": 0, "cutmix": 0, "distill_alpha": 0, "opt_eps": 0,
            "lr_base_batch": 1, "color_jitter": 0}
_UNIT = ("mixup_prob", "mixup_switch_prob", "reprob", "hflip", "smoothing", "drop_path", "ema_decay",
         "layer_decay", "crop_pct", "mask_ratio")


def _field_schema(tp: Any) -> Dict[str, Any]:
    optional = False
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = True, args[0]
    if typing.get_origin(tp) is tuple:
        n = len(typing.get_args(tp))
        schema: Dict[str, Any] = {"type": "array", "items": {"type": "number"}, "minItems": n, "maxItems": n}
    else:
        schema = {"type": {bool: "boolean", int: "integer", float: "number", str: "string"}[tp]}
    if optional:
        schema["type"] = [schema["type"], "null"]
    return schema


@functools.lru_cache(maxsize=1)
def recipe_schema() -> Dict[str, Any]:
    """The JSON schema of a recipe (every field optional, no other keys)."""
    props = {}
    for name, tp in _field_types().items():
        prop = _field_schema(tp)
        if name in _CHOICES:
            prop["enum"] = _CHOICES[name]
        if name in _MINIMUM:
            prop["minimum"] = _MINIMUM[name]
        if name in _UNIT:
            prop.update(minimum=0, maximum=1)
        if name in ("lr", "distill_tau", "ssl_temperature"):
            prop["exclusiveMinimum"] = 0
        props[name] = prop
    return {"type": "object", "properties": props, "additionalProperties": False}


def _numbers(values: Mapping[str, Any]) -> Dict[str, Any]:
    """Text that is a number, for a numeric field, as that number: YAML 1.1 (PyYAML) reads ``1e-3``
    and ``5E-2`` as text, as users type them in --set, recipe files and config.yaml."""
    out = dict(values)
    for key, value in values.items():
        tp = _base_type(key)
        if isinstance(value, str) and tp in (int, float):
            try:
                number = float(value)
            except ValueError:
                continue
            out[key] = int(number) if tp is int and number.is_integer() else number
    return out


def _check_schema(values: Mapping[str, Any], partial: bool = False) -> None:
    import math

    import jsonschema

    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RecipeError(f"recipe {key}={value!r}: not a finite number; give a number such as 1e-3")

    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(recipe_schema()).iter_errors(values))
    if error is not None:
        key = error.path[0] if error.path else "?"
        raise RecipeError(f"recipe {key}={values.get(key)!r}: {error.message}")


def _base_type(key: str) -> Any:
    """A recipe field's type without Optional (int, float, bool, str or a Tuple type); None for an
    unknown key."""
    tp = _field_types().get(key)
    if typing.get_origin(tp) is typing.Union:
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
    return tp


def _cast(key: str, value: Any) -> Any:
    """A schema-valid value as the field's Python type (int for 2.0, float for 0, tuple for lists)."""
    tp = _base_type(key)
    if value is None or tp in (bool, str):
        return value
    if typing.get_origin(tp) is tuple:
        return tuple(float(v) for v in value)
    return tp(value)


@functools.lru_cache(maxsize=1)
def _tables() -> Dict[str, Any]:
    with open(Path(__file__).with_name("recipes.yaml")) as fh:
        return yaml.safe_load(fh)


@functools.lru_cache(maxsize=None)
def _field_types() -> Dict[str, Any]:
    return typing.get_type_hints(Recipe)


def model_family(model: Any) -> str:
    """The recipe family (``convnext`` or ``vit``) of a short name, a timm name or a ModelSpec.

    Read from the timm name's prefix (``NAME_PREFIXES``), without importing timm. Raises RecipeError:
    for a name timm does not know, with the closest timm names (timm is imported for that message
    only); for a timm model outside the paper's families, saying so.
    """
    from weightselect.models import ModelSpec

    if isinstance(model, str) and model.lower() in FAMILY_ALIASES:
        return FAMILY_ALIASES[model.lower()]
    arch = ModelSpec.from_any(model).architecture
    if arch.lower() in FAMILY_ALIASES:
        return FAMILY_ALIASES[arch.lower()]
    for prefix, family in NAME_PREFIXES:
        if arch.startswith(prefix):
            return family
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency
        timm = None
    if timm is not None and not timm.is_model(arch):
        from weightselect.models import unknown_model_message

        raise RecipeError(f"{unknown_model_message(arch)} Or a short name of the paper's models: "
                          f"{', '.join(sorted(FAMILY_ALIASES))}.")
    raise RecipeError(
        f"no recipe family for model '{arch}': the paper's recipes cover ConvNeXt and ViT "
        f"({', '.join(sorted(FAMILY_ALIASES))} or timm names starting with "
        f"{', '.join(p for p, _ in NAME_PREFIXES)}); pass family=convnext|vit in the recipe or a full Recipe."
    )


def resolve_recipe(
    model_key: Any, dataset: str, overrides: Optional[Mapping[str, Any]] = None, mode: Optional[str] = None
) -> Recipe:
    """Table 13 + the (family, dataset) row of Table 14/15 + the family's base lr + overrides.

    ``mode="probe"`` (or ``mode: probe`` in the overrides) puts the linear-probe rows of
    ``recipes.yaml`` over that. An ``epochs`` override without ``warmup_epochs`` keeps the warm-up's
    ratio to the total. Raises RecipeError for an unknown key, value, model or dataset.
    """
    overrides = _numbers(overrides or {})
    mode = overrides.pop("mode", None) or mode or "finetune"
    family = overrides.pop("family", None) or model_family(model_key)
    if mode not in MODES:
        raise RecipeError(f"recipe mode={mode!r}: choose one of {list(MODES)}")
    values = _table_values(family, str(dataset).lower())
    if mode == "probe":
        values.update(_tables()["probe"])
    values["mode"] = mode
    recipe = Recipe().replace(values)
    check_keys(overrides, [f.name for f in dataclasses.fields(Recipe)], "recipe")
    if "epochs" in overrides and "warmup_epochs" not in overrides and values.get("warmup_epochs"):
        _check_schema({"epochs": overrides["epochs"]})
        overrides["warmup_epochs"] = values["warmup_epochs"] * int(overrides["epochs"]) / values["epochs"]
    return recipe.replace(overrides) if overrides else recipe


def _table_values(family: str, dataset: str) -> Dict[str, Any]:
    """Table 13 + family + dataset row as a dict (the recipe before overrides)."""
    from weightselect.training.catalog import DATASETS, dataset_info

    tables = _tables()
    if family not in tables["families"]:
        raise RecipeError(f"recipe family={family!r}: choose one of {sorted(tables['families'])}")
    rows = tables["families"][family]["datasets"]
    extra = tables.get("extra_datasets", {})
    if dataset in rows:
        row = dict(rows[dataset])
    elif dataset in extra:
        ref = extra[dataset]
        row = dict(rows[ref]) if isinstance(ref, str) else dict(ref)
    elif dataset in DATASETS:
        row = dict(rows["imagenet"])
    else:
        raise RecipeError(f"unknown dataset '{dataset}'; known: {', '.join(sorted(DATASETS))}")
    values: Dict[str, Any] = dict(tables["base"])
    values.update({k: v for k, v in tables["families"][family].items() if k != "datasets"})
    values.update(row)
    values.update(family=family, dataset=dataset, lr_base_batch=row.get("batch_size", values["batch_size"]))
    values["img_size"] = dataset_info(dataset).img_size
    return values


def load_overrides(path: str | Path) -> Dict[str, Any]:
    """Read a YAML mapping of recipe keys to values (``--recipe``).

    Raises RecipeError for a folder or a file that is not a mapping; DuplicateKeyError for a key
    given twice.
    """
    from weightselect.io import read_yaml

    if Path(path).is_dir():
        raise RecipeError(f"--recipe {path} is a folder; give a YAML file of recipe keys (key: value)")
    data = read_yaml(path) or {}
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
