"""Claims as data: verdicts computed from hand-made run folders (a clear win, a tie within noise, a
reversal, a missing seed, a median over draws), against Welch's t-test computed here by hand."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from weightselect.results.claims import (
    attention_verdicts, claim_verdicts, claims_markdown, compare, diagonality, overall, summarize_claims,
    verdicts_of, write_claims,
)
from weightselect.results.tables import read_finals
from weightselect.study import Study, StudyConfigError

STUDENT = {"model": {"name": "vit_tiny_patch16_224"}, "teacher": "t"}
CONFIG = {
    "variants": {
        "random": {"init": {"baseline": "random"}},
        "ws_uniform": {"init": {"method": "uniform"}},
        "l1": {"init": {"method": "l1"}},
        "magnitude": {"init": {"method": "magnitude"}},
        "ws_random": {"init": {"method": "random", "seed": 0}},
        "ws_random_s1": {"init": {"method": "random", "seed": 1}},
    },
    "studies": {
        "s": {
            "teachers": {"t": {"source": "hub", "model": {"name": "vit_small_patch16_224"}}},
            "students": {"a": STUDENT, "b": STUDENT},
            "datasets": {"digits": {}},
            "seeds": [0, 1, 2],
            "tables": {
                "t7": {"rows": "variant", "variants": ["random", "ws_uniform", "l1", "magnitude", "ws_random"],
                       "median_of": {"ws_random": ["ws_random", "ws_random_s1"]},
                       "claims": [
                           {"better": "ws_uniform", "than": "random", "claim": "clear win"},
                           {"better": "ws_uniform", "than": "l1", "claim": "tie within noise"},
                           {"better": "magnitude", "than": "ws_uniform", "claim": "reversal"},
                           {"better": "ws_random", "than": "random", "claim": "median of draws"},
                       ]},
            },
        }
    },
}
# final top-1 per (variant, seed), the same for students a and b except where said
VALUES = {"random": (30.0, 34.0, 32.0), "ws_uniform": (80.0, 82.0, 81.0), "l1": (79.0, 83.0, 81.5),
          "magnitude": (50.0, 52.0, 54.0), "ws_random": (70.0, 72.0, 71.0), "ws_random_s1": (74.0, 76.0, 75.0)}


def welch(a, b, t_quantile):
    """Welch's interval of mean(a) - mean(b), by hand: the quantile is passed for the computed df."""
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    se2 = va / na + vb / nb
    df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    half = t_quantile(df) * math.sqrt(se2)
    return ma - mb, ma - mb - half, ma - mb + half, df


@pytest.fixture
def study(tmp_path, monkeypatch, make_run):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "results" / "runs"
    for student in ("a", "b"):
        for variant, values in VALUES.items():
            for seed, top1 in enumerate(values):
                if student == "b" and variant == "magnitude":
                    top1 = 80.0 + seed  # b: a tie (80, 81, 82 against 80, 82, 81), not a reversal
                if student == "b" and variant == "ws_uniform" and seed == 2:
                    continue  # b's third ws_uniform run is missing
                make_run(root, student, "digits", variant, seed, [top1 - 1, top1])
    return Study(CONFIG, "s")


def verdicts(study):
    spec = study.table_params("t7")
    return verdicts_of(spec, [r.final for r in study.table_runs("t7")])


def row(df, claim, scope):
    hit = df[(df["claim"] == claim) & (df["scope"] == scope)]
    assert len(hit) == 1, (claim, scope, df[["claim", "scope"]])
    return hit.iloc[0]


def test_a_clear_win_holds_with_welchs_interval():
    from scipy.stats import t

    effect, low, high, df = welch(VALUES["ws_uniform"], VALUES["random"], lambda d: t.ppf(0.975, d))
    got = compare(VALUES["ws_uniform"], VALUES["random"])
    assert got["verdict"] == "holds" and got["effect"] == pytest.approx(49.0)
    assert (got["ci_low"], got["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert got["p_value"] == pytest.approx(t.sf(effect / ((high - low) / 2 / t.ppf(0.975, df)), df))
    assert math.isnan(got["seeds_needed"])


def test_verdicts_from_run_folders(study):
    df = verdicts(study)
    assert row(df, "clear win", "a / digits")["verdict"] == "holds"
    tie = row(df, "tie within noise", "a / digits")
    assert tie["verdict"] == "inconclusive" and tie["ci_low"] < 0 < tie["ci_high"]
    assert tie["seeds_needed"] > 3  # more runs than the study has would be needed
    rev = row(df, "reversal", "a / digits")
    assert rev["verdict"] == "contradicts" and rev["effect"] == pytest.approx(52.0 - 81.0)
    assert rev["ci_high"] < 0 and rev["p_value"] > 0.99
    # b: magnitude ties ws_uniform, so the claim over both students is contradicted by a, not b
    assert row(df, "reversal", "b / digits")["verdict"] == "inconclusive"
    assert row(df, "reversal", "all")["verdict"] == "contradicts"
    assert "1 inconclusive, 1 contradicts" in row(df, "reversal", "all")["note"]


def test_a_missing_seed_is_counted_and_a_single_run_is_inconclusive(study, tmp_path):
    df = verdicts(study)
    win_b = row(df, "clear win", "b / digits")
    assert win_b["n_better"] == 2 and win_b["n_than"] == 3 and win_b["verdict"] == "holds"
    (tmp_path / "results/runs/b/digits/ws_uniform/seed1/final.json").unlink()
    df = verdicts(study)
    lone = row(df, "clear win", "b / digits")
    assert lone["n_better"] == 1 and lone["verdict"] == "inconclusive" and "seeds missing" in lone["note"]
    assert row(df, "clear win", "all")["verdict"] == "inconclusive"  # a holds, b cannot tell


def test_a_median_cell_compares_every_run_of_its_draws(study):
    got = row(verdicts(study), "median of draws", "a / digits")
    draws = VALUES["ws_random"] + VALUES["ws_random_s1"]
    assert got["n_better"] == 6 and got["effect"] == pytest.approx(sum(draws) / 6 - 32.0)


def test_overall_keeps_one_row_per_claim_and_the_files_round_trip(study, tmp_path):
    df = verdicts(study)
    one = overall(df)
    assert list(one["claim"]) == ["clear win", "tie within noise", "reversal", "median of draws"]
    assert set(one["scope"]) == {"all"}
    path = write_claims(df, tmp_path / "t7.claims.csv", title="t7")
    summary = summarize_claims([path])
    assert list(summary["result"].unique()) == ["t7"] and list(summary["verdict"]) == list(one["verdict"])
    text = (tmp_path / "t7.claims.md").read_text()
    assert "| reversal | all |" in text and "contradicts" in text and "Welch's t-test" in text
    assert "| t7 | clear win | all |" in claims_markdown(summary)


def test_values_come_only_from_the_declared_files(study):
    finals = [r.final for r in study.table_runs("t7") if r.variant != "random"]
    df = claim_verdicts(study.table_params("t7")["claims"], read_finals(finals), study.seeds)
    assert row(df, "clear win", "a / digits")["n_than"] == 0


@pytest.mark.parametrize("claim, message", [
    ({"better": "ws_uniform", "than": "xavier"}, "claims[0].than 'xavier' is not one of its variants"),
    ({"better": "l1", "than": "l1"}, "compares 'l1' with itself"),
])
def test_a_bad_claim_fails_at_parse_time(claim, message):
    config = copy.deepcopy(CONFIG)
    config["studies"]["s"]["tables"]["t7"]["claims"] = [claim]
    with pytest.raises(StudyConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Study(config, "s")


def test_a_bad_level_is_refused():
    with pytest.raises(ValueError, match="not a probability"):
        compare([1, 2], [1, 2], level=95)


def test_figure_claims_resolve_a_budget_of_an_epoch_sweep():
    config = copy.deepcopy(CONFIG)
    config["studies"]["s"]["tables"] = {}
    config["studies"]["s"]["datasets"] = {"digits": {"recipe": {"epochs": 15}}}
    config["studies"]["s"]["figures"] = {"f4a": {
        "kind": "epochs", "student": "a", "dataset": "digits", "variants": ["random", "ws_uniform"],
        "epochs": [15, 45], "claims": [{"better": "ws_uniform@15", "than": "random@45"}]}}
    study = Study(config, "s")
    (claim,) = study.figure_claim_params("f4a")["claims"]
    assert claim["scopes"] == [{"student": "a", "dataset": "digits", "better": ["ws_uniform"],
                                "than": ["random_ep45"]}]
    assert {r.variant for r in study.figure_claim_runs("f4a")} == {"ws_uniform", "random_ep45"}
    assert "results/figures/f4a.claims.csv" in study.targets() and "results/claims.csv" in study.targets()
    config["studies"]["s"]["figures"]["f4a"]["claims"] = [{"better": "ws_uniform@30", "than": "random@45"}]
    with pytest.raises(StudyConfigError, match="ws_uniform@30"):
        Study(config, "s")


def _vit_state(dim, heads, depth, seed, query_is_key):
    import timm
    import torch

    torch.manual_seed(seed)
    net = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, in_chans=1, embed_dim=dim,
                            depth=depth, num_heads=heads, num_classes=3)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if query_is_key:  # W_q = W_k: W_q W_k^T = W_q W_q^T, whose diagonal is every row's squared norm
        for b in range(depth):
            qkv = state[f"blocks.{b}.attn.qkv.weight"]
            qkv[dim:2 * dim] = qkv[:dim]
    return state


def test_diagonality_by_hand_and_figure5_verdicts(tmp_path):
    import torch
    from safetensors.torch import save_file

    state = _vit_state(16, 2, 2, 0, query_is_key=True)
    q = state["blocks.1.attn.qkv.weight"][8:16].float()  # block 1, head 1: its 8 query rows
    m = q.T @ q  # (16, 16), the head's W_q W_k^T
    expected = float(torch.diagonal(m).mean() / m.pow(2).mean().sqrt())
    scores = diagonality(state, 2)
    assert len(scores) == 4 and scores[3] == pytest.approx(expected, rel=1e-5) and min(scores) > 0
    save_file(_vit_state(32, 4, 2, 1, query_is_key=True), tmp_path / "teacher.safetensors")
    save_file(state, tmp_path / "init.safetensors")
    model = {"name": "vit_tiny_patch16_224",
             "kwargs": {"img_size": 16, "patch_size": 4, "in_chans": 1, "depth": 2, "num_classes": 3}}
    claims = [{"claim": c, "better": b, "than": "random", "scopes": [{"student": "s"}]}
              for c, b in (("teacher", "teacher"), ("ws", "ws_uniform"))]
    spec = {"claims": claims, "seeds": [0, 1, 2], "variant": "ws_uniform",
            "student_model": {"name": model["name"], "kwargs": {**model["kwargs"], "embed_dim": 16, "num_heads": 2}},
            "teacher_model": {"name": model["name"], "kwargs": {**model["kwargs"], "embed_dim": 32, "num_heads": 4}}}
    df = attention_verdicts(spec, tmp_path / "teacher.safetensors", tmp_path / "init.safetensors")
    assert list(df["verdict"]) == ["holds", "holds"]
    assert list(df["n_better"]) == [8, 4] and list(df["n_than"]) == [12, 12]  # blocks x heads (x seeds)
    random = [x for seed in (0, 1, 2) for x in diagonality(_vit_state(16, 2, 2, seed, query_is_key=False), 2)]
    assert abs(sum(random) / 12) < 0.5  # an isotropic init has no diagonal to speak of
    assert df["effect"].iloc[1] == pytest.approx(sum(scores) / 4 - sum(random) / 12)


def test_claims_markdown_gives_each_row_its_unit_when_the_units_differ():
    """results/claims.md gathers tables (points of top-1) and Figure 5 (diagonality): one unit in
    the heading when the rows agree, a unit column when they do not."""
    import pandas as pd

    scope = {"student": "a", "dataset": "d", "better": ["x"], "than": ["y"]}
    values = {("a", "d", "x", s): 10.0 + s for s in range(3)} | {("a", "d", "y", s): 5.0 - s for s in range(3)}
    claim = {"claim": "x beats y", "better": "x", "than": "y", "scopes": [scope]}
    top1 = claim_verdicts([claim], values, [0, 1, 2])
    diag = claim_verdicts([dict(claim, claim="diagonal")], values, [0, 1, 2], unit="diagonality")
    one = claims_markdown(pd.concat([top1, top1], ignore_index=True))
    assert "effect in points of top-1):" in one and "| unit |" not in one
    assert "| x beats y | a / d | +7.00 [" in one
    mixed = claims_markdown(pd.concat([top1, diag], ignore_index=True)).splitlines()
    assert "effect in each row's unit" in mixed[0] and "points of top-1)" not in mixed[0]
    assert mixed[2] == "| claim | scope | effect [interval] | unit | p (one-sided) | runs | verdict |"
    assert mixed[3].count("|") == mixed[2].count("|")
    assert mixed[4].startswith("| x beats y | a / d | +7.00 [") and "] | points of top-1 | " in mixed[4]
    assert mixed[5].startswith("| diagonal | a / d | +7.00 [") and "] | diagonality | " in mixed[5]
    assert all(line.count("|") == mixed[2].count("|") for line in mixed[4:6])


def _runs_for_power(d: float, v1: float, v2: float, level: float) -> int:
    """The runs per side for 80 % power, by a plain loop over n written here: Welch's statistic
    with n runs a side has a noncentral t law, noncentrality d / SE, SE^2 = v1/n + v2/n."""
    from scipy.stats import nct, t

    n = 2
    while True:
        se2 = v1 / n + v2 / n
        dof = se2 ** 2 / ((v1 / n) ** 2 / (n - 1) + (v2 / n) ** 2 / (n - 1))
        if nct.sf(t.ppf(1 - (1 - level) / 2, dof), dof, abs(d) / math.sqrt(se2)) >= 0.8:
            return n
        n += 1


def test_seeds_needed_is_the_t_tests_80_percent_power_sample_size():
    """Cohen's d = 0.5 at a two-sided 5 % level: 64 runs per side (the textbook value; the normal
    approximation says 63); other effects, levels and unequal spreads against the loop above."""
    from scipy.stats import norm

    half = compare([0.5, 1.5, -0.5], [-1.0, 0.0, 1.0])  # d = 0.5, both variances 1
    assert half["verdict"] == "inconclusive" and half["seeds_needed"] == 64 == _runs_for_power(0.5, 1, 1, 0.95)
    assert math.ceil(2 * (norm.ppf(0.975) + norm.ppf(0.8)) ** 2 / 0.25) == 63
    for better, than, level in [([3.0, 5.0, 4.0], [1.0, 4.0, 2.5], 0.95), ([10.0, 12.0], [7.0, 13.0], 0.9),
                                ([1.0, 1.2, 0.9, 1.1], [0.0, 3.0, -2.0, 1.5], 0.95),
                                ([70.1, 70.3, 69.8], [70.0, 70.2, 70.1], 0.99)]:
        got = compare(better, than, level)
        a, b = np.asarray(better), np.asarray(than)
        assert got["verdict"] == "inconclusive", (better, than)
        assert got["seeds_needed"] == _runs_for_power(a.mean() - b.mean(), a.var(ddof=1), b.var(ddof=1), level)


def test_seeds_needed_exceeds_the_runs_that_left_a_claim_unresolved():
    """Measured on n runs a side and inconclusive, the same effect and spread need more than n
    (the normal approximation said 3 for some 3-run ties that 3 runs had not resolved)."""
    rng = np.random.default_rng(4)
    checked = 0
    for n in (2, 3, 5):
        for _ in range(150):
            better, than = rng.normal(1.0, 1.0, n), rng.normal(0.0, rng.uniform(0.3, 3.0), n)
            got = compare(better, than)
            if got["verdict"] == "inconclusive":
                checked += 1
                assert got["seeds_needed"] > n, (better, than, got)
    assert checked > 100
    flat = compare([1.99, 2.0, 2.01], [-1.0, 0.0, 1.0])  # the normal approximation: 2 runs a side
    assert flat["verdict"] == "inconclusive" and flat["seeds_needed"] == _runs_for_power(2.0, 1e-4, 1.0, 0.95) > 3
    assert compare([1.0, 2.0], [2.0, 1.0])["seeds_needed"] == math.inf  # no effect
