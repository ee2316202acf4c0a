"""Initializations the paper compares against, applied in place to a built model.

- ``random``: timm's default init (truncated normal, std 0.02, for ViT/ConvNeXt/Swin linear layers;
  the model's own ``init_weights`` where it has one), seeded;
- ``xavier``: Xavier/Glorot uniform on every linear and convolution weight, zero biases (Table 3);
- ``kaiming``: Kaiming/He normal (fan_in, ReLU gain) on every linear and convolution weight (Table 3);
- ``mimetic``: mimetic initialization of self-attention (Trockman & Kolter, 2023, "Mimetic
  initialization of self-attention layers", ICML; Table 12 here). Their section 3 sets two targets
  with ``Z ~ N(0, I/d)``: ``W_q W_k^T ~ a1 Z1 + b1 I`` for *each head* (a rank-``head_dim``
  factorization, so each head attends to itself), and ``W_v W_proj ~ a2 Z2 - b2 I`` for the *whole
  layer*, whose value/projection product is the sum over heads, so it is factorized once at full
  rank (``a2 = b2 = 0.4``: its diagonal is -0.4). In timm's (out, in) layout the first is
  ``W_q^h.T @ W_k^h`` and the second ``W_proj @ W_v``.

Every baseline starts from the seeded default init, so parameters it does not touch (position
embeddings, norms, layer scales) are the timm defaults. L1-norm and magnitude pruning (Table 7)
need a teacher and are selection methods (``select(method="l1"|"magnitude")``).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Dict, Iterator

import torch
import torch.nn as nn

__all__ = ["BASELINES", "apply_baseline", "default_init", "MIMETIC_QK", "MIMETIC_VPROJ"]

from weightselect.selection.elements import one_thread
from weightselect.selection.names import BASELINES  # noqa: E402  (re-exported)

# (alpha, beta) of mimetic initialization, the values Trockman & Kolter use for small ViTs.
MIMETIC_QK = (0.7, 0.7)
MIMETIC_VPROJ = (0.4, 0.4)

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@contextlib.contextmanager
def _seeded(model: nn.Module, seed: int) -> Iterator[None]:
    """Seed the global RNGs for the block and restore them afterwards."""
    cuda = [d.index or 0 for d in {p.device for p in model.parameters()} if d.type == "cuda"]
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(seed))
        yield


def default_init(model: nn.Module) -> None:
    """timm's default init: every module's ``reset_parameters`` then the model's ``init_weights``
    (ViT, Swin, ResNet, Mixer, ...); otherwise truncated normal std 0.02 with zero biases on linear
    and convolution layers (what timm's ConvNeXt does)."""
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    init_weights = getattr(model, "init_weights", None)
    if callable(init_weights):
        init_weights()
        return
    from timm.layers import trunc_normal_

    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _classic(model: nn.Module, name: str) -> int:
    count = 0
    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            if name == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            count += 1
    return count


def _factor_pair(d: int, k: int, alpha: float, beta: float, sign: float):
    """Two (k, d) matrices A, B with A^T B the best rank-k approximation of alpha Z + sign beta I,
    ``Z ~ N(0, I/d)`` (the SVD split evenly: ``A = (U_k S_k^1/2)^T``, ``B = S_k^1/2 Vh_k``)."""
    z = torch.randn(d, d) / math.sqrt(d)
    m = alpha * z + sign * beta * torch.eye(d)
    u, s, vh = torch.linalg.svd(m)
    root = s[:k].sqrt()
    return (u[:, :k] * root).T.contiguous(), (root[:, None] * vh[:k]).contiguous()


@one_thread()
def _mimetic(model: nn.Module) -> int:
    count = 0
    for module in model.modules():
        qkv, proj, heads = getattr(module, "qkv", None), getattr(module, "proj", None), getattr(module, "num_heads", None)
        if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and heads):
            continue
        dim = qkv.in_features
        inner = qkv.out_features // 3
        hd = inner // heads
        w_qkv = qkv.weight.data
        w_proj = proj.weight.data
        for h in range(heads):  # W_q W_k^T per head: rank head_dim
            wq, wk = _factor_pair(dim, hd, *MIMETIC_QK, sign=1.0)
            w_qkv[h * hd: (h + 1) * hd] = wq.to(w_qkv)
            w_qkv[inner + h * hd: inner + (h + 1) * hd] = wk.to(w_qkv)
        # W_v W_proj for the whole layer (all heads together): rank min(inner, dim)
        wv_t, wproj_t = _factor_pair(dim, min(inner, dim), *MIMETIC_VPROJ, sign=-1.0)
        w_qkv[2 * inner: 2 * inner + wv_t.shape[0]] = wv_t.to(w_qkv)  # W_v (inner, dim)
        w_proj[:, : wproj_t.shape[0]] = wproj_t.T.to(w_proj)  # W_proj (dim, inner)
        if qkv.bias is not None:
            nn.init.zeros_(qkv.bias)
        if proj.bias is not None:
            nn.init.zeros_(proj.bias)
        count += 1
    if count == 0:
        raise ValueError(
            "mimetic initialization applies to self-attention (modules with qkv, proj and num_heads); "
            f"{type(model).__name__} has none"
        )
    return count


@torch.no_grad()
def apply_baseline(model: nn.Module, name: str, seed: int) -> Dict[str, Any]:
    """Initialize ``model`` in place with the baseline ``name`` (see ``BASELINES``), seeded."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline '{name}'; choose one of {', '.join(BASELINES)}")
    info: Dict[str, Any] = {"init": name, "kind": "baseline", "seed": int(seed)}
    with _seeded(model, seed):
        default_init(model)
        if name in ("xavier", "kaiming"):
            info["layers"] = _classic(model, name)
        elif name == "mimetic":
            info["attention_blocks"] = _mimetic(model)
            info["alpha_beta"] = {"qk": list(MIMETIC_QK), "vproj": list(MIMETIC_VPROJ)}
    return info
