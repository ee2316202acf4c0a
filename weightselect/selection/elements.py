"""Element selection: how the index set of one axis is chosen (paper section 3.2).

A consistent method is one function ``(teacher_size, student_size, seed, axis) -> indices``; the
same index set is then used on every tensor dimension that carries the axis. Methods without
consistency (``random_nocons``, ``l1``, ``magnitude``) choose per tensor instead.
"""
from __future__ import annotations

import contextlib
import hashlib
from typing import Callable, Dict, Iterator, Sequence

import torch

__all__ = [
    "METHODS",
    "CONSISTENT_METHODS",
    "uniform_indices",
    "consecutive_indices",
    "random_indices",
    "select_indices",
    "l1_indices",
    "magnitude_select",
    "derived_seed",
    "take",
    "Scratch",
]


def _check_sizes(t: int, s: int) -> None:
    if s > t:
        raise ValueError(f"cannot select {s} elements out of {t}: the student is wider than the teacher")
    if s < 0:
        raise ValueError(f"negative size {s}")


def uniform_indices(t: int, s: int, seed: int = 0, axis: str = "") -> torch.Tensor:
    """Evenly spaced indices, exactly as the paper's release: ``i * (t // s)`` when ``s`` divides
    ``t``, otherwise ``round(linspace(0, t - 1, s))``."""
    _check_sizes(t, s)
    if s == 0:
        return torch.zeros(0, dtype=torch.long)
    if t % s == 0:
        return torch.arange(s, dtype=torch.long) * (t // s)
    return torch.round(torch.linspace(0, t - 1, s)).long()


def consecutive_indices(t: int, s: int, seed: int = 0, axis: str = "") -> torch.Tensor:
    """The first ``s`` indices."""
    _check_sizes(t, s)
    return torch.arange(s, dtype=torch.long)


def derived_seed(seed: int, *parts: object) -> int:
    """A seed for one choice, derived from the user's seed and a name (order-independent)."""
    text = ":".join([str(int(seed))] + [str(p) for p in parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def random_indices(t: int, s: int, seed: int = 0, axis: str = "") -> torch.Tensor:
    """``s`` distinct random indices out of ``t``, sorted; reproducible from ``(seed, axis)``."""
    _check_sizes(t, s)
    gen = torch.Generator().manual_seed(derived_seed(seed, axis))
    return torch.randperm(t, generator=gen)[:s].sort().values


# Methods that pick one index set per axis (consistency).
CONSISTENT_METHODS: Dict[str, Callable[..., torch.Tensor]] = {
    "uniform": uniform_indices,
    "consecutive": consecutive_indices,
    "random": random_indices,
}
# Every element-selection method; the last three choose per tensor.
from weightselect.selection.names import METHODS  # noqa: E402  (re-exported)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run small tensor work on one torch thread (restored after): index selection and small SVDs
    wait on a busy second core otherwise (measured: one ViT block 0.64 ms on one thread, 44-52 ms
    on two threads of a busy 2-core machine). Usable as a decorator."""
    before = torch.get_num_threads()
    _OUTER_THREADS.append(before)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        _OUTER_THREADS.pop()
        torch.set_num_threads(before)


_OUTER_THREADS: list = []  # the thread counts one_thread replaced, innermost last


@contextlib.contextmanager
def outer_threads() -> Iterator[None]:
    """Inside :func:`one_thread`, run heavy work (a teacher's forward on calibration data) on the
    threads from before it; elsewhere, a no-op."""
    before = torch.get_num_threads()
    torch.set_num_threads(_OUTER_THREADS[0] if _OUTER_THREADS else before)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def select_indices(method: str, t: int, s: int, seed: int = 0, axis: str = "") -> torch.Tensor:
    """The index set of an axis of teacher size ``t`` for a student of size ``s``."""
    try:
        fn = CONSISTENT_METHODS[method]
    except KeyError:
        raise ValueError(
            f"'{method}' does not choose one index set per axis; consistent methods: "
            f"{', '.join(CONSISTENT_METHODS)}"
        ) from None
    return fn(t, s, seed=seed, axis=axis)


def l1_indices(tensor: torch.Tensor, dim: int, s: int) -> torch.Tensor:
    """Structured L1-norm pruning: keep the ``s`` slices along ``dim`` with the largest L1 norm
    (in their original order)."""
    t = tensor.shape[dim]
    _check_sizes(t, s)
    norms = tensor.abs().transpose(0, dim).reshape(t, -1).double().sum(dim=1)
    # largest norm first; stable, so ties keep the lower index
    return torch.argsort(-norms, stable=True)[:s].sort().values


def magnitude_select(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Unstructured magnitude pruning squeezed to ``shape``: keep the ``prod(shape)`` elements of
    largest magnitude, in their original (row-major) order, reshaped to ``shape``."""
    n = 1
    for d in shape:
        n *= int(d)
    flat = tensor.reshape(-1)
    if n > flat.numel():
        raise ValueError(f"cannot squeeze {flat.numel()} elements into shape {tuple(shape)}")
    if n == flat.numel():
        return flat.reshape(tuple(shape)).clone()
    magnitude = flat.abs().double()  # exact for every float dtype (and kthvalue needs no half support)
    threshold = magnitude.kthvalue(flat.numel() - n).values  # the largest dropped magnitude
    keep = magnitude > threshold
    short = n - int(keep.sum())
    if short > 0:  # ties at the threshold: keep the first ones
        keep[(magnitude == threshold).nonzero().squeeze(1)[:short]] = True
    return flat[keep].reshape(tuple(shape)).clone()


class Scratch:
    """Memory reused for the intermediate results of :func:`take` across tensors (a tensor is
    selected one dimension at a time): its pages are faulted in once, not for every tensor (a
    fresh page costs about as much as selecting a few thousand elements)."""

    def __init__(self) -> None:
        self._slots: list = [None, None]  # two: a step reads the previous step's slot

    def tensor(self, slot: int, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        n = dtype.itemsize
        for d in shape:
            n *= int(d)
        buf = self._slots[slot]
        if buf is None or buf.numel() < n:
            buf = self._slots[slot] = torch.empty(n, dtype=torch.uint8)
        return buf[:n].view(dtype).view(tuple(shape))


def take(tensor: torch.Tensor, indices: Sequence[torch.Tensor | None], scratch: Scratch | None = None) -> torch.Tensor:
    """Select ``indices[d]`` along every dimension ``d`` (``None`` keeps the dimension whole); a new
    tensor. ``scratch``: where the steps before the last put their results (else fresh tensors)."""
    steps = [(dim, idx) for dim, idx in enumerate(indices) if idx is not None
             and not (idx.numel() == tensor.shape[dim] and bool((idx == torch.arange(tensor.shape[dim])).all()))]
    out = tensor
    for n, (dim, idx) in enumerate(steps):
        if scratch is not None and n < len(steps) - 1:
            shape = list(out.shape)
            shape[dim] = idx.numel()
            out = torch.index_select(out, dim, idx, out=scratch.tensor(n % 2, shape, out.dtype))
        else:
            out = torch.index_select(out, dim, idx)
    return tensor.clone() if out is tensor else out.contiguous()
