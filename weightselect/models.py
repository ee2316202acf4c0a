"""Model specifications: a timm model name plus keyword arguments."""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence

if TYPE_CHECKING:  # torch is imported only when a model is built
    import torch
    import torch.nn as nn

__all__ = [
    "ModelSpec", "UnknownModelError", "ModelKwargsError", "ModelKwargError", "create_model", "model_keywords",
    "check_known", "load_weights", "WeightsMismatchError", "classifier_keys", "trained_dataset", "stored_spec",
    "on_meta",
]


class UnknownModelError(ValueError):
    """The name is not a timm model."""


class ModelKwargsError(ValueError):
    """A keyword argument the timm model does not take (a misspelling, usually), or a bad value.

    ``keyword``: the keyword the model does not take (None for a bad value).
    """

    def __init__(self, message: str, keyword: "str | None" = None):
        super().__init__(message)
        self.keyword = keyword


ModelKwargError = ModelKwargsError  # the trainer's name for it


class WeightsMismatchError(ValueError):
    """A state dict does not fit the model it is loaded into.

    ``mismatched``, ``unexpected`` and ``missing`` hold the names of each kind (shapes differ, the
    model lacks the name, the file lacks a model tensor that is not allowed to be missing).
    """

    def __init__(self, message: str, mismatched=(), unexpected=(), missing=()):
        super().__init__(message)
        self.mismatched, self.unexpected, self.missing = list(mismatched), list(unexpected), list(missing)


@dataclass(frozen=True)
class ModelSpec:
    """``timm.create_model(name, **kwargs)``; ``name`` may carry a pretrained tag (``name.tag``)."""

    name: str
    kwargs: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_any(cls, value: "ModelSpec | str | Mapping[str, Any]") -> "ModelSpec":
        if isinstance(value, ModelSpec):
            return value
        if isinstance(value, str):
            return cls(value, {})
        if isinstance(value, Mapping):
            unknown = set(value) - {"name", "kwargs"}
            if "name" not in value or unknown:
                raise ValueError(
                    f"a model spec is {{'name': <timm model>, 'kwargs': {{...}}}}; got keys {sorted(value)}"
                )
            return cls(str(value["name"]), dict(value.get("kwargs") or {}))
        raise TypeError(f"cannot make a model spec from {type(value).__name__}")

    @property
    def architecture(self) -> str:
        """The name without its pretrained tag."""
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str | None:
        return self.name.split(".", 1)[1] if "." in self.name else None

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs)}

    def create(self, pretrained: bool = False, **overrides: Any) -> "nn.Module":
        return create_model(self, pretrained=pretrained, **overrides)


def check_known(name: str) -> None:
    """Raise UnknownModelError, with the closest timm names, when timm has no model ``name`` (its
    pretrained tag, if any, is ignored). Imports timm."""
    _check_known(name.split(".", 1)[0])


def _check_known(arch: str) -> None:
    import timm

    if not timm.is_model(arch):
        raise UnknownModelError(unknown_model_message(arch))


def unknown_model_message(arch: str) -> str:
    """'unknown timm model ...' with the closest timm names (imports timm)."""
    import difflib

    import timm

    close = difflib.get_close_matches(arch, timm.list_models(), n=4, cutoff=0.6)
    if not close:
        close = timm.list_models(f"{arch.split('_')[0]}*")[:6]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"unknown timm model '{arch}'.{hint} See timm.list_models()."


MAX_SEED = 2 ** 63 - 1  # torch.manual_seed's range for a non-negative seed


def seed_arg(text: str) -> int:
    """argparse ``type`` of ``--seed``: an integer from 0 to 2**63 - 1 (ArgumentTypeError otherwise)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is not a seed: give an integer from 0 to 2**63 - 1")
    return value


def create_model(spec: "ModelSpec | str | Mapping[str, Any]", pretrained: bool = False, **overrides: Any) -> "nn.Module":
    """Build a timm model from a spec; ``overrides`` win over the spec's kwargs.

    Raises UnknownModelError for a name timm does not know and ModelKwargError (naming the keyword
    and the model, with close names) for a keyword the model does not take.
    """
    import timm

    spec = ModelSpec.from_any(spec)
    _check_known(spec.architecture)
    kwargs = {**spec.kwargs, **overrides}
    name = spec.name if pretrained else spec.architecture
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (AssertionError, ValueError) as exc:  # a constructor's own check (num_heads, img_size, ...)
        if isinstance(exc, ModelKwargsError) or not kwargs:
            raise
        text = str(exc) or "a check in its constructor failed"
        keyword = next((k for k in kwargs if k in text), next(iter(kwargs)))
        raise ModelKwargsError(
            f"{spec.architecture} cannot be built with the model kwargs {kwargs} ({text}); fix them in the "
            "model's kwargs", keyword=keyword) from None
    except TypeError as exc:
        bad = _unexpected_keyword(exc)
        if bad is None:
            raise ModelKwargsError(
                f"{spec.architecture} cannot be built with the model kwargs {kwargs} ({exc}); "
                "check the values' types (see the model's class in timm)"
            ) from None
        raise ModelKwargsError(_keyword_message(spec.architecture, bad), keyword=bad) from None


# In-place writes of values only (weight init: torch.nn.init, timm's trunc_normal_ and the like):
# skipped on meta tensors by on_meta(), as they have no values to write and keep shape and dtype.
META_SKIPPED_WRITES = frozenset({
    "uniform_", "normal_", "trunc_normal_", "trunc_normal_tf_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
    "lecun_normal_", "variance_scaling_", "fill_", "zero_", "copy_", "clamp_", "clamp_min_", "clamp_max_",
    "mul_", "add_", "sub_", "div_", "erfinv_", "exponential_", "bernoulli_", "random_", "log_normal_",
    "cauchy_", "geometric_", "masked_fill_", "abs_", "neg_", "sqrt_", "exp_", "fmod_", "addcmul_", "addcdiv_",
})


@contextlib.contextmanager
def on_meta():
    """Build modules on the meta device for their names, shapes, dtypes and structure only.

    As ``with torch.device("meta")``, except that the value writes of weight init
    (:data:`META_SKIPPED_WRITES` called on a meta tensor) return the tensor at once: a meta tensor
    has no values, and its meta kernels only check shapes (``clamp_``, in ``trunc_normal_``, runs
    torch's Python reference: ~90 ms of a 110 ms ConvNeXt or ViT build). Nothing a meta model holds
    changes; only a shape error inside an init write, which a real build would raise, is not raised.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    class _SkipWrites(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if getattr(func, "__name__", None) in META_SKIPPED_WRITES:  # torch.nn.init's pass the tensor by name
                target = args[0] if args else kwargs.get("tensor")
                if isinstance(target, torch.Tensor) and target.is_meta:
                    return target
            return func(*args, **kwargs)

    with torch.device("meta"), _SkipWrites():
        yield


def _unexpected_keyword(exc: TypeError) -> "str | None":
    m = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
    return m.group(1) if m else None


def model_keywords(arch: str) -> list:
    """The keyword arguments the class behind timm model ``arch`` takes (its ``__init__``)."""
    import inspect

    import timm

    with on_meta():
        cls = type(timm.create_model(arch))
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]


def _keyword_message(arch: str, bad: str) -> str:
    import difflib

    try:
        known = model_keywords(arch)
    except Exception:  # the name's own defaults do not build: no list to offer
        known = []
    close = difflib.get_close_matches(bad, known, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"{arch} takes no keyword argument '{bad}'; fix its spelling in the model's kwargs.{hint}"


def load_weights(
    model: "nn.Module", state_dict: "Mapping[str, torch.Tensor]", *, source: str,
    allow_missing: Iterable[str] = (), hint: str = "", error: type = WeightsMismatchError,
) -> Dict[str, List[str]]:
    """Load ``state_dict`` into ``model``: every model tensor must be there with its shape, except
    the names in ``allow_missing``; no unexpected name. The one place a state dict enters a model.

    Raises ``error`` (WeightsMismatchError or a subclass) naming ``source``, up to five names of
    each kind (shape mismatches, names the model lacks, model tensors missing from the file) and
    ``hint``. Returns {"missing": [...]} (the allowed missing names, left as they were).
    """
    own = model.state_dict()
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [k for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state_dict]
    allowed = set(allow_missing)
    not_allowed = [k for k in missing if k not in allowed]
    integer = [k for k, v in state_dict.items() if k in own and own[k].is_floating_point() and not v.is_floating_point()]
    if integer:
        shown = ", ".join(f"{k} ({str(state_dict[k].dtype).replace('torch.', '')})" for k in integer[:5])
        raise error(f"{source}: {len(integer)} tensor(s) hold integers where the model has floating-point weights: "
                    f"{shown}; an integer or quantized checkpoint: dequantize it, or use the float checkpoint",
                    [], [], [])
    if unexpected or mismatched or not_allowed:
        parts = []
        if mismatched:
            shapes = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:5]]
            parts.append(f"shape mismatches: {'; '.join(shapes)}")
        if unexpected:
            parts.append(f"names the model lacks: {', '.join(unexpected[:5])}")
        if not_allowed:
            parts.append(f"model tensors missing from the file: {', '.join(not_allowed[:5])}")
        message = f"{source} does not fit this {type(model).__name__}: " + "; ".join(parts)
        raise error(message + (f". {hint}" if hint else ""), mismatched, unexpected, not_allowed)
    model.load_state_dict(dict(state_dict), strict=False)
    return {"missing": missing}


def classifier_keys(model: "nn.Module") -> List[str]:
    """Parameter names of the model's classifier(s), from timm's ``pretrained_cfg['classifier']``
    or ``get_classifier()``."""
    names: List[str] = []
    cfg = getattr(model, "pretrained_cfg", None) or {}
    declared = cfg.get("classifier")
    if declared:
        names = [declared] if isinstance(declared, str) else list(declared)
    modules = dict(model.named_modules())
    names = [n for n in names if n in modules]
    if not names and hasattr(model, "get_classifier"):
        clf = model.get_classifier()
        names = [n for n, m in modules.items() if m is clf and n]
    sd_keys = model.state_dict().keys()
    return [k for k in sd_keys if any(k.startswith(n + ".") for n in names)]


def _trained(weights: "str | os.PathLike | None") -> Dict[str, Any]:
    """The JSON manifest beside a weights file this project's trainer wrote ({} without one)."""
    from weightselect.io import manifest_path, read_json

    if not weights:
        return {}
    mpath = manifest_path(weights)
    manifest = read_json(mpath) if mpath.is_file() else {}
    return manifest if isinstance(manifest, dict) else {}


def trained_dataset(weights: "str | os.PathLike | None") -> Optional[str]:
    """The catalog dataset (``weightselect.training.catalog.DATASETS``) that a model pretrained by
    this project's trainer was trained on: the ``final.dataset`` of the JSON manifest beside its
    weights file (``x.safetensors`` -> ``x.json``); None without a weights file, a manifest or a
    catalog name there."""
    return _catalog_dataset(_trained(weights))


def _catalog_dataset(manifest: Mapping[str, Any]) -> Optional[str]:
    from weightselect.training.catalog import DATASETS

    dataset = (manifest.get("final") or {}).get("dataset")
    return dataset if dataset in DATASETS else None


def trained_img_size(weights: "str | os.PathLike | None") -> Optional[int]:
    """The input resolution (pixels, square) a model pretrained by this project's trainer was
    trained at: its manifest's recipe ``img_size``, else the default of the dataset it was trained
    on (``DatasetInfo.img_size``, as the recipe resolves it); None as for ``trained_dataset``."""
    from weightselect.training.catalog import DATASETS

    manifest = _trained(weights)
    dataset = _catalog_dataset(manifest)
    if dataset is None:
        return None
    size = (manifest.get("recipe") or {}).get("img_size")
    return int(size) if isinstance(size, int) and size > 0 else DATASETS[dataset].img_size


def input_norm(model: "nn.Module", weights: "str | os.PathLike | None" = None):
    """``(mean, std, source)``: the normalization of the input a pretrained model expects, one value
    per input channel on the 0-1 pixel scale (``model.in_chans`` channels; timm's data config has
    three). From, first found: the catalog dataset a weights file of this project's trainer was
    trained on (``trained_dataset``: that dataset's mean/std), else the model's timm
    ``pretrained_cfg`` (``mean``/``std``, what ``timm.data.resolve_data_config`` gives; timm's
    ImageNet defaults without one). ``source`` says which, for manifests and logs."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from weightselect.training.catalog import per_channel

    cfg = getattr(model, "pretrained_cfg", None) or {}
    in_chans = int(getattr(model, "in_chans", 0) or (cfg.get("input_size") or (3,))[0])
    dataset = trained_dataset(weights)
    if dataset is not None:
        from weightselect.io import manifest_path
        from weightselect.training.catalog import DATASETS

        mean, std = DATASETS[dataset].norm(in_chans)
        return mean, std, f"{manifest_path(weights).name}: trained on {dataset}"
    mean, std = cfg.get("mean") or IMAGENET_DEFAULT_MEAN, cfg.get("std") or IMAGENET_DEFAULT_STD
    return per_channel(mean, in_chans), per_channel(std, in_chans), "timm pretrained_cfg"


def stored_spec(spec: "ModelSpec | str | Mapping[str, Any]", shapes: Mapping[str, Sequence[int]],
                weights: "str | os.PathLike | None" = None) -> ModelSpec:
    """``spec`` with the ``num_classes`` / ``in_chans`` that stored weights were made with, for the
    keys its kwargs leave out, so that the model it builds takes those weights. ``shapes``: the
    stored tensors' ``{name: shape}``; ``weights``: the weights file, if any. Taken from, first found:

    1. the manifest beside ``weights`` of a model pretrained by this project's trainer
       (:func:`trained_dataset`): its dataset's ``num_classes`` and ``in_chans``;
    2. the stored classifier: ``num_classes`` = the rows of its weight (the model is built on the
       meta device to name the classifier; no memory);
    3. the spec's pretrained tag (``vit_small_patch16_224.augreg_in21k``: 21,843) from timm's
       pretrained config: a hub teacher's weights without a classifier (``num_classes`` 0).

    Imports timm and torch; raises as :func:`create_model` does for a spec that does not build.
    """
    spec = ModelSpec.from_any(spec)
    fill = _manifest_fill(spec, weights)
    if "num_classes" not in spec.kwargs and "num_classes" not in fill:
        fill.update(_stored_head_fill(spec, shapes))
    return ModelSpec(spec.name, {**spec.kwargs, **fill}) if fill else spec


def _manifest_fill(spec: ModelSpec, weights) -> Dict[str, Any]:
    """num_classes / in_chans from the dataset of the manifest beside ``weights``, those the spec lacks."""
    from weightselect.training.catalog import DATASETS

    dataset = trained_dataset(weights)
    if dataset is None:
        return {}
    info = DATASETS[dataset]
    return {k: v for k, v in (("num_classes", info.num_classes), ("in_chans", info.in_chans)) if k not in spec.kwargs}


def _stored_head_fill(spec: ModelSpec, shapes: Mapping[str, Sequence[int]]) -> Dict[str, Any]:
    """num_classes from the stored classifier's rows where they differ from the model's default;
    without a stored classifier, the num_classes of the spec's pretrained tag where it has one."""
    import timm

    with on_meta():
        probe = create_model(spec)
    stored = [tuple(shapes[k]) for k in classifier_keys(probe) if k.endswith("weight") and k in shapes]
    for shape in stored:
        if shape[0] != getattr(probe, "num_classes", shape[0]):
            return {"num_classes": int(shape[0])}
    if stored or spec.tag is None:
        return {}
    cfg = timm.models.get_pretrained_cfg(spec.name)
    return {"num_classes": cfg.num_classes} if cfg is not None and cfg.num_classes is not None else {}
