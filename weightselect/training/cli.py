"""``weightselect train``, ``weightselect probe`` and ``weightselect recipe``."""
from __future__ import annotations

import argparse
import json
import signal
import sys

__all__ = ["register"]


def _model_arg(args) -> dict:
    kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    if not isinstance(kwargs, dict):
        raise ValueError("--model-kwargs takes a JSON object, e.g. '{\"img_size\": 16}'")
    return {"name": args.model, "kwargs": kwargs}


def _dataset_arg(args):
    options = json.loads(args.dataset_options) if getattr(args, "dataset_options", None) else {}
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", default=None, help="YAML file of recipe overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (repeatable)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--force", action="store_true", help="train again even if the run directory holds a finished run")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="data loader worker processes (default: 0 on the CPU, up to 8 with CUDA)")


def _workers(args) -> int:
    if args.num_workers is not None:
        return args.num_workers
    import os

    import torch

    return min(8, os.cpu_count() or 1) if torch.cuda.is_available() and args.device != "cpu" else 0


def _cmd_train(args) -> int:
    from weightselect.training.loop import TrainingInterrupted, train

    teacher = None
    if args.teacher:
        kwargs = json.loads(args.teacher_kwargs) if args.teacher_kwargs else {}
        teacher = {"name": args.teacher, "kwargs": kwargs, "weights": args.teacher_weights}
    distill = None
    if args.distill:
        distill = {"kind": args.distill}
        if args.distill_alpha is not None:
            distill["alpha"] = args.distill_alpha
    try:
        final = train(
            _model_arg(args), _dataset_arg(args), args.out, init=args.init, seed=args.seed,
            recipe=_overrides(args), data_root=args.data_root, download=args.download, device=args.device,
            force=args.force, distill=distill, teacher=teacher, num_workers=_workers(args),
            stop_after_epochs=args.stop_after_epochs,
        )
    except TrainingInterrupted as exc:
        print(f"weightselect train: {exc}", file=sys.stderr)
        return 128 + (exc.signum or signal.SIGTERM)
    if final is None:
        return 0
    print(json.dumps(final))
    return 0


def _cmd_probe(args) -> int:
    from weightselect.training.probe import probe

    result = probe(
        _model_arg(args), _dataset_arg(args), args.out, init=args.init, seed=args.seed,
        recipe=_overrides(args), data_root=args.data_root, download=args.download, device=args.device,
        force=args.force, num_workers=_workers(args), weights=args.weights,
    )
    print(json.dumps(result))
    return 0


def _cmd_recipe(args) -> int:
    from weightselect.training.recipe import resolve_recipe

    overrides = _overrides(args)
    print(resolve_recipe(args.model, args.dataset, overrides).to_yaml(), end="")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model with the paper's recipe into a run directory",
                              description="Train (or resume) one run; see docs/training.md.")
    _add_common(p)
    p.add_argument("--distill", choices=["logit", "feature"], default=None, help="knowledge distillation (Table 4)")
    p.add_argument("--distill-alpha", type=float, default=None, help="distillation loss coefficient")
    p.add_argument("--teacher", default=None, help="teacher timm name (with a pretrained tag, or with --teacher-weights)")
    p.add_argument("--teacher-kwargs", default=None, help="JSON object of the teacher's create_model kwargs")
    p.add_argument("--teacher-weights", default=None, help="teacher weights (.safetensors or a state dict)")
    p.add_argument("--stop-after-epochs", type=int, default=None,
                   help="end this call after N epochs (checkpointed; rerun to continue)")
    p.set_defaults(func=_cmd_train)

    p = subparsers.add_parser("probe", help="linear probe: frozen features + a linear classifier (Table 9)")
    _add_common(p)
    p.add_argument("--weights", default=None, help="weights for the backbone instead of --init (e.g. a run's model.safetensors)")
    p.set_defaults(func=_cmd_probe)

    p = subparsers.add_parser("recipe", help="print the resolved training recipe as YAML")
    p.add_argument("--model", required=True, help="convnext_f, vit_t, convnext, vit or a timm name")
    p.add_argument("--dataset", required=True)
    p.add_argument("--recipe", default=None, help="YAML file of overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=_cmd_recipe)
