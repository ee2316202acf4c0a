"""Fixtures shared by the workflow's tests: one run of the `ci` study per test session, whose
outputs (tables, figures, results/report.html) several tests read."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class StudyRun:
    """A finished `snakemake --config study=NAME` run: its process result and its results folder."""

    done: subprocess.CompletedProcess
    results: Path

    def check(self) -> Path:
        """The results folder; fails the calling test with Snakemake's output if the run failed."""
        assert self.done.returncode == 0, self.done.stdout[-3000:] + self.done.stderr[-5000:]
        return self.results


@pytest.fixture(scope="session")
def ci_study(tmp_path_factory) -> StudyRun:
    """The `ci` study with the real rules, run once into a temporary folder (a few minutes)."""
    workdir = tmp_path_factory.mktemp("ci_study")
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "2",
         "--config", "study=ci", "--directory", str(workdir),
         "--report", "results/report.html", "--report-after-run"],
        cwd=REPO, capture_output=True, text=True, timeout=1500,
    )
    return StudyRun(done, workdir / "results")
