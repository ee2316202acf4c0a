"""LM study: perplexity table (per family and init, mean and std over seeds) and the loss-curve figure."""
import logging
from pathlib import Path

from weightselect import rulelog
from weightselect.hf.lm_study import report
from weightselect.io import read_json

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

teachers = {family: Path(folder) for family, folder in zip(snakemake.params.families, snakemake.input.teachers)}
summary = report([read_json(p) for p in snakemake.input.runs], teachers, Path(snakemake.output.table).parent)
logging.info("teachers %s; table %s", summary["teachers"], summary["table"])
