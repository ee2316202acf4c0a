"""LM study: train one student on the held-out text; its curve and validation perplexity."""
import logging
from pathlib import Path

import torch

from weightselect import rulelog
from weightselect.hf.lm_study import LMStudyConfig, load_corpus, train_student

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

cfg = LMStudyConfig(**snakemake.params.study, threads=snakemake.threads)
torch.set_num_threads(cfg.threads)
log = train_student(Path(snakemake.input[0]), load_corpus(cfg), cfg, int(snakemake.wildcards.seed),
                    Path(snakemake.output[0]), snakemake.wildcards.init)
logging.info("validation perplexity %.3f", log["val_ppl"])
