"""Training curves of one student on one dataset: test accuracy per epoch, a band over seeds."""
import logging

from weightselect import rulelog
from weightselect.results import figures, plot_curves, read_curves

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

spec = snakemake.params.spec
figures.WATERMARK = spec.get("watermark")  # a rehearsal's figures are marked as such
plot_curves(
    read_curves(list(snakemake.input)),
    snakemake.wildcards.student,
    snakemake.wildcards.dataset,
    snakemake.output[0],
    variants=spec["variants"],
    paper_model=spec["paper_model"],
)
logging.info("wrote %s", snakemake.output[0])
