"""Plain helpers for the selection tests: cached timm models and random weights, and the paper's
uniform selection written out as a reference. Imported by name (``from selection_helpers import``),
so that no test imports a ``conftest`` module, whose name other test folders share."""
from __future__ import annotations

import functools
import zlib

import timm
import torch

SMALL_VIT = {"img_size": 32}  # shrinks pos_embed only; widths and depths are the real ones


@functools.lru_cache(maxsize=None)
def _model(name: str, kwargs: tuple) -> torch.nn.Module:
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)  # stable across processes
    return timm.create_model(name, **dict(kwargs)).eval()


def model(name: str, **kwargs) -> torch.nn.Module:
    """A cached randomly initialized timm model (do not modify it)."""
    return _model(name, tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=None)
def _random_sd(name: str, kwargs: tuple):
    with torch.device("meta"):
        shapes = timm.create_model(name, **dict(kwargs)).state_dict()
    gen = torch.Generator().manual_seed(len(name))
    return {
        k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else torch.zeros(v.shape, dtype=v.dtype)
        for k, v in shapes.items()
    }


def sd(name: str, **kwargs):
    """Random weights (normal) of a timm model's state dict; fast for large teachers."""
    return _random_sd(name, tuple(sorted(kwargs.items())))


def reference_uniform(wt: torch.Tensor, s_shape) -> torch.Tensor:
    """Uniform element selection as written in the paper's release (Algorithm 1), with the
    ``linspace(0, t - 1, s)`` end point stated for this project."""
    ws = wt.clone()
    for dim in range(wt.dim()):
        if wt.shape[dim] % s_shape[dim] == 0:
            step = wt.shape[dim] // s_shape[dim]
            indices = torch.arange(s_shape[dim]) * step
        else:
            indices = torch.round(torch.linspace(0, wt.shape[dim] - 1, s_shape[dim])).long()
        ws = torch.index_select(ws, dim, indices)
    assert ws.shape == torch.Size(s_shape)
    return ws
