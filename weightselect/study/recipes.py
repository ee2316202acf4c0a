"""A study's recipes and what a train job gets (the part of :class:`Study` that owns them).

A run's **recipe** is the recipes.yaml row of its student's family and its source dataset, with the
overrides of the study, the dataset, the student and the variant, in that order (later wins);
:meth:`StudyRecipes.train_params` is everything a training job passes to
``weightselect.training.train``, as plain data (the Snakefile's train rule params).
"""
from __future__ import annotations

from typing import Any, Dict

from weightselect.study.base import Run, _digest, model_shape, recipe_epochs, recipe_rows

__all__ = ["StudyRecipes"]


class StudyRecipes:
    """Recipes and train job params of a :class:`weightselect.study.Study` (a mixin: it reads the
    study's spec, students, datasets, teachers and variants, and its init and mode methods)."""

    # -------------------------------------------------------------------------- recipes
    def recipe(self, student: str, dataset: str, variant: str) -> Dict[str, Any]:
        """Recipe overrides of one run: the study's, the dataset's, the student's, the variant's."""
        out = dict(self.spec.get("recipe", {}))
        out.update(self.datasets[dataset].get("recipe", {}))
        out.update(self.students[student].get("recipe", {}))
        out.update(self.variant(variant).get("recipe", {}))
        return out

    def source_dataset(self, dataset: str) -> str:
        return self.datasets[dataset].get("dataset", dataset)

    def recipe_source(self, student: str, dataset: str) -> str:
        """A digest of the recipes.yaml rows a run starts from: an edit of them reruns the run."""
        family = model_shape(self.students[student]["model"])[0]
        return _digest(recipe_rows(family, self.source_dataset(dataset)))

    def epochs(self, student: str, dataset: str, variant: str) -> int:
        """The run's epochs: its overrides, else the recipes.yaml row (read as data, no torch)."""
        return recipe_epochs(self.students[student]["model"], self.source_dataset(dataset),
                             self.recipe(student, dataset, variant))

    # -------------------------------------------------------------------------- what a train job gets
    def train_params(self, run: Run) -> dict:
        """Everything a training job passes to weightselect.training.train, as plain data."""
        variant = self.variant(run.variant)
        options = self.datasets[run.dataset].get("options", {})
        name = self.source_dataset(run.dataset)
        params = dict(
            model=self.student_model(run.student, run.variant),
            dataset={"name": name, **options} if options else name,
            recipe=self.recipe(run.student, run.dataset, run.variant),
            mode=self.mode(run.variant),
            init=None if self.is_selection(run.variant) else self.init_of(run.variant)[1]["baseline"],
            distill=None,
            teacher=None,
            recipe_source=self.recipe_source(run.student, run.dataset),
        )
        expected = self.init_expected(run.student, run.variant)
        if expected:
            params["expect_init"] = expected
        if self.spec.get("tensorboard"):  # only when on: the params of existing runs stay as they were
            params["tensorboard"] = True
        if params["mode"] == "distill":
            d = dict(variant["distill"])
            teacher = d.pop("teacher")
            params["distill"] = d
            params["teacher"] = {**self.teachers[teacher]["model"], "weights": self.teacher_file(teacher)}
        return params
