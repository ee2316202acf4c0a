"""LM study: perplexity table (mean and std over seeds) and the loss-curve figure."""
import logging
from pathlib import Path

from weightselect import rulelog
from weightselect.hf.lm_study import report
from weightselect.io import read_json

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

summary = report([read_json(p) for p in snakemake.input.runs], Path(snakemake.input.teacher),
                 Path(snakemake.output.table).parent)
logging.info("teacher perplexity %.3f; table %s", summary["teacher_val_ppl"], summary["table"])
