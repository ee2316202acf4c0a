# A rehearsal's inputs (`--config rehearsal=true`, weightselect.rehearsal): random-weight hub
# teachers in a Hugging Face hub cache and toy datasets in their real layouts, written before the
# real fetch and prepare jobs read them. No job of a normal study needs these rules.


localrules:
    rehearsal_hub_teacher,
    rehearsal_dataset,


rule rehearsal_hub_teacher:
    """Random weights of a hub teacher's exact timm architecture, in the rehearsal's hub cache."""
    output:
        "hf_cache/.written/{teacher}.json",
    log:
        "results/logs/rehearsal/{teacher}.log",
    benchmark:
        "results/benchmarks/rehearsal/{teacher}.tsv"
    conda:
        "../envs/weightselect.yaml"
    params:
        model=teacher_model,
        cache=lambda wildcards: HUB_CACHE,
    script:
        "../workflow_scripts/rehearsal_inputs.py"


rule rehearsal_dataset:
    """A toy dataset in its real on-disk layout under the rehearsal's data root."""
    output:
        f"{DATA_ROOT}/{{source}}.weightselect-toy.json",
    log:
        "results/logs/rehearsal/{source}.log",
    benchmark:
        "results/benchmarks/rehearsal/{source}.tsv"
    conda:
        "../envs/weightselect.yaml"
    params:
        data_root=lambda wildcards, output: os.path.dirname(output[0]),
    script:
        "../workflow_scripts/rehearsal_inputs.py"
