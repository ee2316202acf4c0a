# The offline LM study of weight selection for transformers models (weightselect.hf.lm_study):
# a byte-level Llama teacher on the standard library's sources, a half-width student from weight
# selection vs random init, the same budget, over seeds. Not a default target:
#   snakemake --cores 2 lm_all
# Optional config key `lm`: LMStudyConfig fields (teacher_steps, student_steps, seeds, ...).

LM_STUDY = dict(config.get("lm", {}))
LM_SEEDS = [int(s) for s in LM_STUDY.get("seeds", [0, 1, 2])]
LM_INITS = ["selection", "random"]


rule lm_all:
    input:
        "results/lm/table.csv",
        "results/lm/curves.png",


rule lm_teacher:
    output:
        directory("results/lm/teacher"),
    log:
        "logs/lm/teacher.log",
    threads: 1
    params:
        study=LM_STUDY,
    script:
        "../workflow_scripts/lm_teacher.py"


rule lm_init:
    input:
        "results/lm/teacher",
    output:
        directory("results/lm/inits/{init}_seed{seed}"),
    log:
        "logs/lm/inits/{init}_seed{seed}.log",
    wildcard_constraints:
        init="selection|random",
        seed=r"\d+",
    threads: 1
    params:
        study=LM_STUDY,
    script:
        "../workflow_scripts/lm_init.py"


rule lm_train:
    input:
        "results/lm/inits/{init}_seed{seed}",
    output:
        "results/lm/runs/{init}_seed{seed}.json",
    log:
        "logs/lm/runs/{init}_seed{seed}.log",
    wildcard_constraints:
        init="selection|random",
        seed=r"\d+",
    threads: 1
    params:
        study=LM_STUDY,
    script:
        "../workflow_scripts/lm_train.py"


rule lm_report:
    input:
        teacher="results/lm/teacher",
        runs=expand(
            "results/lm/runs/{init}_seed{seed}.json", init=LM_INITS, seed=LM_SEEDS
        ),
    output:
        table="results/lm/table.csv",
        markdown="results/lm/table.md",
        figure=report("results/lm/curves.png", category="LM study"),
    log:
        "logs/lm/report.log",
    script:
        "../workflow_scripts/lm_report.py"
