"""Convert a local weights file into the teacher file (safetensors + manifest)."""
import logging

from weightselect import rulelog
from weightselect.io import load_state_dict, save_state_dict, sha256_file, write_json

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

path = snakemake.input[0]
tensors = load_state_dict(path)
save_state_dict(tensors, snakemake.output.weights)
write_json(
    snakemake.output.manifest,
    {"source": path, "sha256": sha256_file(path), "file_sha256": sha256_file(snakemake.output.weights)},
)
logging.info("teacher from %s: %d tensors", path, len(tensors))
