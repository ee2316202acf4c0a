"""One training job as the workflow runs it: a run, a pretraining, on CPU, one GPU or several.

:func:`run_job` is what ``workflow_scripts/train.py`` and ``workflow_scripts/teacher_pretrain.py``
call: it checks that a job that asked for GPUs sees them (:func:`check_gpus`), then trains in this
process, or, with more than one process, starts ``torchrun --standalone --nproc_per_node=P -m
weightselect train ...`` (one process per GPU; on the CPU, gloo) with the same arguments
(:func:`torchrun_command`).
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any, Dict, List, Mapping, Optional

__all__ = ["GPUUnavailable", "check_gpus", "driver_floor", "torchrun_command", "run_job"]

log = logging.getLogger(__name__)

# The NVIDIA Linux driver a CUDA runtime needs at least (NVIDIA's CUDA Toolkit release notes,
# "CUDA Toolkit and Minimum Required Driver Version": CUDA 11.x minor-version compatibility
# >= 450.80.02, 12.x >= 525.60.13, 13.x >= 580).
DRIVER_FLOORS = {"11": "450.80.02", "12": "525.60.13", "13": "580"}


class GPUUnavailable(RuntimeError):
    """A job that asked for GPUs does not see them (no CUDA build, no driver, fewer devices)."""


def driver_floor(cuda_version: Optional[str]) -> Optional[str]:
    """The minimum NVIDIA driver of a CUDA runtime version ("13.0" -> "580"); None if unknown."""
    if not cuda_version:
        return None
    return DRIVER_FLOORS.get(str(cuda_version).split(".")[0])


def check_gpus(gpus: int) -> None:
    """Raise GPUUnavailable (one line: the torch build, the driver it needs, the fix) when ``gpus`` >
    0 and CUDA is unavailable or shows fewer devices; nothing for ``gpus`` = 0."""
    if gpus <= 0:
        return
    import torch

    build = torch.version.cuda
    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if seen >= gpus:
        return
    if build is None:
        why = f"torch {torch.__version__} is a CPU-only build"
        fix = "install a CUDA build of torch (docs/environments.md, 'GPU driver')"
    else:
        floor = driver_floor(build)
        why = (f"torch {torch.__version__} is built for CUDA {build}, which needs an NVIDIA driver >= "
               f"{floor or 'of that CUDA version'}" + (", and CUDA is unavailable here" if seen == 0 else
                                                        f"; {seen} GPU(s) visible"))
        fix = ("check `nvidia-smi` on the node; for an older driver install the same torch for an older CUDA, "
               "e.g. pip install torch==2.14.1 --index-url https://download.pytorch.org/whl/cu126 "
               "(docs/environments.md, 'GPU driver')")
    raise GPUUnavailable(f"the job asked for {gpus} GPU(s) and sees {seen}: {why}; {fix}")


def torchrun_command(spec: Mapping[str, Any], run_dir: str, *, seed: int, init: Any, data_root: Optional[str],
                     processes: int, workers: int, download: bool = False, force: bool = False) -> List[str]:
    """The ``torchrun`` command line (``python -m torch.distributed.run``, torchrun's own module, with
    this interpreter) of a job with ``processes`` processes (one per GPU)."""
    options = dict(spec["dataset"]) if isinstance(spec["dataset"], dict) else {"name": spec["dataset"]}
    name = options.pop("name")
    model = spec["model"]
    # torchrun as this interpreter's module: the job's own torch, whether or not its bin/ is on PATH
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "weightselect", "train",
               "--model", model["name"], "--model-kwargs", json.dumps(model.get("kwargs", {})),
               "--dataset", name, "--dataset-options", json.dumps(options), "--out", run_dir,
               "--seed", str(seed), "--num-workers", str(workers)]
    if data_root is not None:
        command += ["--data-root", str(data_root)]
    if init is not None:
        command += ["--init", str(init)]
    command += [f"--set={key}={json.dumps(value)}" for key, value in spec.get("recipe", {}).items()]
    if spec.get("distill"):
        teacher = spec["teacher"]
        command += ["--distill", spec["distill"]["kind"], "--teacher", teacher["name"],
                    "--teacher-kwargs", json.dumps(teacher.get("kwargs", {})), "--teacher-weights", teacher["weights"]]
        if "alpha" in spec["distill"]:
            command += ["--distill-alpha", str(spec["distill"]["alpha"])]
    if spec.get("mode") == "probe":
        command += ["--mode", "probe"]
    if spec.get("tensorboard"):
        command += ["--tensorboard"]
    command += ["--download"] * bool(download) + ["--force"] * bool(force)
    return command


def _run_relayed(command: List[str]) -> int:
    """Run ``command``, its stdout and stderr copied line by line to this process's stderr (the
    rule's log, which :mod:`weightselect.rulelog` reopens if a second workflow deleted it); its
    epoch lines also go to the job's console (:func:`weightselect.rulelog.progress`, rate-limited)."""
    from weightselect import rulelog

    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", bufsize=1) as proc:
        for line in proc.stdout:
            sys.stderr.write(line)
            if line.startswith("epoch "):
                rulelog.progress(line)
        return proc.wait()


def run_job(spec: Mapping[str, Any], run_dir: str, *, seed: int, init: Any = None, data_root: Optional[str] = None,
            gpus: int = 0, processes: Optional[int] = None, threads: int = 1, download: bool = False,
            force: bool = False) -> Optional[Dict[str, Any]]:
    """Train one job: ``spec`` as :meth:`weightselect.study.Study.train_params` (model, dataset,
    recipe, mode, distill, teacher, ``tensorboard`` (optional: also write TensorBoard events) and
    ``expect_init``: what the init file must have been made from, checked first, InitProvenanceError
    otherwise); ``gpus``: GPUs the job asked for;
    ``processes``: training processes (default max(gpus, 1)); ``threads``: CPU threads of the job.
    Returns final.json's dict (in process) or None (torchrun: the run folder holds it). Raises
    GPUUnavailable; SystemExit with torchrun's status when it fails, and with 128 + the signal's
    number (one log line: checkpoint written, rerun resumes) when a signal stopped the training.
    """
    if spec.get("expect_init") and init is not None:  # the variant's own init file, not another's
        from weightselect.selection.provenance import check_init_provenance

        check_init_provenance(init, spec["expect_init"], indices=False)  # read_init checks the index sets
    check_gpus(gpus)
    processes = int(processes or max(gpus, 1))
    if processes > 1:
        command = torchrun_command(spec, run_dir, seed=seed, init=init, data_root=data_root, processes=processes,
                                   workers=max(threads // processes - 1, 0), download=download, force=force)
        log.info("%s", " ".join(command))
        code = _run_relayed(command)
        if code:
            raise SystemExit(code)
        return None
    import signal

    import torch

    from weightselect.training import train
    from weightselect.training.loop import TrainingInterrupted

    torch.set_num_threads(max(int(threads), 1))
    extra: Dict[str, Any] = {}
    if spec.get("mode") == "probe":
        extra["mode"] = "probe"
    if spec.get("tensorboard"):
        extra["tensorboard"] = True
    if spec.get("distill"):
        extra.update(distill=spec["distill"], teacher=spec["teacher"])
    try:
        return train(spec["model"], spec["dataset"], run_dir, init=init, seed=seed, recipe=spec.get("recipe", {}),
                     data_root=data_root, download=download, force=force, device="cuda" if gpus else None,
                     num_workers=max(threads - 1, 0) if gpus else 0, **extra)
    except TrainingInterrupted as exc:  # a signal before the time limit: checkpointed, the next job resumes
        log.error("%s", exc)
        raise SystemExit(128 + (exc.signum or signal.SIGTERM)) from None
