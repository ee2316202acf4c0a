"""Every claim of the study with its overall verdict, in one table (weightselect.results.claims)."""
import logging

from weightselect import rulelog
from weightselect.results.claims import summarize_claims, write_claims

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

summary = summarize_claims(list(snakemake.input))
write_claims(summary, snakemake.output.csv, title=snakemake.params.title)
logging.info("%d claims from %d results", len(summary), len(snakemake.input))
