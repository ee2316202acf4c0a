import json

import pytest
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


def _argv(tiny_vit, out, *extra):
    return ["train", "--model", tiny_vit["name"], "--model-kwargs", json.dumps(tiny_vit["kwargs"]),
            "--dataset", "digits", "--out", str(out), *extra]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_command_lines_get_one_clear_line(tmp_path, tiny_vit, capsys):
    import torch

    bad_json = _argv(tiny_vit, tmp_path / "a")
    bad_json[bad_json.index("--model-kwargs") + 1] = '{"img_size": 16,}'
    assert main(bad_json) == 2
    assert "--model-kwargs is not valid JSON" in _one_line_error(capsys)
    assert main(_argv(tiny_vit, tmp_path / "b", "--dataset-options", "n_per_class=3")) == 2
    assert "--dataset-options is not valid JSON" in _one_line_error(capsys)
    misspelt = _argv(tiny_vit, tmp_path / "c")
    misspelt[misspelt.index("--model-kwargs") + 1] = json.dumps({**tiny_vit["kwargs"], "embed_dimm": 32})
    assert main(misspelt) == 2
    err = _one_line_error(capsys)
    assert "vit_tiny_patch16_224 takes no keyword argument 'embed_dimm'" in err and "did you mean 'embed_dim'" in err.lower()
    assert main(_argv(tiny_vit, tmp_path / "d", "--set", "epochs=2", "--set", "warmup_epochs=3")) == 2
    assert "the whole run would be warm-up" in _one_line_error(capsys)
    if not torch.cuda.is_available():
        assert main(_argv(tiny_vit, tmp_path / "e", "--device", "cuda")) == 2
        assert "PyTorch sees no CUDA GPU" in _one_line_error(capsys)
    assert not any((tmp_path / d).exists() for d in "abcde")  # nothing written for a refused command


def test_stale_temporaries_removed_and_a_finished_run_is_not_resumed(tmp_path, tiny_vit, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"partial checkpoint of a SIGKILLed run")
    argv = _argv(tiny_vit, run, "--set", "epochs=1", "--set", "train_samples=100", "--set", "batch_size=50")
    assert main(argv) == 0
    final = json.loads(capsys.readouterr().out)
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))
    (run / "final.json").unlink()  # killed after its last checkpoint, before final.json
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "resuming" not in err and "all 1 epochs were trained; writing the final files" in err
    assert json.loads(out)["final_top1"] == final["final_top1"]


def test_two_trainers_on_one_run_folder(tmp_path, tiny_vit, capsys):
    """The second writer fails at once naming the first; SIGTERM stops the first with one message."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    argv = _argv(tiny_vit, run, "--set", "epochs=200", "--set", "batch_size=50", "--device", "cpu")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "weightselect", *argv], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 240
        while not (run / "run.json").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert first.poll() is None, first.stderr.read()
        assert main(argv) == 2
        err = _one_line_error(capsys)
        assert f"is being written by pid {first.pid}" in err
        first.send_signal(signal.SIGTERM)
        first_err = first.communicate(timeout=240)[1]
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM
    stops = [line for line in first_err.splitlines() if "checkpoint written" in line]
    assert len(stops) == 1 and "rerun the same command to resume" in stops[0]
    assert (run / "checkpoint.pt").exists() and not (run / "final.json").exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", [b"\x00\x01 random bytes", b"pickle-payload"])
def test_unreadable_checkpoint_is_one_line(tmp_path, tiny_vit, capsys, content):
    import pickle

    run = tmp_path / "run"
    run.mkdir()
    if content == b"pickle-payload":
        marker = tmp_path / "payload-ran"

        class Payload:
            def __reduce__(self):
                return (open, (str(marker), "w"))

        content = pickle.dumps(Payload())
    (run / "checkpoint.pt").write_bytes(content)
    assert main(_argv(tiny_vit, run, "--set", "epochs=1")) == 2
    err = _one_line_error(capsys)
    assert "checkpoint.pt is not a readable training checkpoint" in err and "delete it" in err
    assert not (tmp_path / "payload-ran").exists()
