"""Training memory per sample of the paper's models, measured on the CPU: the bytes of the tensors
autograd saves for the backward pass (torch.autograd.graph.saved_tensors_hooks) in one forward at
batch 2 under bfloat16 autocast (what AMP keeps on a GPU), and the parameter count. These figures
are weightselect/training/memory_table.yaml; tests/training/test_memory.py re-measures one.

    python benchmarks/bench_memory.py            # prints the table as YAML
"""
from __future__ import annotations

import sys

import timm
import torch

MODELS = {
    "vit_tiny_patch16_224": {},
    "vit_tiny_patch16_224@depth6": {"depth": 6},
    "vit_small_patch16_224": {},
    "convnext_femto": {},
    "deit_small_patch16_224": {},
}


def saved_bytes_per_sample(name: str, kwargs: dict, img_size: int = 224, batch: int = 2) -> float:
    """Bytes autograd saves per sample for one training forward (bf16 autocast, CPU)."""
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).train()
    total = 0

    def pack(t):
        nonlocal total
        if isinstance(t, torch.Tensor) and not isinstance(t, torch.nn.Parameter) and t.requires_grad is not None:
            total += t.numel() * t.element_size()
        return t

    x = torch.randn(batch, 3, img_size, img_size)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x).float().sum()
    return total / batch


def params(name: str, kwargs: dict) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in timm.create_model(name, **kwargs).parameters())


def main() -> int:
    import platform

    print(f"# measured by benchmarks/bench_memory.py on {platform.machine()} CPU, torch {torch.__version__}, "
          f"timm {timm.__version__}: saved-for-backward bytes per sample at 224 px, bf16 autocast")
    for key, kwargs in MODELS.items():
        name = key.split("@")[0]
        mib = saved_bytes_per_sample(name, kwargs) / 2**20
        print(f"{key}: {{params: {params(name, kwargs)}, activation_mib_per_sample: {mib:.1f}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
