"""``weightselect select`` for transformers teachers (a model folder or a hub id).

The ``select`` subcommand (:mod:`weightselect.selection.cli`) hands over to :func:`run_hf_select`
when ``--teacher`` is a transformers teacher (:func:`~weightselect.hf.sources.is_hf_teacher`); the
student is then ``--student`` overrides of the teacher's config (``hidden_size=256,num_hidden_layers=4``)
or a ``config.json``, and ``-o`` an output folder.
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_select_arguments", "run_hf_select", "is_hf_teacher"]


def is_hf_teacher(teacher) -> bool:
    """Whether ``--teacher`` names a transformers teacher (:func:`weightselect.hf.sources.is_hf_teacher`)."""
    from weightselect.hf.sources import is_hf_teacher as _is_hf_teacher

    return _is_hf_teacher(teacher)


def add_select_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that only transformers teachers take."""
    g = parser.add_argument_group("transformers teachers (--teacher FOLDER or org/name)")
    g.add_argument("--select-head-dim", action="store_true",
                   help="allow a student head dimension other than the teacher's (whole rotary pairs)")
    g.add_argument("--allow-rope-change", action="store_true",
                   help="allow a student rotary base or scaling other than the teacher's")


def _token_calibration(args: argparse.Namespace):
    """--calibration for a transformers teacher: --calibration-samples windows of
    --calibration-length tokens from a token or text file (tokenized by the teacher's tokenizer)."""
    if getattr(args, "calibration", None) is None:
        return None
    from weightselect.hf.importance import token_calibration
    from weightselect.hf.sources import resolve_hf_folder, tokenizer_files

    folder = resolve_hf_folder(args.teacher)[0]
    return token_calibration(Path(args.calibration), args.calibration_samples, args.calibration_length,
                             args.calibration_seed, folder if tokenizer_files(folder) else None, args.calibration_batch)


def run_hf_select(args: argparse.Namespace) -> int:
    """Run weight selection for a transformers teacher and write the student's folder."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise RuntimeError("transformers teachers need the 'hf' extra: pip install 'weightselect[hf]'") from None
    from weightselect.hf.select import MANIFEST, select

    if getattr(args, "exclude", None) or getattr(args, "teacher_kwargs", None):
        raise ValueError("--exclude and --teacher-kwargs apply to timm models; a transformers student is a config")
    timm_only = [o for o, on in (("--skip-head-keys", getattr(args, "skip_head_keys", False)),
                                 ("--teacher-id", getattr(args, "teacher_id", "sha256") != "sha256"),
                                 ("--dtype teacher", getattr(args, "dtype", "student") == "teacher"),
                                 ("--target-flops", getattr(args, "target_flops", None) is not None),
                                 ("--checkpoint-key", getattr(args, "checkpoint_key", None) is not None)) if on]
    if timm_only:
        raise ValueError(f"{' and '.join(timm_only)} apply to timm teachers; a transformers student is written in the "
                         "teacher's stored dtype (or --dtype NAME), with the head its config declares (num_labels, tied "
                         "embeddings), and budgeted by --target-params or --target-memory: remove them")
    out = Path(args.output)
    if out.suffix == ".safetensors":
        raise ValueError(f"for a transformers teacher the output is a folder: name it '{out.with_suffix('')}'")
    if out.exists() and not args.force:
        raise ValueError(f"{out} already exists; pass --force to replace it")
    budgeted = getattr(args, "target_params", None) is not None or getattr(args, "target_memory", None) is not None
    if budgeted and args.student_kwargs:
        raise ValueError("--student-kwargs would change the shapes a budget chooses: drop one of them")
    dtype = getattr(args, "dtype", "student")
    result = select(
        args.teacher, args.student, method=args.method, layers=args.layers, seed=args.seed,
        overrides=args.student_kwargs, select_head_dim=args.select_head_dim,
        allow_rope_change=args.allow_rope_change, calibration=_token_calibration(args),
        target_params=getattr(args, "target_params", None), target_memory=getattr(args, "target_memory", None),
        dtype=None if dtype == "student" else dtype,
    )
    result.save(out, force=args.force)
    m = result.manifest
    if "budget" in m:
        print(f"budget: {m['budget']['rationale']}")
    print(f"wrote {out} ({m['family']} family, {len(result.state_dict)} tensors, "
          f"{len(m['layer_map'])} layers; manifest {out / MANIFEST})")
    return 0
