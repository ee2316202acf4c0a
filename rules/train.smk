# Training: one job per (student, dataset, variant, seed). The run folder also holds checkpoint.pt,
# which is not declared, so that a resubmitted job (preemption) resumes instead of restarting.


rule prepare_dataset:
    """Download a dataset once, before its training jobs start (studies with download: true)."""
    output:
        "results/datasets/{source}.json",
    log:
        "results/logs/datasets/{source}.log",
    retries: RESOURCES.get("retries", 0)
    conda:
        "../envs/weightselect.yaml"
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        data_root=DATA_ROOT,
    script:
        "../workflow_scripts/prepare_dataset.py"


rule train:
    """Fine-tune the student from the variant's init on the dataset with the given seed."""
    input:
        init=init_input,
        data=dataset_ready,
    output:
        final="results/runs/{student}/{dataset}/{variant}/seed{seed}/final.json",
        metrics="results/runs/{student}/{dataset}/{variant}/seed{seed}/metrics.jsonl",
    log:
        "results/logs/runs/{student}/{dataset}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/runs/{student}/{dataset}/{variant}/seed{seed}.tsv"
    retries: RESOURCES.get("retries", 0)
    conda:
        "../envs/weightselect.yaml"
    threads: train_threads
    resources:
        gpu=train_gpus,
        runtime=train_runtime,
        mem_mb=train_mem_mb,
        tasks=1,
    params:
        model=lambda wc: STUDENTS[wc.student]["model"],
        dataset=lambda wc: dataset_arg(wc.dataset),
        init=init_arg,
        recipe=lambda wc: run_recipe(wc.student, wc.dataset),
        data_root=DATA_ROOT,
    script:
        "../workflow_scripts/train.py"
