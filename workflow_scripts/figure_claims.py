"""The verdicts of the paper's claims about one figure (weightselect.results.claims)."""
import logging

from weightselect import rulelog
from weightselect.io import write_text
from weightselect.results.claims import attention_verdicts, claim_caption, verdicts_of, write_claims

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

spec = snakemake.params.spec
if spec["kind"] == "attention":  # Figure 5: the diagonality of W_q W_k^T, from the weights
    claims = attention_verdicts(spec, snakemake.input.teacher, snakemake.input.init)
else:
    claims = verdicts_of(spec, list(snakemake.input.finals))
write_claims(claims, snakemake.output.csv, title=spec["title"])
write_text(snakemake.output.caption, claim_caption(claims) + "\n")
logging.info("%s: %d claim rows from %d run files", spec["name"], len(claims), len(snakemake.input))
