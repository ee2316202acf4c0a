"""Token layouts of ViT-like models: prefix tokens and the patch grid behind ``pos_embed``.

A timm ViT's position embedding is ``(1, embed_prefix + grid_h * grid_w, width)``, where
``embed_prefix`` is the model's ``num_prefix_tokens`` (class, register, distillation tokens) unless
``no_embed_class`` is set (then 0). These are read from the models (timm exposes
``num_prefix_tokens``, ``no_embed_class`` and ``patch_embed.grid_size``), never guessed from the
token count. Only a teacher given as a weights file has no model: its prefix tokens are then counted
from its ``cls_token``/``reg_token``/``dist_token`` tensors and its grid is taken as square, which
is what timm's own ``checkpoint_filter_fn`` assumes when it loads a file into another image size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["TokenLayout", "model_layout", "file_layout", "resample_pos_embed"]


@dataclass(frozen=True)
class TokenLayout:
    """``prefix``: prefix tokens of the model (class + registers + distillation);
    ``embed_prefix``: how many of them have a position embedding; ``grid``: patch grid (h, w)."""

    prefix: int
    embed_prefix: int
    grid: Tuple[int, int]

    @property
    def tokens(self) -> int:
        return self.embed_prefix + self.grid[0] * self.grid[1]

    def describe(self) -> str:
        kept = "with" if self.embed_prefix else "without"
        return f"{self.grid[0]}x{self.grid[1]} grid, {self.prefix} prefix tokens ({kept} position embeddings)"


def model_layout(model: Optional[nn.Module]) -> Optional[TokenLayout]:
    """The layout of a built (or meta) timm model with ``pos_embed``; None when it has none."""
    if model is None or getattr(model, "pos_embed", None) is None:
        return None
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is None or not hasattr(model, "num_prefix_tokens"):
        return None
    prefix = int(model.num_prefix_tokens)
    embed_prefix = 0 if getattr(model, "no_embed_class", False) else prefix
    layout = TokenLayout(prefix, embed_prefix, (int(grid[0]), int(grid[1])))
    if layout.tokens != model.pos_embed.shape[1]:  # dynamic-size or other layouts: not ours to guess
        return None
    return layout


def _prefix_from_keys(shapes: Mapping[str, Tuple[int, ...]]) -> int:
    prefix = 0
    for key in ("cls_token", "dist_token"):
        if key in shapes:
            prefix += 1
    if "reg_token" in shapes:
        prefix += int(shapes["reg_token"][1])
    return prefix


def file_layout(shapes: Mapping[str, Tuple[int, ...]], student: TokenLayout) -> TokenLayout:
    """The layout of a teacher known only by its tensor shapes (a weights file).

    Prefix tokens are counted from the prefix-token tensors; the grid is square (as timm assumes for
    a checkpoint). Raises ``ValueError`` naming the cause when the token count allows no square grid.
    """
    tokens = int(shapes["pos_embed"][1])
    prefix = _prefix_from_keys(shapes)
    # the student's convention first (timm's filter uses the model's no_embed_class), then the other
    options = [student.embed_prefix and prefix, prefix if not student.embed_prefix else 0]
    for embed_prefix in dict.fromkeys(options):
        side = math.isqrt(max(tokens - embed_prefix, 0))
        if side > 0 and side * side == tokens - embed_prefix:
            return TokenLayout(prefix, embed_prefix, (side, side))
    raise ValueError(
        f"the teacher file's pos_embed has {tokens} tokens, which with its {prefix} prefix tokens is no square "
        "patch grid; a file does not say its grid: pass the teacher as a timm name with its kwargs or as an "
        "nn.Module so that its patch_embed.grid_size can be read"
    )


def resample_pos_embed(tensor: torch.Tensor, teacher: TokenLayout, student: TokenLayout) -> torch.Tensor:
    """The teacher's ``pos_embed`` on the student's grid: timm's ``resample_abs_pos_embed`` (bicubic,
    antialiased, prefix tokens kept). Raises ``ValueError`` when the prefix tokens differ."""
    from timm.layers import resample_abs_pos_embed

    if teacher.embed_prefix != student.embed_prefix:
        raise ValueError(
            f"pos_embed: the teacher has {teacher.describe()}, the student {student.describe()}; the prefix "
            "position embeddings cannot be matched: build the student with the teacher's class/register "
            "tokens and no_embed_class, or exclude pos_embed (--exclude pos_embed)"
        )
    if teacher.grid == student.grid:
        return tensor
    return resample_abs_pos_embed(
        tensor, list(student.grid), list(teacher.grid), num_prefix_tokens=teacher.embed_prefix
    )
