# Weight selection ("Initializing Models with Larger Ones", ICLR 2024): the paper's experiments.
#
#   snakemake --cores all                      the offline `demo` study on this machine
#   snakemake --cores all --config study=ci    a smaller study with the same rules
#   snakemake --profile slurm all              the `paper` study on a SLURM GPU cluster
#   snakemake --report results/report.html     tables and figures in one HTML file (add
#                                              --report-after-run to a run to write it at its end)
#
# teachers -> inits (weight selection) -> runs (training) -> tables and figures; see docs/workflow.md.

import os

from weightselect.io import read_yaml

from snakemake.utils import min_version

# Under --sdm conda, each rule environment installs this package from the workflow's own source
# tree (envs/weightselect.post-deploy.sh reads it; see docs/environments.md).
os.environ.setdefault("WEIGHTSELECT_SOURCE", workflow.basedir)

min_version("9.0")


# a syntax error, or a key given twice, named with its file and line (Snakemake's loader says neither)
read_yaml(os.path.join(workflow.basedir, "config.yaml"))


# beside this file, so that `--directory DIR` runs the study into another folder
configfile: os.path.join(workflow.basedir, "config.yaml")


# `--config rehearsal=true`: every job of the study at toy size, offline, in its own folder
# (weightselect.rehearsal; docs/rehearsal.md), never beside the study's results.
if config.get("rehearsal") in (True, "true"):

    workdir: "rehearsal"


include: "rules/common.smk"


wildcard_constraints:
    teacher=alternatives(STUDY.teachers),
    student=alternatives(STUDY.students),
    dataset=alternatives(STUDY.datasets),
    source=alternatives({STUDY.source_dataset(d) for d in STUDY.datasets}),
    variant=alternatives(STUDY.variants),
    table=alternatives(STUDY.tables),
    seed=r"\d+",


report: "report/workflow.rst"


# The image every job runs in under `--sdm apptainer` (built from containers/weightselect.def; see
# docs/environments.md). Ignored otherwise.
container: "weightselect.sif"


# The study's tables and figures.
rule all:
    default_target: True
    input:
        STUDY.targets(),


# Tables marked `optional: true` (the paper study's beyond_activation): not in `all`, built when named,
#   snakemake --profile slurm optional_tables --config study=paper     (or results/tables/NAME.csv)
rule optional_tables:
    input:
        STUDY.optional_targets(),


# What needs the internet, for a login node before the jobs start (compute nodes often have none):
#   snakemake --cores 4 fetch --config study=paper
rule fetch:
    input:
        [STUDY.teacher_file(t) for t in teachers_from("hub")],
        [
            f"results/datasets/{d}.json"
            for d in sorted({STUDY.source_dataset(d) for d in STUDY.datasets})
        ]
        if DOWNLOAD
        else [],


include: "rules/teachers.smk"
include: "rules/inits.smk"
include: "rules/train.smk"
include: "rules/tables.smk"
include: "rules/figures.smk"
include: "rules/lm.smk"
include: "rules/rehearsal.smk"
