"""The paper's claims as comparisons between cells, with a verdict computed from the seeds.

A **claim** says that one variant beats another (``better`` > ``than``) in every scope it is
checked in: each student x dataset of a table (or each curve of a figure). Each scope compares
the final top-1 of every run of the ``better`` cell with every run of the ``than`` cell (all
seeds, and all selection draws where the cell is a median over draws) by **Welch's t-test**
(unequal variances; scipy.stats.ttest_ind with ``equal_var=False``):

- ``effect``: mean of ``better`` minus mean of ``than`` (points of top-1);
- ``ci_low``, ``ci_high``: the two-sided ``level`` (default 95 %) interval of that difference
  (Welch-Satterthwaite degrees of freedom);
- ``p_value``: one-sided, for ``better`` > ``than``;
- ``verdict``: ``holds`` when the interval lies above 0, ``contradicts`` when it lies below 0,
  ``inconclusive`` otherwise (and when a side has fewer than 2 runs);
- ``seeds_needed``: for an inconclusive scope, the smallest runs per side at which the two-sided
  ``level`` interval would exclude 0 with 80 % power (a one-sided Welch test at ``(1 - level) / 2``
  in the effect's direction) if the difference and the two variances were what was measured: the
  power is the noncentral t's (scipy.stats.nct) share above the t critical value, noncentrality
  ``|d| / sqrt((s_1^2 + s_2^2) / n)``, Welch-Satterthwaite degrees of freedom (``2n - 2`` for equal
  variances); with as many runs on both sides, it exceeds those that left the scope inconclusive.
  NaN elsewhere.

A claim over several scopes gets a row with scope ``all``: ``contradicts`` if any scope
contradicts, ``holds`` if every scope holds, ``inconclusive`` otherwise (``note`` counts them).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["CLAIM_COLUMNS", "VERDICTS", "TEST", "compare", "claim_verdicts", "verdicts_of", "overall",
           "claims_markdown", "claim_caption", "write_claims", "summarize_claims", "diagonality",
           "attention_verdicts"]

VERDICTS = ("holds", "inconclusive", "contradicts")
TEST = "Welch's t-test; two-sided {level:.0%} interval of the difference of means"
CLAIM_COLUMNS = ("claim", "better", "than", "scope", "effect", "ci_low", "ci_high", "level", "p_value",
                 "n_better", "n_than", "seeds_needed", "test", "verdict", "note", "unit")
TOP1 = "points of top-1"


POWER = 0.8  # the power seeds_needed asks for


def _power(n: int, effect: float, v1: float, v2: float, alpha: float) -> float:
    """Power of the one-sided Welch test at ``alpha`` with ``n`` runs per side, for a true
    difference ``effect`` (> 0) and per-run variances ``v1``, ``v2``: the noncentral t's share above
    the critical value (noncentrality ``effect / sqrt((v1 + v2) / n)``, Welch-Satterthwaite degrees
    of freedom ``(n - 1) (v1 + v2)^2 / (v1^2 + v2^2)``, Student's ``2n - 2`` for equal variances)."""
    from scipy.stats import nct, t

    df = (n - 1) * (v1 + v2) ** 2 / (v1 * v1 + v2 * v2)
    return float(nct.sf(t.ppf(1 - alpha, df), df, effect / math.sqrt((v1 + v2) / n)))


def _seeds_needed(a: np.ndarray, b: np.ndarray, effect: float, level: float) -> float:
    """The smallest runs per side (>= 2) at which the two-sided ``level`` interval would leave 0
    behind with 80 % power (a one-sided Welch test at ``(1 - level) / 2`` in the effect's
    direction), were the difference and the two variances what was measured; inf without an
    effect or a finite spread. Power grows with ``n``: doubled until reached, then bisected."""
    v1, v2 = float(a.var(ddof=1)), float(b.var(ddof=1))
    if effect == 0 or not math.isfinite(v1 + v2) or v1 + v2 == 0:
        return math.inf
    alpha, effect = (1 - level) / 2, abs(effect)
    if _power(2, effect, v1, v2, alpha) >= POWER:
        return 2.0
    low, high = 2, 4  # power(low) < POWER <= power(high)
    while _power(high, effect, v1, v2, alpha) < POWER:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if _power(mid, effect, v1, v2, alpha) >= POWER else (mid, high)
    return float(high)


def compare(better: Sequence[float], than: Sequence[float], level: float = 0.95) -> dict:
    """Welch's comparison of ``better`` > ``than`` (top-1 values in %, one per run).

    Returns ``effect, ci_low, ci_high, p_value, n_better, n_than, seeds_needed, verdict, note``
    (see the module docstring). Fewer than 2 runs on a side: ``inconclusive`` with NaN statistics
    and a note. Both sides without spread (every run equal): the interval is the effect itself.
    Raises ValueError for a ``level`` outside (0, 1).
    """
    from scipy.stats import ttest_ind

    if not 0 < level < 1:
        raise ValueError(f"level {level} is not a probability; use e.g. 0.95")
    a, b = np.asarray(better, dtype=float), np.asarray(than, dtype=float)
    out = dict(effect=float(a.mean() - b.mean()) if len(a) and len(b) else math.nan, ci_low=math.nan,
               ci_high=math.nan, p_value=math.nan, n_better=len(a), n_than=len(b), seeds_needed=math.nan,
               note="")
    if len(a) < 2 or len(b) < 2:
        return dict(out, verdict="inconclusive", note="fewer than 2 runs on a side: seeds missing")
    effect = out["effect"]
    if a.std() == 0 and b.std() == 0:  # exact: no spread on either side
        low = high = effect
        p = 0.0 if effect > 0 else 1.0 if effect < 0 else 0.5
    else:
        two = ttest_ind(a, b, equal_var=False)
        low, high = (float(x) for x in two.confidence_interval(level))
        p = float(ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    verdict = "holds" if low > 0 else "contradicts" if high < 0 else "inconclusive"
    out.update(ci_low=low, ci_high=high, p_value=p, verdict=verdict)
    if verdict == "inconclusive":
        out["seeds_needed"] = _seeds_needed(a, b, effect, level)
    return out


def _values(values: Mapping, scope: Mapping, side: str, seeds: Sequence[int]) -> list:
    return [values[(scope["student"], scope["dataset"], v, s)] for v in scope[side] for s in seeds
            if (scope["student"], scope["dataset"], v, s) in values]


def _overall(claim: Mapping, rows: list, level: float) -> dict:
    verdicts = [r["verdict"] for r in rows]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if v in verdicts)
    verdict = ("contradicts" if "contradicts" in verdicts
               else "holds" if all(v == "holds" for v in verdicts) else "inconclusive")
    effects = [r["effect"] for r in rows if math.isfinite(r["effect"])]
    return dict(claim=claim["claim"], better=claim["better"], than=claim["than"], scope="all",
                effect=float(np.mean(effects)) if effects else math.nan, ci_low=math.nan, ci_high=math.nan,
                level=level, p_value=math.nan, n_better=sum(r["n_better"] for r in rows),
                n_than=sum(r["n_than"] for r in rows), seeds_needed=math.nan, test=rows[0]["test"],
                verdict=verdict, note=f"{len(rows)} scopes: {counts}; effect: mean over scopes", unit=rows[0]["unit"])


def claim_verdicts(claims: Sequence[Mapping], values: Mapping, seeds: Sequence[int],
                   level: float = 0.95, unit: str = TOP1) -> pd.DataFrame:
    """One row per claim and scope (plus a scope ``all`` row for a claim over several scopes).

    ``claims``: as :meth:`weightselect.study.Study.table_params` gives them: ``claim`` (text),
    ``better``, ``than`` (variant names shown), ``scopes``: ``[{student, dataset, better: [run
    variants], than: [run variants]}]``. ``values``: ``{(student, dataset, variant, seed): top-1}``
    (:func:`weightselect.results.tables.read_finals`). Columns: :data:`CLAIM_COLUMNS` (``unit``:
    what ``effect`` is measured in).
    """
    rows = []
    test = TEST.format(level=level)
    for claim in claims:
        scoped = []
        for scope in claim["scopes"]:
            stats = compare(_values(values, scope, "better", seeds), _values(values, scope, "than", seeds), level)
            scoped.append(dict(claim=claim["claim"], better=claim["better"], than=claim["than"],
                               scope=f"{scope['student']} / {scope['dataset']}", level=level, test=test,
                               unit=unit, **stats))
        rows += scoped
        if len(scoped) > 1:
            rows.append(_overall(claim, scoped, level))
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def overall(df: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: its ``all`` row, or its only scope's row."""
    keep = [g[g["scope"] == "all"] if (g["scope"] == "all").any() else g
            for _, g in df.groupby(["claim", "better", "than"], sort=False)]
    return pd.concat(keep, ignore_index=True) if keep else df.iloc[0:0]


def _interval(row) -> str:
    if not math.isfinite(row["effect"]):
        return "-"
    if not math.isfinite(row["ci_low"]):
        return f"{row['effect']:+.2f}"
    return f"{row['effect']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"


def _units(df: pd.DataFrame) -> list:
    """Each row's unit (its ``unit``; :data:`TOP1` where there is none)."""
    if "unit" not in df.columns:
        return [TOP1] * len(df)
    return [u if isinstance(u, str) and u else TOP1 for u in df["unit"]]


def claims_markdown(df: pd.DataFrame) -> str:
    """The claims as a Markdown table: (result,) claim, scope, effect [interval], (unit,) p, runs,
    verdict. The effects' unit is in the heading when every row has the same one (``unit``; points
    of top-1 where a row has none), else in a column of its own, one per row."""
    if df.empty:
        return ""
    level = float(df["level"].iloc[0])
    lead = "result | " if "result" in df.columns else ""
    units = _units(df)
    mixed = len(set(units)) > 1
    where = "effect in each row's unit" if mixed else f"effect in {units[0]}"
    lines = [f"Claims ({TEST.format(level=level)}; {where}):", "",
             f"| {lead}claim | scope | effect [interval] | {'unit | ' * mixed}p (one-sided) | runs | verdict |",
             "| " + "--- | " * bool(lead) + "--- | --- | ---: | " + "--- | " * mixed + "---: | ---: | --- |"]
    for (_, r), unit in zip(df.iterrows(), units):
        p = f"{r['p_value']:.3f}" if math.isfinite(r["p_value"]) else "-"
        verdict = r["verdict"]
        if verdict == "inconclusive" and math.isfinite(r["seeds_needed"]):
            need = int(r["seeds_needed"])
            verdict += (f" (about {need} runs per side would resolve it)" if need <= 1000
                        else " (no effect to speak of: over 1,000 runs per side would be needed)")
        elif r["note"]:
            verdict += f" ({r['note']})"
        first = f"{r['result']} | " if lead else ""
        lines.append(f"| {first}{r['claim']} | {r['scope']} | {_interval(r)} | {f'{unit} | ' * mixed}{p} "
                     f"| {r['n_better']} vs {r['n_than']} | {verdict} |")
    return "\n".join(lines) + "\n"


def claim_caption(df: pd.DataFrame) -> str:
    """One sentence per claim for a report caption: 'claim: verdict (effect [interval])'."""
    if df.empty:
        return "No claim of the paper is checked on this result."
    parts = [f"{r['claim']}: **{r['verdict']}** ({_interval(r)}, {r['note'] or r['scope']})"
             for _, r in overall(df).iterrows()]
    return "Claims, " + TEST.format(level=float(df["level"].iloc[0])) + ": " + "; ".join(parts) + "."


def verdicts_of(spec: Mapping, finals: Sequence) -> pd.DataFrame:
    """The claims of a table or figure (``spec``: :meth:`weightselect.study.Study.table_params` or
    ``figure_claim_params``: ``claims``, ``seeds``, ``metric``) from exactly these final.json files.
    Raises RunFileError for a final.json that breaks the contract."""
    from weightselect.results.tables import read_finals

    return claim_verdicts(spec.get("claims", []), read_finals(finals, spec.get("metric", "final_top1")),
                          spec["seeds"])


def write_claims(df: pd.DataFrame, csv_path, title: str = "") -> Path:
    """``df`` as ``csv_path`` (every column) and its Markdown twin (``.md``), each atomically."""
    from weightselect.io import write_text

    csv_path = Path(csv_path)
    if csv_path.suffix != ".csv":
        raise ValueError(f"claims path {csv_path} should end in .csv (the Markdown twin gets .md)")
    write_text(csv_path, df.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    text = claims_markdown(df) or "No claim is checked on this result.\n"
    write_text(csv_path.with_suffix(".md"), f"## {title}\n\n{text}" if title else text)
    return csv_path


def summarize_claims(paths: Sequence) -> pd.DataFrame:
    """One row per claim of every ``*.claims.csv`` (its overall verdict), with a ``result`` column
    (the table or figure: the file name before ``.claims.csv``), in the order given."""
    frames = []
    for path in paths:
        df = pd.read_csv(path, keep_default_na=True)
        if df.empty:
            continue
        df["note"] = df["note"].fillna("")
        one = overall(df)
        one.insert(0, "result", Path(path).name[: -len(".claims.csv")])
        frames.append(one)
    if not frames:
        return pd.DataFrame(columns=["result", *CLAIM_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def diagonality(state: Mapping, num_heads: int) -> list:
    """How diagonal ``W_q W_k^T`` is, per block and head of a timm ViT state dict (paper Figure 5).

    For each block ``b`` and head ``h``: ``mean(diag(M)) / rms(M)`` with ``M = W_q W_k^T`` (D, D)
    (:func:`weightselect.results.figures.attention_maps`): about 0 for an isotropic random init,
    positive where queries attend to keys like themselves (the "diagonal property" of pretrained
    ViTs, Trockman & Kolter 2023). Returns a list over blocks (outer) and heads (inner).
    """
    from weightselect.results.figures import attention_maps

    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.endswith("attn.qkv.weight")})
    out = []
    for b in blocks:
        for h in range(num_heads):
            m = attention_maps(state, num_heads, block=b, head=h)[0]
            rms = float(np.sqrt(np.mean(m * m)))
            out.append(float(np.mean(np.diag(m))) / rms if rms else 0.0)
    return out


def _random_states(model: Mapping, seeds: Sequence[int]):
    import timm
    import torch

    for seed in seeds:
        torch.manual_seed(int(seed))
        net = timm.create_model(model["name"].split(".")[0], pretrained=False, **(model.get("kwargs") or {}))
        yield net.state_dict(), int(net.blocks[0].attn.num_heads)


def attention_verdicts(spec: Mapping, teacher_file, init_file) -> pd.DataFrame:
    """Figure 5's claims from the weights: :func:`diagonality` of every block and head of the
    teacher (``teacher``), the weight-selected student (the figure's ``variant``) and the student at
    timm's default init under each of the study's seeds (``random``), compared as
    :func:`claim_verdicts` compares runs (one value per block and head instead of one per run).

    ``spec``: :meth:`weightselect.study.Study.figure_claim_params` of an attention figure; the
    files are safetensors. Raises KeyError for a state dict that is not a timm ViT's.
    """
    from safetensors.torch import load_file

    from weightselect.results.figures import _num_heads

    heads = _num_heads(spec["student_model"])
    scores = {"teacher": diagonality(load_file(str(teacher_file)), _num_heads(spec["teacher_model"])),
              spec["variant"]: diagonality(load_file(str(init_file)), heads),
              "random": [x for state, n in _random_states(spec["student_model"], spec["seeds"])
                         for x in diagonality(state, n)]}
    claims, values = [], {}
    for claim in spec["claims"]:
        student = claim["scopes"][0]["student"]
        scope = dict(student=student, dataset="W_q W_k^T diagonality, every block and head",
                     better=[claim["better"]], than=[claim["than"]])
        claims.append(dict(claim, scopes=[scope]))
        for name in (claim["better"], claim["than"]):
            values.update({(student, scope["dataset"], name, i): x for i, x in enumerate(scores[name])})
    longest = max((len(v) for v in scores.values()), default=0)
    return claim_verdicts(claims, values, list(range(longest)), unit="diagonality of W_q W_k^T (mean diagonal / rms)")
