"""Everything a run is made of, built from the recipe: data, model (+ init, probe head, teacher),
optimizer, schedule, EMA, loss, mixed precision. Each builder is a small function over timm's and
torchvision's building blocks; :func:`weightselect.training.loop.train` calls them in order."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from weightselect.models import ModelSpec, create_model, model_keywords
from weightselect.training import data as wdata
from weightselect.training.batches import Batches, Dist
from weightselect.training.recipe import Recipe, RecipeError

__all__ = ["Data", "Parts", "build_data", "build_student", "build_parts", "probe_head"]

# timm's keyword for the layer-scale init value, by the keyword the model's class takes
_LAYER_SCALE_KEYWORDS = ("ls_init_value", "init_values", "layer_scale_init_value")


@dataclass
class Data:
    """The run's data on this rank: datasets, batch iterators, the training subset and sizes."""

    train_set: Any
    test_set: Any
    train_batches: Batches
    test_batches: Batches
    train_index: torch.Tensor
    test_chunks: List[torch.Tensor]
    num_classes: int
    in_chans: int
    mean: tuple
    std: tuple
    per_device: int
    updates_per_epoch: int
    sample_transforms: bool

    @property
    def n_train(self) -> int:
        return len(self.train_index)


def _subset(n: int, samples: Optional[int], knob: str, split: str) -> torch.Tensor:
    """Indices of a fixed, seeded subset of ``samples`` of ``n`` images (all of them for None).
    Raises RecipeError when ``samples`` is not in 1..n."""
    if samples is None:
        return torch.arange(n)
    if not 1 <= samples <= n:
        raise RecipeError(f"{knob} {samples} is not in 1..{n} (the {split} images of the dataset); set {knob} "
                          f"to at most {n}, or leave it out for all of them")
    index = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:samples]
    return index if knob == "train_samples" else index.sort().values


def build_data(recipe: Recipe, name: str, options: Dict[str, Any], data_root, download: bool, dist: Dist,
               device: torch.device, num_workers: int) -> Data:
    """Datasets (in memory when no per-image augmentation is needed), this rank's test shard and
    batch sizes. Raises RecipeError for a batch that does not fit the data."""
    info = wdata.dataset_info(name)
    in_chans = recipe.in_chans or info.in_chans
    kw = dict(img_size=recipe.img_size, in_chans=in_chans, download=download, **options)
    train_set = wdata.build_dataset(name, data_root, True, transform=wdata.build_transform(recipe, info, in_chans, True), **kw)
    test_set = wdata.build_dataset(name, data_root, False, transform=wdata.build_transform(recipe, info, in_chans, False), **kw)
    sample_tf = wdata.needs_sample_transforms(recipe)
    train_mem = None if sample_tf else wdata.as_tensor_dataset(train_set, recipe.img_size, in_chans)
    test_mem = wdata.as_tensor_dataset(test_set, recipe.img_size, in_chans)
    train_index = _subset(len(train_set), recipe.train_samples, "train_samples", "training")
    mean, std = info.norm(in_chans)
    per_device = recipe.batch_per_device(dist.world)
    updates = (len(train_index) // dist.world // per_device) // recipe.update_freq
    if updates < 1:
        raise RecipeError(f"batch_size {recipe.batch_size} is larger than the {len(train_index)} training images of "
                          f"'{name}': lower batch_size (the lr scales with it)")
    if recipe.mixup_active and per_device % 2:
        raise RecipeError(f"mixup/cutmix need an even batch per device, got {per_device}")
    eval_batch = recipe.eval_batch_size or max(1, int(1.5 * per_device))
    test_order = _subset(len(test_set), recipe.eval_samples, "eval_samples", "test")[dist.rank:: dist.world]
    return Data(
        train_set, test_set, Batches(train_set, train_mem, mean, std, device, num_workers),
        Batches(test_set, test_mem, mean, std, device, num_workers), train_index,
        list(torch.split(test_order, eval_batch)), info.num_classes or len(wdata.dataset_classes(train_set) or []),
        in_chans, mean, std, per_device, updates, train_mem is None,
    )


def model_kwargs(spec: ModelSpec, recipe: Recipe, num_classes: int, in_chans: int) -> Dict[str, Any]:
    """What the dataset and recipe add to the spec's kwargs: num_classes, in_chans, drop path and
    layer scale (under the keyword the model's timm class takes). A spec that disagrees about
    classes or channels is a ValueError."""
    kw: Dict[str, Any] = {}
    for key, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if key in spec.kwargs and spec.kwargs[key] != value:
            raise ValueError(f"model kwargs say {key}={spec.kwargs[key]} but dataset '{recipe.dataset}' has {value}; "
                             f"drop {key} from the model kwargs (the dataset sets it)")
        kw[key] = value
    if "drop_path_rate" in spec.kwargs and spec.kwargs["drop_path_rate"] != recipe.drop_path:
        raise ValueError("drop path is a recipe knob: set 'drop_path' in the recipe, not drop_path_rate in the model kwargs")
    kw["drop_path_rate"] = recipe.drop_path
    if recipe.layer_scale is not None:
        takes = [k for k in _LAYER_SCALE_KEYWORDS if k in model_keywords(spec.architecture)]
        if takes and takes[0] not in spec.kwargs:
            kw[takes[0]] = recipe.layer_scale
    return kw


def build_student(spec: ModelSpec, recipe: Recipe, data: Data) -> nn.Module:
    """The student with the dataset's classes/channels and the recipe's drop path and layer scale
    (not yet initialized: see weights.RunInit.apply)."""
    student = create_model(spec, **model_kwargs(spec, recipe, data.num_classes, data.in_chans))
    pe = getattr(student, "patch_embed", None)
    size = getattr(pe, "img_size", None)
    if size is not None and getattr(pe, "strict_img_size", False) and tuple(size) != (recipe.img_size,) * 2:
        raise ValueError(f"the model expects {tuple(size)} inputs but the recipe's img_size is {recipe.img_size}: "
                         f"add img_size={recipe.img_size} to the model kwargs or set img_size in the recipe")
    return student


def classifier_name(model: nn.Module) -> str:
    """The classifier module's name, as timm declares it (``pretrained_cfg['classifier']``)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    declared = cfg.get("classifier")
    names = [declared] if isinstance(declared, str) else list(declared or [])
    modules = dict(model.named_modules())
    for name in names:
        if isinstance(modules.get(name), nn.Linear):
            return name
    clf = model.get_classifier()
    for name, module in modules.items():
        if module is clf and isinstance(module, nn.Linear):
            return name
    raise ValueError(f"{type(model).__name__} has no linear classifier for a linear probe")


def probe_head(model: nn.Module) -> nn.Module:
    """Linear probing as MAE (He et al. 2022, main_linprobe.py): the classifier becomes
    ``BatchNorm1d(affine=False, eps=1e-6) -> Linear`` (weights trunc-normal std 0.01, bias 0) and
    everything else is frozen. Returns the new head."""
    name = classifier_name(model)
    linear = model.get_submodule(name)
    head = nn.Sequential(nn.BatchNorm1d(linear.in_features, affine=False, eps=1e-6),
                         nn.Linear(linear.in_features, linear.out_features))
    nn.init.trunc_normal_(head[1].weight, std=0.01)
    nn.init.zeros_(head[1].bias)
    model.requires_grad_(False)
    model.set_submodule(name, head)
    head.classifier_name = name
    return head


@dataclass
class Parts:
    """The trainable pieces of a run. ``net`` is what is optimized and checkpointed (the student,
    or the student with a feature projector), ``train_net`` the same wrapped for DDP/compile."""

    student: nn.Module
    net: nn.Module
    train_net: nn.Module
    optimizer: Any
    scheduler: Any
    scaler: Any
    criterion: nn.Module
    mixup_fn: Any = None
    ema: Any = None
    teacher: Any = None
    head: Optional[nn.Module] = None  # the probe head (trained alone, backbone in eval mode)
    amp_dtype: Optional[torch.dtype] = None
    channels_last: bool = False
    ema_eval: bool = False

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and exported: the EMA weights when the recipe says so, else the student
        (under self-supervised pretraining, with the online probe folded into its classifier first)."""
        sync = getattr(self.net, "sync_classifier", None)
        if sync is not None:
            sync()
        return self.ema.module if self.ema is not None and self.ema_eval else self.student

    def set_train_mode(self) -> None:
        self.train_net.train()
        if self.head is not None:  # linear probe: frozen backbone in eval mode, head in train mode
            self.student.eval()
            self.head.train()


def amp_dtype(recipe: Recipe, device: torch.device) -> Optional[torch.dtype]:
    """bfloat16 where the GPU supports it, else float16 (with a grad scaler); None on the CPU."""
    if not recipe.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def build_optimizer(net: nn.Module, recipe: Recipe):
    """timm's optimizer for the recipe at its scaled lr. LARS as MAE's linear probe: momentum 0.9,
    trust coefficient 0.001, adapted (and decayed) only for tensors of more than one dimension."""
    from timm.optim import Lars, create_optimizer_v2

    if recipe.opt == "lars":
        params = [p for p in net.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim > 1], "always_adapt": True, "weight_decay": recipe.weight_decay},
                  {"params": [p for p in params if p.ndim <= 1], "always_adapt": False, "weight_decay": 0.0}]
        return Lars([g for g in groups if g["params"]], lr=recipe.scaled_lr, momentum=0.9, trust_coeff=0.001)
    extra = {"betas": tuple(recipe.opt_betas), "eps": recipe.opt_eps} if recipe.opt in ("adamw", "adam", "lamb") else {}
    return create_optimizer_v2(net, opt=recipe.opt, lr=recipe.scaled_lr, weight_decay=recipe.weight_decay,
                               layer_decay=recipe.layer_decay, **extra)


def build_scheduler(optimizer, recipe: Recipe, updates_per_epoch: int):
    """timm's cosine schedule per update: linear warm-up from 0 over warmup_epochs, then cosine to min_lr."""
    from timm.scheduler import CosineLRScheduler

    total = updates_per_epoch * recipe.epochs
    warmup = min(int(round(recipe.warmup_epochs * updates_per_epoch)), total - 1)
    return CosineLRScheduler(optimizer, t_initial=max(1, total - warmup), lr_min=recipe.min_lr, warmup_t=warmup,
                             warmup_lr_init=0.0, warmup_prefix=True, t_in_epochs=False)


def build_loss(recipe: Recipe, num_classes: int):
    """(criterion, mixup_fn): timm's Mixup/CutMix with soft-target CE, else (label-smoothing) CE."""
    from timm.data import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if recipe.mixup_active:
        mixup = Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, prob=recipe.mixup_prob,
                      switch_prob=recipe.mixup_switch_prob, mode=recipe.mixup_mode,
                      label_smoothing=recipe.smoothing, num_classes=num_classes)
        return SoftTargetCrossEntropy(), mixup
    if recipe.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=recipe.smoothing), None
    return nn.CrossEntropyLoss(), None


def class_names(data: Data, dataset: str) -> List[str]:
    """The classes' names: the dataset's own (torchvision's ``classes``), the glyphs of a rendered
    set, else ``"class <i>"``."""
    from weightselect.training.catalog import GLYPH_SETS

    names = getattr(data.train_set, "classes", None) or GLYPH_SETS.get(dataset)
    if names is not None and len(names) == data.num_classes:
        return [str(n) for n in names]
    return [f"class {i}" for i in range(data.num_classes)]


def build_parts(student: nn.Module, recipe: Recipe, data: Data, teacher, dist: Dist, device: torch.device) -> Parts:
    """Probe head or feature projector, device placement, EMA, optimizer, schedule, loss, AMP,
    channels_last, DDP and torch.compile around an initialized student."""
    from weightselect.training.distill import StudentWithProjector

    head = probe_head(student) if recipe.mode == "probe" else None
    net: nn.Module = student
    if recipe.distill == "feature":
        net = StudentWithProjector(student, int(teacher.model.num_features), recipe.distill_hidden)
    if recipe.objective != "supervised":
        from weightselect.training.ssl import SelfSupervised

        net = SelfSupervised(student, recipe.objective, recipe.mask_ratio, recipe.ssl_temperature,
                             captions=class_names(data, recipe.dataset))
    channels_last = recipe.channels_last if recipe.channels_last is not None else (
        device.type == "cuda" and recipe.family == "convnext")
    net.to(device, memory_format=torch.channels_last) if channels_last else net.to(device)
    ema = None
    if recipe.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(student, decay=recipe.ema_decay)
    optimizer = build_optimizer(net, recipe)
    criterion, mixup_fn = build_loss(recipe, data.num_classes)
    dtype = amp_dtype(recipe, device)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    train_net = net
    if dist.enabled:
        train_net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if recipe.compile:
        train_net = torch.compile(train_net)
    return Parts(student, net, train_net, optimizer, build_scheduler(optimizer, recipe, data.updates_per_epoch),
                 scaler, criterion, mixup_fn, ema, teacher, head, dtype, channels_last, recipe.ema_eval)


def default_workers(device: Optional[str]) -> int:
    """Loader workers: 0 on the CPU (the bit-for-bit path), up to 8 with CUDA."""
    return min(8, os.cpu_count() or 1) if torch.cuda.is_available() and device != "cpu" else 0
