"""LM study: train one student on the held-out text; its curve and validation perplexity."""
import logging
import sys
from pathlib import Path

import torch

from weightselect.hf.lm_study import LMStudyConfig, load_corpus, train_student

sys.stderr = open(snakemake.log[0], "w")  # messages and any traceback go to the rule's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)

cfg = LMStudyConfig(**snakemake.params.study, threads=snakemake.threads)
torch.set_num_threads(cfg.threads)
log = train_student(Path(snakemake.input[0]), load_corpus(cfg), cfg, int(snakemake.wildcards.seed),
                    Path(snakemake.output[0]), snakemake.wildcards.init)
logging.info("validation perplexity %.3f", log["val_ppl"])
