"""LM study: the half-width student's starting weights (weight selection or random init)."""
import logging
import sys
from pathlib import Path

from weightselect.hf.lm_study import LMStudyConfig, make_init

sys.stderr = open(snakemake.log[0], "w")  # messages and any traceback go to the rule's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)

cfg = LMStudyConfig(**snakemake.params.study, threads=snakemake.threads)
make_init(Path(snakemake.input[0]), cfg, snakemake.wildcards.init, int(snakemake.wildcards.seed), Path(snakemake.output[0]))
logging.info("wrote %s", snakemake.output[0])
