"""Weight selection: the student's init file for one variant, from its teacher file."""
import logging

from weightselect import rulelog
from weightselect.selection import select

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

init = snakemake.params.init
result = select(
    snakemake.input.teacher,
    snakemake.params.student,
    method=init["method"],
    layers=init.get("layers", "first"),
    seed=init.get("seed", 0),
    exclude=init.get("exclude", ()),
)
result.save(snakemake.output.weights)
logging.info("wrote %s (%d tensors)", snakemake.output.weights, len(result.state_dict))
