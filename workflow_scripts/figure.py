"""One figure of a study: an epoch sweep (Figure 4a), a pretraining sweep (4b) or attention maps (5)."""
import logging

from weightselect import rulelog
from weightselect.results import figures

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

spec, out = snakemake.params.spec, snakemake.output[0]
figures.WATERMARK = spec.get("watermark")  # a rehearsal's figures are marked as such
if spec["kind"] == "attention":
    figures.plot_attention_maps(spec, snakemake.input.teacher, snakemake.input.init, out)
else:
    finals = list(snakemake.input.finals)
    if spec["kind"] == "epochs":
        figures.plot_epoch_sweep(spec, finals, out)
    else:  # Figure 4b, with its compute ratio beside it in {out}.json
        figures.plot_pretraining_sweep(spec, finals, out, teachers=list(snakemake.input.teachers))
logging.info("wrote %s", out)
