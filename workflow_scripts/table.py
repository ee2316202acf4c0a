"""Any table of a study, from exactly its declared runs (weightselect.results.build_table)."""
import logging
import sys

from weightselect.io import write_text
from weightselect.results import build_table, paper_gap, write_table

sys.stderr = open(snakemake.log[0], "w")  # messages and any traceback go to the rule's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)

spec = snakemake.params.spec
table = build_table(spec, list(snakemake.input))
write_table(table, snakemake.output.csv, title=spec["title"])
write_text(snakemake.output.gap, paper_gap(table) + "\n")  # included in the report's caption
logging.info("%s: %d rows from %d run files", spec["name"], len(table), len(snakemake.input))
