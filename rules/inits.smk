# Weight selection: one init file per student and selection variant, shared by every dataset,
# seed and variant that refers to it (the classifier is left to the trainer when class counts differ).


rule select_weights:
    """Select the student's weights from its teacher with the variant's method."""
    input:
        teacher=selection_teacher,
    output:
        weights="results/inits/{student}/{variant}.safetensors",
        manifest="results/inits/{student}/{variant}.json",
    log:
        "results/logs/inits/{student}/{variant}.log",
    benchmark:
        "results/benchmarks/inits/{student}/{variant}.tsv"
    wildcard_constraints:
        variant=alternatives(STUDY.selection_variants()),
    priority: 10
    conda:
        "../envs/weightselect.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        student=selection_student,
        init=selection_spec,
        calibration=selection_calibration,
    script:
        "../workflow_scripts/select.py"
