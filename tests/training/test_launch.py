"""One training job as the workflow runs it (weightselect.training.launch): the GPU check at job
start, the torchrun command line, and a 2-process CPU job through the launcher."""
import json

import pytest
import torch

from weightselect.training.launch import GPUUnavailable, check_gpus, driver_floor, run_job, torchrun_command


def test_driver_floor_of_the_cuda_builds():
    # NVIDIA's CUDA Toolkit release notes: minimum Linux driver per CUDA major version
    assert driver_floor("13.0") == "580" and driver_floor("12.4") == "525.60.13"
    assert driver_floor(None) is None and driver_floor("99.1") is None


def test_a_job_that_asked_for_gpus_stops_at_once_without_them(monkeypatch):
    check_gpus(0)  # a CPU job is never stopped
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(GPUUnavailable) as err:
        check_gpus(1)
    line = str(err.value)
    assert "\n" not in line and "asked for 1 GPU(s) and sees 0" in line
    assert f"torch {torch.__version__}" in line and "CUDA 13.0" in line and ">= 580" in line
    assert "download.pytorch.org/whl/cu126" in line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_gpus(2)
    with pytest.raises(GPUUnavailable, match="asked for 4 GPU.* sees 2.*2 GPU\\(s\\) visible"):
        check_gpus(4)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GPUUnavailable, match="CPU-only build"):
        check_gpus(1)


def test_run_job_checks_before_training(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(GPUUnavailable):
        run_job({"model": {"name": "vit_tiny_patch16_224"}, "dataset": "digits"}, str(tmp_path / "run"), seed=0, gpus=1)
    assert not (tmp_path / "run").exists()  # nothing started


def test_torchrun_command_carries_the_job():
    spec = {"model": {"name": "vit_tiny_patch16_224", "kwargs": {"depth": 6}},
            "dataset": {"name": "cifar100", "checksums": False}, "recipe": {"epochs": 2, "lr": 0.001},
            "mode": "finetune", "distill": {"kind": "logit", "alpha": 1.0},
            "teacher": {"name": "deit_small_patch16_224", "weights": "t.safetensors"}}
    cmd = torchrun_command(spec, "out", seed=2, init="random", data_root="data", processes=4, workers=7)
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc_per_node=4" in cmd
    after = cmd[cmd.index("weightselect"):]
    assert after[:1] == ["weightselect"] and "train" in after
    assert cmd[cmd.index("--model-kwargs") + 1] == '{"depth": 6}'
    assert json.loads(cmd[cmd.index("--dataset-options") + 1]) == {"checksums": False}
    assert "--set=epochs=2" in cmd and "--set=lr=0.001" in cmd and cmd[cmd.index("--distill") + 1] == "logit"
    assert cmd[cmd.index("--teacher-weights") + 1] == "t.safetensors" and "--mode" not in cmd
    probe = torchrun_command(dict(spec, mode="probe", distill=None), "out", seed=0, init=None, data_root=None,
                             processes=2, workers=0)
    assert probe[-2:] == ["--mode", "probe"] and "--init" not in probe and "--data-root" not in probe
    assert "--tensorboard" not in cmd
    assert "--tensorboard" in torchrun_command(dict(spec, tensorboard=True), "out", seed=0, init=None, data_root=None,
                                               processes=2, workers=0)


def test_run_job_passes_the_tensorboard_option(monkeypatch, tmp_path):
    import weightselect.training as wtraining

    seen = {}
    monkeypatch.setattr(wtraining, "train", lambda *args, **kwargs: seen.update(kwargs) or {})
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # run_job sets the job's threads
    spec = {"model": {"name": "vit_tiny_patch16_224"}, "dataset": "digits"}
    run_job(spec, str(tmp_path / "run"), seed=0)
    assert "tensorboard" not in seen  # off: train()'s default
    run_job(dict(spec, tensorboard=True), str(tmp_path / "run"), seed=0)
    assert seen["tensorboard"] is True


def test_two_cpu_processes_through_the_launcher(tmp_path, tiny_vit, monkeypatch):
    """gpus 0, processes 2: the torchrun path on the CPU (gloo), as the rehearsal runs a multi-GPU job."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = {"model": tiny_vit, "dataset": "digits", "mode": "finetune",
            "recipe": {"epochs": 1, "batch_size": 100, "warmup_epochs": 0, "train_samples": 400}}
    assert run_job(spec, str(tmp_path / "run"), seed=0, gpus=0, processes=2, threads=2) is None
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["batch_per_device"] == 50 and meta["device"] == "cpu"
    assert json.loads((tmp_path / "run" / "final.json").read_text())["epochs"] == 1


def test_a_signal_before_the_time_limit_ends_the_job_non_zero_with_one_line(monkeypatch, tmp_path, caplog):
    """Slurm's --signal=USR1@300: the trainer checkpoints and raises TrainingInterrupted; the job
    ends with 128 + SIGUSR1 so that Snakemake submits it again, and the next job resumes."""
    import signal

    import weightselect.training as training
    from weightselect.training.loop import TrainingInterrupted

    def stopped(*args, **kwargs):
        raise TrainingInterrupted("stopped at epoch 3 (SIGUSR1); checkpoint written", signal.SIGUSR1)

    monkeypatch.setattr(training, "train", stopped)
    with pytest.raises(SystemExit) as done:
        run_job({"model": {"name": "vit_tiny_patch16_224"}, "dataset": "digits"}, str(tmp_path), seed=0)
    assert done.value.code == 128 + signal.SIGUSR1
    assert "checkpoint written" in caplog.text
