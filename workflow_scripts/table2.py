"""Table 2 for one student: one row per dataset, mean +- std over seeds beside the paper's numbers."""
import logging
import sys

from weightselect.results import collect_runs, table2, write_table

sys.stderr = open(snakemake.log[0], "w")  # messages and any traceback go to the rule's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)

p = snakemake.params
table = table2(
    collect_runs(p.runs),
    snakemake.wildcards.student,
    expected=p.expected,
    paper_model=p.paper_model,
    datasets=p.datasets,
    variants=p.variants,
)
write_table(table, snakemake.output[0], title=f"Table 2: {snakemake.wildcards.student}")
logging.info("%d rows", len(table))
