"""An init file's provenance checked before a run trains from it.

A manifest (``results/inits/{student}/{variant}.json``) says how its weights were made: method,
layer map, element seed, teacher (path and sha256), student, and one index set per axis. Two
checks keep a run from training on weights it does not describe:

- :func:`check_indices`: every index set the manifest records is the one its method chooses for
  that axis (paper section 3.2: uniform, consecutive and random are functions of the sizes, the
  seed and the axis), so an edited manifest is refused;
- :func:`check_expected`: the manifest describes what the run's variant declares (method, layers,
  seed, teacher file, student), so another variant's pair copied over this one is refused.
The weights themselves are tied to the manifest by its ``weights_sha256``
(:func:`weightselect.io.read_init_file`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional

from weightselect import io as wio

__all__ = ["InitProvenanceError", "check_indices", "check_expected", "check_init_provenance"]


class InitProvenanceError(wio.InitFileError):
    """An init file's manifest contradicts its own method, or the variant a run declares."""


def _again(path: Path) -> str:
    return (f"delete {path} and its {wio.manifest_path(path).name} and select again "
            "(Snakemake does it on the next run; the CLI: weightselect select ... --force)")


def check_indices(manifest: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Raise InitProvenanceError when a recorded axis index set is not what the manifest's method
    and seed choose for that axis (``weightselect.selection.elements.select_indices``)."""
    from weightselect.selection.elements import CONSISTENT_METHODS, select_indices

    method, seed = manifest.get("method"), manifest.get("seed", 0)
    if method not in CONSISTENT_METHODS:  # per-tensor methods record no shared index sets
        return
    for axis, entry in (manifest.get("axes") or {}).items():
        recorded = entry.get("indices") if isinstance(entry, Mapping) else None
        if recorded is None:
            continue
        try:
            chosen = select_indices(method, int(entry["teacher"]), int(entry["student"]), seed=int(seed), axis=axis)
            same = chosen.tolist() == list(recorded)
        except (KeyError, TypeError, ValueError):
            same = False
        if not same:
            raise InitProvenanceError(
                f"init file {path}: the manifest's indices of axis '{axis}' are not those method "
                f"'{method}' (seed {seed}) chooses: an edited manifest, or one of other weights; {_again(Path(path))}"
            )


def _teacher_differs(recorded: Mapping[str, Any], teacher: str) -> Optional[str]:
    """Why the manifest's teacher is not the file ``teacher`` (its sha256 when the file is here)."""
    if Path(teacher).is_file():
        if recorded.get("sha256") != wio.sha256_file(teacher):
            return f"teacher {recorded.get('source')} (sha256 {str(recorded.get('sha256'))[:12]}...), not {teacher}"
        return None
    if os.path.normpath(str(recorded.get("source"))) != os.path.normpath(teacher):
        return f"teacher {recorded.get('source')}, not {teacher}"
    return None


def check_expected(manifest: Mapping[str, Any], path: str | os.PathLike, expected: Mapping[str, Any]) -> None:
    """Raise InitProvenanceError when the manifest is not of the init ``expected`` declares.

    ``expected``: ``variant`` (its name, for the message) and any of ``method``, ``layers``,
    ``seed``, ``teacher`` (the teacher file's path, compared by sha256 when it exists) and
    ``student`` (a ``{"name", "kwargs"}`` model spec), as :meth:`weightselect.study.Study.init_expected`.
    """
    differ = [f"{key} '{manifest.get(key)}', not '{expected[key]}'"
              for key in ("method", "layers", "seed") if key in expected and manifest.get(key) != expected[key]]
    if "teacher" in expected:
        why = _teacher_differs(manifest.get("teacher") or {}, expected["teacher"])
        differ += [why] if why else []
    if "student" in expected:
        made, want = manifest.get("student") or {}, expected["student"]
        if made.get("name") != want.get("name") or (made.get("kwargs") or {}) != (want.get("kwargs") or {}):
            differ.append(f"student {made.get('name')} {made.get('kwargs') or {}}, not {want.get('name')} "
                          f"{want.get('kwargs') or {}}")
    if differ:
        raise InitProvenanceError(
            f"init file {path} was not made for variant '{expected.get('variant', '?')}': its manifest has "
            f"{'; '.join(differ)}; {_again(Path(path))}"
        )


def check_init_provenance(path: str | os.PathLike, expected: Optional[Mapping[str, Any]] = None,
                          indices: bool = True) -> None:
    """Both checks on the init file ``path`` (its manifest beside it; InitFileError if absent);
    ``indices=False`` leaves the index sets to the trainer, which checks them as it reads the pair."""
    manifest = wio.read_json(wio.check_init_pair(Path(path)))
    if indices:
        check_indices(manifest, path)
    if expected:
        check_expected(manifest, path, expected)
