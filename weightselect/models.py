"""Model specifications: a timm model name plus keyword arguments."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping

import torch.nn as nn

__all__ = ["ModelSpec", "UnknownModelError", "ModelKwargsError", "create_model"]


class UnknownModelError(ValueError):
    """The name is not a timm model."""


class ModelKwargsError(ValueError):
    """A keyword argument the timm model does not take (a misspelt kwarg)."""


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

    def create(self, pretrained: bool = False, **overrides: Any) -> nn.Module:
        return create_model(self, pretrained=pretrained, **overrides)


def _check_known(arch: str) -> None:
    import timm

    if not timm.is_model(arch):
        close = timm.list_models(f"{arch.split('_')[0]}*")[:8]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise UnknownModelError(f"unknown timm model '{arch}'.{hint} See timm.list_models().")


def create_model(spec: "ModelSpec | str | Mapping[str, Any]", pretrained: bool = False, **overrides: Any) -> nn.Module:
    """Build a timm model from a spec; ``overrides`` win over the spec's kwargs."""
    import timm

    spec = ModelSpec.from_any(spec)
    _check_known(spec.architecture)
    kwargs = {**spec.kwargs, **overrides}
    name = spec.name if pretrained else spec.architecture
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as exc:  # timm passes the kwargs to the model class: a bad name or value
        m = re.search(r"unexpected keyword argument '([^']+)'", str(exc))
        if m:
            raise ModelKwargsError(
                f"{spec.architecture} takes no keyword argument '{m.group(1)}' (model kwargs {kwargs}); "
                "fix the spelling (see the model's class in timm)"
            ) from None
        raise ModelKwargsError(
            f"{spec.architecture} cannot be built with the model kwargs {kwargs} ({exc}); "
            "check the values' types (see the model's class in timm)"
        ) from None
