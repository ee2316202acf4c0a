"""Any table of a study, from exactly its declared runs (weightselect.results.build_table)."""
import logging

from weightselect import rulelog
from weightselect.io import write_text
from weightselect.results import build_table, paper_gap, write_table

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

spec = snakemake.params.spec
table = build_table(spec, list(snakemake.input))
write_table(table, snakemake.output.csv, title=spec["title"])
write_text(snakemake.output.gap, paper_gap(table) + "\n")  # included in the report's caption
logging.info("%s: %d rows from %d run files", spec["name"], len(table), len(snakemake.input))
