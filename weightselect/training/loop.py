"""The training run, top to bottom: ``train(model, dataset, run_dir, ...)``.

Read it as timm's or nanoGPT's train script: resolve the arguments, take the run folder
(:class:`~weightselect.training.run.RunDirectory`: lock, finished/mismatch rules, checkpoint),
build the parts (:mod:`~weightselect.training.builder`), resume, then ``train_one_epoch`` and
``evaluate`` (:mod:`~weightselect.training.engine`) per epoch, and write the final files.

The run folder (names in weightselect.rundir): ``metrics.jsonl`` (one line per epoch) and
``summary.csv`` (the same records as a table), TensorBoard events in ``tensorboard/`` when asked,
``checkpoint.pt`` (atomically, each epoch and on SIGTERM/SIGUSR1), ``recipe.yaml``, ``run.json``
(model, dataset, init, teacher, versions) and, at the end only, ``model.safetensors`` and
``final.json``. Calling ``train`` again with the same arguments resumes from the checkpoint; on
the CPU an interrupted-and-resumed run ends with the same weights and metrics, bit for bit, as an
uninterrupted one (num_workers=0). The linear probe (``mode="probe"``) and distillation run
through the same loop.

Multi-GPU: ``torchrun --nproc_per_node=N -m weightselect train ...``, one process per GPU; each
trains on its shard, rank 0 writes the files and holds the folder's lock. ``batch_size`` stays the total.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from weightselect import rulelog
from weightselect import rundir as names
from weightselect.models import ModelSpec, create_model
from weightselect.training import builder
from weightselect.training.batches import Dist, pick_device, rng_state, seed_everything, set_rng_state
from weightselect.training.engine import NonFiniteLossError, Progress, StopRequest, evaluate, train_one_epoch
from weightselect.training.recipe import Recipe, RecipeError, model_family, resolve_recipe
from weightselect.training.run import CheckpointError, RunDirectory, RunFinishedError, RunMismatchError
from weightselect.training.weights import read_init

__all__ = ["train", "RunFinishedError", "RunMismatchError", "CheckpointError", "NonFiniteLossError",
           "TrainingInterrupted"]


class TrainingInterrupted(Exception):
    """Training stopped by SIGTERM/SIGUSR1 after writing a checkpoint; rerun to resume."""

    def __init__(self, message: str, signum: Optional[int] = None):
        super().__init__(message)
        self.signum = signum


# ----------------------------------------------------------------------------- arguments
def _dataset_arg(dataset: Any) -> Tuple[str, Dict[str, Any]]:
    if isinstance(dataset, str):
        return dataset.lower(), {}
    if isinstance(dataset, Mapping):
        d = dict(dataset)
        if "name" not in d:
            raise ValueError(f"a dataset is a name or {{'name': ..., <options>}}; got keys {sorted(d)}")
        return str(d.pop("name")).lower(), d
    raise TypeError(f"dataset must be a name or a dict, got {type(dataset).__name__}")


def _recipe_arg(spec: ModelSpec, dataset: str, recipe: Any, mode: str, distill: Any) -> Recipe:
    """A Recipe as given, or the paper's recipe for (model, dataset, mode) with overrides; the
    ``distill`` argument is folded into the recipe's distill_* keys."""
    if isinstance(recipe, Recipe):
        recipe = recipe.validate()
    else:
        overrides = dict(recipe or {})
        overrides.setdefault("mode", mode)
        try:
            model_family(spec)
        except RecipeError:
            if "family" not in overrides:
                raise
        recipe = resolve_recipe(spec, dataset, overrides)
    if distill is not None:
        d = {"kind": distill} if isinstance(distill, str) else dict(distill)
        recipe = recipe.replace({"distill": d.get("kind"), "distill_alpha": d.get("alpha", recipe.distill_alpha),
                                 "distill_tau": d.get("tau", recipe.distill_tau),
                                 "distill_hidden": d.get("hidden", recipe.distill_hidden)})
    if recipe.mode == "probe" and recipe.distill:
        raise RecipeError("a linear probe does not distil: drop distill (or use mode finetune)")
    return recipe


def _teacher_arg(recipe: Recipe, teacher: Any):
    from weightselect.training.distill import TeacherSpec

    if not recipe.distill:
        return None
    if teacher is None:
        raise ValueError(f"{recipe.distill} distillation needs a teacher (teacher=..., CLI --teacher/--teacher-weights)")
    return TeacherSpec.from_any(teacher)


def _build_teacher(spec, recipe: Recipe, data: builder.Data, device: torch.device):
    """The frozen teacher, fed the batch re-normalized to its own mean/std (distill.Teacher)."""
    from weightselect.training.distill import Teacher, load_teacher, teacher_norm

    if spec is None:
        return None
    model = load_teacher(spec, device)
    if recipe.distill == "logit" and getattr(model, "num_classes", None) != data.num_classes:
        raise ValueError(f"logit distillation needs a teacher with the student's {data.num_classes} classes, "
                         f"got {getattr(model, 'num_classes', None)}")
    mean, std, source = teacher_norm(spec, model)
    if len(mean) != data.in_chans and data.in_chans != 1:  # a grey batch is repeated for an RGB teacher
        raise ValueError(f"the teacher takes {len(mean)} input channels, the student's data has {data.in_chans}: "
                         "give the teacher in_chans matching the data")
    teacher = Teacher(model, (data.mean, data.std), (mean, std)).to(device)
    teacher.norm = {"mean": list(mean), "std": list(std), "from": source}
    return teacher


# ----------------------------------------------------------------------------- the run's context
@dataclass
class _Context:
    """What train_one_epoch/evaluate read: the recipe, parts, data, processes, run folder, stop."""

    recipe: Recipe
    parts: builder.Parts
    data: builder.Data
    dist: Dist
    device: torch.device
    run: RunDirectory
    seed: int
    stop: StopRequest
    show_bar: bool
    identity: Dict[str, Any]
    init_result: Dict[str, Any]
    board: Any = None  # tboard.EventLog when the run writes TensorBoard events (rank 0)

    def progress_bar(self, total: int, initial: int, epoch: int):
        if not self.show_bar:
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{self.recipe.epochs}", unit="batch",
                    leave=False, dynamic_ncols=True)

    def save_checkpoint(self, progress: Progress) -> None:
        """Every state a bit-for-bit resume needs (all ranks' RNG), written atomically by rank 0."""
        p = self.parts
        rng = self.dist.gather(rng_state())
        self.run.save_checkpoint({
            "identity": self.identity, "init_result": self.init_result, "net": p.net.state_dict(),
            "optimizer": p.optimizer.state_dict(), "scheduler": p.scheduler.state_dict(),
            "scaler": p.scaler.state_dict(), "ema": p.ema.state_dict() if p.ema is not None else None,
            **progress.to_dict(), "rng": rng,
        })

    def restore(self, state: Mapping[str, Any]) -> Progress:
        p = self.parts
        p.net.load_state_dict(state["net"])
        p.optimizer.load_state_dict(state["optimizer"])
        p.scheduler.load_state_dict(state["scheduler"])
        p.scaler.load_state_dict(state["scaler"])
        if p.ema is not None:
            p.ema.load_state_dict(state["ema"])
        rank = self.dist.rank
        set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        return Progress.from_dict(state)


# ----------------------------------------------------------------------------- the driver
def train(
    model: Any, dataset: Any, run_dir: str | os.PathLike, *, init: Optional[str] = None, seed: int = 0,
    recipe: Any = None, data_root: Optional[str | os.PathLike] = None, download: bool = False,
    device: Optional[str] = None, force: bool = False, num_workers: int = 0, progress: Optional[bool] = None,
    mode: str = "finetune", distill: Any = None, teacher: Any = None,
    stop_after_epochs: Optional[int] = None, stop_at_update: Optional[int] = None, tensorboard: bool = False,
) -> Optional[Dict[str, Any]]:
    """Train ``model`` on ``dataset`` into ``run_dir`` and return the content of final.json.

    model: ModelSpec, {"name", "kwargs"} or a timm name (num_classes/in_chans come from the data).
    dataset: a name from ``data.DATASETS`` or {"name": ..., <options such as n_per_class>}.
    init: an init file (safetensors + manifest) or a baseline (random, xavier, kaiming, mimetic);
      None means random (timm's default init under ``seed``).
    recipe: a Recipe, or a dict of overrides on ``resolve_recipe(model, dataset, mode=mode)``.
    mode: "finetune" (Tables 13-15) or "probe" (Table 9: linear probe, MAE's recipe).
    distill: None, "logit", "feature", or {"kind", "alpha", "tau", "hidden"} (Table 4); teacher: a
      {"name", "kwargs", "weights"[, "mean", "std"]} dict, (spec, weights), or a pretrained timm name.
    progress: None = a tqdm bar when stderr is a terminal, else one log line per epoch.
    stop_after_epochs / stop_at_update: end this call early (after that many epochs in this call,
      or once that many optimizer updates are done in total) as if preempted: the checkpoint is
      written and None is returned; calling again resumes.
    tensorboard: also write TensorBoard event files into ``run_dir/tensorboard`` (the optional
      ``tensorboard`` package; not part of the run's identity, so a resume may switch it).

    Raises RunFinishedError if run_dir holds a finished run (unless force=True, which starts over),
    LockedError if another process is writing it, RunMismatchError if its checkpoint belongs to
    other arguments, NonFiniteLossError on a NaN/inf loss (the last good checkpoint is kept),
    TrainingInterrupted after SIGTERM/SIGUSR1, RecipeError/ValueError for bad arguments,
    TensorBoardMissing when ``tensorboard`` is on and the package is not installed (before any file is written).
    """
    dist = Dist()
    spec = ModelSpec.from_any(model)
    ds_name, ds_options = _dataset_arg(dataset)
    recipe = _recipe_arg(spec, ds_name, recipe, mode, distill)
    teacher_spec = _teacher_arg(recipe, teacher)
    device_t = pick_device(device, dist)
    if tensorboard:
        from weightselect.training.tboard import require_tensorboard

        require_tensorboard()
    with torch.device("meta"):  # an unknown name or keyword fails here, before the run folder is made
        create_model(spec)
    run = RunDirectory(run_dir, dist.is_main)
    with run.lock():
        run.prepare(force)
        if device_t.type == "cuda":
            torch.cuda.set_device(device_t)
            torch.backends.cudnn.benchmark = True
        dist.setup(device_t)
        dist.barrier()  # rank 0 has cleared a forced run before any rank looks for a checkpoint
        try:
            ctx, progress = _start(spec, ds_name, ds_options, recipe, teacher_spec, init, seed, data_root, download,
                                   device_t, dist, run, num_workers, progress, stop_after_epochs, stop_at_update,
                                   tensorboard)
            return _epochs(ctx, progress, spec, ds_name)
        finally:
            dist.teardown()


def _epochs(ctx: _Context, progress: Progress, spec: ModelSpec, ds_name: str) -> Optional[Dict[str, Any]]:
    """The epochs left, then the final files; None when a stop request ended the call early."""
    try:
        with ctx.stop.signals():
            for epoch in range(progress.epoch, ctx.recipe.epochs):
                stats = train_one_epoch(ctx, progress, epoch)
                if stats is None:
                    return _stopped(ctx, progress, f"stopped at epoch {epoch + 1}, update {progress.num_updates}")
                _end_epoch(ctx, progress, epoch, stats)
                if ctx.stop.after_epoch(ctx.dist, ctx.device) and epoch + 1 < ctx.recipe.epochs:
                    return _stopped(ctx, progress, f"stopped after epoch {epoch + 1}")
        return _finish(ctx, progress, spec, ds_name)
    finally:
        if ctx.board is not None:
            ctx.board.close()


def _start(spec, ds_name, ds_options, recipe, teacher_spec, init, seed, data_root, download, device, dist, run,
           num_workers, show_progress, stop_after_epochs, stop_at_update, tensorboard) -> Tuple[_Context, Progress]:
    """Build everything, resume from the checkpoint if there is one, write recipe.yaml/run.json
    (and open the TensorBoard log, replaying the checkpoint's epochs)."""
    run_init = read_init(init)  # read and hashed once
    identity = json.loads(json.dumps({
        "model": spec.to_dict(), "dataset": {"name": ds_name, **ds_options}, "init": run_init.name,
        "init_sha256": run_init.sha256, "seed": seed, "recipe": recipe.to_dict(),
        "teacher": teacher_spec.to_dict() if teacher_spec else None,
    }))
    data = builder.build_data(recipe, ds_name, ds_options, data_root, download, dist, device, num_workers)
    resume = run.load_checkpoint(identity)
    seed_everything(seed)
    student = builder.build_student(spec, recipe, data)
    init_result = resume["init_result"] if resume is not None else run_init.apply(student, seed)
    if recipe.head_init_scale is not None and resume is None:
        with torch.no_grad():
            for p in student.get_classifier().parameters():
                p.mul_(recipe.head_init_scale)
    seed_everything(seed + dist.rank)  # the training stream does not depend on the init method
    teacher = _build_teacher(teacher_spec, recipe, data, device)
    parts = builder.build_parts(student, recipe, data, teacher, dist, device)
    show_bar = (sys.stderr.isatty() if show_progress is None else bool(show_progress)) and dist.is_main
    ctx = _Context(recipe, parts, data, dist, device, run, seed, StopRequest(stop_after_epochs, stop_at_update),
                   show_bar, identity, init_result)
    progress = ctx.restore(resume) if resume is not None else Progress()
    run.start(recipe.to_yaml(), _run_meta(ctx, spec, ds_name, ds_options, run_init, teacher_spec), progress.history)
    if tensorboard and dist.is_main:
        from weightselect.training.tboard import EventLog

        ctx.board = EventLog(run.tensorboard_dir, progress.history)
    if dist.is_main:
        rulelog.progress(f"training {spec.name} on {ds_name} from epoch {progress.epoch + 1} of {recipe.epochs} "
                         f"({data.updates_per_epoch} updates per epoch, device {device})", force=True)
    if progress.epoch >= recipe.epochs:
        run.log(f"{run.path}: all {recipe.epochs} epochs were trained; writing the final files")
    elif resume is not None:
        run.log(f"resuming {run.path} at epoch {progress.epoch + 1}"
                + (f", update {progress.num_updates}" if progress.partial else ""))
    return ctx, progress


def _run_meta(ctx: _Context, spec, ds_name, ds_options, run_init, teacher_spec) -> Dict[str, Any]:
    r, d, p = ctx.recipe, ctx.data, ctx.parts
    return {
        "mode": r.mode, "model": spec.to_dict(),
        "model_kwargs_added": builder.model_kwargs(spec, r, d.num_classes, d.in_chans),
        "dataset": {"name": ds_name, "options": ds_options, "num_classes": d.num_classes, "in_chans": d.in_chans,
                    "img_size": r.img_size, "train_images": d.n_train,
                    "test_images": len(d.test_set) if r.eval_samples is None else r.eval_samples,
                    "mean": list(d.mean), "std": list(d.std)},
        "init": {**run_init.describe(), "result": ctx.init_result}, "seed": ctx.seed,
        "distill": {"kind": r.distill, "alpha": r.distill_alpha, "tau": r.distill_tau} if r.distill else None,
        "teacher": {**teacher_spec.to_dict(), "input_norm": p.teacher.norm} if teacher_spec else None,
        "probe_head": {"classifier": p.head.classifier_name, "layers": [repr(m) for m in p.head]} if p.head else None,
        "lr": r.scaled_lr, "batch_per_device": d.per_device, "update_freq": r.update_freq, "world_size": ctx.dist.world,
        "updates_per_epoch": d.updates_per_epoch, "device": str(ctx.device),
        "amp": str(p.amp_dtype).replace("torch.", "") if p.amp_dtype else None,
        "channels_last": p.channels_last, "compile": r.compile, "sample_transforms": d.sample_transforms,
        "versions": _versions(),
    }


def _end_epoch(ctx: _Context, progress: Progress, epoch: int, stats: Dict[str, float]) -> None:
    """Evaluate, record the epoch's metrics, checkpoint, log one line."""
    t0 = time.perf_counter()
    loss_sum, loss_count = ctx.dist.all_reduce([stats["loss_sum"], float(stats["loss_count"])], ctx.device)
    test = evaluate(ctx, ctx.parts.eval_model)
    record = {
        "epoch": epoch + 1, "lr": ctx.parts.optimizer.param_groups[0]["lr"],
        "train_loss": loss_sum / max(loss_count, 1.0), **test,
        "seconds": stats["seconds"] + time.perf_counter() - t0,
        "images_per_s": loss_count / max(stats["seconds"], 1e-9),
    }
    progress.history.append(record)
    progress.epoch, progress.train_seconds = epoch + 1, progress.train_seconds + stats["seconds"]
    progress.images += int(loss_count)
    ctx.save_checkpoint(progress)
    ctx.run.append_metrics(record, progress.history)
    if ctx.board is not None:
        ctx.board.add(record)
    left = (ctx.recipe.epochs - epoch - 1) * record["seconds"]
    ctx.run.log(f"epoch {epoch + 1}/{ctx.recipe.epochs}  lr {record['lr']:.2e}  train_loss {record['train_loss']:.4f}  "
                f"test_loss {record['test_loss']:.4f}  top1 {record['test_top1']:.2f}  top5 {record['test_top5']:.2f}  "
                f"{record['seconds']:.1f}s  {record['images_per_s']:.0f} img/s  ETA {_fmt_time(left)}")
    if ctx.dist.is_main:  # the console of a workflow job: the first and last epoch, else every 30 s at most
        rulelog.progress(f"epoch {epoch + 1}/{ctx.recipe.epochs}  top-1 {record['test_top1']:.2f}  "
                         f"ETA {_fmt_time(left)}", force=epoch == 0 or epoch + 1 == ctx.recipe.epochs)


def _stopped(ctx: _Context, progress: Progress, where: str) -> None:
    """A stop request was honoured (checkpoint written): return None, or raise TrainingInterrupted
    for a signal (the caller prints its message once)."""
    stop = ctx.stop
    msg = (f"{where} ({stop.reason or 'signal'}); checkpoint written to {ctx.run.checkpoint}; "
           "rerun the same command to resume")
    if stop.by_signal:
        raise TrainingInterrupted(msg, stop.signum)
    ctx.run.log(msg)
    return None


def _finish(ctx: _Context, progress: Progress, spec: ModelSpec, ds_name: str) -> Dict[str, Any]:
    """final.json (keys: weightselect.rundir.FINAL_KEYS and more) and the final weights."""
    history = progress.history
    best = max(range(len(history)), key=lambda i: history[i]["test_top1"])  # the first best epoch
    final = {
        "model": spec.to_dict(), "dataset": ds_name, "init": ctx.identity["init"], "seed": ctx.seed,
        "mode": ctx.recipe.mode, "epochs": ctx.recipe.epochs,
        "final_top1": history[-1]["test_top1"], "final_top5": history[-1]["test_top5"],
        "best_top1": history[best]["test_top1"], "best_top5": max(h["test_top5"] for h in history),
        "best_epoch": history[best]["epoch"],
        "train_seconds": progress.train_seconds, "images_per_s": progress.images / max(progress.train_seconds, 1e-9),
    }
    assert all(k in final for k in names.FINAL_KEYS)
    ctx.run.finish(ctx.parts.eval_model.state_dict(), final=final, history=history, metadata={
        "producer": "weightselect.train", "model": json.dumps(spec.to_dict()), "mode": ctx.recipe.mode})
    ctx.dist.barrier()
    return final


def _fmt_time(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _versions() -> Dict[str, str]:
    import timm

    from weightselect import __version__

    return {"weightselect": __version__, "torch": torch.__version__, "timm": timm.__version__}

