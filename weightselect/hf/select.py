"""``weightselect.hf.select()``: weight selection for transformers models (paper section 3).

The three steps of :mod:`weightselect.selection`, with the student described by a config:

1. layer selection: :func:`weightselect.selection.layers.build_layer_map` over the decoder/encoder
   layers (``first``, ``uniform``, ``mid``, ``last``);
2. component mapping: the family (:mod:`weightselect.hf.families`) names the axes of every
   dimension, products of axes included (heads x head dimension);
3. element selection: one index set per axis from
   :func:`weightselect.selection.elements.select_indices`; a product dimension takes the Cartesian
   product of its factors' index sets (whole heads, whole KV groups, whole rotary pairs).

The plan needs only names and shapes (the student is built on the meta device); the teacher's
tensors are then read one at a time, so peak memory stays near the student's size.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from weightselect import __version__
from weightselect.hf.config import check_layer_kinds, check_pair, student_config
from weightselect.hf.families import (
    HFFamily, axis_sizes, base_axis, dims_text, factors, product_size, rope_parameters, terms,
)
from weightselect.hf.sources import HFTeacher, Merged, checkpoint_names, open_hf_teacher, tokenizer_files
from weightselect.io import exclusive_lock, save_state_dict, write_json
from weightselect.selection.elements import CONSISTENT_METHODS, select_indices, take
from weightselect.selection.importance import as_calibration, axis_scores, calibration_note, scores_entry, top_units
from weightselect.selection.layers import LAYER_METHODS, LayerMap, build_layer_map
from weightselect.selection.names import DATA_METHODS

__all__ = ["select", "HFSelectionResult", "MANIFEST", "HF_FORMAT", "build_meta_model", "model_card"]

log = logging.getLogger(__name__)

MANIFEST = "weightselect.json"  # our manifest inside the output folder
HF_FORMAT = "weightselect-hf/1"
WEIGHTS = "model.safetensors"
CARD = "README.md"  # the model card


@dataclass
class HFSelectionResult:
    """The selected student: tensors (tied aliases left out, as ``save_pretrained`` writes them), its
    config and the manifest; :meth:`save` writes a folder ``from_pretrained`` loads."""

    state_dict: Dict[str, torch.Tensor]
    config: Any
    manifest: Dict[str, Any] = field(default_factory=dict)
    teacher_folder: Optional[Path] = None

    def save(self, out_dir, force: bool = False) -> Path:
        """Write ``out_dir`` atomically: ``config.json``, ``model.safetensors``, the teacher's
        ``generation_config.json`` and tokenizer files, ``weightselect.json`` and the model card
        ``README.md``. An existing folder is refused unless ``force`` (then replaced whole).
        Raises FileExistsError."""
        out = Path(out_dir)
        with exclusive_lock(out.parent / f"{out.name}.folder", what="selection"):
            if out.exists() and not force:
                raise FileExistsError(f"{out} already exists; pass force=True (--force) to replace it")
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
            try:
                save_state_dict(self.state_dict, tmp / WEIGHTS, metadata={"format": "pt"})
                self.config.save_pretrained(tmp)
                copied = []
                for src in self._teacher_files():
                    shutil.copyfile(src, tmp / src.name)
                    copied.append(src.name)
                write_json(tmp / MANIFEST, {**self.manifest, "copied_files": copied})
                (tmp / CARD).write_text(model_card(self.manifest), encoding="utf-8")
                _replace_dir(tmp, out)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return out


    def _teacher_files(self) -> List[Path]:
        """The teacher's generation config and tokenizer files (copied beside the weights)."""
        if self.teacher_folder is None:
            return []
        generation = self.teacher_folder / "generation_config.json"
        return ([generation] if generation.is_file() else []) + tokenizer_files(self.teacher_folder)


def model_card(manifest: Mapping[str, Any]) -> str:
    """The folder's ``README.md`` as Hugging Face users expect it: YAML front matter (library,
    tags, ``base_model`` when the teacher is a hub id) and what the student is: its teacher, the
    selection's method, layers and seed, the layer map (student layer: teacher layer) and the axes'
    sizes; the index sets are in ``weightselect.json`` (the manifest), which the card points to."""
    teacher = manifest.get("teacher") or {}
    hub = teacher.get("hf_hub_id")
    front = ["---", "library_name: transformers", "tags:", "- weightselect", "- weight-selection"]
    if hub:
        front += ["base_model: " + json.dumps(hub)]
    lines = front + ["---", "", f"# A {manifest.get('model_type', '')} student initialized by weight selection", "",
                     "Initialized from a larger pretrained model of the same family by weight selection "
                     "(Xu et al., *Initializing Models with Larger Ones*, ICLR 2024) with weightselect "
                     f"{manifest.get('weightselect_version', '')}: not trained further.", "",
                     f"- teacher: `{hub or teacher.get('source', '?')}`"
                     + (f" (sha256 `{teacher['sha256']}`)" if teacher.get("sha256") else ""),
                     f"- method: `{manifest.get('method')}`, layers: `{manifest.get('layers')}`, "
                     f"seed: {manifest.get('seed')}",
                     f"- manifest: `{MANIFEST}` (every axis's index set, the options, the tied tensors)", "",
                     "| student layer | teacher layer |", "| --- | --- |"]
    lines += [f"| `{s}` | `{t}` |" for s, t in (manifest.get("layer_map") or {}).items()]
    lines += ["", "| axis | teacher | student |", "| --- | ---: | ---: |"]
    lines += [f"| `{a}` | {v['teacher']} | {v['student']} |" for a, v in (manifest.get("axes") or {}).items()]
    return "\n".join(lines) + "\n"


def _replace_dir(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def build_meta_model(config: Any):
    """The model of ``config`` on the meta device (names and shapes, no memory): the class named in
    ``config.architectures``, else ``AutoModel``."""
    import transformers

    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    with torch.device("meta"):
        if cls is None:
            return transformers.AutoModel.from_config(config)
        return cls(config)


def _student_keys(model) -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, str]]:
    """``({name: shape}, {tied alias: name it shares})``: the tensors a checkpoint holds (the first
    name of each tied parameter, as ``save_pretrained`` keeps) and the aliases."""
    unique = dict(model.named_parameters())
    owner = {id(p): n for n, p in unique.items()}
    aliases = {n: owner[id(p)] for n, p in model.named_parameters(remove_duplicate=False) if n not in unique}
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in aliases}
    return shapes, aliases


@dataclass
class _Entry:
    key: str
    teacher_key: str
    dims: Tuple[Optional[str], ...]


Shapes = Mapping[str, Tuple[int, ...]]


def _plan(fam: HFFamily, lmap: LayerMap, t_shapes: Shapes, s_shapes: Shapes,
          t_sizes: Mapping[str, int], s_sizes: Mapping[str, int]) -> Tuple[List[_Entry], Dict[str, Tuple[int, int]]]:
    """Every student tensor's teacher tensor and axes, with each axis's (teacher, student) size;
    product dimensions are checked against both shapes."""
    entries, axes, missing = [], {}, []
    ctx = {"keys": frozenset(s_shapes)}
    first_only = re.compile(fam.first_layer_only) if fam.first_layer_only else None
    for key, s_shape in s_shapes.items():
        t_key = key if first_only is not None and first_only.search(key) else lmap.teacher_key(key)
        dims = fam.family.dims(key, ctx)
        if dims is None:
            raise ValueError(f"no {fam.family.name} rule for parameter '{key}': "
                             "this variant of the architecture is not supported")
        if t_key not in t_shapes:
            missing.append(t_key)
            continue
        t_shape = tuple(t_shapes[t_key])
        if len(dims) != len(t_shape) or len(dims) != len(s_shape):
            raise ValueError(f"'{key}' has shapes {t_shape} (teacher) and {s_shape} (student), "
                             f"not the axes {dims_text(dims)}")
        for d, dim in enumerate(dims):
            want_t = t_shape[d] if dim is None else product_size(dim, t_sizes)
            want_s = t_shape[d] if dim is None else product_size(dim, s_sizes)
            if (t_shape[d], s_shape[d]) != (want_t, want_s):
                raise ValueError(
                    f"'{key}' dimension {d} is {t_shape[d]} in the teacher and {s_shape[d]} in the student, "
                    f"but its axes {dims_text(dims)} give {want_t} and {want_s}: the weights do not match the config"
                )
            for f in factors(dim):
                if isinstance(f, str):
                    axes[f] = (t_sizes[base_axis(f)], s_sizes[base_axis(f)])
        entries.append(_Entry(key, t_key, dims))
    if missing:
        raise ValueError(f"the teacher has no tensor {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}: "
                         "are its weights those of its config.json?")
    return entries, axes


def _product_indices(dim: str, t_sizes: Mapping[str, int], axis_indices: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Teacher indices of a formatted dimension: per block (``+``), the row-major combination of its
    factors' index sets, offset by the teacher size of the blocks before it."""
    out, offset = [], 0
    for term in terms(dim):
        idx, size_t = torch.zeros(1, dtype=torch.long), 1
        for f in factors(term):
            size, chosen = (f, torch.arange(f)) if isinstance(f, int) else (t_sizes[base_axis(f)], axis_indices[f])
            idx = (idx[:, None] * size + chosen[None, :]).reshape(-1)
            size_t *= size
        out.append(idx + offset)
        offset += size_t
    return torch.cat(out)


def _rotary_note(fam: HFFamily, axes: Mapping[str, Tuple[int, int]], axis_indices, teacher,
                 student) -> Optional[Dict[str, Any]]:
    """Whether the selected rotary pairs keep the student's frequencies: pair ``p`` of the teacher
    turns at ``theta^(-2p/d_t)``, pair ``j`` of the student at ``theta^(-2j/d_s)``."""
    if not fam.rotary or "rope_pairs" not in axes or axes["rope_pairs"][0] == axes["rope_pairs"][1]:
        return None
    t_pairs, s_pairs = axes["rope_pairs"]
    chosen = axis_indices["rope_pairs"].tolist()
    same = all(p * s_pairs == j * t_pairs for j, p in enumerate(chosen))
    if not same:
        log.warning("the selected rotary pairs turn at other frequencies than the student's (pairs %s of %d)",
                    chosen, t_pairs)
    return {"pairs": chosen, "frequencies_match": same, "teacher_rope": rope_parameters(teacher),
            "student_rope": rope_parameters(student)}


def select(teacher: Any, student: Any = None, method: str = "uniform", layers: str = "first", seed: int = 0,
           overrides: Optional[Mapping[str, Any]] = None, select_head_dim: bool = False,
           allow_rope_change: bool = False, calibration: Any = None,
           target_params: Optional[int] = None, target_memory: Any = None,
           dtype: Optional[str] = None) -> HFSelectionResult:
    """Initialize a transformers student from a larger teacher by weight selection.

    ``teacher``: a folder written by ``save_pretrained`` (``model.safetensors`` or sharded with its
    index; ``pytorch_model.bin``, or its shards with their index, tensors only) or a hub id
    ``org/name[@revision]`` (through the HF cache). ``student``: overrides of the
    teacher's config (dict or ``"hidden_size=256,num_hidden_layers=4"``), a ``config.json`` (file or
    folder) or a transformers config; ``overrides`` apply on top. ``method``: ``uniform``,
    ``consecutive`` or ``random`` (one index set per axis, so heads and KV groups stay whole);
    ``layers``: ``first``, ``uniform``, ``mid``, ``last``. ``select_head_dim`` allows a student head
    dimension other than the teacher's (whole rotary pairs for RoPE models); ``allow_rope_change``
    a different rotary base or scaling. ``calibration`` (method ``activation`` only): token ids
    ``(N, T)`` or a :class:`~weightselect.selection.importance.Calibration`; every axis keeps its
    units of largest mean |activation| (:mod:`weightselect.hf.importance`). ``target_params``
    (instead of ``student``): the Llama-like student with at most that many parameters, by
    :mod:`weightselect.hf.budget`'s rule; the manifest's ``budget`` says which and why;
    ``target_memory`` the same within that many bytes of weights (an int or ``"20MB"``) at ``dtype``.
    ``dtype`` (``float32``, ``float16``, ``bfloat16``): the floating tensors are written in it and the
    config says it (default: as the teacher stores them; a memory budget then counts at the config's
    dtype). Raises ValueError naming the fix for pairs it cannot map.
    """
    if method not in CONSISTENT_METHODS and method not in DATA_METHODS:
        raise ValueError(f"method '{method}' for transformers models: choose one of "
                         f"{', '.join(tuple(CONSISTENT_METHODS) + DATA_METHODS)} "
                         "(one index set per axis keeps whole heads and KV groups)")
    _check_calibration(method, calibration)
    if dtype is not None and dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype {dtype!r} for a transformers student: choose float32, float16 or bfloat16")
    if layers not in LAYER_METHODS:
        raise ValueError(f"unknown layer selection '{layers}'; choose one of {', '.join(LAYER_METHODS)}")
    source = open_hf_teacher(teacher) if not isinstance(teacher, HFTeacher) else teacher
    try:
        student, budget = _budget_student(source, student, target_params, target_memory, dtype)
        result = _select(source, student, method, layers, int(seed), overrides, select_head_dim, allow_rope_change,
                         calibration)
        if dtype is not None:
            _cast(result, dtype)
        if budget is not None:
            result.manifest["budget"] = budget.as_dict()
        return result
    finally:
        source.close()


def _budget_student(source: HFTeacher, student, target_params, target_memory=None, dtype=None):
    """The student given, or the overrides a parameter or memory budget chooses (not both)."""
    from weightselect.selection.budget import budget_of

    budget = budget_of(target_params, target_memory)
    if budget is None:
        return student, None
    if student is not None:
        raise ValueError("give a student or a budget (target_params= or target_memory=), not both")
    from weightselect.hf.budget import hf_budget_student

    choice = hf_budget_student(source.config, budget[1], budget[0], dtype)
    log.info("budget %s %s: %s", f"{budget[1]:,}", budget[0], choice.rationale)
    return choice.student, choice


def _cast(result: HFSelectionResult, dtype: str) -> None:
    """Floating tensors to ``dtype``, the config saying so, the manifest recording it."""
    to = getattr(torch, dtype)
    result.state_dict.update({k: v.to(to) for k, v in result.state_dict.items() if v.is_floating_point()})
    result.config.dtype = dtype
    result.manifest.setdefault("options", {})["dtype"] = dtype


def _check_calibration(method: str, calibration: Any) -> None:
    if method in DATA_METHODS:
        as_calibration(calibration)
    elif calibration is not None:
        raise ValueError(f"calibration data ranks units for method 'activation' only, not '{method}': "
                         "drop it or choose method='activation'")


def _rank(source: HFTeacher, entries, t_sizes, calibration):
    """Each axis's mean |activation| over the calibration token ids, and the manifest's note."""
    from weightselect.hf.importance import forward_ids, load_teacher_model, product_readers

    cal = as_calibration(calibration)
    model = load_teacher_model(source.folder, source.config)
    scores, seconds = axis_scores(model, product_readers(entries, model, t_sizes), cal, forward_ids)
    return scores, calibration_note(cal, model, seconds, {})


def _select(source: HFTeacher, student, method, layers, seed, overrides, select_head_dim,
            allow_rope_change, calibration=None) -> HFSelectionResult:
    t_cfg = source.config
    s_cfg, s_spec, s_folder = student_config(t_cfg, student, overrides, layers)
    fam = check_pair(t_cfg, s_cfg, source.folder, s_folder, select_head_dim, allow_rope_change)
    s_shapes, aliases = _student_keys(build_meta_model(s_cfg))
    names = checkpoint_names(source.tensors.keys(), build_meta_model(t_cfg))  # model name -> stored name(s)
    t_shapes = {name: stored.shape if isinstance(stored, Merged) else source.tensors.shape(stored)
                for name, stored in names.items()}
    lmap = build_layer_map(t_shapes.keys(), s_shapes.keys(), fam.family.layer_re, layers)
    check_layer_kinds(lmap.groups, t_cfg, s_cfg)
    t_sizes, s_sizes = axis_sizes(t_cfg), axis_sizes(s_cfg)
    entries, axes = _plan(fam, lmap, t_shapes, s_shapes, t_sizes, s_sizes)
    scores, calibrated = (_rank(source, entries, t_sizes, calibration) if method in DATA_METHODS else ({}, None))
    axis_indices = {name: top_units(scores[name], s) if name in scores else
                    select_indices(method if method in CONSISTENT_METHODS else "uniform", t, s, seed=seed, axis=name)
                    for name, (t, s) in axes.items()}
    log.info("family %s; layer map: %s", fam.family.name, lmap.as_dict())
    log.info("%d axes: %s", len(axes), ", ".join(f"{a} {t}->{s}" for a, (t, s) in list(axes.items())[:12]))
    state: Dict[str, torch.Tensor] = {}
    for entry in entries:
        stored = names[entry.teacher_key]
        if isinstance(stored, Merged):  # experts stacked as from_pretrained stacks them
            t_tensor = stored.read(source.tensors, entry.teacher_key)
        else:
            t_tensor = source.tensors.get(stored)
        idx = [None if d is None else _product_indices(d, t_sizes, axis_indices) for d in entry.dims]
        state[entry.key] = take(t_tensor, idx).contiguous()
        del t_tensor
    manifest = {
        "format": HF_FORMAT,
        "method": method,
        "layers": layers,
        "seed": seed,
        "teacher": source.description,
        "student": s_spec,
        "family": fam.family.name,
        "model_type": t_cfg.model_type,
        "options": {"select_head_dim": bool(select_head_dim), "allow_rope_change": bool(allow_rope_change)},
        "layer_map": lmap.as_dict(),
        "axes": {n: {"teacher": t, "student": s, "indices": axis_indices[n].tolist()} for n, (t, s) in axes.items()},
        "tied": aliases,
        "rotary": _rotary_note(fam, axes, axis_indices, t_cfg, s_cfg),
        "weightselect_version": __version__,
    }
    if calibrated is not None:
        manifest["calibration"] = scores_entry(calibrated, scores, axis_indices, axes)
    return HFSelectionResult(state, s_cfg, manifest, source.folder)
