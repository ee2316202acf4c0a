"""Pretrain the teacher on its pretraining set, then copy its final weights to the teacher file."""
import logging
import sys
from pathlib import Path

import torch

from weightselect.io import load_state_dict, save_state_dict, sha256_file, write_json
from weightselect.training import train

sys.stderr = open(snakemake.log[0], "w")  # messages and any traceback go to the rule's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)
torch.set_num_threads(snakemake.threads)

p = snakemake.params
pre = p.pretrain
# A finished pretraining is redone (this rule only reruns when its inputs or params changed or its
# output went missing); an unfinished one (checkpoint only, e.g. after preemption) is resumed.
redo = (Path(p.run_dir) / "final.json").exists()
final = train(p.model, pre["dataset"], p.run_dir, seed=pre.get("seed", 0), recipe=pre.get("recipe", {}),
              data_root=p.data_root, download=p.download, force=redo)
save_state_dict(load_state_dict(Path(p.run_dir) / "model.safetensors"), snakemake.output.weights)
source = f"pretrained on {pre['dataset']} ({final.get('epochs')} epochs, final top-1 {final.get('final_top1')})"
write_json(snakemake.output.manifest, {"source": source, "sha256": sha256_file(snakemake.output.weights),
                                       "model": p.model, "recipe": pre.get("recipe", {}), "final": final})
logging.info("%s", source)
