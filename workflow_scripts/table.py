"""Any table of a study, from exactly its declared runs (weightselect.results.build_table), with the
verdicts of the paper's claims about it (weightselect.results.claims), and its page in the report."""
import logging

from weightselect import rulelog
from weightselect.io import write_text
from weightselect.results import build_table, paper_gap, write_table
from weightselect.results.claims import claim_caption, verdicts_of
from weightselect.results.html import table_subtitle, write_table_page

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

spec = snakemake.params.spec
finals = list(snakemake.input)
table = build_table(spec, finals)
claims = verdicts_of(spec, finals)
write_table(table, snakemake.output.csv, title=spec["title"], claims=claims)
gap = paper_gap(table)
# the report's caption includes this file: the gap to the paper and the claims' verdicts
write_text(snakemake.output.gap, gap + "\n\n" + claim_caption(claims) + "\n")
write_table_page(table, snakemake.output.html, spec["title"], subtitle=table_subtitle(spec), note=gap,
                 claims=claims if not claims.empty else None)
logging.info("%s: %d rows, %d claim rows from %d run files", spec["name"], len(table), len(claims), len(finals))
