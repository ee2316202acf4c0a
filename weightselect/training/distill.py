"""Knowledge distillation (Table 4 of the paper), combinable with any initialization.

* logit-based: ``loss = class_loss + alpha * KL(p_t || p_s)`` with softmax temperature ``tau``
  (scaled by ``tau**2``; the paper uses tau = 1, alpha = 1). The teacher must be trained on the
  student's dataset (same classes).
* feature-based: ``loss = class_loss + alpha * L1(O_t, MLP(O_s))`` where ``O`` are pooled
  pre-logit features (``forward_head(forward_features(x), pre_logits=True)``) and the MLP
  projects the student's width to the teacher's.

The teacher sees the input normalized its own way (:class:`Teacher`): the batch, normalized with
the student's mean/std, is re-normalized with the teacher's, taken from (first found) the teacher
spec's ``mean``/``std``, the dataset its weights file's manifest says it was trained on, or its timm
``pretrained_cfg``.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from weightselect.models import ModelSpec, create_model, stored_spec

__all__ = [
    "logit_distill_loss",
    "feature_distill_loss",
    "FeatureProjector",
    "StudentWithProjector",
    "TeacherSpec",
    "load_teacher",
    "pooled_features",
    "Teacher",
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

    def __init__(self, model: Any, weights: Optional[str] = None, mean=None, std=None):
        self.spec = ModelSpec.from_any(model)
        self.weights = str(weights) if weights else None
        self.mean = tuple(float(v) for v in mean) if mean is not None else None
        self.std = tuple(float(v) for v in std) if std is not None else None
        if (self.mean is None) != (self.std is None):
            raise ValueError("a teacher's normalization needs both mean and std (or neither)")
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
            weights, mean, std = value.pop("weights", None), value.pop("mean", None), value.pop("std", None)
            if "model" in value and "name" not in value:
                value = ModelSpec.from_any(value["model"]).to_dict()
            return cls(value, weights, mean, std)
        return cls(value)

    def to_dict(self) -> Dict[str, Any]:
        out = {**self.spec.to_dict(), "weights": self.weights}
        if self.mean is not None:
            out.update(mean=list(self.mean), std=list(self.std))
        return out


def teacher_norm(spec: "TeacherSpec", model: nn.Module) -> Tuple[Tuple[float, ...], Tuple[float, ...], str]:
    """(mean, std, where from) of the input the teacher expects, per its input channel: the teacher
    spec's own mean/std when it gives them, else ``models.input_norm`` of its weights."""
    from weightselect.models import input_norm
    from weightselect.training.catalog import per_channel

    if spec.mean is not None:
        in_chans = len(input_norm(model)[0])
        return per_channel(spec.mean, in_chans), per_channel(spec.std, in_chans), "teacher spec"
    return input_norm(model, spec.weights)


class Teacher(nn.Module):
    """A frozen teacher fed the student's batch re-normalized to the teacher's own mean/std.

    ``x_t = (x_s * std_s + mean_s - mean_t) / std_t`` per channel; ``logits(x_s)`` (B, classes),
    ``features(x_s)`` (B, num_features) pooled pre-logit features.
    """

    def __init__(self, model: nn.Module, student_norm, teacher_norm_):
        super().__init__()
        self.model = model
        (s_mean, s_std), (t_mean, t_std) = student_norm, teacher_norm_
        s_mean, s_std, t_mean, t_std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)
                                        for v in (s_mean, s_std, t_mean, t_std))
        self.register_buffer("scale", s_std / t_std, persistent=False)
        self.register_buffer("shift", (s_mean - t_mean) / t_std, persistent=False)

    def renormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.renormalize(x))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_features(self.model, self.renormalize(x))


def load_teacher(teacher: Any, device: torch.device | str = "cpu") -> nn.Module:
    """Build the teacher, load its weights (safetensors or weights_only), freeze it, eval mode.

    A weights file's teacher takes the ``num_classes`` / ``in_chans`` its spec leaves out from the
    file (:func:`weightselect.models.stored_spec`: the manifest beside it, else its stored
    classifier's rows, else the spec's pretrained tag).

    Raises weightselect.models.WeightsMismatchError (a ValueError) when the weights do not fit the spec.
    """
    from weightselect.io import load_state_dict
    from weightselect.models import load_weights

    t = TeacherSpec.from_any(teacher)
    if t.weights:
        state = load_state_dict(t.weights)
        model = create_model(stored_spec(t.spec, {k: tuple(v.shape) for k, v in state.items()}, t.weights))
        load_weights(model, state, source=f"teacher weights {t.weights} ({t.spec.name} {t.spec.kwargs})",
                     hint="Give the teacher the kwargs it was trained with (num_classes, in_chans, img_size, ...).")
    else:
        model = create_model(t.spec, pretrained=True)
    model.requires_grad_(False)
    return model.eval().to(device)
