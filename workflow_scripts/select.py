"""Weight selection: the student's init file for one variant, from its teacher file."""
import logging
import sys

from weightselect.selection import select

sys.stderr = open(snakemake.log[0], "w")  # messages and any traceback go to the rule's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)

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
