"""Any table of a study, from exactly its declared runs (weightselect.results.build_table), with the
verdicts of the paper's claims about it (weightselect.results.claims)."""
import logging

from weightselect import rulelog
from weightselect.io import write_text
from weightselect.results import build_table, paper_gap, write_table
from weightselect.results.claims import claim_caption, verdicts_of

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

spec = snakemake.params.spec
finals = list(snakemake.input)
table = build_table(spec, finals)
claims = verdicts_of(spec, finals)
write_table(table, snakemake.output.csv, title=spec["title"], claims=claims)
# the report's caption includes this file: the gap to the paper and the claims' verdicts
write_text(snakemake.output.gap, paper_gap(table) + "\n\n" + claim_caption(claims) + "\n")
logging.info("%s: %d rows, %d claim rows from %d run files", spec["name"], len(table), len(claims), len(finals))
