"""``weightselect select`` and ``weightselect baseline``: write init files."""
from __future__ import annotations

import argparse
import json
import logging

from weightselect.models import seed_arg
from pathlib import Path

__all__ = ["register", "run_select", "run_baseline"]


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"num_classes\": 100}'")
    return value


def _check_output(path: Path, force: bool) -> None:
    from weightselect.io import manifest_path

    if path.suffix != ".safetensors":
        raise ValueError(f"-o {path}: the output is a safetensors file: name it '{path.with_suffix('.safetensors')}'")
    if path.is_dir():
        raise ValueError(f"-o {path} is a folder; give a file name ending in .safetensors")
    if path.is_symlink() and not path.exists():
        raise ValueError(f"-o {path}: a symbolic link loop or a link to nothing; remove the link or choose another name")
    if force:
        return
    mpath = manifest_path(path)
    if path.exists() and not mpath.exists():
        raise ValueError(f"{path} exists without its manifest {mpath.name} (an interrupted write); "
                         "pass --force to write both again")
    if mpath.exists() and not path.exists():
        raise ValueError(f"{mpath} exists without its init file {path.name} (an interrupted write); "
                         "pass --force to write both again")
    if path.exists():
        raise ValueError(f"{path} already exists; pass --force to overwrite it")


def check_student_args(args: argparse.Namespace) -> None:
    """--student or one budget (--target-params, --target-memory, --target-flops); the calibration
    options go with --method activation."""
    budgets = [o for o, v in (("--target-params", args.target_params), ("--target-memory", args.target_memory),
                              ("--target-flops", args.target_flops)) if v is not None]
    if len(budgets) > 1:
        raise ValueError(f"give one budget, not {' and '.join(budgets)}")
    if (args.student is None) == (not budgets):
        raise ValueError("give the student (--student) or a budget (--target-params N, --target-memory SIZE or "
                         "--target-flops N), one of them")
    if args.calibration is not None and args.method != "activation":
        raise ValueError(f"--calibration ranks units for --method activation, not {args.method}: add "
                         "--method activation or drop --calibration")
    if args.method == "activation" and args.calibration is None:
        raise ValueError("--method activation ranks units on calibration data: add --calibration (a dataset of the "
                         "catalog such as cifar10 or digits, a .pt tensor, or for transformers a text/token file)")


def _teacher_model(args: argparse.Namespace):
    """--teacher-model (with --teacher-kwargs): the architecture of a teacher file, for activation ranking."""
    if args.teacher_model is None:
        return None
    return {"name": args.teacher_model, "kwargs": dict(args.teacher_kwargs or {})}


def _calibration(args: argparse.Namespace):
    """The calibration images of --calibration: a .pt tensor (N, C, H, W), or --calibration-samples
    training images of a catalog dataset drawn with --calibration-seed, at the teacher's input size
    (a teacher file of this project: the size it was trained at, ``models.trained_img_size``; else
    its timm data config) and normalization (``models.input_norm``: the dataset a teacher file of
    this project was trained on, else the timm data config)."""
    if args.calibration is None:
        return None
    from weightselect.selection.importance import Calibration, teacher_calibration

    if args.calibration.endswith(".pt"):
        import torch

        data = torch.load(args.calibration, weights_only=True)
        if not isinstance(data, torch.Tensor) or data.dim() != 4 or not data.is_floating_point():
            raise ValueError(f"--calibration {args.calibration}: a .pt file of images holds one float tensor "
                             "(N, C, H, W), normalized as the teacher expects")
        return Calibration(data, {"source": args.calibration}, args.calibration_batch)
    from weightselect.selection.budget import _timm_teacher
    from weightselect.selection.importance import check_dataset
    from weightselect.selection.select import student_pretrained_cfg

    check_dataset(args.calibration)

    teacher, _ = _timm_teacher(args.teacher_model or args.teacher, args.teacher_kwargs,
                               "method 'activation' runs the teacher (a weights file: name its architecture with "
                               "--teacher-model)")
    cfg = student_pretrained_cfg(teacher, args.teacher_kwargs)
    if not cfg.get("input_size"):
        raise ValueError(f"--teacher {args.teacher} has no data config (input size, mean, std): pass the images "
                         "as a .pt tensor (--calibration images.pt)")
    return teacher_calibration(args.calibration, args.calibration_samples, args.calibration_seed, teacher,
                               args.teacher_kwargs, args.teacher if Path(args.teacher).is_file() else None,
                               args.data_root, args.calibration_batch)


def run_select(args: argparse.Namespace) -> int:
    from weightselect.hf.cli import is_hf_teacher, run_hf_select

    check_student_args(args)

    if is_hf_teacher(args.teacher):  # a transformers folder or hub id: weightselect.hf
        return run_hf_select(args)
    if Path(args.teacher).is_dir():
        raise ValueError(f"--teacher {args.teacher} is a folder without config.json: a transformers teacher is a "
                         "save_pretrained folder (config.json and its weights), a timm teacher a weights file")
    from weightselect.io import exclusive_lock  # torch and the library load only when a command runs

    out = Path(args.output)
    _check_output(out, args.force)
    with exclusive_lock(out, what="select"):  # a second writer of the same output fails at once
        _check_output(out, args.force)  # the holder may have written it meanwhile
        return _select(args, out)


def _select(args: argparse.Namespace, out: Path) -> int:
    from weightselect.io import manifest_path
    from weightselect.selection import select

    result = select(
        args.teacher,
        args.student,
        target_params=args.target_params,
        target_memory=args.target_memory,
        target_flops=args.target_flops,
        calibration=_calibration(args),
        teacher_model=_teacher_model(args),
        method=args.method,
        layers=args.layers,
        seed=args.seed,
        exclude=args.exclude or (),
        student_kwargs=args.student_kwargs,
        teacher_kwargs=args.teacher_kwargs,
        skip_head_keys=args.skip_head_keys,
        dtype=args.dtype,
        checkpoint_key=args.checkpoint_key,
        teacher_identity=args.teacher_id,
    )
    result.save(out)
    m = result.manifest
    if "budget" in m:
        print(f"budget: {m['budget']['rationale']}")
    print(f"wrote {out} ({len(result.state_dict)} tensors; head {m['head']}; "
          f"{len(m['reinitialized'])} left at default init) and {manifest_path(out)}")
    return 0


def run_baseline(args: argparse.Namespace) -> int:
    from weightselect.io import exclusive_lock

    out = Path(args.output)
    _check_output(out, args.force)
    with exclusive_lock(out, what="baseline"):
        _check_output(out, args.force)
        return _baseline(args, out)


def _baseline(args: argparse.Namespace, out: Path) -> int:
    from weightselect.io import manifest_path, save_init
    from weightselect.models import ModelSpec
    from weightselect.selection import apply_baseline
    from weightselect.selection.select import INIT_FORMAT, student_pretrained_cfg

    spec = ModelSpec.from_any(args.student)
    if args.student_kwargs:
        spec = ModelSpec(spec.name, {**spec.kwargs, **args.student_kwargs})
    model = spec.create()
    apply_baseline(model, args.name, args.seed)
    manifest = {
        "format": INIT_FORMAT, "method": args.name, "layers": None, "seed": args.seed, "teacher": None,
        "student": spec.to_dict(), "pretrained_cfg": student_pretrained_cfg(model, spec.kwargs),
        "layer_map": {}, "axes": {}, "head": "reinitialized",
        "reinitialized": [], "excluded": [],
    }
    save_init(model.state_dict(), manifest, out)
    print(f"wrote {out} ({args.name} init, seed {args.seed}) and {manifest_path(out)}")
    return 0


def register(subparsers) -> None:
    from weightselect.selection.names import BASELINES, DATA_METHODS, LAYER_METHODS, METHODS, TEACHER_IDENTITIES

    p = subparsers.add_parser(
        "select", help="initialize a student from a larger teacher (weight selection)",
        description="Select a student's weights from a larger teacher of the same family and write "
        "an init file (safetensors + JSON manifest).",
    )
    p.add_argument("--teacher", required=True,
                   help="timm name with optional pretrained tag, or a .safetensors/.pth file")
    p.add_argument("--student", default=None,
                   help="timm model name of the student (or --target-params); transformers: config overrides")
    p.add_argument("--student-kwargs", type=_json_dict, default=None, help="JSON kwargs for the student")
    p.add_argument("--teacher-kwargs", type=_json_dict, default=None, help="JSON kwargs for the teacher")
    p.add_argument("--method", choices=METHODS + DATA_METHODS, default="uniform",
                   help="element selection (default uniform; activation ranks units on --calibration data)")
    p.add_argument("--layers", choices=LAYER_METHODS, default="first", help="layer selection (default first)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--exclude", nargs="*", default=[], metavar="COMPONENT",
                   help="components left at default init (e.g. patch_embed pos_embed attention norm mlp)")
    p.add_argument("--dtype", choices=("student", "teacher", "float32", "float16", "bfloat16"), default="student",
                   help="dtype of the selected tensors: the student's (default, float32), the teacher's, or a name")
    p.add_argument("--checkpoint-key", default=None, metavar="KEY",
                   help="the state dict of a PyTorch checkpoint holding several (e.g. model_ema, state_dict_ema); "
                        "default: the non-EMA one (model, state_dict)")
    p.add_argument("--skip-head-keys", action="store_true",
                   help="leave every parameter whose name contains 'head' at default init, as the paper's release")
    p.add_argument("--teacher-id", choices=TEACHER_IDENTITIES, default="sha256",
                   help="how the manifest identifies a teacher file: its full sha256 (default; computed once per "
                        "file version, in the pass that reads it) or 'header' (sha256 of its header + its size: "
                        "no full pass, blind to changed values)")
    p.add_argument("-o", "--output", required=True, help="output .safetensors (manifest written beside it)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-v", "--verbose", action="store_true", help="log the layer map and axes")
    _add_data_arguments(p)
    from weightselect.hf.cli import add_select_arguments

    add_select_arguments(p)
    p.set_defaults(func=_logged(run_select))

    b = subparsers.add_parser(
        "baseline", help="write a baseline initialization (random, xavier, kaiming, mimetic) as an init file",
    )
    b.add_argument("--student", required=True, help="timm model name")
    b.add_argument("--student-kwargs", type=_json_dict, default=None)
    b.add_argument("--name", choices=BASELINES, required=True)
    b.add_argument("--seed", type=seed_arg, default=0)
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--force", action="store_true")
    b.add_argument("-v", "--verbose", action="store_true")
    b.set_defaults(func=_logged(run_baseline))


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("activation ranking and budgets (parameters, memory, FLOPs)")
    g.add_argument("--target-params", type=int, default=None, metavar="N",
                   help="instead of --student: the student of the teacher's family with at most N parameters "
                        "(width first at the teacher's depth; the choice and why are printed and recorded)")
    g.add_argument("--target-memory", default=None, metavar="SIZE",
                   help="instead of --student: the widest student whose weights fit SIZE bytes (20MB, 1.5GiB) at "
                        "--dtype (default float32; transformers: the config's dtype)")
    g.add_argument("--target-flops", default=None, metavar="N",
                   help="instead of --student (timm ViT, ConvNeXt): the widest student within N FLOPs (2.1G) for "
                        "one image at its input size, counted by torch.utils.flop_counter.FlopCounterMode")
    g.add_argument("--calibration", default=None, metavar="SOURCE",
                   help="--method activation's data: a dataset of the catalog (its training split) or a .pt image "
                        "tensor (N, C, H, W); transformers: a .pt tensor of token ids, or a text file")
    g.add_argument("--calibration-samples", type=int, default=256, metavar="N",
                   help="images (or token windows) drawn from --calibration (default 256)")
    g.add_argument("--calibration-seed", type=seed_arg, default=0, help="seed of that draw (default 0)")
    g.add_argument("--calibration-length", type=int, default=128, metavar="T",
                   help="tokens per window for transformers (default 128)")
    g.add_argument("--calibration-batch", type=int, default=32, metavar="B",
                   help="samples per forward of the teacher (default 32)")
    g.add_argument("--data-root", default=None, help="where the --calibration dataset's files are")
    g.add_argument("--teacher-model", default=None, metavar="NAME",
                   help="the timm architecture of a --teacher weights file (with --teacher-kwargs), which "
                        "--method activation builds and runs")


def _logged(fn):
    """The package's own messages on stderr (``-v``: progress too). Only the ``weightselect`` logger
    gets a handler: libraries that bring their own (huggingface_hub's retries) print once."""
    def run(args: argparse.Namespace) -> int:
        logger = logging.getLogger("weightselect")
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
        return fn(args)

    return run
