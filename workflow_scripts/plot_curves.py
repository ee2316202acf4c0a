"""Training curves of one student on one dataset: test accuracy per epoch, a band over seeds."""
import logging
import sys

from weightselect.results import collect_curves, plot_curves

sys.stderr = open(snakemake.log[0], "w")  # messages and any traceback go to the rule's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)

curves = collect_curves(snakemake.params.runs)
plot_curves(
    curves,
    snakemake.wildcards.student,
    snakemake.wildcards.dataset,
    snakemake.output[0],
    variants=snakemake.params.variants,
    paper_model=snakemake.params.paper_model,
)
logging.info("wrote %s", snakemake.output[0])
