"""One training run of any variant: fine-tune, distillation or linear probe (weightselect.training.train).

With more than one GPU the run is launched with torchrun, one process per GPU, inside this job.
"""
import json
import logging
import subprocess
import sys
from pathlib import Path

import torch

from weightselect.training import train

sys.stderr = open(snakemake.log[0], "w")  # messages and any traceback go to the rule's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)

spec, threads = snakemake.params.spec, snakemake.threads
run_dir = str(Path(snakemake.output.final).parent)
seed = int(snakemake.wildcards.seed)
init = snakemake.input.get("init", spec["init"])
gpus = int(snakemake.params.gpus)  # also on the --gres route, where the `gpu` resource is 0
extra = {}
if spec["mode"] == "probe":  # the trainer's modes: finetune (default; distillation is fine-tuning
    extra["mode"] = "probe"  # with a teacher's loss added) and probe
if spec["distill"]:
    extra.update(distill=spec["distill"], teacher=spec["teacher"])
if gpus > 1:
    options = dict(spec["dataset"]) if isinstance(spec["dataset"], dict) else {"name": spec["dataset"]}
    name = options.pop("name")
    model = spec["model"]
    command = ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m", "weightselect", "train",
               "--model", model["name"], "--model-kwargs", json.dumps(model.get("kwargs", {})),
               "--dataset", name, "--dataset-options", json.dumps(options),
               "--data-root", snakemake.params.data_root, "--out", run_dir,
               "--init", str(init), "--seed", str(seed),
               "--num-workers", str(max(threads // gpus - 1, 0))]
    command += [f"--set={key}={json.dumps(value)}" for key, value in spec["recipe"].items()]
    if spec["distill"]:
        teacher = spec["teacher"]
        command += ["--distill", spec["distill"]["kind"], "--teacher", teacher["name"],
                    "--teacher-kwargs", json.dumps(teacher.get("kwargs", {})), "--teacher-weights", teacher["weights"]]
        if "alpha" in spec["distill"]:
            command += ["--distill-alpha", str(spec["distill"]["alpha"])]
    if spec["mode"] == "probe":
        command[command.index("train")] = "probe"
    sys.exit(subprocess.run(command, stdout=sys.stderr, stderr=subprocess.STDOUT).returncode)

torch.set_num_threads(threads)
final = train(spec["model"], spec["dataset"], run_dir, init=init, seed=seed, recipe=spec["recipe"],
              data_root=snakemake.params.data_root, num_workers=max(threads - 1, 0) if gpus else 0, **extra)
logging.info("final: %s", final)
