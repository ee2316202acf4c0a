# Tables as data: one generic rule builds any table of the study from exactly the runs it declares
# (weightselect.results.build_table), beside the paper's numbers; the report shows each table as a
# page (weightselect.results.html) and offers its CSV for download.


localrules:
    table,


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
