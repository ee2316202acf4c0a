"""Model specifications: a timm model name plus keyword arguments."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Mapping

if TYPE_CHECKING:  # torch is imported only when a model is built
    import torch.nn as nn

__all__ = ["ModelSpec", "UnknownModelError", "ModelKwargError", "create_model", "model_keywords"]


class UnknownModelError(ValueError):
    """The name is not a timm model."""


class ModelKwargError(ValueError):
    """A model keyword argument the model does not take (a misspelling, usually)."""


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
    except TypeError as exc:
        bad = _unexpected_keyword(exc)
        if bad is None:
            raise
        raise ModelKwargError(_keyword_message(spec.architecture, bad)) from None


def _unexpected_keyword(exc: TypeError) -> "str | None":
    import re

    m = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
    return m.group(1) if m else None


def model_keywords(arch: str) -> list:
    """The keyword arguments the class behind timm model ``arch`` takes (its ``__init__``)."""
    import inspect

    import timm
    import torch

    with torch.device("meta"):
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
    return f"model '{arch}' takes no keyword '{bad}' (check --model-kwargs / the model's kwargs).{hint}"
