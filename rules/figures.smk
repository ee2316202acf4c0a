# Figures as data: training curves per student and dataset (fig3_*), and one file per figure for
# the sweeps (fig4a: epochs, fig4b: pretraining epochs) and the attention maps (fig5).


localrules:
    figure_curves,
    figure,
    figure_claims,


rule figure_curves:
    """Test top-1 per epoch of one student on one dataset, one line per variant, band over seeds."""
    input:
        curve_inputs,
    output:
        report(
            "results/figures/{figure}_{student}_{dataset}.png",
            caption="../report/curves.rst",
            category="Figures",
            subcategory="{figure}",
            labels={
                "figure": "{figure}",
                "student": "{student}",
                "dataset": "{dataset}",
            },
        ),
    log:
        "results/logs/figures/{figure}_{student}_{dataset}.log",
    benchmark:
        "results/benchmarks/figures/{figure}_{student}_{dataset}.tsv"
    wildcard_constraints:
        figure=alternatives(figures_of("curves")),
    conda:
        "../envs/weightselect.yaml"
    params:
        spec=curve_spec,
    script:
        "../workflow_scripts/figure_curves.py"


rule figure:
    """One figure file: an epoch sweep, a pretraining sweep or attention maps."""
    input:
        unpack(figure_inputs),
    output:
        report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    log:
        "results/logs/figures/{figure}.log",
    benchmark:
        "results/benchmarks/figures/{figure}.tsv"
    wildcard_constraints:
        figure=alternatives(figures_of("epochs", "pretraining", "attention")),
    conda:
        "../envs/weightselect.yaml"
    params:
        spec=figure_spec,
    script:
        "../workflow_scripts/figure.py"


rule figure_claims:
    """The verdicts of the paper's claims about one figure, from the runs they compare."""
    input:
        unpack(figure_claim_inputs),
    output:
        csv=report(
            "results/figures/{figure}.claims.csv",
            caption="../report/figure_claims.rst",
            category="Claims",
            labels={"figure": "{figure}"},
        ),
        md="results/figures/{figure}.claims.md",
        caption="results/figures/{figure}.claims.txt",
    log:
        "results/logs/figures/{figure}.claims.log",
    benchmark:
        "results/benchmarks/figures/{figure}.claims.tsv"
    wildcard_constraints:
        figure=alternatives(f for f, spec in STUDY.figures.items() if spec["claims"]),
    conda:
        "../envs/weightselect.yaml"
    params:
        spec=figure_claim_spec,
    script:
        "../workflow_scripts/figure_claims.py"
