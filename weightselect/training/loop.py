"""The training loop: build, (resume,) train, evaluate, checkpoint; one function, top to bottom.

``train(model, dataset, run_dir, ...)`` writes the run directory of docs/architecture.md:
``metrics.jsonl`` (one line per epoch), ``checkpoint.pt`` (atomically, each epoch and on
SIGTERM/SIGUSR1), ``recipe.yaml``, ``run.json`` (model, dataset, init, teacher, versions) and, at
the end only, ``model.safetensors`` and ``final.json``. Calling it again with the same arguments
resumes from the checkpoint; on the CPU an interrupted-and-resumed run ends with the same weights
and metrics, bit for bit, as an uninterrupted one (num_workers=0).

Multi-GPU: start with ``torchrun --nproc_per_node=N -m weightselect train ...``; each process
trains on its shard, rank 0 writes the files. ``batch_size`` stays the total.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from weightselect import io as wio
from weightselect.models import ModelSpec, create_model
from weightselect.selection import BASELINES, apply_init
from weightselect.training import data as wdata
from weightselect.training.recipe import Recipe, RecipeError, model_family, resolve_recipe

__all__ = ["train", "RunFinishedError", "RunMismatchError", "NonFiniteLossError", "TrainingInterrupted"]

METRICS = "metrics.jsonl"
FINAL = "final.json"
CHECKPOINT = "checkpoint.pt"
RECIPE = "recipe.yaml"
RUN_META = "run.json"
WEIGHTS = "model.safetensors"


class RunFinishedError(RuntimeError):
    """The run directory holds a finished run (final.json)."""


class RunMismatchError(ValueError):
    """The run directory holds a checkpoint of a different run."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingInterrupted(Exception):
    """Training stopped early (signal or stop option) after writing a checkpoint; rerun to resume."""

    def __init__(self, message: str, signum: Optional[int] = None):
        super().__init__(message)
        self.signum = signum


# ----------------------------------------------------------------------------- small helpers
class _Dist:
    """torchrun environment: rank, world size, local rank (a single process when absent)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        self.started_here = False

    def setup(self, device: torch.device) -> None:
        import torch.distributed as dist

        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.started_here = True

    def all_reduce(self, values: List[float], device: torch.device) -> List[float]:
        if not self.enabled:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> List[Any]:
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: List[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def teardown(self) -> None:
        if self.started_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _rng_state() -> Dict[str, Any]:
    """All RNG states as tensors/numbers/lists (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": gauss_next},
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_batches(n: int, batch: int, seed: int, epoch: int, dist: _Dist, update_freq: int) -> List[torch.Tensor]:
    """This rank's batches of one epoch: a permutation seeded by (seed, epoch), split across ranks,
    whole batches only (as drop_last), a multiple of update_freq."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    perm = torch.randperm(n, generator=g)
    per_rank = n // dist.world
    mine = perm[dist.rank: per_rank * dist.world: dist.world]
    n_batches = (len(mine) // batch) // update_freq * update_freq
    return [mine[i * batch:(i + 1) * batch] for i in range(n_batches)]


def _json_line(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=False)


def _normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0).sub_(mean).div_(std)


class _Batches:
    """Batches of (images, targets) on the device, from memory (no PIL) or from a DataLoader."""

    def __init__(self, dataset, memory: Optional[wdata.TensorImageDataset], mean, std, device, num_workers: int):
        self.dataset = dataset
        self.memory = memory
        self.device = device
        self.num_workers = num_workers
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def __call__(self, batches: List[torch.Tensor], loader_seed: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = self.device.type == "cuda"
        if self.memory is not None:
            for idx in batches:
                x = self.memory.images[idx].to(self.device, non_blocking=non_blocking)
                y = self.memory.targets[idx].to(self.device, non_blocking=non_blocking)
                yield _normalize(x, self.mean, self.std), y
            return
        if not batches:
            return
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=[b.tolist() for b in batches],
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(loader_seed),
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)


def _resolve_dataset_arg(dataset: Any) -> Tuple[str, Dict[str, Any]]:
    if isinstance(dataset, str):
        return dataset.lower(), {}
    if isinstance(dataset, Mapping):
        d = dict(dataset)
        if "name" not in d:
            raise ValueError(f"a dataset is a name or {{'name': ..., <options>}}; got keys {sorted(d)}")
        return str(d.pop("name")).lower(), d
    raise TypeError(f"dataset must be a name or a dict, got {type(dataset).__name__}")


def _resolve_recipe_arg(spec: ModelSpec, dataset: str, recipe: Any) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe.validate()
    overrides = dict(recipe or {})
    try:
        family = model_family(spec)
    except RecipeError:
        if "family" not in overrides:
            raise
        family = overrides["family"]
    return resolve_recipe(family, dataset, overrides)


def _model_kwargs(spec: ModelSpec, recipe: Recipe, num_classes: int, in_chans: int) -> Dict[str, Any]:
    """What the dataset and recipe add to the spec's kwargs (num_classes, in_chans, drop path,
    layer scale); a spec that disagrees about classes or channels is an error."""
    kw: Dict[str, Any] = {}
    for key, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if key in spec.kwargs and spec.kwargs[key] != value:
            raise ValueError(
                f"model kwargs say {key}={spec.kwargs[key]} but dataset '{recipe.dataset}' has {value}; "
                f"drop {key} from the model kwargs (the dataset sets it)"
            )
        kw[key] = value
    if "drop_path_rate" in spec.kwargs and spec.kwargs["drop_path_rate"] != recipe.drop_path:
        raise ValueError("drop path is a recipe knob: set 'drop_path' in the recipe, not drop_path_rate in the model kwargs")
    kw["drop_path_rate"] = recipe.drop_path
    ls_key = {"convnext": "ls_init_value", "vit": "init_values"}.get(recipe.family)
    if ls_key and ls_key not in spec.kwargs and recipe.layer_scale is not None:
        kw[ls_key] = recipe.layer_scale
    return kw


def _describe_init(init: Optional[str]) -> Dict[str, Any]:
    init = "random" if init is None else str(init)
    path = Path(init)
    if not path.is_file():
        if init in BASELINES:
            return {"init": init, "kind": "baseline"}
        raise FileNotFoundError(
            f"init '{init}' is neither a baseline ({', '.join(BASELINES)}) nor an existing init file; "
            "make one with `weightselect select ...`"
        )
    manifest_file = wio.manifest_path(path)
    manifest = wio.read_json(manifest_file) if manifest_file.is_file() else {}
    return {"init": str(init), "kind": "file", "sha256": wio.sha256_file(path), "manifest": manifest}


def _apply_init(model: nn.Module, init: Optional[str], seed: int) -> Dict[str, Any]:
    """Apply an init file or named baseline (``None`` is timm's default init, ``random``)."""
    return dict(apply_init(model, init or "random", seed))


def _signals(stop: Dict[str, Any]):
    """Install SIGTERM/SIGUSR1 handlers that ask the loop to checkpoint and stop."""

    @contextlib.contextmanager
    def installed():
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}

        def handler(signum, frame):
            stop["signum"] = signum

        for sig in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if sig is not None:
                previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)

    return installed()


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterator, device: torch.device, dist: _Dist, amp: bool) -> Dict[str, float]:
    """Test loss (cross-entropy) and top-1/top-5 accuracy in percent, summed over ranks."""
    was_training = model.training
    model.eval()
    loss_sum, top1, top5, n = 0.0, 0.0, 0.0, 0.0
    for x, y in batches:
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out = model(x)
        out = out.float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        k = min(5, out.shape[1])
        pred = out.topk(k, dim=1).indices
        hit = pred.eq(y.view(-1, 1))
        top1 += hit[:, :1].sum().item()
        top5 += hit.any(dim=1).sum().item()
        n += y.numel()
    loss_sum, top1, top5, n = dist.all_reduce([loss_sum, top1, top5, n], device)
    model.train(was_training)
    n = max(n, 1.0)
    return {"test_loss": loss_sum / n, "test_top1": 100.0 * top1 / n, "test_top5": 100.0 * top5 / n}


# ----------------------------------------------------------------------------- the run
def train(
    model: Any,
    dataset: Any,
    run_dir: str | os.PathLike,
    *,
    init: Optional[str] = None,
    seed: int = 0,
    recipe: Any = None,
    data_root: Optional[str | os.PathLike] = None,
    download: bool = False,
    device: Optional[str] = None,
    force: bool = False,
    distill: Any = None,
    teacher: Any = None,
    num_workers: int = 0,
    progress: Optional[bool] = None,
    stop_after_epochs: Optional[int] = None,
    stop_at_update: Optional[int] = None,
) -> Optional[Dict[str, Any]]:
    """Train ``model`` on ``dataset`` into ``run_dir`` and return the content of final.json.

    model: ModelSpec, {"name", "kwargs"} or a timm name (num_classes/in_chans come from the data).
    dataset: a name from ``data.DATASETS`` or {"name": ..., <options such as n_per_class>}.
    init: an init file (safetensors + manifest) or a baseline name (random, xavier, kaiming,
      mimetic); None means random (timm's default init under ``seed``).
    recipe: a Recipe, or a dict of overrides on ``resolve_recipe(model, dataset)``.
    distill: None, "logit", "feature", or {"kind", "alpha", "tau", "hidden"}; teacher: a model
      spec dict with "weights" (a weights file), or (spec, weights), or a pretrained timm name.
    progress: None = a tqdm bar when stderr is a terminal, else one log line per epoch.
    stop_after_epochs / stop_at_update: end this call early (after that many epochs in this call,
      or once that many optimizer updates are done in total) as if preempted: the checkpoint is
      written and None is returned; calling again resumes.

    Raises RunFinishedError if run_dir holds a finished run (unless force=True, which starts over),
    RunMismatchError if its checkpoint belongs to other arguments, NonFiniteLossError on a NaN/inf
    loss (the last good checkpoint is kept), TrainingInterrupted after SIGTERM/SIGUSR1.
    """
    run_dir = Path(run_dir)
    dist = _Dist()
    spec = ModelSpec.from_any(model)
    ds_name, ds_options = _resolve_dataset_arg(dataset)
    info = wdata.dataset_info(ds_name)
    recipe = _resolve_recipe_arg(spec, ds_name, recipe)
    if distill is not None:
        d = {"kind": distill} if isinstance(distill, str) else dict(distill)
        recipe = recipe.replace({"distill": d.get("kind"), "distill_alpha": d.get("alpha", recipe.distill_alpha),
                                 "distill_tau": d.get("tau", recipe.distill_tau),
                                 "distill_hidden": d.get("hidden", recipe.distill_hidden)})
    if recipe.distill and teacher is None:
        raise ValueError(f"{recipe.distill} distillation needs a teacher (teacher=..., CLI --teacher/--teacher-weights)")
    from weightselect.training.distill import TeacherSpec, load_teacher, logit_distill_loss, feature_distill_loss, StudentWithProjector

    teacher_spec = TeacherSpec.from_any(teacher) if (teacher is not None and recipe.distill) else None

    # -- the run directory: finished? resumable? ---------------------------------------------
    final_path, ckpt_path = run_dir / FINAL, run_dir / CHECKPOINT
    is_main = dist.rank == 0
    if final_path.exists() and not force:
        raise RunFinishedError(
            f"{run_dir} holds a finished run ({FINAL}); pass force=True (CLI --force) to train it again from scratch"
        )
    if force and is_main:
        for name in (FINAL, CHECKPOINT, METRICS, WEIGHTS, RECIPE, RUN_META):
            with contextlib.suppress(FileNotFoundError):
                (run_dir / name).unlink()

    # -- device, seeds, data -------------------------------------------------------------------
    if device is None:
        device = f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu"
    device_t = torch.device(device)
    if device_t.type == "cuda":
        torch.cuda.set_device(device_t)
        torch.backends.cudnn.benchmark = True
    dist.setup(device_t)
    dist.barrier()  # rank 0 has cleared a forced run before any rank looks for a checkpoint
    is_main = dist.rank == 0
    use_amp = recipe.amp and device_t.type == "cuda"
    in_chans = recipe.in_chans or info.in_chans
    init_desc = _describe_init(init)
    identity = {
        "model": spec.to_dict(), "dataset": {"name": ds_name, **ds_options}, "init": init_desc["init"],
        "init_sha256": init_desc.get("sha256"), "seed": seed, "recipe": recipe.to_dict(),
        "teacher": teacher_spec.to_dict() if teacher_spec else None,
    }
    identity = json.loads(json.dumps(identity))

    train_tf = wdata.build_transform(recipe, info, in_chans, train=True)
    eval_tf = wdata.build_transform(recipe, info, in_chans, train=False)
    build_kw = dict(img_size=recipe.img_size, in_chans=in_chans, download=download, **ds_options)
    train_set = wdata.build_dataset(ds_name, data_root, True, transform=train_tf, **build_kw)
    test_set = wdata.build_dataset(ds_name, data_root, False, transform=eval_tf, **build_kw)
    num_classes = info.num_classes or len(wdata.dataset_classes(train_set) or [])
    train_mem = None if wdata.needs_sample_transforms(recipe) else wdata.as_tensor_dataset(train_set, recipe.img_size, in_chans)
    test_mem = wdata.as_tensor_dataset(test_set, recipe.img_size, in_chans)
    train_index = torch.arange(len(train_set))
    if recipe.train_samples is not None:
        if recipe.train_samples > len(train_set):
            raise RecipeError(f"train_samples {recipe.train_samples} > {len(train_set)} training images")
        train_index = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))[: recipe.train_samples]
    n_train = len(train_index)
    mean, std = info.norm(in_chans)
    train_batches = _Batches(train_set, train_mem, mean, std, device_t, num_workers)
    test_batches = _Batches(test_set, test_mem, mean, std, device_t, num_workers)
    per_device = recipe.batch_per_device(dist.world)
    eval_batch = recipe.eval_batch_size or max(1, int(1.5 * per_device))
    updates_per_epoch = (n_train // dist.world // per_device) // recipe.update_freq
    if updates_per_epoch < 1:
        raise RecipeError(
            f"batch_size {recipe.batch_size} is larger than the {n_train} training images of '{ds_name}': "
            "lower batch_size (the lr scales with it)"
        )
    if recipe.mixup_active and per_device % 2:
        raise RecipeError(f"mixup/cutmix need an even batch per device, got {per_device}")
    total_updates = updates_per_epoch * recipe.epochs
    test_order = torch.arange(len(test_set))[dist.rank:: dist.world]
    test_chunks = list(torch.split(test_order, eval_batch))

    # -- model, init, teacher, optimizer, schedule -------------------------------------------
    resume = torch.load(ckpt_path, map_location="cpu", weights_only=True) if ckpt_path.exists() else None
    if resume is not None and resume["identity"] != identity:
        diff = sorted(k for k in identity if identity[k] != resume["identity"].get(k))
        raise RunMismatchError(
            f"{ckpt_path} belongs to a run with different {', '.join(diff)}; "
            "use another run directory, or force=True (CLI --force) to start over"
        )
    _seed_everything(seed)
    student = create_model(spec, **_model_kwargs(spec, recipe, num_classes, in_chans))
    _check_input_size(student, recipe.img_size)
    init_result = resume["init_result"] if resume is not None else _apply_init(student, init, seed)
    if recipe.head_init_scale is not None and resume is None:
        with torch.no_grad():
            for p in student.get_classifier().parameters():
                p.mul_(recipe.head_init_scale)
    _seed_everything(seed + dist.rank)  # the training stream does not depend on the init method
    teacher_model = load_teacher(teacher_spec, device_t) if teacher_spec else None
    if recipe.distill == "logit":
        t_classes = getattr(teacher_model, "num_classes", None)
        if t_classes != num_classes:
            raise ValueError(f"logit distillation needs a teacher with the student's {num_classes} classes, got {t_classes}")
    net: nn.Module = student
    if recipe.distill == "feature":
        net = StudentWithProjector(student, int(teacher_model.num_features), recipe.distill_hidden)
    net.to(device_t)
    ema = None
    if recipe.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(student, decay=recipe.ema_decay)
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    optimizer = create_optimizer_v2(
        net, opt=recipe.opt, lr=recipe.scaled_lr, weight_decay=recipe.weight_decay,
        layer_decay=recipe.layer_decay, **_opt_kwargs(recipe),
    )
    warmup = min(int(round(recipe.warmup_epochs * updates_per_epoch)), total_updates - 1)
    scheduler = CosineLRScheduler(
        optimizer, t_initial=max(1, total_updates - warmup), lr_min=recipe.min_lr, warmup_t=warmup,
        warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    mixup_fn = None
    if recipe.mixup_active:
        from timm.data import Mixup

        mixup_fn = Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, prob=recipe.mixup_prob,
                         switch_prob=recipe.mixup_switch_prob, mode=recipe.mixup_mode,
                         label_smoothing=recipe.smoothing, num_classes=num_classes)
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if mixup_fn is not None:
        criterion = SoftTargetCrossEntropy()
    elif recipe.smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=recipe.smoothing)
    else:
        criterion = nn.CrossEntropyLoss()
    train_net = net
    if dist.enabled:
        train_net = nn.parallel.DistributedDataParallel(net, device_ids=[device_t.index] if device_t.type == "cuda" else None)

    # -- resume state -----------------------------------------------------------------------------
    history: List[Dict[str, Any]] = []
    start_epoch, num_updates, partial = 0, 0, None
    train_seconds_total, images_total = 0.0, 0
    if resume is not None:
        net.load_state_dict(resume["net"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        if ema is not None:
            ema.load_state_dict(resume["ema"])
        history = list(resume["history"])
        start_epoch, num_updates, partial = resume["epoch"], resume["num_updates"], resume["partial"]
        train_seconds_total, images_total = resume["train_seconds"], resume["images"]
        _set_rng_state(resume["rng"][dist.rank] if dist.rank < len(resume["rng"]) else resume["rng"][0])
        if is_main:
            _log(f"resuming {run_dir} at epoch {start_epoch + 1}" + (f", update {num_updates}" if partial else ""))
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        wio.write_text(run_dir / RECIPE, recipe.to_yaml())
        wio.write_json(run_dir / RUN_META, {
            "model": spec.to_dict(), "model_kwargs_added": _model_kwargs(spec, recipe, num_classes, in_chans),
            "dataset": {"name": ds_name, "options": ds_options, "num_classes": num_classes, "in_chans": in_chans,
                        "img_size": recipe.img_size, "train_images": n_train, "test_images": len(test_set)},
            "init": {**init_desc, "result": init_result}, "seed": seed,
            "distill": {"kind": recipe.distill, "alpha": recipe.distill_alpha, "tau": recipe.distill_tau} if recipe.distill else None,
            "teacher": teacher_spec.to_dict() if teacher_spec else None,
            "lr": recipe.scaled_lr, "batch_per_device": per_device, "world_size": dist.world,
            "updates_per_epoch": updates_per_epoch, "device": str(device_t), "amp": use_amp,
            "sample_transforms": train_mem is None,
            "versions": _versions(),
        })
        wio.write_text(run_dir / METRICS, "".join(_json_line(h) + "\n" for h in history))

    def save_checkpoint(epoch: int, partial_state: Optional[Dict[str, Any]]) -> None:
        rng = dist.gather(_rng_state())
        if not is_main:
            return
        state = {
            "identity": identity, "init_result": init_result, "net": net.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
            "epoch": epoch, "num_updates": num_updates, "partial": partial_state,
            "history": history, "train_seconds": train_seconds_total, "images": images_total, "rng": rng,
        }
        with wio.atomic_write(ckpt_path, "wb") as fh:
            torch.save(state, fh)

    # -- the loop -------------------------------------------------------------------------------------
    show_bar = (sys.stderr.isatty() if progress is None else bool(progress)) and is_main
    stop: Dict[str, Any] = {}
    epochs_this_call = 0
    train_net.train()
    with _signals(stop):
        for epoch in range(start_epoch, recipe.epochs):
            batches = _epoch_batches(n_train, per_device, seed, epoch, dist, recipe.update_freq)
            batches = [train_index[b] for b in batches]
            done = partial["batches"] if partial else 0
            loss_sum = partial["loss_sum"] if partial else 0.0
            loss_count = partial["loss_count"] if partial else 0
            epoch_train_s = partial["seconds"] if partial else 0.0
            partial = None
            bar = None
            if show_bar:
                from tqdm import tqdm

                bar = tqdm(total=len(batches), initial=done, desc=f"epoch {epoch + 1}/{recipe.epochs}",
                           unit="batch", leave=False, dynamic_ncols=True)
            t0 = time.perf_counter()
            t_epoch0 = time.perf_counter()
            micro = done
            for x, y in train_batches(batches[done:], loader_seed=seed * 100003 + epoch * 1009 + done):
                if mixup_fn is not None:
                    x, y_soft = mixup_fn(x, y)
                else:
                    y_soft = y
                last_micro = (micro + 1) % recipe.update_freq == 0
                sync = contextlib.nullcontext() if (last_micro or not dist.enabled) else train_net.no_sync()
                with sync:
                    with torch.autocast(device_t.type, dtype=torch.float16, enabled=use_amp):
                        if recipe.distill == "feature":
                            logits, projected = train_net(x)
                        else:
                            logits = train_net(x)
                        loss = criterion(logits, y_soft)
                        if teacher_model is not None:
                            with torch.no_grad():
                                if recipe.distill == "logit":
                                    t_out = teacher_model(x)
                                else:
                                    from weightselect.training.distill import pooled_features

                                    t_out = pooled_features(teacher_model, x)
                            if recipe.distill == "logit":
                                loss = loss + recipe.distill_alpha * logit_distill_loss(logits, t_out, recipe.distill_tau)
                            else:
                                loss = loss + recipe.distill_alpha * feature_distill_loss(projected, t_out)
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        raise NonFiniteLossError(
                            f"training loss is {loss_value} at epoch {epoch + 1}, update {num_updates}; stopped. "
                            f"{'The last good checkpoint is ' + str(ckpt_path) if ckpt_path.exists() else 'No checkpoint was written yet'}. "
                            "Lower the lr, set clip_grad, or check the data and the init."
                        )
                    if last_micro:
                        scheduler.step_update(num_updates)
                    scaler.scale(loss / recipe.update_freq).backward()
                if last_micro:
                    if recipe.clip_grad is not None:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(net.parameters(), recipe.clip_grad)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    num_updates += 1
                    if ema is not None:
                        ema.update(student, step=num_updates)
                loss_sum += loss_value * y.shape[0]
                loss_count += y.shape[0]
                micro += 1
                if bar is not None:
                    elapsed = epoch_train_s + time.perf_counter() - t0
                    bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                                    img_s=f"{loss_count * dist.world / max(elapsed, 1e-9):.0f}")
                    bar.update(1)
                if last_micro:
                    if stop_at_update is not None and num_updates >= stop_at_update:
                        stop.setdefault("signum", None)
                        stop["reason"] = f"stop_at_update={stop_at_update}"
                    flag = dist.all_reduce([1.0 if stop else 0.0], device_t)[0] > 0  # any rank
                    if flag and micro < len(batches):
                        epoch_train_s += time.perf_counter() - t0
                        save_checkpoint(epoch, {"batches": micro, "loss_sum": loss_sum, "loss_count": loss_count,
                                                "seconds": epoch_train_s})
                        if bar is not None:
                            bar.close()
                        msg = (f"stopped at epoch {epoch + 1}, update {num_updates} ({stop.get('reason') or 'signal'}); "
                               f"checkpoint written to {ckpt_path}; rerun the same command to resume")
                        if is_main:
                            _log(msg)
                        dist.teardown()
                        if stop.get("reason"):
                            return None
                        raise TrainingInterrupted(msg, stop.get("signum"))
            if bar is not None:
                bar.close()
            train_s = time.perf_counter() - t0
            epoch_train_s += train_s
            loss_sum, loss_count = dist.all_reduce([loss_sum, float(loss_count)], device_t)
            eval_model = ema.module if (ema is not None and recipe.ema_eval) else student
            test = evaluate(eval_model, test_batches(test_chunks, loader_seed=0), device_t, dist, use_amp)
            train_seconds_total += epoch_train_s
            epoch_images = int(loss_count)
            images_total += epoch_images
            record = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": loss_sum / max(loss_count, 1.0),
                **test,
                "seconds": epoch_train_s + (time.perf_counter() - t_epoch0 - train_s),
                "images_per_s": epoch_images / max(epoch_train_s, 1e-9),
            }
            history.append(record)
            save_checkpoint(epoch + 1, None)
            if is_main:
                with open(run_dir / METRICS, "a") as fh:
                    fh.write(_json_line(record) + "\n")
                left = (recipe.epochs - epoch - 1) * record["seconds"]
                _log(f"epoch {epoch + 1}/{recipe.epochs}  lr {record['lr']:.2e}  train_loss {record['train_loss']:.4f}  "
                     f"test_loss {record['test_loss']:.4f}  top1 {record['test_top1']:.2f}  top5 {record['test_top5']:.2f}  "
                     f"{record['seconds']:.1f}s  {record['images_per_s']:.0f} img/s  ETA {_fmt_time(left)}")
            epochs_this_call += 1
            signalled = dist.all_reduce([1.0 if stop else 0.0], device_t)[0] > 0  # any rank
            stop_now = signalled or (stop_after_epochs is not None and epochs_this_call >= stop_after_epochs)
            if stop_now and epoch + 1 < recipe.epochs:
                by_signal = signalled and not stop.get("reason")
                reason = stop.get("reason") or ("signal" if by_signal else f"stop_after_epochs={stop_after_epochs}")
                msg = (f"stopped after epoch {epoch + 1} ({reason}); checkpoint written to {ckpt_path}; "
                       "rerun the same command to resume")
                if is_main:
                    _log(msg)
                dist.teardown()
                if by_signal:
                    raise TrainingInterrupted(msg, stop.get("signum"))
                return None

    # -- the end: weights, final.json --------------------------------------------------------------
    final_model = ema.module if (ema is not None and recipe.ema_eval) else student
    final = {
        "model": spec.to_dict(),
        "dataset": ds_name,
        "init": init_desc["init"],
        "seed": seed,
        "epochs": recipe.epochs,
        "final_top1": history[-1]["test_top1"],
        "final_top5": history[-1]["test_top5"],
        "best_top1": max(h["test_top1"] for h in history),
        "train_seconds": train_seconds_total,
        "images_per_s": images_total / max(train_seconds_total, 1e-9),
    }
    if is_main:
        wio.save_state_dict(final_model.state_dict(), run_dir / WEIGHTS,
                            metadata={"producer": "weightselect.train", "model": json.dumps(spec.to_dict())})
        wio.write_json(final_path, final)
    dist.barrier()
    dist.teardown()
    return final


def _opt_kwargs(recipe: Recipe) -> Dict[str, Any]:
    if recipe.opt in ("adamw", "adam", "lamb"):
        return {"betas": tuple(recipe.opt_betas), "eps": recipe.opt_eps}
    return {}


def _check_input_size(model: nn.Module, img_size: int) -> None:
    pe = getattr(model, "patch_embed", None)
    size = getattr(pe, "img_size", None)
    if size is not None and getattr(pe, "strict_img_size", False) and tuple(size) != (img_size, img_size):
        raise ValueError(
            f"the model expects {tuple(size)} inputs but the recipe's img_size is {img_size}: "
            f"add img_size={img_size} to the model kwargs or set img_size in the recipe"
        )


def _versions() -> Dict[str, str]:
    import timm

    from weightselect import __version__

    return {"weightselect": __version__, "torch": torch.__version__, "timm": timm.__version__}
