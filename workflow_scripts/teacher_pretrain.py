"""Pretrain the teacher on its pretraining set (the same launcher as training), then copy its final
weights to the teacher file."""
import logging
from pathlib import Path

from weightselect import rulelog
from weightselect.io import load_state_dict, read_json, save_state_dict, sha256_file, write_json
from weightselect.training.launch import run_job

rulelog.start(snakemake.log[0])  # messages and any traceback go to the rule's log, appended

p = snakemake.params
pre = p.pretrain
# A finished pretraining is redone (this rule only reruns when its inputs or params changed or its
# output went missing); an unfinished one (checkpoint only, e.g. after preemption) is resumed.
redo = (Path(p.run_dir) / "final.json").exists()
spec = {"model": p.model, "dataset": pre["dataset"], "recipe": pre.get("recipe", {}), "mode": "finetune"}
run_job(spec, p.run_dir, seed=pre.get("seed", 0), data_root=p.data_root, download=p.download, force=redo,
        gpus=int(p.get("gpus", 0)), processes=p.get("processes"), threads=snakemake.threads)
final = read_json(Path(p.run_dir) / "final.json")
save_state_dict(load_state_dict(Path(p.run_dir) / "model.safetensors"), snakemake.output.weights)
source = f"pretrained on {pre['dataset']} ({final.get('epochs')} epochs, final top-1 {final.get('final_top1')})"
train_images = read_json(Path(p.run_dir) / "run.json")["dataset"]["train_images"]  # Figure 4b's compute ratio
write_json(snakemake.output.manifest, {"source": source, "sha256": sha256_file(snakemake.output.weights),
                                       "model": p.model, "recipe": pre.get("recipe", {}), "final": final,
                                       "train_images": train_images})
logging.info("%s", source)
