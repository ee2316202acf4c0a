# Weight selection: one init file per student and selection variant, shared by every dataset and
# seed (the classifier is left to the trainer when the class counts differ).


rule select_weights:
    """Select the student's weights from its teacher with the variant's method."""
    input:
        teacher=teacher_file,
    output:
        weights="results/inits/{student}/{variant}.safetensors",
        manifest="results/inits/{student}/{variant}.json",
    log:
        "results/logs/inits/{student}/{variant}.log",
    benchmark:
        "results/benchmarks/inits/{student}/{variant}.tsv"
    wildcard_constraints:
        variant=alternatives(selection_variants()),
    priority: 10
    conda:
        "../envs/weightselect.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        student=lambda wc: STUDENTS[wc.student]["model"],
        variant=lambda wc: VARIANTS[wc.variant],
    script:
        "../workflow_scripts/select.py"
