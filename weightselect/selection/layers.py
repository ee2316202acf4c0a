"""Layer selection: which teacher layer initializes each student layer (Tables 6, 16, 17).

Layers are found by name: a family's ``layer_pattern`` splits a parameter name into a layer group
(``blocks`` for isotropic models, ``stages.2.blocks`` for one stage of a hierarchical one), a layer
index and the rest. Selection runs per group, so hierarchical models get first-N per stage.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from weightselect.selection.elements import uniform_indices

__all__ = ["LAYER_METHODS", "layer_indices", "LayerMap", "count_layers", "build_layer_map"]

from weightselect.selection.names import LAYER_METHODS  # noqa: E402  (re-exported)


def layer_indices(method: str, t: int, s: int, pin_first: bool = False) -> List[int]:
    """Teacher layer indices (ascending) for ``s`` student layers out of ``t`` teacher layers.

    ``first``: 0..s-1; ``uniform``: evenly spaced (the element rule of the paper's release);
    ``mid``: the ``s`` centred layers; ``last``: the final ``s``. With ``pin_first`` (families whose
    first layer of a group differs, e.g. a ResNet stage's downsampling block) student layer 0 always
    takes teacher layer 0 and the method chooses the others among teacher layers 1..t-1.
    """
    if method not in LAYER_METHODS:
        raise ValueError(f"unknown layer selection '{method}'; choose one of {', '.join(LAYER_METHODS)}")
    if s > t:
        raise ValueError(f"the student has {s} layers but the teacher only {t}: the student must not be deeper")
    if s == 0:
        return []
    if pin_first and t > 1:
        return [0] + [1 + i for i in layer_indices(method, t - 1, s - 1)]
    if method == "first":
        return list(range(s))
    if method == "uniform":
        return [int(i) for i in uniform_indices(t, s)]
    if method == "mid":
        start = (t - s) // 2
        return list(range(start, start + s))
    return list(range(t - s, t))


def count_layers(keys: Iterable[str], pattern: "re.Pattern[str]") -> Dict[str, int]:
    """``{group: number of layers}`` from parameter names (layers numbered 0..n-1)."""
    seen: Dict[str, set] = {}
    for key in keys:
        m = pattern.match(key)
        if m:
            seen.setdefault(m.group("group"), set()).add(int(m.group("index")))
    counts = {}
    for group, idx in seen.items():
        n = max(idx) + 1
        if sorted(idx) != list(range(n)):
            raise ValueError(f"layers of '{group}' are not numbered 0..{n - 1}: {sorted(idx)}")
        counts[group] = n
    return counts


@dataclass
class LayerMap:
    """Student layer -> teacher layer, per group."""

    pattern: Optional["re.Pattern[str]"]
    groups: Dict[str, List[int]]  # group -> teacher index of each student layer

    def teacher_key(self, student_key: str) -> str:
        """The teacher parameter name that feeds ``student_key``."""
        if self.pattern is None:
            return student_key
        m = self.pattern.match(student_key)
        if not m or m.group("group") not in self.groups:
            return student_key
        t_index = self.groups[m.group("group")][int(m.group("index"))]
        start, end = m.span("index")
        return f"{student_key[:start]}{t_index}{student_key[end:]}"

    def layer_of(self, student_key: str) -> Optional[str]:
        """The student layer prefix (``blocks.3``) of a parameter name, if it is in a layer."""
        if self.pattern is None:
            return None
        m = self.pattern.match(student_key)
        return f"{m.group('group')}.{m.group('index')}" if m else None

    def as_dict(self) -> Dict[str, str]:
        """``{student_layer_prefix: teacher_layer_prefix}`` for the manifest."""
        return {
            f"{group}.{i}": f"{group}.{t}" for group, idx in self.groups.items() for i, t in enumerate(idx)
        }


def build_layer_map(
    teacher_keys: Iterable[str],
    student_keys: Iterable[str],
    pattern: Optional["re.Pattern[str]"],
    method: str = "first",
    pin_first: bool = False,
) -> LayerMap:
    """Map every student layer to a teacher layer; errors name the group that cannot be mapped."""
    if method not in LAYER_METHODS:
        raise ValueError(f"unknown layer selection '{method}'; choose one of {', '.join(LAYER_METHODS)}")
    if pattern is None:
        return LayerMap(None, {})
    t_counts = count_layers(teacher_keys, pattern)
    s_counts = count_layers(student_keys, pattern)
    groups: Dict[str, List[int]] = {}
    for group, s in s_counts.items():
        if group not in t_counts:
            raise ValueError(
                f"the student has layers '{group}.*' that the teacher lacks (teacher groups: "
                f"{', '.join(sorted(t_counts)) or 'none'}); the student needs the teacher's layout"
            )
        t = t_counts[group]
        if s > t:
            raise ValueError(
                f"the student has {s} layers in '{group}' but the teacher only {t}: "
                "the student must not be deeper than the teacher"
            )
        groups[group] = layer_indices(method, t, s, pin_first=pin_first)
    return LayerMap(pattern, groups)


def split_layer(key: str, pattern: Optional["re.Pattern[str]"]) -> Tuple[Optional[str], str]:
    """``("blocks.3", "mlp.fc1.weight")`` for ``blocks.3.mlp.fc1.weight``; ``(None, key)`` outside layers."""
    if pattern is None:
        return None, key
    m = pattern.match(key)
    if not m:
        return None, key
    return f"{m.group('group')}.{m.group('index')}", key[m.end():].lstrip(".")
