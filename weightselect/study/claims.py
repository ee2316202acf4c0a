"""A table's or figure's claims, resolved from config.yaml into the runs each side compares.

In config.yaml a claim is ``{better: A, than: B, claim: "text"}`` (``claim`` optional: default
``"A > B"``): the paper says A beats B. :func:`claim_specs` checks the names and resolves each
claim into its scopes, ``{student, dataset, better: [run variants], than: [run variants]}``,
which :func:`weightselect.results.claims.claim_verdicts` turns into verdicts. No heavy import.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, List, Mapping, Sequence, Tuple

__all__ = ["claim_specs"]


def claim_specs(
    claims: Sequence[Mapping[str, Any]],
    known: Iterable[str],
    scopes: Sequence[Tuple[str, str]],
    runs_of: Callable[[str, str, str], List[str]],
    fail: Callable[[str], None],
) -> List[dict]:
    """Every claim with its scopes, after checking its names.

    ``known``: the names a claim may compare (a table's variants; a figure's); ``scopes``:
    ``(student, dataset)`` pairs it is checked in; ``runs_of(name, student, dataset)``: the run
    variants behind a name in a scope (a median's draws, a substitute, a sweep's derived variant).
    ``fail(message)`` raises the study's one-line error (StudyConfigError) for an unknown name, a
    claim comparing a name with itself, or a claim given twice.
    """
    known = list(known)
    out, seen = [], set()
    for i, claim in enumerate(claims):
        better, than = claim["better"], claim["than"]
        for side, name in (("better", better), ("than", than)):
            if name not in known:
                fail(f"claims[{i}].{side} '{name}' is not one of its variants {known}")
        if better == than:
            fail(f"claims[{i}] compares '{better}' with itself; name two different variants")
        if (better, than) in seen:
            fail(f"claims[{i}] ({better} > {than}) is given twice; keep one")
        seen.add((better, than))
        out.append(dict(
            claim=claim.get("claim", f"{better} > {than}"), better=better, than=than,
            scopes=[dict(student=s, dataset=d, better=runs_of(better, s, d), than=runs_of(than, s, d))
                    for s, d in scopes]))
    return out
