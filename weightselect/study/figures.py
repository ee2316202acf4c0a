"""A study's figures: curves, epoch and pretraining sweeps, attention maps, and their claims.

A **figure** is the table idea for plots: ``curves`` (test top-1 per epoch per student and
dataset), ``epochs`` (final top-1 against the epoch budget: a derived variant ``{v}_ep{e}`` per
budget that is not the variant's own), ``pretraining`` (the student pretrained for several budgets,
a teacher and a variant per budget) and ``attention`` (W_q W_k^T and W_v W_proj). Figures with runs
can state the paper's claims about them (``{better, than}``; in an epoch sweep ``variant@epochs``
names a budget's runs).
"""
from __future__ import annotations

from typing import Any, List, Mapping

from weightselect.study.base import Run, model_shape
from weightselect.study.claims import claim_specs

__all__ = ["StudyFigures"]


class StudyFigures:
    """Figures of a :class:`weightselect.study.Study` (a mixin: it reads the study's students,
    datasets, variants, seeds and epochs, and adds the variants and teachers its sweeps need)."""

    # -------------------------------------------------------------------------- figures
    def _figure_specs(self, figures: Mapping[str, Any]) -> None:
        for name, fig in figures.items():
            fig = dict(fig)
            if fig["kind"] == "epochs":
                self._known("student", [fig["student"]], self.students, f"figure '{name}'")
                self._known("variant", fig["variants"], self.variants, f"figure '{name}'")
                fig["sweep"] = {}
                for v in fig["variants"]:
                    for e in fig["epochs"]:
                        if int(e) == self.epochs(fig["student"], fig["dataset"], v):
                            fig["sweep"][v] = (v, int(e))  # the variant's own runs: no run of its own
                            continue
                        derived = f"{v}_ep{e}"
                        spec = self.variant(v)
                        init = spec.get("init", {"baseline": "random"})
                        if isinstance(init, dict) and "method" in init:
                            init = v  # share v's init file
                        recipe = dict(spec.get("recipe", {}), epochs=int(e))
                        self.variants[derived] = dict(spec, init=init, recipe=recipe)
                        fig["sweep"][derived] = (v, int(e))
                        self._extra_runs += [Run(fig["student"], fig["dataset"], derived, s) for s in self.seeds]
            elif fig["kind"] == "pretraining":
                self._pretraining_sweep(name, fig)
            self.figures[name] = fig

    def _pretraining_sweep(self, name: str, fig: dict) -> None:
        student, pre = fig["student"], fig["pretrain"]
        if student not in self.students:
            self._fail(f"figure '{name}'", f"unknown student '{student}'; known: {sorted(self.students)}")
        fig["sweep"] = {}
        for e in pre["epochs"]:
            teacher = f"{student}_{pre['dataset']}_ep{e}"
            self.teachers[teacher] = {
                "source": "pretrain", "model": self.students[student]["model"],
                "pretrain": {"dataset": pre["dataset"], "recipe": dict(pre.get("recipe", {}), epochs=int(e))},
            }
            variant = f"pretrained_{pre['dataset']}_ep{e}"
            self.variants[variant] = {"init": {"method": "uniform", "layers": "first", "teacher": teacher},
                                      "label": f"pretrained {e} epochs on {pre['dataset']}"}
            fig["sweep"][variant] = int(e)
            self._extra_runs += [Run(student, fig["dataset"], variant, s) for s in self.seeds]
        for v in (fig["reference"], fig["baseline"]):
            self._extra_runs += [Run(student, fig["dataset"], v, s) for s in self.seeds]

    def _check_figure(self, name: str, fig: dict) -> None:
        where = f"figure '{name}'"
        students = fig.get("students", [fig["student"]] if "student" in fig else [])
        self._known("student", students, self.students, where)
        datasets = fig.get("datasets", [fig["dataset"]] if "dataset" in fig else [])
        self._known("dataset", datasets, self.datasets, where)
        self._known("variant", fig.get("variants", []), self.variants, where)
        if fig["kind"] == "attention" and model_shape(self.students[fig["student"]]["model"])[0] != "vit":
            self._fail(where, f"attention maps need a ViT student, '{fig['student']}' is not one")
        fig["claims"] = self._figure_claims(name, fig)

    def _figure_claims(self, name: str, fig: dict) -> List[dict]:
        """The figure's claims resolved to runs (curves: every student x dataset; epoch sweep:
        ``v@e`` is ``v``'s runs at ``e`` epochs; pretraining sweep: its variants by name)."""
        claims = fig.get("claims") or []
        fail = lambda msg: self._fail(f"figure '{name}'", msg)  # noqa: E731
        if fig["kind"] == "attention":  # no runs: the diagonality of W_q W_k^T per block and head
            known = [fig["variant"], "random", "teacher"]
            return claim_specs(claims, known, [(fig["student"], "attention")], lambda v, s, d: [], fail)
        if fig["kind"] == "curves":
            scopes = [(s, d) for s in fig["students"] for d in fig["datasets"]]
            return claim_specs(claims, fig["variants"], scopes, lambda v, s, d: [v], fail)
        scope = [(fig.get("student"), fig.get("dataset"))]
        if fig["kind"] == "epochs":
            names = {f"{v}@{e}": derived for derived, (v, e) in fig["sweep"].items()}
            return claim_specs(claims, names, scope, lambda n, s, d: [names[n]], fail)
        known = [*fig.get("sweep", {}), fig.get("reference"), fig.get("baseline")]
        return claim_specs(claims, [k for k in known if k], scope, lambda v, s, d: [v], fail)

    def figure_claim_params(self, name: str) -> dict:
        """What :func:`weightselect.results.claims.claim_verdicts` needs for a figure's claims (an
        attention figure: also its kind, the student's and teacher's model specs)."""
        fig = self.figures[name]
        params = dict(name=name, title=fig.get("title", name), kind=fig["kind"], claims=fig["claims"],
                      seeds=self.seeds, metric="final_top1")
        if fig["kind"] == "attention":
            teacher = self.init_teacher(fig["student"], fig["variant"])
            params.update(variant=fig["variant"], student_model=self.students[fig["student"]]["model"],
                          teacher_model=self.teachers[teacher]["model"])
        return params

    def figure_claim_runs(self, name: str) -> List[Run]:
        """The runs a figure's claims compare, once each."""
        claims = self.figures[name]["claims"]
        return list(dict.fromkeys(Run(sc["student"], sc["dataset"], v, s) for c in claims for sc in c["scopes"]
                                  for v in sc["better"] + sc["than"] for s in self.seeds))

    def figure_outputs(self, name: str) -> List[str]:
        fig = self.figures[name]
        if fig["kind"] == "curves":
            return [f"results/figures/{name}_{s}_{d}.png" for s in fig["students"] for d in fig["datasets"]]
        return [f"results/figures/{name}.png"]

    def curve_runs(self, figure: str, student: str, dataset: str) -> List[Run]:
        fig = self.figures[figure]
        return [Run(student, dataset, v, s) for v in fig["variants"] for s in self.seeds]

    def figure_runs(self, name: str) -> List[Run]:
        fig = self.figures[name]
        if fig["kind"] == "curves":
            return [r for s in fig["students"] for d in fig["datasets"] for r in self.curve_runs(name, s, d)]
        if fig["kind"] == "epochs":
            return [Run(fig["student"], fig["dataset"], v, s) for v in fig["sweep"] for s in self.seeds]
        if fig["kind"] == "pretraining":
            variants = [*fig["sweep"], fig["reference"], fig["baseline"]]
            return [Run(fig["student"], fig["dataset"], v, s) for v in variants for s in self.seeds]
        return []

