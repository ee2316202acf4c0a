"""LM study: the half-width student's starting weights (weight selection or random init)."""
import logging
from pathlib import Path

from weightselect import rulelog
from weightselect.hf.lm_study import LMStudyConfig, make_init

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

cfg = LMStudyConfig(**snakemake.params.study, threads=snakemake.threads)
make_init(Path(snakemake.input[0]), cfg, snakemake.wildcards.init, int(snakemake.wildcards.seed), Path(snakemake.output[0]))
logging.info("wrote %s", snakemake.output[0])
