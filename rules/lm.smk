# The offline LM study of weight selection for transformers models (weightselect.hf.lm_study):
# for each teacher family (Llama, Qwen3), a byte-level teacher on the standard library's sources and
# a half-width student from weight selection (uniform, and activation-ranked on windows of the
# students' training text) vs random init, the same budget, over seeds. Not a
# default target:
#   snakemake --cores 2 lm_all
# Optional config key `lm`: LMStudyConfig fields (teacher_steps, student_steps, seeds, families, ...).

LM_STUDY = dict(config.get("lm", {}))
LM_SEEDS = [int(s) for s in LM_STUDY.get("seeds", [0, 1, 2])]
LM_FAMILIES = [str(f) for f in LM_STUDY.get("families", ["llama", "qwen3"])]
LM_INITS = ["selection", "activation", "random"]


rule lm_all:
    """The LM study's table and figure."""
    input:
        "results/lm/table.csv",
        "results/lm/curves.png",


rule lm_teacher:
    """Pretrain one family's byte-level teacher on the standard library's sources."""
    output:
        directory("results/lm/{family}/teacher"),
    log:
        "results/logs/lm/{family}/teacher.log",
    benchmark:
        "results/benchmarks/lm/{family}/teacher.tsv"
    wildcard_constraints:
        family="|".join(LM_FAMILIES),
    conda:
        "../envs/weightselect.yaml"
    threads: 1
    params:
        study=LM_STUDY,
    script:
        "../workflow_scripts/lm_teacher.py"


rule lm_init:
    """The half-width student's starting weights: weight selection (uniform or activation-ranked) or random init."""
    input:
        "results/lm/{family}/teacher",
    output:
        directory("results/lm/{family}/inits/{init}_seed{seed}"),
    log:
        "results/logs/lm/{family}/inits/{init}_seed{seed}.log",
    benchmark:
        "results/benchmarks/lm/{family}/inits/{init}_seed{seed}.tsv"
    wildcard_constraints:
        family="|".join(LM_FAMILIES),
        init="selection|activation|random",
        seed=r"\d+",
    conda:
        "../envs/weightselect.yaml"
    threads: 1
    params:
        study=LM_STUDY,
    script:
        "../workflow_scripts/lm_init.py"


rule lm_train:
    """Train one student on the held-out text: its loss curve and validation perplexity."""
    input:
        "results/lm/{family}/inits/{init}_seed{seed}",
    output:
        "results/lm/{family}/runs/{init}_seed{seed}.json",
    log:
        "results/logs/lm/{family}/runs/{init}_seed{seed}.log",
    benchmark:
        "results/benchmarks/lm/{family}/runs/{init}_seed{seed}.tsv"
    wildcard_constraints:
        family="|".join(LM_FAMILIES),
        init="selection|activation|random",
        seed=r"\d+",
    conda:
        "../envs/weightselect.yaml"
    threads: 1
    params:
        study=LM_STUDY,
    script:
        "../workflow_scripts/lm_train.py"


rule lm_report:
    """Perplexity table (per family and init, over seeds) and the loss-curve figure."""
    input:
        teachers=expand("results/lm/{family}/teacher", family=LM_FAMILIES),
        runs=expand(
            "results/lm/{family}/runs/{init}_seed{seed}.json",
            family=LM_FAMILIES,
            init=LM_INITS,
            seed=LM_SEEDS,
        ),
    output:
        table="results/lm/table.csv",
        markdown="results/lm/table.md",
        figure=report("results/lm/curves.png", category="LM study"),
    log:
        "results/logs/lm/report.log",
    benchmark:
        "results/benchmarks/lm/report.tsv"
    conda:
        "../envs/weightselect.yaml"
    params:
        families=LM_FAMILIES,
    script:
        "../workflow_scripts/lm_report.py"
