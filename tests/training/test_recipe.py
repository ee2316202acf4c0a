import pytest
import yaml

from weightselect.training.recipe import (
    Recipe, RecipeError, load_overrides, model_family, parse_set_options, resolve_recipe,
)

# (family, dataset) -> (batch, warmup, epochs, drop path) from Tables 14 and 15
TABLE_ROWS = {
    ("convnext_f", "cifar100"): (1024, 50, 300, 0.1),
    ("convnext_f", "pets"): (128, 100, 600, 0.1),
    ("convnext_f", "stl10"): (128, 50, 300, 0.0),
    ("convnext_f", "dtd"): (128, 100, 600, 0.2),
    ("convnext_f", "svhn"): (1024, 10, 50, 0.1),
    ("convnext_f", "eurosat"): (512, 50, 300, 0.1),
    ("convnext_f", "imagenet"): (4096, 50, 300, 0.0),
    ("vit_t", "cifar10"): (512, 50, 300, 0.0),
    ("vit_t", "flowers102"): (512, 100, 600, 0.0),
    ("vit_t", "svhn"): (512, 10, 50, 0.0),
    ("vit_t", "imagenet"): (4096, 50, 300, 0.0),
}


@pytest.mark.parametrize("key", sorted(TABLE_ROWS))
def test_tables_14_15(key):
    model, dataset = key
    r = resolve_recipe(model, dataset)
    assert (r.batch_size, r.warmup_epochs, r.epochs, r.drop_path) == TABLE_ROWS[key]
    assert r.lr == (4e-3 if model == "convnext_f" else 2e-3)
    # at the table's batch size the base lr is used as is (the official commands)
    assert r.scaled_lr == pytest.approx(r.lr)


def test_table_13_base_recipe():
    r = resolve_recipe("convnext_f", "cifar100")
    assert r.opt == "adamw" and r.weight_decay == 0.05 and r.opt_betas == (0.9, 0.999)
    assert r.sched == "cosine" and r.randaugment == "rand-m9-mstd0.5-inc1"
    assert (r.mixup, r.cutmix, r.reprob, r.smoothing) == (0.8, 1.0, 0.25, 0.1)
    assert r.layer_scale == 1e-6 and r.clip_grad is None and r.layer_decay is None
    assert r.interpolation == "bicubic" and r.img_size == 224


def test_lr_scales_linearly_with_total_batch():
    r = resolve_recipe("vit_t", "cifar100", {"batch_size": 128})
    assert r.scaled_lr == pytest.approx(2e-3 * 128 / 512)
    r = resolve_recipe("vit_t", "cifar100", {"batch_size": 128, "update_freq": 4})
    assert r.batch_per_device(1) == 32 and r.batch_per_device(2) == 16
    assert resolve_recipe("vit_t", "cifar100", {"batch_size": 128, "lr_scaling": "none"}).scaled_lr == 2e-3


def test_batch_must_divide():
    with pytest.raises(RecipeError, match="not divisible"):
        resolve_recipe("vit_t", "cifar100", {"batch_size": 100, "update_freq": 3}).batch_per_device(1)


def test_overrides_are_checked_by_the_schema():
    r = resolve_recipe("vit_t", "cifar100", {"epochs": 30.0, "randaugment": None, "mixup": 0, "ema": True})
    assert r.epochs == 30 and isinstance(r.epochs, int) and r.randaugment is None
    assert r.mixup == 0.0 and isinstance(r.mixup, float) and r.ema is True
    with pytest.raises(RecipeError, match="did you mean 'epochs'"):
        resolve_recipe("vit_t", "cifar100", {"epoch": 3})
    with pytest.raises(RecipeError, match="epochs=2.5.*integer"):
        resolve_recipe("vit_t", "cifar100", {"epochs": 2.5})
    with pytest.raises(RecipeError, match="mixup_mode='sideways'.*is not one of"):
        resolve_recipe("vit_t", "cifar100", {"mixup_mode": "sideways"})
    with pytest.raises(RecipeError, match="ema='yes'.*boolean"):
        resolve_recipe("vit_t", "cifar100", {"ema": "yes"})
    with pytest.raises(RecipeError, match="reprob=1.5"):
        resolve_recipe("vit_t", "cifar100", {"reprob": 1.5})
    with pytest.raises(RecipeError, match="opt_betas"):
        resolve_recipe("vit_t", "cifar100", {"opt_betas": [0.9]})


def test_warmup_keeps_its_ratio_under_an_epoch_override():
    r = resolve_recipe("vit_t", "cifar100", {"epochs": 30})  # Table 15: 50 of 300 epochs
    assert r.warmup_epochs == pytest.approx(5.0)
    assert resolve_recipe("convnext_f", "dtd", {"epochs": 60}).warmup_epochs == pytest.approx(10.0)  # 100 of 600
    assert resolve_recipe("vit_t", "cifar100", {"epochs": 30, "warmup_epochs": 2}).warmup_epochs == 2
    assert resolve_recipe("vit_t", "cifar100", {"epochs": 30, "warmup_epochs": 0}).warmup_epochs == 0
    with pytest.raises(RecipeError, match="warmup_epochs=3.0 >= epochs=2: the whole run would be warm-up"):
        resolve_recipe("vit_t", "cifar100", {"epochs": 2, "warmup_epochs": 3})
    # the schedule built from it: warm-up over 5/30 of the updates
    import torch

    from weightselect.training.builder import build_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=r.scaled_lr)
    sched = build_scheduler(opt, r, updates_per_epoch=10)
    lrs = [sched._get_lr(t)[0] for t in range(300)]
    assert lrs.index(max(lrs)) == 50 and lrs[25] == pytest.approx(r.scaled_lr / 2)


def test_recipe_module_imports_neither_torch_nor_timm():
    import subprocess
    import sys

    code = ("import sys; from weightselect.training.recipe import resolve_recipe, model_family; "
            "r = resolve_recipe({'name': 'convnext_femto', 'kwargs': {}}, 'cifar100', {'epochs': 3}); "
            "assert model_family('deit_small_patch16_224') == 'vit' and r.family == 'convnext'; "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_yaml_file_and_set_options(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("epochs: 5\nrandaugment: null\nopt_betas: [0.9, 0.95]\n")
    over = load_overrides(f)
    over.update(parse_set_options(["batch_size=32", "reprob=0"]))
    r = resolve_recipe("convnext_f", "digits", over)
    assert (r.epochs, r.randaugment, r.opt_betas, r.batch_size, r.reprob) == (5, None, (0.9, 0.95), 32, 0.0)


def test_round_trip_through_yaml():
    r = resolve_recipe("vit_t", "dtd", {"ema": True})
    assert Recipe.from_dict(yaml.safe_load(r.to_yaml())) == r


def test_families_from_timm_names():
    assert model_family("vit_small_patch16_224") == "vit"
    assert model_family({"name": "convnext_tiny", "kwargs": {}}) == "convnext"
    assert model_family("deit_small_patch16_224") == "vit"
    assert model_family("convnextv2_atto") == "convnext"
    with pytest.raises(RecipeError, match="no recipe family for model 'resnet18'"):
        model_family("resnet18")
    with pytest.raises(RecipeError, match="unknown timm model 'vt_tiny_patch16_224'.*vit_tiny_patch16_224"):
        model_family("vt_tiny_patch16_224")


def test_unknown_dataset():
    with pytest.raises(RecipeError, match="unknown dataset"):
        resolve_recipe("vit_t", "mnist-ish")


def test_offline_sets_have_augmentation_off():
    r = resolve_recipe("vit_t", "digits")
    assert r.img_size == 16 and r.randaugment is None and r.mixup == 0 and r.reprob == 0 and r.train_crop is None


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("5E-2", 5e-2), (".5", 0.5), ("2.5e-4", 2.5e-4), ("1e+0", 1.0)])
def test_numbers_in_every_notation_users_type(text, value):
    """PyYAML (YAML 1.1) reads 1e-3 and 5E-2 as text; the recipe reads them as the numbers they are,
    from --set, a recipe file and the config alike."""
    from weightselect.training.recipe import parse_set_options, resolve_recipe

    recipe = resolve_recipe("vit_t", "cifar100", parse_set_options([f"lr={text}", "epochs=1e1"]))
    assert recipe.lr == value and recipe.epochs == 10 and isinstance(recipe.epochs, int)


def test_a_number_in_text_is_not_made_of_a_text_field():
    from weightselect.training.recipe import resolve_recipe

    recipe = resolve_recipe("vit_t", "cifar100", {"randaugment": "rand-m9-mstd0.5-inc1"})
    assert recipe.randaugment == "rand-m9-mstd0.5-inc1"


def test_train_with_lr_in_exponent_notation(tmp_path):
    """The docs' own example, `--set lr=1e-3`, trains (it was refused as text)."""
    import json

    from weightselect.cli import main

    kw = json.dumps({"img_size": 16, "patch_size": 4, "depth": 1, "embed_dim": 16, "num_heads": 1})
    argv = ["train", "--model", "vit_tiny_patch16_224", "--model-kwargs", kw, "--dataset", "digits", "--out",
            str(tmp_path / "run"), "--set", "lr=1e-3", "--set", "epochs=1", "--set", "train_samples=64",
            "--set", "batch_size=32", "--set", "warmup_epochs=0"]
    assert main(argv) == 0
    recipe = (tmp_path / "run" / "recipe.yaml").read_text()
    assert "lr: 0.001\n" in recipe
