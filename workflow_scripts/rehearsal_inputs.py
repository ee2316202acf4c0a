"""A rehearsal's input: a random-weight hub teacher in its hub cache, or a toy dataset (weightselect.rehearsal)."""
import logging

from weightselect import rulelog
from weightselect.io import write_json

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

if snakemake.rule == "rehearsal_hub_teacher":
    from weightselect.rehearsal import write_hub_teacher

    name = snakemake.params.model["name"]
    path = write_hub_teacher(name, snakemake.params.cache)
    write_json(snakemake.output[0], {"model": name, "file": str(path)})
    logging.info("random weights of %s in %s", name, path)
else:
    from weightselect.training.toy_data import write_toy_dataset

    written = write_toy_dataset(snakemake.wildcards.source, snakemake.params.data_root)
    logging.info("toy %s under %s: %s", snakemake.wildcards.source, snakemake.params.data_root, written["images"])
