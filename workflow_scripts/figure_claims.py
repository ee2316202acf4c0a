"""The verdicts of the paper's claims about one figure (weightselect.results.claims)."""
import logging

from weightselect import rulelog
from weightselect.io import write_text
from weightselect.results.claims import claim_caption, verdicts_of, write_claims

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

spec = snakemake.params.spec
claims = verdicts_of(spec, list(snakemake.input))
write_claims(claims, snakemake.output.csv, title=spec["title"])
write_text(snakemake.output.caption, claim_caption(claims) + "\n")
logging.info("%s: %d claim rows from %d run files", spec["name"], len(claims), len(snakemake.input))
