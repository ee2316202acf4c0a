"""Training throughput: weightselect's trainer beside a bare timm loop on the same model and batch.

For each model the script alternates, round by round, one epoch of
``weightselect.training.train`` on the rendered ``letters`` set (in memory, augmentation off: the
offline CPU path; the run is resumed from its checkpoint each round) with a stretch of as many
steps of a bare loop on the same model, batch size and optimizer over random tensors already on
the device (forward, cross-entropy, backward, AdamW step; on CUDA the trainer's mixed precision:
bfloat16 autocast where supported, else float16 with a grad scaler, and channels_last for
ConvNeXt). The trainer's images/s is its own figure in metrics.jsonl (training time only).
Pairing rounds close in time keeps the ratio meaningful when other work shares the machine; the
first round is warm-up and dropped. Printed: the best images/s of each, and the median ratio.

    python benchmarks/bench_training.py --threads 2   # CPU: the two small models of the CPU study
    python benchmarks/bench_training.py --device cuda # the paper's ViT-T and ConvNeXt-F at 224 px,
                                                      # batch of their CIFAR-100 recipe (512, 1024)
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

MODELS = {
    "vit-w64-d6": {"name": "vit_tiny_patch16_224",
                   "kwargs": {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 6, "num_heads": 2}},
    "convnext-1121": {"name": "convnext_atto",
                      "kwargs": {"depths": [1, 1, 2, 1], "dims": [16, 32, 64, 128]}},
    # the paper's students (Section 4), at 224 px
    "vit-t": {"name": "vit_tiny_patch16_224", "kwargs": {}},
    "convnext-f": {"name": "convnext_femto", "kwargs": {}},
}
CPU_MODELS, CUDA_MODELS = ["vit-w64-d6", "convnext-1121"], ["vit-t", "convnext-f"]


class BareLoop:
    """Forward + cross-entropy + backward + AdamW step on fixed random tensors already on the device."""

    def __init__(self, spec, batch: int, img_size: int, device: torch.device, lr: float):
        from timm.optim import create_optimizer_v2

        from weightselect.models import create_model

        torch.manual_seed(0)
        self.device = device
        self.batch = batch
        self.model = create_model(spec, num_classes=26, in_chans=1).to(device).train()
        self.opt = create_optimizer_v2(self.model, opt="adamw", lr=lr, weight_decay=0.05)
        self.dtype = None
        if device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.x = torch.randn(batch, 1, img_size, img_size, device=device)
        if device.type == "cuda" and spec["name"].startswith("convnext"):
            self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 26, (batch,), device=device)
        self.run(3)

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = F.cross_entropy(self.model(self.x), self.y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)

    def run(self, steps: int) -> float:
        """Images/s over ``steps`` steps."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return steps * self.batch / (time.perf_counter() - t0)


def compare(spec, args, device: torch.device):
    """Alternate one trainer epoch (resumed each time) with a bare stretch of as many steps.

    Returns (bare, trainer) images/s pairs, the warm-up pair dropped.
    """
    from weightselect.training import train

    recipe = {"epochs": args.rounds + 1, "warmup_epochs": 0, "batch_size": args.batch, "img_size": args.img_size,
              "lr": 1e-3, "lr_scaling": "none", "smoothing": 0.0, "drop_path": 0.0, "compile": args.compile}
    dataset = {"name": "letters", "n_per_class": args.n_per_class}
    steps = (26 * args.n_per_class) // args.batch
    bare = BareLoop(spec, args.batch, args.img_size, device, 1e-3)
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        for _ in range(args.rounds + 1):
            train(spec, dataset, run, recipe=recipe, device=args.device, progress=False, stop_after_epochs=1)
            last = (run / "metrics.jsonl").read_text().splitlines()[-1]
            pairs.append((bare.run(steps), json.loads(last)["images_per_s"]))
    return pairs[1:]


def _recipe_batch(spec) -> int:
    """The total batch of the model's CIFAR-100 recipe (Tables 14/15): ViT-T 512, ConvNeXt-F 1024."""
    from weightselect.training.recipe import resolve_recipe

    return resolve_recipe(spec, "cifar100").batch_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=None, help="default: 128 on the CPU; on CUDA the recipe's")
    p.add_argument("--img-size", type=int, default=None, help="default: 32 on the CPU, 224 on CUDA")
    p.add_argument("--rounds", type=int, default=4, help="measured rounds (one warm-up round more)")
    p.add_argument("--n-per-class", type=int, default=None, help="letters per class (26 classes); "
                   "default 100 on the CPU, on CUDA enough for 5 batches")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--compile", action="store_true", help="the recipe's torch.compile switch, for the trainer")
    p.add_argument("--models", nargs="+", default=None, choices=list(MODELS))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda: PyTorch sees no CUDA GPU here")
    args.models = args.models or (CUDA_MODELS if cuda else CPU_MODELS)
    args.img_size = args.img_size or (224 if cuda else 32)
    if cuda:
        print(f"GPU: {torch.cuda.get_device_name(device)}, bf16 {torch.cuda.is_bf16_supported()}, "
              f"torch {torch.__version__}")
    print(f"device {device}, threads {torch.get_num_threads()}, {args.img_size}x{args.img_size} grey, "
          f"{args.rounds} rounds of (trainer epoch, bare stretch of as many steps)")
    print(f"{'model':<16}{'batch':>6}{'bare img/s':>12}{'trainer img/s':>15}{'ratio (median of rounds)':>26}")
    batch_arg, n_arg = args.batch, args.n_per_class
    for name in args.models:
        spec = {"name": MODELS[name]["name"], "kwargs": dict(MODELS[name]["kwargs"])}
        if "img_size" in spec["kwargs"] or spec["name"].startswith("vit"):
            spec["kwargs"]["img_size"] = args.img_size
        args.batch = batch_arg or (_recipe_batch(spec) if cuda else 128)
        args.n_per_class = n_arg or (-(-5 * args.batch // 26) if cuda else 100)
        pairs = compare(spec, args, device)
        ratio = statistics.median(t / b for b, t in pairs)
        best_b, best_t = max(b for b, _ in pairs), max(t for _, t in pairs)
        print(f"{name:<16}{args.batch:>6}{best_b:>12.0f}{best_t:>15.0f}{ratio:>26.2f}", flush=True)
        print(" " * 16 + "rounds (bare, trainer): " + ", ".join(f"({b:.0f}, {t:.0f})" for b, t in pairs), flush=True)


if __name__ == "__main__":
    main()
