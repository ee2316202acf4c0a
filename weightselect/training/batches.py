"""Processes and batches: the torchrun environment, each rank's seeded shard of an epoch, batches on
the device (from memory, or from a DataLoader with pinned memory and persistent workers), and the
RNG state a checkpoint carries."""
from __future__ import annotations

import os
import random
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import torch

__all__ = ["Dist", "epoch_batches", "normalize", "Batches", "rng_state", "set_rng_state", "seed_everything"]


class Dist:
    """torchrun environment: rank, world size, local rank (a single process when absent)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        self.started_here = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def setup(self, device: torch.device) -> None:
        import torch.distributed as dist

        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.started_here = True

    def all_reduce(self, values: List[float], device: torch.device) -> List[float]:
        """Sums over ranks (the values themselves in a single process)."""
        if not self.enabled:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True when ``flag`` is set on any rank (stop decisions are taken together)."""
        return self.all_reduce([1.0 if flag else 0.0], device)[0] > 0

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
            self.started_here = False


def epoch_batches(n: int, batch: int, seed: int, epoch: int, dist: Dist, update_freq: int) -> List[torch.Tensor]:
    """This rank's batches of one epoch: a permutation seeded by (seed, epoch), split across ranks,
    whole batches only (as drop_last), a multiple of update_freq."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    perm = torch.randperm(n, generator=g)
    per_rank = n // dist.world
    mine = perm[dist.rank: per_rank * dist.world: dist.world]
    n_batches = (len(mine) // batch) // update_freq * update_freq
    return [mine[i * batch:(i + 1) * batch] for i in range(n_batches)]


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, C, H, W) -> float, scaled to [0, 1], minus mean, over std (per channel)."""
    return x.float().div_(255.0).sub_(mean).div_(std)


class _EpochSampler:
    """A batch sampler whose batches are set per epoch (the loader and its workers persist)."""

    def __init__(self):
        self.batches: List[List[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Batches:
    """Batches of (images, targets) on the device, from memory (no PIL) or from a DataLoader.

    The DataLoader pins memory on CUDA; with workers it keeps them between epochs
    (``persistent_workers``). Bit-for-bit resumption holds for the in-memory path and for
    ``num_workers=0``; loader workers seed their augmentation per loader start.
    """

    def __init__(self, dataset, memory, mean, std, device: torch.device, num_workers: int):
        self.dataset = dataset
        self.memory = memory
        self.device = device
        self.num_workers = num_workers
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self._loader = None
        self._sampler = _EpochSampler()
        self._generator = torch.Generator()

    def _dataloader(self, loader_seed: int):
        self._generator.manual_seed(loader_seed)
        if self._loader is None or self.num_workers == 0:
            self._loader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=self._sampler, num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0,
                generator=self._generator,
            )
        return self._loader

    def __call__(self, batches: List[torch.Tensor], loader_seed: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = self.device.type == "cuda"
        if self.memory is not None:
            for idx in batches:
                x = self.memory.images[idx].to(self.device, non_blocking=non_blocking)
                y = self.memory.targets[idx].to(self.device, non_blocking=non_blocking)
                yield normalize(x, self.mean, self.std), y
            return
        if not batches:
            return
        self._sampler.batches = [b.tolist() for b in batches]
        for x, y in self._dataloader(loader_seed):
            yield x.to(self.device, non_blocking=non_blocking), y.to(self.device, non_blocking=non_blocking)


def rng_state() -> Dict[str, Any]:
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


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(device: Optional[str], dist: Dist) -> torch.device:
    """The device to train on; a clear ValueError for a CUDA device PyTorch cannot see."""
    if device is None:
        return torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    device_t = torch.device(device)
    if device_t.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' asked for, but PyTorch sees no CUDA GPU here "
                         "(torch.cuda.is_available() is False): use --device cpu or run on a GPU node")
    return device_t
