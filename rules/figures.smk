# Training curves: test accuracy per epoch, one line per variant (mean over seeds) with a band.


rule plot_curves:
    """Plot one student's curves on one dataset, random init vs weight selection."""
    input:
        lambda wc: metric_files(curve_grid(wc.student, wc.dataset)),
    output:
        report(
            "results/figures/curves_{student}_{dataset}.png",
            caption="../report/curves.rst",
            category="Training curves",
            subcategory="{student}",
        ),
    log:
        "results/logs/figures/curves_{student}_{dataset}.log",
    conda:
        "../envs/weightselect.yaml"
    params:
        runs=runs_root,
        variants=TABLE2_VARIANTS,
        paper_model=lambda wc: STUDENTS[wc.student].get("paper_model"),
    script:
        "../workflow_scripts/plot_curves.py"
