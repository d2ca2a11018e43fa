"""Metrics named like a peer's equal the peer's (issue 8.9).

RouteLLM (lm-sys/RouteLLM, routellm/evals/evaluate.py, generate_results): over the router's curve
of (strong_percentage, accuracy) points sorted by strong_percentage,
    AUC  = np.trapz(accuracy, strong_percentage / 100)
    APGR = (AUC - weak_auc) / (strong_auc - weak_auc), weak/strong_auc = trapz of constant lines
    CPT(pct) = np.interp(pct * (strong - weak) + weak, accuracy, strong_percentage)
Random routing scores APGR 0.5 there. Ours, (area - random) / (oracle - random), is
``gap_recovered_vs_random``. The paper's relative accuracy: SLM accuracy / LLM accuracy on the same
top-k% most confident queries.
"""

from __future__ import annotations

import numpy as np
import pytest

from jobs import metrics as M

# the 4-sample example of test_metrics: curve .5, .75, 1, .75, .75 at ratios 0, .25, .5, .75, 1
U4 = np.array([0.9, 0.1, 0.5, 0.7])
SLM4 = np.array([0, 1, 1, 0], dtype=bool)
LLM4 = np.array([1, 1, 0, 1], dtype=bool)
AREA4 = 0.78125


def routellm_apgr_and_cpt(strong_percentage, accuracy, weak_accuracy, strong_accuracy, pcts=(0.2, 0.5, 0.8)):
    """RouteLLM's generate_results arithmetic, copied without pandas (accuracies as fractions)."""
    order = np.argsort(strong_percentage, kind="stable")
    x, y = np.asarray(strong_percentage)[order], np.asarray(accuracy)[order]
    trapz = getattr(np, "trapezoid", None) or np.trapz
    auc = trapz(y, x / 100)
    weak_auc = trapz(np.full(len(x), weak_accuracy, dtype=float), x / 100)
    strong_auc = trapz(np.full(len(x), strong_accuracy, dtype=float), x / 100)
    cpt = [np.interp(p * (strong_accuracy - weak_accuracy) + weak_accuracy, y, x) for p in pcts]
    return (auc - weak_auc) / (strong_auc - weak_auc), cpt


def test_apgr_is_routellms():
    c = M.routing_curve(U4, SLM4, LLM4)
    assert M.apgr(c) == pytest.approx((AREA4 - 0.5) / (0.75 - 0.5))  # 1.125: above the LLM line
    assert M.apgr(M.random_curve(SLM4, LLM4)) == pytest.approx(0.5)  # random routing: 0.5 in RouteLLM
    # ours, under its own name: 0 for random, 1 for the oracle
    r, o = M.random_curve(SLM4, LLM4), M.oracle_curve(SLM4, LLM4)
    assert M.gap_recovered_vs_random(c, r, o) == pytest.approx(5 / 7)
    assert M.gap_recovered_vs_random(r, r, o) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", range(5))
def test_apgr_and_cpt_equal_routellms_arithmetic_on_random_curves(seed):
    rng = np.random.default_rng(seed)
    n = 50
    u = np.round(rng.random(n) * 7) / 7
    slm, llm = rng.random(n) < 0.4, rng.random(n) < 0.7
    c = M.routing_curve(u, slm, llm)
    apgr, cpt = routellm_apgr_and_cpt(c.ratio * 100, c.accuracy, c.slm_acc, c.llm_acc)
    assert M.apgr(c) == pytest.approx(apgr, abs=1e-12)
    for pct, v in zip((0.2, 0.5, 0.8), cpt):
        assert M.cpt(c, pct) == pytest.approx(v / 100, abs=1e-12)  # ours: a fraction, RouteLLM: percent


def test_cpt_on_the_random_line_and_batch_apgr():
    r = M.random_curve(SLM4, LLM4)  # .5 + .25 r: x% of the gap at ratio x
    for p in (0.2, 0.5, 0.8):
        assert M.cpt(r, p) == pytest.approx(p)
    rng = np.random.default_rng(3)
    u, s, l = rng.random((3, 40)), rng.random((3, 40)) < 0.5, rng.random((3, 40)) < 0.8
    got = M.batch_apgr(u, s, l)
    for i in range(3):
        assert got[i] == pytest.approx(M.apgr(M.routing_curve(u[i], s[i], l[i])))
    got = M.batch_gap_recovered_vs_random(u, s, l)
    for i in range(3):
        c = M.routing_curve(u[i], s[i], l[i])
        assert got[i] == pytest.approx(
            M.gap_recovered_vs_random(c, M.random_curve(s[i], l[i]), M.oracle_curve(s[i], l[i]))
        )


@pytest.mark.parametrize(
    "top, expected",
    [
        # most confident first: u .1 (slm 1, llm 1), .5 (1, 0), .7 (0, 1), .9 (0, 1)
        (0.25, 1 / 1),  # top 1: slm 1/1, llm 1/1
        (0.5, (2 / 2) / (1 / 2)),  # top 2: slm 2, llm 1
        (0.75, (2 / 3) / (2 / 3)),
        (1.0, (2 / 4) / (3 / 4)),  # the whole dataset
    ],
)
def test_relative_accuracy_divides_by_the_llm_on_the_same_queries(top, expected):
    assert M.relative_accuracy(U4, SLM4, LLM4, top) == pytest.approx(expected)


def test_relative_accuracy_ties_and_nan():
    # tie at the cut: top 1 of {0, 1} (slm 1, 0; llm 1, 1): expected slm .5, llm 1 -> .5
    assert M.relative_accuracy([0.0, 0.0, 1.0], [1, 0, 1], [1, 1, 0], 0.25) == pytest.approx(0.5)
    assert M.relative_accuracy([0.0, 0.0, 1.0], [1, 0, 1], [1, 1, 0], 0.25, ties="stable") == pytest.approx(1.0)
    assert np.isnan(M.relative_accuracy([0.0, 1.0], [1, 0], [0, 1], 0.5))  # LLM wrong on the top query


def test_relative_accuracy_curve_k_10_to_100():
    rows = M.relative_accuracy_curve(U4, SLM4, LLM4)
    assert [r["top_pct"] for r in rows] == list(range(10, 101, 10))
    assert rows[-1]["relative_accuracy"] == pytest.approx((2 / 4) / (3 / 4))
    assert rows[4]["relative_accuracy"] == pytest.approx(2.0)  # top 50%


def test_summarize_reports_both_gap_metrics_cpt_and_relative_accuracy():
    out = M.summarize(U4, SLM4, LLM4, n_boot=50)
    assert out["apgr"] == pytest.approx(1.125)
    assert out["gap_recovered_vs_random"] == pytest.approx(5 / 7)
    c = M.routing_curve(U4, SLM4, LLM4)
    for p in (20, 50, 80):
        assert out[f"cpt_{p}"] == pytest.approx(M.cpt(c, p / 100))
    for k in range(10, 101, 10):
        assert out[f"relative_accuracy_at_{k}"] == pytest.approx(M.relative_accuracy(U4, SLM4, LLM4, k / 100))
    for k in ("apgr", "gap_recovered_vs_random"):
        assert out[f"{k}_lo"] <= out[f"{k}_hi"]
    assert set(out) == set(M.summary_keys())
