import json

import yaml

from weightselect.cli import main
from weightselect.training.recipe import resolve_recipe


def test_recipe_command_prints_the_resolved_recipe(capsys):
    assert main(["recipe", "--model", "vit_t", "--dataset", "cifar100"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == resolve_recipe("vit_t", "cifar100").to_dict()
    assert main(["recipe", "--model", "convnext_f", "--dataset", "dtd", "--set", "epochs=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["epochs"] == 7 and printed["batch_size"] == 128 and printed["drop_path"] == 0.2


def test_recipe_command_rejects_unknown_keys(capsys):
    assert main(["recipe", "--model", "vit_t", "--dataset", "cifar100", "--set", "lrr=1"]) == 2
    assert "unknown recipe key" in capsys.readouterr().err


def test_train_command(tmp_path, tiny_vit, capsys):
    overrides = tmp_path / "fast.yaml"
    overrides.write_text("epochs: 2\nbatch_size: 50\nwarmup_epochs: 0\ntrain_samples: 200\n")
    out = tmp_path / "run"
    argv = ["train", "--model", tiny_vit["name"], "--model-kwargs", json.dumps(tiny_vit["kwargs"]),
            "--dataset", "digits", "--seed", "2", "--recipe", str(overrides), "--set", "epochs=1",
            "--init", "random", "--out", str(out)]
    assert main(argv) == 0
    final = json.loads(capsys.readouterr().out)
    assert final == json.loads((out / "final.json").read_text())
    assert final["seed"] == 2 and final["epochs"] == 1
    assert yaml.safe_load((out / "recipe.yaml").read_text())["batch_size"] == 50
    assert main(argv) == 2  # a finished run is not overwritten
    assert "--force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0


def test_train_command_offline_dataset_error(tmp_path, tiny_vit, capsys):
    argv = ["train", "--model", tiny_vit["name"], "--dataset", "cifar10", "--data-root", str(tmp_path),
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--download" in err and "cifar-10-batches-py" in err


def test_train_command_exit_code_after_a_signal(tmp_path, monkeypatch, capsys):
    import signal

    from weightselect.training import loop

    def preempted(*args, **kwargs):
        raise loop.TrainingInterrupted("stopped at epoch 1, update 3 (signal); rerun", signal.SIGUSR1)

    monkeypatch.setattr(loop, "train", preempted)
    argv = ["train", "--model", "vit_tiny_patch16_224", "--dataset", "digits", "--out", str(tmp_path / "r")]
    assert main(argv) == 128 + signal.SIGUSR1
    assert "rerun" in capsys.readouterr().err


def test_probe_command(tmp_path, tiny_vit, capsys):
    argv = ["probe", "--model", tiny_vit["name"], "--model-kwargs", json.dumps(tiny_vit["kwargs"]),
            "--dataset", "digits", "--init", "random", "--set", "epochs=2", "--set", "warmup_epochs=0",
            "--out", str(tmp_path / "p")]
    assert main(argv) == 0
    final = json.loads(capsys.readouterr().out)
    assert final["mode"] == "linear_probe" and final["epochs"] == 2
    assert main(argv) == 2  # finished: not overwritten without --force
