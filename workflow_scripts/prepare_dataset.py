"""Download (or find) both splits of a dataset once and record their sizes."""
import logging
import sys

from weightselect import rulelog
from weightselect.io import write_json
from weightselect.training.data import DatasetNotFoundError, build_dataset

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

name, root = snakemake.wildcards.source, snakemake.params.data_root
options = dict(snakemake.params.get("options") or {})
try:
    sizes = {split: len(build_dataset(name, root, train=split == "train", download=True, **options))
             for split in ("train", "test")}
except DatasetNotFoundError as exc:  # ImageNet cannot be downloaded: one line with the layout and the key
    logging.error("%s (docs/slurm.md, 'Data and downloads'; a dataset's own data_root in config.yaml)", exc)
    sys.exit(1)
write_json(snakemake.output[0], {"dataset": name, "data_root": root, "images": sizes})
logging.info("%s under %s: %s", name, root, sizes)
