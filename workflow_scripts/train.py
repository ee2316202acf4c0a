"""One training run of any variant: fine-tune, distillation or linear probe (weightselect.training.launch).

A job that asked for GPUs stops at once when it does not see them; with more than one process
(one per GPU, or `processes` on the CPU) the run is launched with torchrun inside this job.
"""
import logging
from pathlib import Path

from weightselect import rulelog
from weightselect.training.launch import run_job

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

spec = snakemake.params.spec
final = run_job(spec, str(Path(snakemake.output.final).parent), seed=int(snakemake.wildcards.seed),
                init=snakemake.input.get("init", spec["init"]), data_root=snakemake.params.data_root,
                gpus=int(snakemake.params.gpus),  # also on the --gres route, where the `gpu` resource is 0
                processes=snakemake.params.get("processes"), threads=snakemake.threads)
logging.info("final: %s", final)
