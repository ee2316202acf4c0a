"""A study's tables: their specs, cells, runs and claims (the part of :class:`Study` that owns them).

A **table** names its rows, its column groups, the variants, students and datasets whose runs fill
its cells, the metric and the aggregation (mean +- std over training seeds; Table 3's median over
selection draws), the paper table it reproduces, and the paper's **claims** about it as
comparisons between its cells (``{better: variant, than: variant}``, checked in every student x
dataset of the table; verdicts: :mod:`weightselect.results.claims`). A table may run more seeds
than its study (``seeds``), where the paper's margin is small.
"""
from __future__ import annotations

import itertools
from typing import Any, List, Mapping

from weightselect.rundir import METRIC_NAMES
from weightselect.study.base import AXES, Run
from weightselect.study.claims import claim_specs

__all__ = ["StudyTables"]


class StudyTables:
    """Tables of a :class:`weightselect.study.Study` (a mixin: it reads the study's students,
    datasets, variants and seeds)."""

    def _table_spec(self, name: str, table: Mapping[str, Any]) -> dict:
        where = f"table '{name}'"
        spec = dict(table)
        if spec.pop("optional", False):  # kept out of the spec, so the table rule's params stay as they were
            self.optional_tables.add(name)
        spec.setdefault("students", list(self.students))
        spec.setdefault("datasets", list(self.datasets))
        spec.setdefault("metric", "final_top1")
        spec.setdefault("median_of", {})
        spec.setdefault("substitute", {})
        spec.setdefault("claims", [])
        spec["seeds"] = [int(s) for s in spec.get("seeds", self.seeds)]
        rows = spec["rows"] if isinstance(spec["rows"], list) else [spec["rows"]]
        spec["rows"] = rows
        spec["columns"] = [a for a in AXES if a not in rows]
        if spec["metric"] not in METRIC_NAMES:
            self._fail(where, f"metric '{spec['metric']}' is not one of {list(METRIC_NAMES)}")
        self._known("student", spec["students"], self.students, where)
        self._known("dataset", spec["datasets"], self.datasets, where)
        self._known("variant", spec["variants"], self.variants, where)
        for shown, draws in spec["median_of"].items():
            if shown not in spec["variants"]:
                self._fail(where, f"median_of names '{shown}', which is not one of its variants")
            self._known("variant", draws, self.variants, f"{where}, median_of.{shown}")
        for dataset, swaps in spec["substitute"].items():
            self._known("dataset", [dataset], spec["datasets"], f"{where}, substitute")
            self._known("variant", list(swaps), spec["variants"], f"{where}, substitute.{dataset}")
            self._known("variant", list(swaps.values()), self.variants, f"{where}, substitute.{dataset}")
        base = spec.get("change_from")
        if base is not None and base not in spec["variants"]:
            self._fail(where, f"change_from '{base}' is not one of its variants {spec['variants']}")
        spec["claims"] = claim_specs(
            spec["claims"], spec["variants"], list(itertools.product(spec["students"], spec["datasets"])),
            lambda v, _student, dataset: _draws(spec, dataset, v), lambda msg: self._fail(where, msg))
        return spec

    def cell_variants(self, table: str, dataset: str, variant: str) -> List[str]:
        """The variants whose runs fill a cell: the variant (or its ``substitute`` on this dataset),
        or its draws (``median_of``)."""
        return _draws(self.tables[table], dataset, variant)

    def table_cells(self, table: str) -> List[dict]:
        """Every cell of a table: {student, dataset, variant, draws: [variants], runs: [Run]}."""
        spec = self.tables[table]
        cells = []
        for student, dataset, variant in itertools.product(spec["students"], spec["datasets"], spec["variants"]):
            draws = self.cell_variants(table, dataset, variant)
            runs = [Run(student, dataset, d, s) for d in draws for s in spec["seeds"]]
            teacher = self.init_teacher(student, draws[0]) or self.distill_teacher(draws[0])
            cells.append(dict(student=student, dataset=dataset, variant=variant, draws=draws, runs=runs,
                              teacher=teacher))
        return cells

    def table_runs(self, table: str) -> List[Run]:
        return list(dict.fromkeys(r for c in self.table_cells(table) for r in c["runs"]))

    def table_params(self, table: str) -> dict:
        """What the generic table function needs besides the run files (plain data)."""
        spec = self.tables[table]
        return dict(
            name=table,
            title=spec.get("title", table),
            paper=spec.get("paper"),
            rows=spec["rows"],
            columns=spec["columns"],
            metric=spec["metric"],
            change_from=spec.get("change_from"),
            cells=[{k: c[k] for k in ("student", "dataset", "variant", "draws", "teacher")}
                   for c in self.table_cells(table)],
            seeds=spec["seeds"],
            paper_models={s: self.students[s].get("paper_model") for s in spec["students"]},
            paper_datasets={d: self.datasets[d].get("paper_dataset", d) for d in spec["datasets"]},
            paper_settings={v: self._paper_key(v) for v in spec["variants"]},
            claims=spec["claims"],
        )

    def _paper_key(self, variant: str) -> dict:
        spec = self.variant(variant)
        paper = dict(spec.get("paper", {}))
        paper.setdefault("setting", variant)
        return paper



def _draws(spec: Mapping[str, Any], dataset: str, variant: str) -> List[str]:
    variant = spec["substitute"].get(dataset, {}).get(variant, variant)
    return list(spec["median_of"].get(variant, [variant]))
