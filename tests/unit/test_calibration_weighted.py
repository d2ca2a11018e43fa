"""Calibration sets on skewed pools (issue 8.4): thresholds from a stratified set must realize their
target call rates on the pool it was drawn from.

A stratified draw takes max(1, round(frac * m)) rows from every non-empty bin, so sparse bins (the
tail of a skewed score) are over-represented; each selected row therefore carries the weight
m / take of its bin, and thresholds are weighted quantiles. Bins are cut on the paper's confidence
scale (``scale``), which keeps the bin holding a threshold narrow, so the pool's realized rate is
within 0.01 of the target.
"""

from __future__ import annotations

import numpy as np
import pytest

from jobs.analysis import calibration as C

TARGETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9)


def skewed_pools(kind: str, n: int = 3000, seed: int = 0) -> dict:
    """Three datasets of one skewed uncertainty distribution; SLM right more often when certain."""
    rng = np.random.default_rng(seed)
    out = {}
    for d in ("a", "b", "c"):
        if kind == "exponential":  # unbounded, like mean token entropy
            u = rng.exponential(1.0, n)
        elif kind == "beta":  # 1 - probability, mass near 0
            u = rng.beta(0.5, 4.0, n)
        else:  # heavy tail, >= 1, like perplexity
            u = 1.0 + rng.pareto(1.5, n)
        out[d] = C.Pool(
            sample_id=[f"{d}{i}" for i in range(n)],
            uncertainty=u,
            slm_correct=rng.random(n) < np.exp(-u),
            llm_correct=rng.random(n) < 0.8,
        )
    return out


# the paper's confidence for each kind of score, and the scale-free rank
SCALES = {"exponential": "exp_neg", "beta": "complement", "heavy": "reciprocal"}


@pytest.mark.parametrize("kind", ["exponential", "beta", "heavy"])
@pytest.mark.parametrize("seed", [50, 51, 52])
def test_thresholds_realize_their_call_rate_on_the_pool(kind, seed):
    """One draw, bins on the paper's confidence: within 0.01 at call rates up to 50%; on the
    scale-free rank scale (= equal-frequency bins) within 0.01 at every target."""
    pools = skewed_pools(kind)
    pooled_u = np.concatenate([p.uncertainty for p in pools.values()])
    paper = C.build_calibration_set(pools, params=C.CalibrationParams(seed=seed, scale=SCALES[kind]))
    rank = C.build_calibration_set(pools, params=C.CalibrationParams(seed=seed, scale="rank"))
    for t in TARGETS:
        r_paper = C.apply_to_unlabelled(paper, pooled_u, t)["expected_call_rate"]
        r_rank = C.apply_to_unlabelled(rank, pooled_u, t)["expected_call_rate"]
        assert abs(r_rank - t) <= 0.01, (kind, seed, t, r_rank)
        if t <= 0.5:
            assert abs(r_paper - t) <= 0.01, (kind, seed, t, r_paper)


@pytest.mark.parametrize("kind", ["exponential", "beta", "heavy"])
def test_mean_over_the_papers_three_draws_realizes_every_target(kind):
    """Bins on the paper's confidence, mean over seeds 50, 51, 52: within 0.01 at every target.
    (One draw can miss by up to ~0.02 where a single bin holds ~40% of the pool: beta(0.5, 4)'s
    most confident bin at targets 80-90%; its sampling error shrinks as 1 / sqrt(draws).)"""
    pools = skewed_pools(kind)
    pooled_u = np.concatenate([p.uncertainty for p in pools.values()])
    sets = [
        C.build_calibration_set(pools, params=C.CalibrationParams(seed=s, scale=SCALES[kind])) for s in (50, 51, 52)
    ]
    for t in TARGETS:
        realized = np.mean([C.apply_to_unlabelled(c, pooled_u, t)["expected_call_rate"] for c in sets])
        assert abs(realized - t) <= 0.01, (kind, t, realized)


def test_unweighted_thresholds_were_biased_on_a_skewed_pool():
    """The defect: the tail's bins give one row each, so unweighted quantiles route too few."""
    pools = skewed_pools("heavy")
    pooled_u = np.concatenate([p.uncertainty for p in pools.values()])
    cal = C.build_calibration_set(pools, params=C.CalibrationParams(seed=50, scale="uncertainty"))
    unweighted = C.CalibrationSet(
        cal.dataset, cal.sample_id, cal.uncertainty, cal.slm_correct, cal.llm_correct, cal.record
    )
    low = C.apply_to_unlabelled(unweighted, pooled_u, 0.05)["expected_call_rate"]
    fixed = C.apply_to_unlabelled(cal, pooled_u, 0.05)["expected_call_rate"]
    assert low < 0.04 and abs(fixed - 0.05) < 0.01


def test_weights_restore_the_pool_size_per_bin():
    pools = skewed_pools("heavy", n=500)
    cal = C.build_calibration_set(pools, params=C.CalibrationParams(scale="reciprocal"))
    r = cal.record
    assert cal.weight.sum() == pytest.approx(r["n_pooled"])
    # every selected row of bin b weighs n_per_bin[b] / n_selected_per_bin[b]
    per_bin = {b: m / s for b, (m, s) in enumerate(zip(r["n_per_bin"], r["n_selected_per_bin"])) if s}
    assert sorted(set(np.round(cal.weight, 9))) == sorted(set(np.round(list(per_bin.values()), 9)))
    assert r["scale"] == "reciprocal"
    # bins are cut on the confidence 1 / u, in (0, 1]
    assert 0.0 < r["bin_edges"][0] < r["bin_edges"][-1] <= 1.0


def test_weighted_calibration_curve_is_the_pool_curve_when_bins_are_homogeneous():
    # 10 values .05 ... .95, each its own equal-width bin, with skewed counts; SLM right iff u < .5,
    # LLM always. Inside a bin every row is alike, so whichever rows are drawn the weighted set is
    # the pool in miniature: its curve and thresholds are the pool's exactly, the unweighted are not.
    counts = [300, 150, 80, 40, 20, 10, 5, 3, 2, 1]
    u = np.repeat(np.arange(10) * 0.1 + 0.05, counts)
    pools = {
        "a": {
            "sample_id": [f"a{i}" for i in range(len(u))],
            "uncertainty": u,
            "slm_correct": u < 0.5,
            "llm_correct": np.ones(len(u), bool),
        }
    }
    true = C.routing_curve(u, u < 0.5, np.ones(len(u), bool))
    for seed in (50, 51):
        cal = C.build_calibration_set(pools, params=C.CalibrationParams(n_bins=10, frac=0.1, seed=seed))
        assert cal.record["n_selected_per_bin"] == [30, 15, 8, 4, 2, 1, 1, 1, 1, 1]
        assert C.curve_rms_distance(C.calibration_curve(cal), true) < 1e-12
        unweighted = C.routing_curve(cal.uncertainty, cal.slm_correct, cal.llm_correct)
        assert C.curve_rms_distance(unweighted, true) > 0.005  # 0.0101: the tail bins are over-weighted
        for t in (0.01, 0.05, 0.1, 0.3):
            assert C.expected_call_rate(u, cal.threshold(t)) == pytest.approx(t, abs=1e-12)
        thr = cal.threshold(0.1)
        assert cal.expected_accuracy(thr) == pytest.approx(C.expected_accuracy(u, u < 0.5, np.ones(len(u), bool), thr))


def test_uniform_weights_change_nothing():
    rng = np.random.default_rng(2)
    u = np.round(rng.random(97) * 4) / 4
    slm, llm = rng.random(97) < 0.5, rng.random(97) < 0.8
    w = np.ones(97)
    for rate in np.linspace(0, 1, 11):
        assert C.threshold_for_call_rate(u, rate, weights=w) == C.threshold_for_call_rate(u, rate)
    np.testing.assert_allclose(
        C.weighted_routing_curve(u, slm, llm, w).accuracy, C.routing_curve(u, slm, llm).accuracy, atol=1e-12
    )
    thr = C.threshold_for_call_rate(u, 0.37)
    assert C.expected_accuracy(u, slm, llm, thr, weights=w * 3) == pytest.approx(C.expected_accuracy(u, slm, llm, thr))


def test_weighted_threshold_hand_example():
    # u .9 (weight 3), .5 (1), .1 (1): total 5. 40% = weight 2 -> inside .9's group: tie_frac 2/3
    thr = C.threshold_for_call_rate([0.9, 0.5, 0.1], 0.4, weights=[3, 1, 1])
    assert (thr.value, thr.tie_frac) == (0.9, pytest.approx(2 / 3))
    # 80% = weight 4 -> .9 and .5 routed, .1 not
    thr = C.threshold_for_call_rate([0.9, 0.5, 0.1], 0.8, weights=[3, 1, 1])
    assert (thr.value, thr.tie_frac) == (0.5, pytest.approx(1.0))
    assert C.expected_call_rate([0.9, 0.5, 0.1], thr, weights=[3, 1, 1]) == pytest.approx(0.8)


def test_repeated_draws_report_mean_and_spread():
    pools = skewed_pools("beta", n=400)
    rows = C.transfer_table(
        pools,
        params=C.CalibrationParams(targets=(0.1, 0.5), scale="complement", n_draws=3, seed=50),
        methods=["calibration", "fixed"],
    )
    cal = [r for r in rows if r["method"] == "calibration"]
    assert all(r["n_draws"] == 3 and r["seeds"] == [50, 51, 52] for r in cal)
    assert all(len(r["call_rate_error_draws"]) == 3 for r in cal)
    for r in cal:
        d = np.asarray(r["call_rate_error_draws"])
        assert r["call_rate_error"] == pytest.approx(d.mean())
        assert r["call_rate_error_sd"] == pytest.approx(d.std(ddof=1))
        assert r["abs_call_rate_error"] == pytest.approx(np.abs(d).mean())
    assert any(r["call_rate_error_sd"] > 0 for r in cal)  # the draws differ
    assert all(r["n_draws"] == 1 and r["call_rate_error_sd"] == 0 for r in rows if r["method"] == "fixed")
    c = C.curve_transfer(pools, "a", params=C.CalibrationParams(scale="complement", n_draws=3, seed=50))
    assert c["n_draws"] == 3 and len(c["rms_calibration_draws"]) == 3
    assert c["rms_calibration"] == pytest.approx(np.mean(c["rms_calibration_draws"]))


def test_confidence_scales():
    u = np.array([0.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(C.to_confidence(u, "exp_neg"), np.exp(-u))
    np.testing.assert_allclose(C.to_confidence(u[:3], "complement"), 1 - u[:3])
    np.testing.assert_allclose(C.to_confidence(u[2:], "reciprocal"), [1.0, 1 / 3])
    np.testing.assert_allclose(C.to_confidence(u, "rank"), [1.0, 0.75, 0.5, 0.25])  # 1 - ECDF(u) + 1/n
    np.testing.assert_allclose(C.to_confidence(u, "uncertainty"), u)
    with pytest.raises(ValueError, match="valid: uncertainty, complement, reciprocal, exp_neg, rank"):
        C.to_confidence(u, "sigmoid")
    with pytest.raises(ValueError, match="reciprocal needs uncertainties > 0"):
        C.to_confidence(u, "reciprocal")


def test_uq_methods_declare_the_papers_confidence():
    from jobs.uq import UQ_METHODS

    assert UQ_METHODS.get("perplexity").confidence == "reciprocal"  # paper: 1 / exp(mean NLL)
    assert UQ_METHODS.get("avg_token_prob").confidence == "complement"
    assert UQ_METHODS.get("mean_token_entropy").confidence == "exp_neg"
    assert all(UQ_METHODS.get(n).confidence in C.SCALES for n in UQ_METHODS.names())


def test_grid_analysis_draws_n_sets_on_each_methods_paper_scale():
    from jobs.analysis import findings as A

    ev = {("s", "perplexity", "l"): skewed_pools("heavy", n=300), ("s", "ptrue", "l"): skewed_pools("beta", n=300)}
    conf = {
        "n_bins": 30,
        "frac": 0.1,
        "seed": 50,
        "binning": "equal_width",
        "scale": "paper",
        "n_draws": 3,
        "targets": [0.1, 0.5],
        "fixed_threshold": {},
    }
    t = A.transfer_analysis(ev, {}, conf, "most_uncertain")
    cal = [r for r in t["call_rate"] if r["method"] == "calibration"]
    assert {(r["uq"], r["scale"]) for r in cal} == {("perplexity", "reciprocal"), ("ptrue", "complement")}
    assert all(r["n_draws"] == 3 for r in cal) and all(c["n_draws"] == 3 for c in t["curves"])
    assert all(r["n_draws"] == 3 for r in t["accuracy"])
    summ = {(s["uq"], s["method"]): s for s in A.transfer_summary(t["call_rate"])}
    assert summ[("ptrue", "calibration")]["n_draws"] == 3 and summ[("ptrue", "calibration")]["sd_call_rate_error"] > 0
    ev3 = " ".join(A.findings([], [], {}, t)[2]["evidence"])
    assert "means over 3 draws" in ev3 and "seeds 50, 51, 52" in ev3
    assert A.calibration_scale({"scale": "rank"}, "perplexity") == "rank"
    assert A.calibration_scale({"scale": "paper"}, "not_registered") == "rank"
