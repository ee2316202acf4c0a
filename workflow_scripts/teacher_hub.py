"""Write a pretrained timm model's weights (hub or its cache) as the teacher file."""
import logging

from weightselect import rulelog
from weightselect.io import save_state_dict, sha256_file, write_json
from weightselect.selection.sources import open_teacher

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

model = snakemake.params.model
source = open_teacher(model["name"], model.get("kwargs") or None)
try:
    tensors = {key: source.tensors.get(key) for key in source.tensors.keys()}
finally:
    source.close()
save_state_dict(tensors, snakemake.output.weights)
manifest = dict(source.description, model=model, file_sha256=sha256_file(snakemake.output.weights))
write_json(snakemake.output.manifest, manifest)
logging.info("teacher %s: %d tensors", model["name"], len(tensors))
