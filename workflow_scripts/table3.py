"""Table 3: every init variant on one dataset, one column group per student."""
import logging
import sys

from weightselect.results import collect_runs, table3, write_table

sys.stderr = open(snakemake.log[0], "w")  # messages and any traceback go to the rule's log
logging.basicConfig(stream=sys.stderr, level=logging.INFO, force=True)

p = snakemake.params
table = table3(
    collect_runs(p.runs),
    dataset=p.dataset,
    students=p.students,
    variants=p.variants,
    expected=p.expected,
    paper_models=p.paper_models,
)
write_table(table, snakemake.output[0], title=f"Table 3: init variants on {p.dataset}")
logging.info("%d rows", len(table))
