# The paper's tables from the study's runs: mean +- std over seeds beside the paper's numbers.


rule table2:
    """Table 2 for one student: one row per dataset, random init vs weight selection."""
    input:
        lambda wc: final_files(table2_grid(wc.student)),
    output:
        report(
            "results/tables/table2_{student}.csv",
            caption="../report/table2.rst",
            category="Tables",
        ),
    log:
        "results/logs/tables/table2_{student}.log",
    conda:
        "../envs/weightselect.yaml"
    params:
        runs=runs_root,
        expected=lambda wc: table2_grid(wc.student),
        paper_model=lambda wc: STUDENTS[wc.student].get("paper_model"),
        variants=TABLE2_VARIANTS,
        datasets=TABLE2_DATASETS,
    script:
        "../workflow_scripts/table2.py"


rule table3:
    """Table 3: every init variant on one dataset, a column group per student."""
    input:
        final_files(table3_grid()),
    output:
        report(
            "results/tables/table3.csv",
            caption="../report/table3.rst",
            category="Tables",
        ),
    log:
        "results/logs/tables/table3.log",
    conda:
        "../envs/weightselect.yaml"
    params:
        runs=runs_root,
        expected=table3_grid(),
        dataset=TABLE3["dataset"] if TABLE3 else None,
        variants=TABLE3["variants"] if TABLE3 else [],
        students=list(STUDENTS),
        paper_models=paper_models(),
    script:
        "../workflow_scripts/table3.py"
