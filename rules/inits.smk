# Weight selection: one init file per student and selection variant, shared by every dataset,
# seed and variant that refers to it (the classifier is left to the trainer when class counts differ).
# Selections ranked on data (method activation) have their own rule, so that adding them leaves the
# other selections' rule, and so every run already made from them, as it was.


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
        variant=alternatives(v for v in STUDY.selection_variants() if not calibrated(v)),
    priority: 10
    conda:
        "../envs/weightselect.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        student=selection_student,
        init=selection_spec,
    script:
        "../workflow_scripts/select.py"


rule select_weights_calibrated:
    """Select the student's weights ranked by the teacher's activations on calibration images."""
    input:
        unpack(calibration_data),
        teacher=selection_teacher,
    output:
        weights="results/inits/{student}/{variant}.safetensors",
        manifest="results/inits/{student}/{variant}.json",
    log:
        "results/logs/inits/{student}/{variant}.log",
    benchmark:
        "results/benchmarks/inits/{student}/{variant}.tsv"
    wildcard_constraints:
        variant=alternatives(v for v in STUDY.selection_variants() if calibrated(v)),
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
        "../workflow_scripts/select_calibrated.py"
