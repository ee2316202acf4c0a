"""Self-supervised pretraining objectives for a timm ViT teacher: the stand-ins of Table 5's
teachers (CLIP, MAE, DINO) at CPU scale, trained on the same data and budget as a supervised one.

A recipe's ``objective`` picks one (``supervised`` is the ordinary cross-entropy):

* ``masked`` (MAE's stand-in): masked-patch reconstruction as in SimMIM (Xie et al., 2022): a
  ``mask_ratio`` share of each image's patch embeddings is replaced by a learned mask token, the
  encoder sees every token, a linear decoder predicts the masked patches' pixels, and the loss is
  the mean squared error on the masked patches only, each patch's pixels normalized by its own mean
  and variance (MAE's ``norm_pix_loss``, He et al., 2022, Sec. 4).
* ``contrastive`` (DINO's stand-in: two views of an image, no labels): SimCLR's NT-Xent loss (Chen
  et al., 2020, Eq. 1) between the projected pooled features of two random affine views of every
  image, temperature ``ssl_temperature``.
* ``image_text`` (CLIP's stand-in): CLIP's symmetric InfoNCE (Radford et al., 2021, Fig. 3) between
  the image's projected pooled features and a character-level text tower's embedding of its
  caption (``"<class name>"``; the glyph sets' names are the glyphs). The captions carry only the
  class, so this tests CLIP's objective (a batch contrast against a text tower), not CLIP's data.

None of them trains the backbone with the labels. An online linear probe is trained meanwhile on
the detached pooled features (as SSL codebases such as solo-learn report progress), after a
BatchNorm without affine parameters, as MAE's linear probe (He et al., 2022, Sec. A.2): a
self-supervised model's features vary little between images, and a plain linear layer at the
objective's learning rate barely moves off chance. Before each evaluation and the export the probe
is folded into the model's own classifier (``W / s``, ``b - W mu / s`` from the running mean ``mu``
and ``s = sqrt(var + eps)``), so the run's test top-1 is the probe's and the exported model computes
it alone; weight selection does not copy a classifier whose classes differ from the student's.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["OBJECTIVES", "SelfSupervised", "random_affine", "nt_xent", "clip_loss", "masked_patch_loss",
           "patchify"]

OBJECTIVES = ("supervised", "masked", "contrastive", "image_text")


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch*patch*C) in the row-major patch order of timm's PatchEmbed."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked patches, target patches normalized by their own mean and
    variance (eps 1e-6, MAE's norm_pix_loss). pred/target (B, N, P), mask (B, N) bool."""
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred.float() - target.float()).pow(2).mean(-1)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2B projections must pick its other view among the 2B - 1
    others by cosine similarity / temperature; cross-entropy averaged over the 2B."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)
    n = z1.shape[0]
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over the batch's image-text cosine similarities x scale."""
    image, text = F.normalize(image.float(), dim=-1), F.normalize(text.float(), dim=-1)
    logits = logit_scale.exp() * image @ text.t()
    target = torch.arange(image.shape[0], device=image.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def random_affine(x: torch.Tensor, degrees: float = 15.0, scale: Tuple[float, float] = (0.8, 1.1),
                  translate: float = 0.15) -> torch.Tensor:
    """One random rotation, scale and shift per image (torch's global RNG), the background filled
    with the image's own corner value (glyphs on a flat ground). x (B, C, H, W) -> same shape."""
    b = x.shape[0]
    angle = (torch.rand(b) * 2 - 1) * math.radians(degrees)
    s = torch.empty(b).uniform_(*scale)
    shift = (torch.rand(b, 2) * 2 - 1) * translate * 2  # grid units span 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    ground = x[:, :, :1, :1]
    return F.grid_sample(x - ground, grid, align_corners=False, padding_mode="zeros") + ground


class _TextTower(nn.Module):
    """Characters -> embeddings (with position) -> mean -> MLP: a caption's embedding (E,)."""

    def __init__(self, captions: Sequence[str], dim: int):
        super().__init__()
        vocab = sorted({ch for c in captions for ch in c})
        index = {ch: i + 1 for i, ch in enumerate(vocab)}
        length = max(len(c) for c in captions)
        tokens = torch.zeros(len(captions), length, dtype=torch.long)
        for i, c in enumerate(captions):
            tokens[i, :len(c)] = torch.tensor([index[ch] for ch in c])
        self.register_buffer("tokens", tokens, persistent=False)
        self.chars = nn.Embedding(len(vocab) + 1, dim, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(length, dim))
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        tok = self.tokens[labels]
        present = (tok > 0).unsqueeze(-1).float()
        emb = (self.chars(tok) + self.pos) * present
        return self.mlp(emb.sum(1) / present.sum(1).clamp(min=1))


class SelfSupervised(nn.Module):
    """A timm VisionTransformer trained by a self-supervised objective (module docstring), with its
    classifier head as an online linear probe.

    ``forward(x, y) -> loss`` (a scalar: the objective's loss + the probe's cross-entropy); x
    (B, C, H, W) normalized images, y (B,) class indices (used by the probe and the captions only).
    Raises ValueError for a model that is not a timm ViT with a patch embedding, or an unknown objective.
    """

    def __init__(self, model: nn.Module, objective: str, mask_ratio: float = 0.6, temperature: float = 0.2,
                 captions: Optional[Sequence[str]] = None, proj_dim: int = 64):
        super().__init__()
        if objective not in OBJECTIVES[1:]:
            raise ValueError(f"unknown self-supervised objective {objective!r}; choose one of {OBJECTIVES[1:]}")
        if not (hasattr(model, "patch_embed") and hasattr(model, "_pos_embed") and hasattr(model, "blocks")):
            raise ValueError(f"objective {objective!r} trains a timm VisionTransformer; {type(model).__name__} "
                             "is not one: use objective supervised for it")
        self.student, self.objective = model, objective
        self.mask_ratio, self.temperature = float(mask_ratio), float(temperature)
        dim = int(model.num_features)
        if objective == "masked":
            patch = model.patch_embed.patch_size[0]
            self.patch = patch
            self.mask_token = nn.Parameter(torch.zeros(1, 1, model.embed_dim))
            nn.init.normal_(self.mask_token, std=0.02)
            self.decoder = nn.Linear(dim, patch * patch * model.patch_embed.proj.in_channels)
        else:
            self.projector = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, proj_dim))
        classifier = model.get_classifier()
        if not isinstance(classifier, nn.Linear):
            raise ValueError(f"objective {objective!r} needs a linear classifier to probe; "
                             f"{type(model).__name__} has {type(classifier).__name__}")
        self.probe_norm = nn.BatchNorm1d(dim, affine=False)
        self.probe = nn.Linear(dim, classifier.out_features)
        if objective == "image_text":
            if not captions:
                raise ValueError("objective image_text needs the classes' captions (class names)")
            self.text = _TextTower(list(captions), proj_dim)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def no_weight_decay(self):
        skip = getattr(self.student, "no_weight_decay", lambda: set())()
        return {f"student.{n}" for n in skip} | {"mask_token", "logit_scale"}

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return self.student.forward_head(self.student.forward_features(x), pre_logits=True)

    def _masked(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        m = self.student
        tokens = m.patch_embed(x)
        b, n, _ = tokens.shape
        k = max(1, int(round(self.mask_ratio * n)))
        order = torch.rand(b, n, device=x.device).argsort(dim=1)
        mask = torch.zeros(b, n, dtype=torch.bool, device=x.device).scatter_(1, order[:, :k], True)
        tokens = torch.where(mask.unsqueeze(-1), self.mask_token.to(tokens.dtype), tokens)
        h = m.norm(m.blocks(m.norm_pre(m.patch_drop(m._pos_embed(tokens)))))
        pred = self.decoder(h[:, m.num_prefix_tokens:])
        loss = masked_patch_loss(pred, patchify(x, self.patch), mask)
        with torch.no_grad():
            pooled = self._pooled(x)
        return loss, pooled

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.objective == "masked":
            loss, pooled = self._masked(x)
        elif self.objective == "contrastive":
            p1, p2 = self._pooled(random_affine(x)), self._pooled(random_affine(x))
            loss, pooled = nt_xent(self.projector(p1), self.projector(p2), self.temperature), p1
        else:
            pooled = self._pooled(random_affine(x))
            loss = clip_loss(self.projector(pooled), self.text(y), self.logit_scale)
        probe = self.probe(self.probe_norm(pooled.detach()))
        return loss + F.cross_entropy(probe.float(), y)

    @torch.no_grad()
    def sync_classifier(self) -> None:
        """Fold the probe (BatchNorm running statistics + linear layer) into the model's classifier."""
        norm, head = self.probe_norm, self.student.get_classifier()
        scale = (norm.running_var + norm.eps).sqrt()
        weight = self.probe.weight / scale
        head.weight.copy_(weight)
        head.bias.copy_(self.probe.bias - weight @ norm.running_mean)
