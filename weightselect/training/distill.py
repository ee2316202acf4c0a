"""Knowledge distillation (Table 4 of the paper), combinable with any initialization.

* logit-based: ``loss = class_loss + alpha * KL(p_t || p_s)`` with softmax temperature ``tau``
  (scaled by ``tau**2``; the paper uses tau = 1, alpha = 1). The teacher must be trained on the
  student's dataset (same classes).
* feature-based: ``loss = class_loss + alpha * L1(O_t, MLP(O_s))`` where ``O`` are pooled
  pre-logit features (``forward_head(forward_features(x), pre_logits=True)``) and the MLP
  projects the student's width to the teacher's.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from weightselect.models import ModelSpec, create_model

__all__ = [
    "logit_distill_loss",
    "feature_distill_loss",
    "FeatureProjector",
    "StudentWithProjector",
    "TeacherSpec",
    "load_teacher",
    "pooled_features",
]


def logit_distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """``KL(softmax(t / tau) || softmax(s / tau)) * tau**2``, averaged over the batch."""
    log_p_s = F.log_softmax(student_logits.float() / tau, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (tau * tau)


def feature_distill_loss(projected_student: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between the teacher's features and the projected student's."""
    return F.l1_loss(projected_student.float(), teacher_features.float())


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A timm model's pooled pre-logit features (B, num_features)."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


class FeatureProjector(nn.Sequential):
    """Linear -> GELU -> Linear from the student's feature width to the teacher's."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Optional[int] = None):
        hidden = hidden or out_dim
        super().__init__(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class StudentWithProjector(nn.Module):
    """The student plus the feature-KD projector, as one module (so DDP sees one forward).

    ``forward(x) -> (logits, projected pooled features)``.
    """

    def __init__(self, student: nn.Module, teacher_dim: int, hidden: Optional[int] = None):
        super().__init__()
        self.student = student
        self.projector = FeatureProjector(_feature_dim(student), teacher_dim, hidden)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats = self.student.forward_features(x)
        pooled = self.student.forward_head(feats, pre_logits=True)
        logits = self.student.forward_head(feats)
        return logits, self.projector(pooled)

    def no_weight_decay(self):
        skip = getattr(self.student, "no_weight_decay", lambda: set())()
        return {f"student.{n}" for n in skip}


def _feature_dim(model: nn.Module) -> int:
    dim = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    if not dim:
        raise ValueError(f"{type(model).__name__} does not say its feature width (num_features)")
    return int(dim)


class TeacherSpec:
    """A teacher: a model spec plus an optional weights file (else timm's pretrained tag)."""

    def __init__(self, model: Any, weights: Optional[str] = None):
        self.spec = ModelSpec.from_any(model)
        self.weights = str(weights) if weights else None
        if self.weights is None and self.spec.tag is None:
            raise ValueError(
                f"teacher '{self.spec.name}' has no weights: give a weights file "
                "(teacher={'name': ..., 'kwargs': {...}, 'weights': 'model.safetensors'}) or a timm "
                "name with a pretrained tag (e.g. 'vit_small_patch16_224.augreg_in21k')"
            )

    @classmethod
    def from_any(cls, value: Any) -> "TeacherSpec":
        if isinstance(value, TeacherSpec):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(value[0], value[1])
        if isinstance(value, Mapping):
            value = dict(value)
            weights = value.pop("weights", None)
            if "model" in value and "name" not in value:
                value = ModelSpec.from_any(value["model"]).to_dict()
            return cls(value, weights)
        return cls(value)

    def to_dict(self) -> Dict[str, Any]:
        return {**self.spec.to_dict(), "weights": self.weights}


def load_teacher(teacher: Any, device: torch.device | str = "cpu") -> nn.Module:
    """Build the teacher, load its weights (safetensors or weights_only), freeze it, eval mode."""
    from weightselect.io import load_state_dict

    t = TeacherSpec.from_any(teacher)
    if t.weights:
        model = create_model(t.spec)
        sd = load_state_dict(t.weights)
        own = model.state_dict()
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        mismatched = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                      if k in sd and sd[k].shape != v.shape]
        if missing or unexpected or mismatched:
            raise ValueError(
                f"teacher weights {t.weights} do not fit {t.spec.name} {t.spec.kwargs}: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatches {mismatched[:5]}; "
                "give the teacher the kwargs it was trained with (num_classes, in_chans, img_size, ...)"
            )
        model.load_state_dict(sd)
    else:
        model = create_model(t.spec, pretrained=True)
    model.requires_grad_(False)
    return model.eval().to(device)
