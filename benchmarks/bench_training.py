"""Training throughput: weightselect's trainer beside a bare timm loop on the same model and batch.

For each model the script runs ``weightselect.training.train`` on the rendered ``letters`` set
(10,400 in-memory images, augmentation off: the offline CPU path) and reads the trainer's own
images/s from metrics.jsonl (training time only, evaluation excluded; the best epoch after the
first, which is warm-up). Then it times a bare loop on the same model, batch size and optimizer over random
tensors already on the device: forward, cross-entropy, backward, AdamW step (with autocast and a
grad scaler on CUDA, as the trainer), best of as many epoch-sized stretches. It prints both and
their ratio. Best-of figures make the comparison robust to other load on the machine.

    python benchmarks/bench_training.py                 # CPU, the two small models of the CPU study
    python benchmarks/bench_training.py --device cuda --batch 256 --img-size 32
"""
from __future__ import annotations

import argparse
import json
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
}


def bare_loop(spec, batch: int, img_size: int, steps: int, device: torch.device, lr: float, rounds: int) -> float:
    """Images/s of forward + backward + AdamW step on fixed random tensors (best of ``rounds``
    stretches of ``steps`` steps, like the trainer's best epoch)."""
    from timm.optim import create_optimizer_v2

    from weightselect.models import create_model

    torch.manual_seed(0)
    model = create_model(spec, num_classes=26, in_chans=1).to(device).train()
    opt = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=0.05)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = torch.randn(batch, 1, img_size, img_size, device=device)
    y = torch.randint(0, 26, (batch,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    rates = []
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(steps * batch / (time.perf_counter() - t0))
    return max(rates)


def trainer(spec, batch: int, img_size: int, epochs: int, device: str, lr: float, n_per_class: int) -> float:
    from weightselect.training import train

    recipe = {"epochs": epochs, "warmup_epochs": 0, "batch_size": batch, "img_size": img_size, "lr": lr,
              "lr_scaling": "none", "smoothing": 0.0, "drop_path": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        train(spec, {"name": "letters", "n_per_class": n_per_class}, Path(tmp) / "run", recipe=recipe,
              device=device, progress=False)
        rates = [json.loads(line)["images_per_s"] for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    return max(rates[1:] if len(rates) > 1 else rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4, help="trainer epochs (the first is dropped)")
    p.add_argument("--n-per-class", type=int, default=100, help="letters per class (26 classes)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    steps = max(10, (26 * args.n_per_class) // args.batch)
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch}, {args.img_size}x{args.img_size} grey")
    print(f"{'model':<16}{'bare loop img/s':>17}{'trainer img/s':>15}{'ratio':>8}")
    for name in args.models:
        spec = MODELS[name]
        spec = {"name": spec["name"], "kwargs": {**spec["kwargs"]}}
        if "img_size" in spec["kwargs"]:
            spec["kwargs"]["img_size"] = args.img_size
        t = trainer(spec, args.batch, args.img_size, args.epochs, args.device, 1e-3, args.n_per_class)
        b = bare_loop(spec, args.batch, args.img_size, steps, device, 1e-3, rounds=args.epochs - 1)
        print(f"{name:<16}{b:>17.0f}{t:>15.0f}{t / b:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
