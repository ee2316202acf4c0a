# Teachers: results/teachers/{teacher}.safetensors (+ .json: source, sha256), from one of three
# sources. Each rule only matches the teachers of its source (wildcard_constraints).


rule fetch_hub_teacher:
    """Copy a pretrained timm model's weights from the Hugging Face hub (or its cache)."""
    input:
        unpack(rehearsal_hub_input),
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
    input:
        unpack(pretrain_inputs),
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
    # sized like a training job on the pretraining set (GPUs, memory, time cap and continuation)
    retries: PRETRAIN_RETRIES
    conda:
        "../envs/weightselect.yaml"
    threads: train_threads
    resources:
        gpu=train_gpu_resource,
        gpu_model=train_gpu_model,
        gres=train_gres,
        runtime=train_runtime,
        mem_mb=train_mem_mb,
        slurm_extra=train_slurm_extra,
        nodes=1,
        tasks=1,
        tasks_per_gpu=0,
    params:
        model=teacher_model,
        gpus=train_gpus,
        processes=train_processes,
        pretrain=teacher_pretrain,
        run_dir="results/pretrain/{teacher}",
        data_root=dataset_root,
        download=DOWNLOAD,
    script:
        "../workflow_scripts/teacher_pretrain.py"
