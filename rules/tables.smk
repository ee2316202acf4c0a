# Tables as data: one generic rule builds any table of the study from exactly the runs it declares
# (weightselect.results.build_table), beside the paper's numbers; the report shows each table as a
# page (weightselect.results.html) and offers its CSV for download.


localrules:
    table,
    claims,


rule table:
    """Build one table of the study (rows, column groups, cells' runs, metric, aggregation)."""
    input:
        table_inputs,
    output:
        csv=report(
            "results/tables/{table}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table} (CSV)"},
        ),
        html=report(
            "results/tables/{table}.html",
            caption="../report/table_page.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        md="results/tables/{table}.md",
        claims="results/tables/{table}.claims.csv",
        gap="results/tables/{table}.paper_gap.txt",
    log:
        "results/logs/tables/{table}.log",
    benchmark:
        "results/benchmarks/tables/{table}.tsv"
    conda:
        "../envs/weightselect.yaml"
    params:
        spec=table_spec,
    script:
        "../workflow_scripts/table.py"


rule claims:
    """Every claim of the study's tables and figures with its overall verdict, in one table."""
    input:
        claim_files,
    output:
        csv=report(
            "results/claims.csv",
            caption="../report/claims.rst",
            category="Claims",
        ),
        md="results/claims.md",
    log:
        "results/logs/claims.log",
    benchmark:
        "results/benchmarks/claims.tsv"
    conda:
        "../envs/weightselect.yaml"
    params:
        title=lambda wildcards: f"The paper's claims in the {STUDY.name} study",
    script:
        "../workflow_scripts/claims_summary.py"
