import json

import pytest
import torch

from weightselect.training.probe import ProbeRecipe, fit_linear_probe, probe
from weightselect.training.recipe import RecipeError


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    return centres[y] + torch.randn(n, 4, generator=g), y


def test_linear_probe_learns_a_separable_toy_problem():
    (xa, ya), (xb, yb) = _blobs(300, 0), _blobs(150, 1)
    r = ProbeRecipe(epochs=20, batch_size=50, warmup_epochs=2)
    head, history = fit_linear_probe(xa, ya, xb, yb, 3, r, seed=0)
    assert history[-1]["test_top1"] > 97 and history[0]["train_loss"] > history[-1]["train_loss"]
    # features shuffled against labels carry no signal: the probe stays near chance
    _, noise = fit_linear_probe(xa, ya[torch.randperm(300)], xb, yb, 3, r, seed=0)
    assert noise[-1]["test_top1"] < 60
    assert isinstance(head[0], torch.nn.BatchNorm1d) and not head[0].affine


def test_probe_of_trained_weights_beats_random_features(tmp_path, tiny_convnext):
    from weightselect.training import train

    trained = tmp_path / "trained"
    train(tiny_convnext, "digits", trained,
          recipe={"img_size": 32, "epochs": 2, "batch_size": 50, "warmup_epochs": 0, "lr": 5e-3, "lr_scaling": "none"},
          progress=False)
    over = {"img_size": 32, "epochs": 10, "batch_size": 100, "warmup_epochs": 1}
    good = probe(tiny_convnext, "digits", tmp_path / "p1", weights=str(trained / "model.safetensors"), recipe=over)
    rand = probe(tiny_convnext, "digits", tmp_path / "p2", recipe=over)
    assert good["mode"] == "linear_probe" and good["final_top1"] > rand["final_top1"]
    assert json.loads((tmp_path / "p1" / "run.json").read_text())["feature_dim"] == 64
    assert len((tmp_path / "p1" / "metrics.jsonl").read_text().splitlines()) == 10


def test_probe_recipe_keys_are_checked():
    with pytest.raises(RecipeError, match="unknown linear-probe key"):
        ProbeRecipe().replace({"epoch": 3})
