"""One training run: the student from its init (a file or a baseline name) on a dataset, one seed.

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

p, threads = snakemake.params, snakemake.threads
run_dir = str(Path(snakemake.output.final).parent)
gpus = int(snakemake.resources.gpu)
options = dict(p.dataset) if isinstance(p.dataset, dict) else {"name": p.dataset}
name = options.pop("name")
if gpus > 1:
    command = ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m", "weightselect", "train",
               "--model", p.model["name"], "--model-kwargs", json.dumps(p.model.get("kwargs", {})),
               "--dataset", name, "--dataset-options", json.dumps(options),
               "--data-root", p.data_root, "--out", run_dir,
               "--init", str(p.init), "--seed", snakemake.wildcards.seed,
               "--num-workers", str(max(threads // gpus - 1, 0))]
    command += [f"--set={key}={json.dumps(value)}" for key, value in p.recipe.items()]
    sys.exit(subprocess.run(command, stdout=sys.stderr, stderr=subprocess.STDOUT).returncode)

torch.set_num_threads(threads)
final = train(p.model, p.dataset, run_dir, init=p.init, seed=int(snakemake.wildcards.seed),
              recipe=p.recipe, data_root=p.data_root, num_workers=max(threads - 1, 0) if gpus else 0)
logging.info("final: %s", final)
