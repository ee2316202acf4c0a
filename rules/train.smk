# Training: one job per run (student x dataset x variant x seed), whatever the variant (fine-tune,
# distillation, linear probe). The run folder also holds checkpoint.pt, which is not declared, so
# that a resubmitted job (preemption) resumes instead of restarting.


rule prepare_dataset:
    """Download a dataset once, before its training jobs start (studies with download: true)."""
    input:
        unpack(rehearsal_data_input),
    output:
        "results/datasets/{source}.json",
    log:
        "results/logs/datasets/{source}.log",
    benchmark:
        "results/benchmarks/datasets/{source}.tsv"
    conda:
        "../envs/weightselect.yaml"
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        data_root=dataset_root,
        options=dataset_options,
    script:
        "../workflow_scripts/prepare_dataset.py"


rule train:
    """Train one run: the variant's init, mode and recipe on the dataset with the seed."""
    input:
        unpack(train_inputs),
    output:
        # final.json only: the trainer writes it last. A run's other files (metrics.jsonl, checkpoint)
        # are not outputs, which Snakemake deletes when a second workflow reruns an incomplete job
        # while the first still trains it (after --unlock); the trainer's lock then refuses the job.
        final="results/runs/{student}/{dataset}/{variant}/seed{seed}/final.json",
    log:
        "results/logs/runs/{student}/{dataset}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/runs/{student}/{dataset}/{variant}/seed{seed}.tsv"
    # a run longer than max_runtime continues over successive jobs (checkpoint on SIGUSR1, resume)
    retries: TRAIN_RETRIES
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
        tasks_per_gpu=train_tasks_per_gpu,
    params:
        spec=train_spec,
        gpus=train_gpus,
        processes=train_processes,
        data_root=dataset_root,
    script:
        "../workflow_scripts/train.py"
