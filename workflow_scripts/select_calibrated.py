"""Weight selection ranked on data (method activation): the student's init file for one variant,
from its teacher file run on the variant's calibration images (weightselect.selection.importance)."""
import logging

from weightselect import rulelog
from weightselect.selection import select
from weightselect.selection.importance import study_calibration

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

init = snakemake.params.init
calibration = snakemake.params.calibration  # the teacher's model spec and the images to run it on
result = select(
    snakemake.input.teacher,
    snakemake.params.student,
    method=init["method"],
    layers=init.get("layers", "first"),
    seed=init.get("seed", 0),
    exclude=init.get("exclude", ()),
    calibration=study_calibration(calibration, teacher=snakemake.input.teacher),
    teacher_model=calibration["teacher_model"],
)
result.save(snakemake.output.weights)
logging.info("wrote %s (%d tensors)", snakemake.output.weights, len(result.state_dict))
