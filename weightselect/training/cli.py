"""``weightselect train``, ``weightselect probe`` and ``weightselect recipe``."""
from __future__ import annotations

import argparse
import json
import signal
import sys

from weightselect.models import seed_arg

__all__ = ["register"]


def _json_object(text, option: str) -> dict:
    """A JSON object given on the command line; a ValueError naming the option otherwise."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{option} is not valid JSON ({exc.msg} at character {exc.pos}): {text!r}; "
                         f"give a JSON object, e.g. {option} '{{\"img_size\": 16}}'") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} takes a JSON object, e.g. {option} '{{\"img_size\": 16}}'; got {text!r}")
    return value


def _model_arg(args) -> dict:
    return {"name": args.model, "kwargs": _json_object(args.model_kwargs, "--model-kwargs")}


def _dataset_arg(args):
    options = _json_object(getattr(args, "dataset_options", None), "--dataset-options")
    return {"name": args.dataset, **options} if options else args.dataset


def _overrides(args) -> dict:
    from weightselect.training.recipe import load_overrides, parse_set_options

    overrides = load_overrides(args.recipe) if args.recipe else {}
    overrides.update(parse_set_options(args.set))
    return overrides


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="timm model name (e.g. vit_tiny_patch16_224)")
    p.add_argument("--model-kwargs", default=None, help="JSON object of timm.create_model keyword arguments")
    p.add_argument("--dataset", required=True, help="dataset name (weightselect.training.data.DATASETS)")
    p.add_argument("--dataset-options", default=None, help="JSON object of dataset options (e.g. n_per_class)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--download", action="store_true", help="download a torchvision dataset into --data-root")
    p.add_argument("--init", default=None, help="init file (.safetensors) or random|xavier|kaiming|mimetic")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--recipe", default=None, help="YAML file of recipe overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (repeatable)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--force", action="store_true", help="train again even if the run directory holds a finished run")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="data loader worker processes (default: 0 on the CPU, up to 8 with CUDA)")
    p.add_argument("--stop-after-epochs", type=int, default=None,
                   help="end this call after N epochs (checkpointed; rerun to continue)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files into OUT/tensorboard (pip install 'weightselect[tensorboard]')")


def _workers(args) -> int:
    if args.num_workers is not None:
        return args.num_workers
    from weightselect.training.builder import default_workers

    return default_workers(args.device)


def _teacher_and_distill(args):
    teacher = distill = None
    if getattr(args, "teacher", None):
        teacher = {"name": args.teacher, "kwargs": _json_object(args.teacher_kwargs, "--teacher-kwargs"),
                   "weights": args.teacher_weights}
    if getattr(args, "distill", None):
        distill = {"kind": args.distill}
        for key in ("alpha", "tau", "hidden"):
            if getattr(args, f"distill_{key}") is not None:
                distill[key] = getattr(args, f"distill_{key}")
    return teacher, distill


def _cmd_train(args) -> int:
    from weightselect.training.loop import TrainingInterrupted, train

    teacher, distill = _teacher_and_distill(args)
    try:
        final = train(
            _model_arg(args), _dataset_arg(args), args.out, init=args.init, seed=args.seed,
            recipe=_overrides(args), data_root=args.data_root, download=args.download, device=args.device,
            force=args.force, distill=distill, teacher=teacher, num_workers=_workers(args),
            mode=getattr(args, "mode", "finetune"), stop_after_epochs=args.stop_after_epochs,
            tensorboard=args.tensorboard,
        )
    except TrainingInterrupted as exc:  # the one line that says where it stopped
        print(f"weightselect {args.command}: {exc}", file=sys.stderr)
        return 128 + (exc.signum or signal.SIGTERM)
    if final is None:
        return 0
    print(json.dumps(final))
    return 0


def _cmd_recipe(args) -> int:
    from weightselect.models import UnknownModelError, check_known
    from weightselect.training.recipe import FAMILY_ALIASES, resolve_recipe

    overrides = _overrides(args)
    if args.model.lower() not in FAMILY_ALIASES:  # a timm name, not vit_t / convnext_f: timm must know it
        try:
            check_known(args.model)
        except UnknownModelError as exc:
            raise UnknownModelError(f"{exc} Or a short name of the paper's models: "
                                    f"{', '.join(sorted(FAMILY_ALIASES))}.") from None
    print(resolve_recipe(args.model, args.dataset, overrides, mode=args.mode).to_yaml(), end="")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model with the paper's recipe into a run directory",
                              description="Train (or resume) one run; see docs/training.md.")
    _add_common(p)
    p.add_argument("--mode", choices=["finetune", "probe"], default="finetune",
                   help="probe: linear probe of the frozen model (Table 9, MAE's recipe); same as `weightselect probe`")
    p.add_argument("--distill", choices=["logit", "feature"], default=None, help="knowledge distillation (Table 4)")
    p.add_argument("--distill-alpha", type=float, default=None, help="distillation loss coefficient (default 1)")
    p.add_argument("--distill-tau", type=float, default=None, help="logit distillation temperature (default 1)")
    p.add_argument("--distill-hidden", type=int, default=None, help="feature distillation: MLP hidden width")
    p.add_argument("--teacher", default=None, help="teacher timm name (with a pretrained tag, or with --teacher-weights)")
    p.add_argument("--teacher-kwargs", default=None, help="JSON object of the teacher's create_model kwargs")
    p.add_argument("--teacher-weights", default=None, help="teacher weights (.safetensors or a state dict)")
    p.set_defaults(func=_cmd_train)

    p = subparsers.add_parser("probe", help="linear probe: frozen model + BatchNorm/linear head (Table 9)",
                              description="`weightselect train --mode probe`: MAE's linear-probe recipe; see docs/training.md.")
    _add_common(p)
    p.set_defaults(func=_cmd_train, mode="probe")

    p = subparsers.add_parser("recipe", help="print the resolved training recipe as YAML")
    p.add_argument("--model", required=True, help="convnext_f, vit_t, convnext, vit or a timm name")
    p.add_argument("--dataset", required=True)
    p.add_argument("--mode", choices=["finetune", "probe"], default="finetune")
    p.add_argument("--recipe", default=None, help="YAML file of overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_recipe)
