"""LM study: pretrain the byte-level teacher on the standard library's sources."""
import logging
import sys
from pathlib import Path

from weightselect.hf.lm_study import LMStudyConfig, load_corpus, pretrain_teacher

sys.stderr = open(snakemake.log[0], "w")  # messages and any traceback go to the rule's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)

cfg = LMStudyConfig(**snakemake.params.study, threads=snakemake.threads)
pretrain_teacher(cfg, load_corpus(cfg), Path(snakemake.output[0]))
logging.info("wrote %s", snakemake.output[0])
