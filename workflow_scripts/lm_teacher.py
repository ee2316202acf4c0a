"""LM study: pretrain one family's byte-level teacher on the standard library's sources."""
import logging
from pathlib import Path

from weightselect import rulelog
from weightselect.hf.lm_study import LMStudyConfig, load_corpus, pretrain_teacher

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

cfg = LMStudyConfig(**snakemake.params.study, threads=snakemake.threads)
pretrain_teacher(cfg, load_corpus(cfg), Path(snakemake.output[0]), snakemake.wildcards.family)
logging.info("wrote %s", snakemake.output[0])
