# Teachers: results/teachers/{teacher}.safetensors (+ .json: source, sha256), from one of three
# sources. Each rule only matches the teachers of its source (wildcard_constraints).


rule fetch_hub_teacher:
    """Copy a pretrained timm model's weights from the Hugging Face hub (or its cache)."""
    output:
        weights="results/teachers/{teacher}.safetensors",
        manifest="results/teachers/{teacher}.json",
    log:
        "results/logs/teachers/{teacher}.log",
    benchmark:
        "results/benchmarks/teachers/{teacher}.tsv"
    wildcard_constraints:
        teacher=alternatives(teachers_from("hub")),
    conda:
        "../envs/weightselect.yaml"
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        model=teacher_model,
    script:
        "../workflow_scripts/teacher_hub.py"


rule copy_local_teacher:
    """Convert a local weights file (.safetensors, .pth) into the teacher file."""
    input:
        teacher_path,
    output:
        weights="results/teachers/{teacher}.safetensors",
        manifest="results/teachers/{teacher}.json",
    log:
        "results/logs/teachers/{teacher}.log",
    benchmark:
        "results/benchmarks/teachers/{teacher}.tsv"
    wildcard_constraints:
        teacher=alternatives(teachers_from("file")),
    conda:
        "../envs/weightselect.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    script:
        "../workflow_scripts/teacher_file.py"


rule pretrain_teacher:
    """Train the teacher on the pretraining set (its run folder is kept for resuming)."""
    output:
        weights="results/teachers/{teacher}.safetensors",
        manifest="results/teachers/{teacher}.json",
    log:
        "results/logs/teachers/{teacher}.log",
    benchmark:
        "results/benchmarks/teachers/{teacher}.tsv"
    wildcard_constraints:
        teacher=alternatives(teachers_from("pretrain")),
    priority: 10  # every weight-selection run waits for the teacher: start it first
    conda:
        "../envs/weightselect.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=RESOURCES.get("gpus", 0),
        nodes=1,
        tasks=1,
        tasks_per_gpu=0,
        runtime=pretrain_runtime,
    params:
        model=teacher_model,
        pretrain=teacher_pretrain,
        run_dir="results/pretrain/{teacher}",
        data_root=DATA_ROOT,
        download=DOWNLOAD,
    script:
        "../workflow_scripts/teacher_pretrain.py"
