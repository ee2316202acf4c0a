"""One epoch of training and one evaluation, as in timm's train.py: ``train_one_epoch`` and
``evaluate``, plus the resumable progress a checkpoint carries and the stop requests (signals,
``stop_after_epochs``, ``stop_at_update``) the loop honours."""
from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from weightselect import rulelog
from weightselect.training import batches as wbatches
from weightselect.training.distill import feature_distill_loss, logit_distill_loss

__all__ = ["Progress", "StopRequest", "NonFiniteLossError", "train_one_epoch", "evaluate"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Progress:
    """Where a run stands: finished epochs, optimizer updates, the state of an epoch stopped midway
    (batches done, loss sums, seconds), the metrics so far, total training seconds and images."""

    epoch: int = 0
    num_updates: int = 0
    partial: Optional[Dict[str, Any]] = None
    history: List[Dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    images: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "num_updates": self.num_updates, "partial": self.partial,
                "history": self.history, "train_seconds": self.train_seconds, "images": self.images}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Progress":
        return cls(d["epoch"], d["num_updates"], d["partial"], list(d["history"]), d["train_seconds"], d["images"])


class StopRequest:
    """A request to checkpoint and stop: SIGTERM/SIGUSR1 (what SLURM sends before a time limit) or
    the ``stop_at_update`` / ``stop_after_epochs`` options. Ranks agree on it (any rank stops all)."""

    def __init__(self, stop_after_epochs: Optional[int], stop_at_update: Optional[int]):
        self.after_epochs, self.at_update = stop_after_epochs, stop_at_update
        self.signum: Optional[int] = None
        self.reason: Optional[str] = None
        self.epochs_done = 0

    @contextlib.contextmanager
    def signals(self):
        """Install the SIGTERM/SIGUSR1 handlers meanwhile (main thread only); the old ones come back."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}

        def handler(signum, frame):
            self.signum = signum

        for sig in (signal.SIGTERM, getattr(signal, "SIGUSR1", None)):
            if sig is not None:
                previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)

    def after_update(self, num_updates: int, dist, device) -> bool:
        if self.at_update is not None and num_updates >= self.at_update:
            self.reason = f"stop_at_update={self.at_update}"
        return dist.any(self.signum is not None or self.reason is not None, device)

    def after_epoch(self, dist, device) -> bool:
        self.epochs_done += 1
        if self.after_epochs is not None and self.epochs_done >= self.after_epochs and self.reason is None:
            self.reason = f"stop_after_epochs={self.after_epochs}"
        return dist.any(self.signum is not None or self.reason is not None, device)

    @property
    def by_signal(self) -> bool:
        """Stopped by a signal rather than an option (the CLI then exits 128 + signal)."""
        return self.reason is None


def _autocast(ctx):
    return torch.autocast(ctx.device.type, dtype=ctx.parts.amp_dtype, enabled=ctx.parts.amp_dtype is not None)


def forward_loss(ctx, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Classification loss plus, with a teacher, alpha x the distillation loss (Eq. 1 / Eq. 2)."""
    parts, recipe = ctx.parts, ctx.recipe
    with _autocast(ctx):
        if recipe.objective != "supervised":  # self-supervised pretraining (weightselect.training.ssl)
            return parts.train_net(x, target)
        if recipe.distill == "feature":
            logits, projected = parts.train_net(x)
        else:
            logits = parts.train_net(x)
        loss = parts.criterion(logits, target)
        if recipe.distill == "logit":
            loss = loss + recipe.distill_alpha * logit_distill_loss(logits, parts.teacher.logits(x), recipe.distill_tau)
        elif recipe.distill == "feature":
            loss = loss + recipe.distill_alpha * feature_distill_loss(projected, parts.teacher.features(x))
    return loss


def train_step(ctx, progress: Progress, x, y, last_micro: bool, epoch: int) -> float:
    """Forward, backward and (on the last micro-batch of update_freq) one optimizer update."""
    parts, recipe = ctx.parts, ctx.recipe
    if parts.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    target = y
    if parts.mixup_fn is not None:
        x, target = parts.mixup_fn(x, y)
    sync = contextlib.nullcontext() if (last_micro or not ctx.dist.enabled) else parts.train_net.no_sync()
    with sync:
        loss = forward_loss(ctx, x, target)
        value = loss.item()
        if not math.isfinite(value):
            ckpt = ctx.run.checkpoint
            raise NonFiniteLossError(
                f"training loss is {value} at epoch {epoch + 1}, update {progress.num_updates}; stopped. "
                f"{'The last good checkpoint is ' + str(ckpt) if ckpt.exists() else 'No checkpoint was written yet'}. "
                "Lower the lr, set clip_grad, or check the data and the init.")
        if last_micro:
            parts.scheduler.step_update(progress.num_updates)
        parts.scaler.scale(loss / recipe.update_freq).backward()
    if last_micro:
        if recipe.clip_grad is not None:
            parts.scaler.unscale_(parts.optimizer)
            nn.utils.clip_grad_norm_(parts.net.parameters(), recipe.clip_grad)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.optimizer.zero_grad(set_to_none=True)
        progress.num_updates += 1
        if parts.ema is not None:
            parts.ema.update(parts.student, step=progress.num_updates)
    return value


def train_one_epoch(ctx, progress: Progress, epoch: int) -> Optional[Dict[str, float]]:
    """Train epoch ``epoch`` (from 0), continuing a partial one. Returns this rank's
    {loss_sum, loss_count, seconds}, or None when a stop request ended it midway (checkpoint written)."""
    recipe, data, dist = ctx.recipe, ctx.data, ctx.dist
    order = wbatches.epoch_batches(data.n_train, data.per_device, ctx.seed, epoch, dist, recipe.update_freq)
    order = [data.train_index[b] for b in order]
    p, progress.partial = progress.partial or {}, None
    done, loss_sum, loss_count, seconds = p.get("batches", 0), p.get("loss_sum", 0.0), p.get("loss_count", 0), p.get("seconds", 0.0)
    bar = ctx.progress_bar(len(order), done, epoch)
    ctx.parts.set_train_mode()
    t0 = time.perf_counter()
    micro = done
    for x, y in data.train_batches(order[done:], loader_seed=ctx.seed * 100003 + epoch * 1009 + done):
        last_micro = (micro + 1) % recipe.update_freq == 0
        value = train_step(ctx, progress, x, y, last_micro, epoch)
        loss_sum += value * y.shape[0]
        loss_count += y.shape[0]
        micro += 1
        if dist.is_main and rulelog.progress_due():  # a long epoch: a line at the console every 30 s at most
            rulelog.progress(f"epoch {epoch + 1}/{recipe.epochs}: batch {micro}/{len(order)}  loss {value:.3f}")
        if bar is not None:
            rate = loss_count * dist.world / max(seconds + time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{ctx.parts.optimizer.param_groups[0]['lr']:.2e}", img_s=f"{rate:.0f}")
            bar.update(1)
        if last_micro and ctx.stop.after_update(progress.num_updates, dist, ctx.device) and micro < len(order):
            seconds += time.perf_counter() - t0
            progress.partial = {"batches": micro, "loss_sum": loss_sum, "loss_count": loss_count, "seconds": seconds}
            progress.epoch = epoch
            ctx.save_checkpoint(progress)
            if bar is not None:
                bar.close()
            return None
    if bar is not None:
        bar.close()
    return {"loss_sum": loss_sum, "loss_count": loss_count, "seconds": seconds + time.perf_counter() - t0}


@torch.no_grad()
def evaluate(ctx, model: nn.Module) -> Dict[str, float]:
    """Test loss (cross-entropy) and top-1/top-5 accuracy in percent (timm's ``accuracy``), summed
    over ranks. Keys: test_loss, test_top1, test_top5."""
    from timm.utils import accuracy

    was_training = model.training
    model.eval()
    loss_sum, top1, top5, n = 0.0, 0.0, 0.0, 0.0
    for x, y in ctx.data.test_batches(ctx.data.test_chunks, loader_seed=0):
        if ctx.parts.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(ctx):
            out = model(x)
        out = out.float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        acc1, acc5 = accuracy(out, y, topk=(1, 5))
        top1 += round(acc1.item() * y.numel() / 100.0)
        top5 += round(acc5.item() * y.numel() / 100.0)
        n += y.numel()
    loss_sum, top1, top5, n = ctx.dist.all_reduce([loss_sum, top1, top5, n], ctx.device)
    model.train(was_training)
    n = max(n, 1.0)
    return {"test_loss": loss_sum / n, "test_top1": 100.0 * top1 / n, "test_top5": 100.0 * top5 / n}
