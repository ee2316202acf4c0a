"""Any table of a study, from exactly its declared runs (weightselect.results.build_table)."""
import logging

from weightselect import rulelog
from weightselect.io import write_text
from weightselect.results import build_table, paper_gap, write_table
from weightselect.results.html import table_subtitle, write_table_page

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

spec = snakemake.params.spec
table = build_table(spec, list(snakemake.input))
write_table(table, snakemake.output.csv, title=spec["title"])
gap = paper_gap(table)
write_text(snakemake.output.gap, gap + "\n")  # included in the report's captions
write_table_page(table, snakemake.output.html, spec["title"], subtitle=table_subtitle(spec), note=gap)
logging.info("%s: %d rows from %d run files", spec["name"], len(table), len(snakemake.input))
