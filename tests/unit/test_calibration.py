"""Calibration sets, call-rate thresholds, transfer and distribution distances on hand-made data.

Expected values are derived in the comments. Routing rule: u > value goes to the LLM, u == value
with probability tie_frac; rates and accuracies are exact expectations.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from jobs.analysis import calibration as C
from jobs.analysis.calibration import Threshold


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def pool(u, slm=None, llm=None, prefix="s"):
    u = np.asarray(u, dtype=float)
    n = len(u)
    return {
        "sample_id": [f"{prefix}{i}" for i in range(n)],
        "uncertainty": u,
        "slm_correct": np.zeros(n, bool) if slm is None else np.asarray(slm, bool),
        "llm_correct": np.ones(n, bool) if llm is None else np.asarray(llm, bool),
    }


# The 4-sample example of test_metrics: offload order 0, 3, 2, 1; curve .5, .75, 1, .75, .75
U4 = np.array([0.9, 0.1, 0.5, 0.7])
SLM4 = np.array([0, 1, 1, 0], dtype=bool)
LLM4 = np.array([1, 1, 0, 1], dtype=bool)
# Ties: sorted descending 1, 1, 0, 0; expected-ties curve .5, .625, .75, .875, 1
U_T = np.array([1.0, 1.0, 0.0, 0.0])
SLM_T = np.array([0, 1, 1, 0], dtype=bool)
LLM_T = np.ones(4, dtype=bool)


# ---- threshold_for_call_rate ------------------------------------------------------------------


@pytest.mark.parametrize(
    "u, rate, value, tie_frac",
    [
        # k = rate * N; value = s[ceil(k) - 1] (s sorted descending, s[0] for k = 0);
        # tie_frac = (k - #{u > value}) / #{u == value}
        (U4, 0.0, 0.9, 0.0),  # k=0: top score, nobody routed
        (U4, 0.25, 0.9, 1.0),  # k=1: s[0]=.9, 0 above, 1 tied -> 1
        (U4, 0.375, 0.7, 0.5),  # k=1.5: s[1]=.7, 1 above (.9), 1 tied -> .5
        (U4, 0.5, 0.7, 1.0),  # k=2: s[1]=.7 -> (2-1)/1
        (U4, 1.0, 0.1, 1.0),  # k=4: s[3]=.1, 3 above -> 1
        (U_T, 0.25, 1.0, 0.5),  # k=1: s[0]=1, 0 above, 2 tied -> .5
        (U_T, 0.5, 1.0, 1.0),  # k=2: s[1]=1 -> 2/2
        (U_T, 0.75, 0.0, 0.5),  # k=3: s[2]=0, 2 above, 2 tied -> .5
        ([0.3] * 5, 0.0, 0.3, 0.0),  # constant: every sample tied, tie_frac = rate
        ([0.3] * 5, 0.4, 0.3, 0.4),
        ([0.3] * 5, 1.0, 0.3, 1.0),
        (np.arange(10.0), 0.3, 7.0, 1.0),  # .3*10 = 3.0000000000000004 snaps to k=3: s[2]=7
        (np.arange(10.0), 0.7, 3.0, 1.0),  # .7*10 = 7.000000000000001 snaps to k=7: s[6]=3
    ],
)
def test_threshold_for_call_rate(u, rate, value, tie_frac):
    thr = C.threshold_for_call_rate(u, rate)
    assert thr == Threshold(value, tie_frac)
    close(C.expected_call_rate(u, thr), rate)  # exact on the calibration scores


def test_threshold_for_call_rate_exact_on_random_ties():
    rng = np.random.default_rng(0)
    u = np.round(rng.random(97) * 4) / 4  # 5 levels, many ties
    for rate in np.linspace(0, 1, 23):
        close(C.expected_call_rate(u, C.threshold_for_call_rate(u, rate)), rate)


@pytest.mark.parametrize("rate", [-0.1, 1.1, float("nan")])
def test_invalid_rate(rate):
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        C.threshold_for_call_rate(U4, rate)


def test_threshold_input_errors():
    with pytest.raises(ValueError, match="NaN"):
        C.threshold_for_call_rate([0.1, np.nan], 0.5)
    with pytest.raises(ValueError, match="at least one sample"):
        C.threshold_for_call_rate([], 0.5)
    with pytest.raises(ValueError, match="tie_frac"):
        Threshold(0.5, 1.5)


# ---- expected rates and accuracy --------------------------------------------------------------


@pytest.mark.parametrize(
    "thr, rate, acc",
    [
        # p = [.5, .5, 0, 0]: .5*llm0 + .5*slm0 (=.5) + .5*1 + .5*1 (=1) + slm2 1 + slm3 0 = 2.5
        (Threshold(1.0, 0.5), 0.25, 0.625),
        # p = [1, 1, .5, .5]: llm 2 + (.5 + .5) + (.5 + 0) = 3.5
        (Threshold(0.0, 0.5), 0.75, 0.875),
        (Threshold(2.0, 0.0), 0.0, 0.5),  # nobody routed: SLM accuracy 2/4
        (Threshold(-1.0, 0.0), 1.0, 1.0),  # everybody routed: LLM accuracy
    ],
)
def test_expected_rate_and_accuracy(thr, rate, acc):
    close(C.expected_call_rate(U_T, thr), rate)
    close(C.expected_accuracy(U_T, SLM_T, LLM_T, thr), acc)


def test_expected_accuracy_matches_expected_curve_at_integer_k():
    rng = np.random.default_rng(1)
    u = np.round(rng.random(40) * 3) / 3
    s, l = rng.random(40) < 0.5, rng.random(40) < 0.8
    from jobs.metrics import routing_curve

    acc = routing_curve(u, s, l, ties="expected").accuracy
    for k in range(41):
        close(C.expected_accuracy(u, s, l, C.threshold_for_call_rate(u, k / 40)), acc[k])


def test_fixed_threshold():
    assert C.fixed_threshold(0.5) == Threshold(0.5, 0.0)
    close(C.expected_call_rate(U4, C.fixed_threshold(0.5)), 0.5)  # .9, .7 > .5; .5 is not


# ---- threshold_for_accuracy -------------------------------------------------------------------


@pytest.mark.parametrize(
    "u, slm, llm, target, expected",
    [
        # U4 curve .5, .75, 1, .75, .75 at k = 0..4
        (U4, SLM4, LLM4, 0.4, Threshold(0.9, 0.0)),  # SLM alone already reaches it: rate 0
        (U4, SLM4, LLM4, 0.5, Threshold(0.9, 0.0)),
        (U4, SLM4, LLM4, 0.75, Threshold(0.9, 1.0)),  # k=1 -> rate .25
        (U4, SLM4, LLM4, 0.875, Threshold(0.7, 0.5)),  # x = 1 + (.875-.75)/.25 = 1.5
        (U4, SLM4, LLM4, 1.0, Threshold(0.7, 1.0)),  # k=2 -> rate .5
        (U4, SLM4, LLM4, 1.01, None),  # above the curve's max: unreachable
        # U_T curve .5, .625, .75, .875, 1: .6875 at x = 1 + (.6875-.625)/.125 = 1.5
        #   -> k=1.5: s[1]=1, 0 above, 2 tied -> tie .75
        (U_T, SLM_T, LLM_T, 0.6875, Threshold(1.0, 0.75)),
        (U_T, SLM_T, LLM_T, 0.75, Threshold(1.0, 1.0)),  # k=2
    ],
)
def test_threshold_for_accuracy(u, slm, llm, target, expected):
    thr = C.threshold_for_accuracy(u, slm, llm, target)
    assert thr == expected
    if thr is not None:
        close(C.expected_accuracy(u, slm, llm, thr), max(target, slm.mean()))


# ---- build_calibration_set --------------------------------------------------------------------

# 4 equal-width bins over [0, 1]: edges 0, .25, .5, .75, 1.
#   bin 0: 20 values in [0, .2] (dataset a, which also has 2 NaN)  -> floor(.1*20 + .5) = 2 drawn
#   bin 1: empty                                                    -> 0
#   bin 2: 5 values in [.55, .7] (dataset b)                        -> floor(.5 + .5) = 1
#   bin 3: the single value 1.0 (dataset b)                         -> max(1, floor(.6)) = 1
BIN0 = np.linspace(0.0, 0.2, 20)
BIN2 = np.array([0.55, 0.6, 0.65, 0.7, 0.6])
POOLS_STRAT = {
    "a": pool(np.concatenate([BIN0, [np.nan, np.nan]]), prefix="a"),
    "b": pool(np.concatenate([BIN2, [1.0]]), prefix="b"),
}


def test_stratified_sampling_record_and_coverage():
    cal = C.build_calibration_set(POOLS_STRAT, params=C.CalibrationParams(n_bins=4, frac=0.1, seed=50))
    r = cal.record
    assert r["n_per_bin"] == [20, 0, 5, 1]
    assert r["n_selected_per_bin"] == [2, 0, 1, 1]
    assert r["bin_edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert r["n_nan_dropped"] == 2 and r["n_nan_dropped_per_dataset"] == {"a": 2, "b": 0}
    assert r["n_pooled_per_dataset"] == {"a": 20, "b": 6}
    assert r["n_selected_per_dataset"] == {"a": 2, "b": 2}
    assert r["datasets"] == ["a", "b"] and r["excluded"] == []
    assert (r["seed"], r["binning"], r["frac"], r["n_bins"]) == (50, "equal_width", 0.1, 4)
    json.dumps(r)  # plain JSON
    assert len(cal) == 4 and not np.isnan(cal.uncertainty).any()
    # every non-empty bin is covered
    bins = np.searchsorted(np.array(r["bin_edges"])[1:-1], cal.uncertainty, side="right")
    assert sorted(set(bins.tolist())) == [0, 2, 3]
    assert "b5" in cal.sample_id  # the only sample of bin 3 (u = 1.0)
    assert list(cal.dataset) == ["a", "a", "b", "b"]  # pooled order: datasets sorted by name
    with pytest.raises(ValueError):
        cal.uncertainty[0] = 0.0  # read-only


def test_every_nonempty_bin_covered_with_tiny_frac():
    rng = np.random.default_rng(3)
    pools = {d: pool(rng.beta(0.5, 2, 300), prefix=d) for d in "xyz"}
    cal = C.build_calibration_set(pools, params=C.CalibrationParams(n_bins=30, frac=0.01))
    counts = np.array(cal.record["n_per_bin"])
    sel = np.array(cal.record["n_selected_per_bin"])
    assert ((sel >= 1) == (counts > 0)).all()
    assert len(cal) == sel.sum()
    bins = np.searchsorted(np.array(cal.record["bin_edges"])[1:-1], cal.uncertainty, side="right")
    np.testing.assert_array_equal(np.bincount(bins, minlength=30), sel)


def test_deterministic_per_seed_and_dict_order():
    rng = np.random.default_rng(4)
    pools = {d: pool(rng.random(500), prefix=d) for d in "pq"}
    a = C.build_calibration_set(pools, params=C.CalibrationParams(n_bins=10, seed=7))
    b = C.build_calibration_set(dict(reversed(list(pools.items()))), params=C.CalibrationParams(n_bins=10, seed=7))
    c = C.build_calibration_set(pools, params=C.CalibrationParams(n_bins=10, seed=8))
    np.testing.assert_array_equal(a.sample_id, b.sample_id)
    assert list(a.sample_id) != list(c.sample_id)
    assert a.record["n_selected_per_bin"] == c.record["n_selected_per_bin"]


@pytest.mark.parametrize(
    "binning, n_per_bin",
    [
        ("equal_width", [4, 1]),  # edges 0, 5, 10
        ("equal_freq", [2, 3]),  # edges 0, median .2, 10: {0, .1} | {.2, .3, 10}
    ],
)
def test_binning(binning, n_per_bin):
    cal = C.build_calibration_set(
        {"d": pool([0, 0.1, 0.2, 0.3, 10])}, params=C.CalibrationParams(n_bins=2, binning=binning)
    )
    assert cal.record["n_per_bin"] == n_per_bin


def test_exclude_removes_dataset():
    pools = {d: pool(np.linspace(0, 1, 20), prefix=d) for d in "abc"}
    cal = C.build_calibration_set(pools, params=C.CalibrationParams(frac=1.0), exclude=["b"])
    assert set(cal.dataset) == {"a", "c"} and cal.record["excluded"] == ["b"]
    assert len(cal) == 40  # frac 1 keeps everything


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"binning": "equal_hight"}, r"'equal_hight'; valid: equal_width, equal_freq"),
        ({"exclude": ["nope"]}, r"unknown dataset\(s\) \['nope'\]; available: \['a'\]"),
        ({"exclude": ["a"]}, "no dataset left"),
        ({"frac": 0.0}, r"frac must be in \(0, 1\]"),
        ({"n_bins": 0}, "n_bins must be a positive integer"),
    ],
)
def test_build_errors(kwargs, match):
    fields = {k: v for k, v in kwargs.items() if k != "exclude"}  # how the set is drawn: CalibrationParams
    with pytest.raises(ValueError, match=match):
        C.build_calibration_set(
            {"a": pool([0.1, 0.2])}, exclude=kwargs.get("exclude", ()), params=C.CalibrationParams(**fields)
        )


def test_pool_errors():
    with pytest.raises(ValueError, match=r"pools\['a'\] lacks \['llm_correct'\]"):
        C.build_calibration_set({"a": {k: v for k, v in pool([0.1]).items() if k != "llm_correct"}})
    with pytest.raises(ValueError, match="infinite"):
        C.build_calibration_set({"a": pool([0.1, np.inf])})
    with pytest.raises(ValueError, match="no scored"):
        C.build_calibration_set({"a": pool([np.nan])})


# ---- transfer ---------------------------------------------------------------------------------

# Every dataset: the values .05, .15, ..., .95, each 10 times; SLM right iff u < .5, LLM always.
# Pooling two datasets gives 20 per value; 10 equal-width bins over [.05, .95] (width .09) hold
# one value each, so frac .1 draws exactly 2 of each value whatever the RNG: the calibration set
# is the held-out distribution in miniature, and its quantiles transfer exactly.
VALUES = np.repeat(np.arange(10) * 0.1 + 0.05, 10)
SAME = {d: pool(VALUES, slm=VALUES < 0.5, prefix=d) for d in ("d1", "d2", "d3")}
TARGETS = (0.0, 0.1, 0.15, 0.3, 0.5, 0.9, 1.0)


def test_transfer_same_distribution_is_exact():
    rows = C.transfer_table(SAME, params=C.CalibrationParams(targets=TARGETS, n_bins=10, frac=0.1))
    assert len(rows) == 3 * 3 * len(TARGETS)
    cal_rows = [r for r in rows if r["method"] == "calibration"]
    for r in cal_rows:
        assert r["n_fit"] == 20 and r["n_eval"] == 100
        close(r["call_rate_error"], 0.0)
        close(r["accuracy_error"], 0.0)  # correctness is a function of the score
    # e.g. target .15: k = 3 of 20 -> s[2] = .85 (2 above, 2 tied) -> tie .5;
    # held out: 10 above + .5 * 10 tied = 15 of 100
    r15 = next(r for r in cal_rows if r["heldout"] == "d1" and r["target_call_rate"] == 0.15)
    close([r15["threshold"], r15["tie_frac"], r15["realized_call_rate"]], [0.85, 0.5, 0.15])


def test_transfer_fixed_error_depends_on_target():
    rows = C.transfer_table(SAME, params=C.CalibrationParams(targets=TARGETS), methods=["fixed"], fixed_value=0.5)
    assert len(rows) == 3 * len(TARGETS)
    for r in rows:
        # u > .5: the five values .55 .. .95 -> 50 of 100, whatever the target
        assert (r["threshold"], r["tie_frac"]) == (0.5, 0.0)
        close(r["realized_call_rate"], 0.5)
        close(r["call_rate_error"], 0.5 - r["target_call_rate"])
        assert np.isnan(r["predicted_accuracy"]) and np.isnan(r["accuracy_error"])


def test_transfer_in_domain_split():
    rows = C.transfer_table(SAME, params=C.CalibrationParams(targets=(0.5,)), methods=["in_domain"], in_domain_frac=0.5)
    assert [r["heldout"] for r in rows] == ["d1", "d2", "d3"]
    for r in rows:
        assert r["n_fit"] == 50 and r["n_eval"] == 50
        assert abs(r["call_rate_error"]) <= 0.2


def test_leave_one_out_never_uses_heldout(monkeypatch):
    built = []
    real = C.build_calibration_set

    def spy(pools, **kw):
        cal = real(pools, **kw)
        built.append((tuple(kw["exclude"]), set(cal.dataset.tolist())))
        return cal

    monkeypatch.setattr(C, "build_calibration_set", spy)
    rows = C.transfer_table(SAME, params=C.CalibrationParams(targets=(0.2, 0.4), n_bins=10), methods=["calibration"])
    assert [b[0] for b in built] == [("d1",), ("d2",), ("d3",)]
    for (heldout,), names in built:
        assert names == {"d1", "d2", "d3"} - {heldout}
    assert {r["heldout"] for r in rows} == {"d1", "d2", "d3"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"methods": ["calibraton"]}, r"\['calibraton'\]; valid: calibration, in_domain, fixed"),
        ({"targets": (0.5, 1.5)}, r"target call rate must be in \[0, 1\]"),
        ({"in_domain_frac": 1.0}, r"in_domain_frac must be in \(0, 1\)"),
    ],
)
def test_transfer_errors(kwargs, match):
    fields = {k: v for k, v in kwargs.items() if k == "targets"}  # the targets are CalibrationParams'
    with pytest.raises(ValueError, match=match):
        C.transfer_table(
            SAME, params=C.CalibrationParams(**fields), **{k: v for k, v in kwargs.items() if k != "targets"}
        )


def test_curve_transfer_same_distribution():
    out = C.curve_transfer(SAME, "d2", params=C.CalibrationParams(n_bins=10, frac=0.1))
    # the calibration curve has the same kinks (every .1 of ratio) and levels as the true one
    close(out["rms_calibration"], 0.0)
    assert out["rms_random"] > 0.1  # the score is informative, random routing is not
    assert out["n_calibration"] == 20 and out["n_heldout"] == 100
    assert out["calibration"]["excluded"] == ["d2"]
    with pytest.raises(ValueError, match="unknown held-out dataset 'd9'"):
        C.curve_transfer(SAME, "d9")


# ---- apply_to_unlabelled ----------------------------------------------------------------------


def test_apply_to_unlabelled():
    # calibration: u = .1 .. 1.0 (frac 1 keeps all); SLM right iff u <= .5, LLM always right
    u = np.arange(1, 11) / 10
    cal = C.build_calibration_set({"c": pool(u, slm=u <= 0.5)}, params=C.CalibrationParams(n_bins=30, frac=1.0))
    assert len(cal) == 10
    target = [0.85, 0.8, 0.8, 0.5, np.nan]
    # rate .3: k=3 -> s[2] = .8, 2 above -> tie 1 ("route u >= .8")
    # predicted accuracy on calibration: top 3 routed (LLM 3) + kept .1...7 (SLM right on 5) = .8
    out = C.apply_to_unlabelled(cal, target, 0.3)
    assert (out["threshold"], out["tie_frac"]) == (0.8, 1.0)
    close(out["predicted_accuracy"], 0.8)
    # most_uncertain: NaN -> inf, routed. p = 1, 1, 1, 0, 1
    close(out["route_prob"], [1, 1, 1, 0, 1])
    close([out["expected_call_rate"], out["n_routed_expected"]], [0.8, 4.0])
    assert (out["n"], out["n_routed_surely"], out["n_tied"], out["n_nan"]) == (5, 2, 2, 1)
    dropped = C.apply_to_unlabelled(cal, target, 0.3, nan_policy="drop")
    assert dropped["n"] == 4
    close(dropped["expected_call_rate"], 0.75)


# ---- distances --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, w1, ks",
    [
        ([0, 1], [1, 2], 1.0, 0.5),  # shift by 1; F_a(0)=.5 vs F_b(0)=0, F_a(1)=1 vs .5
        ([0, 1], [2, 3], 2.0, 1.0),  # disjoint: KS 1
        ([0], [0, 1], 0.5, 0.5),  # on [0, 1): F_a=1, F_b=.5
        ([0, 0, 1], [0, 1, 1, 1], 5 / 12, 5 / 12),  # on [0, 1): 2/3 vs 1/4
        ([0, 1], [0.5], 0.5, 0.5),  # |.5-0| on [0,.5) + |.5-1| on [.5,1) = .25 + .25
        ([3, 1, 2], [2, 3, 1], 0.0, 0.0),  # identical samples
    ],
)
def test_distances_hand(a, b, w1, ks):
    close(C.wasserstein_1d(a, b), w1)
    close(C.wasserstein_1d(b, a), w1)
    close(C.ks_statistic(a, b), ks)
    close(C.ks_statistic(b, a), ks)


def test_distance_errors():
    with pytest.raises(ValueError, match="NaN"):
        C.ks_statistic([0, np.nan], [1])
    with pytest.raises(ValueError, match="infinite"):
        C.wasserstein_1d([0, np.inf], [1])
    with pytest.raises(ValueError, match="at least one sample"):
        C.wasserstein_1d([], [1])
    with pytest.raises(ValueError, match=r"'l2'; valid: wasserstein, ks"):
        C.distance_matrix({"x": [0]}, metric="l2")


def test_distance_matrix():
    names, m = C.distance_matrix({"x": [0, 1], "y": [1, 2], "z": [0, 1]})
    assert names == ["x", "y", "z"]
    close(m, [[0, 1, 0], [1, 0, 1], [0, 1, 0]])


def test_within_vs_across():
    # location set by the UQ method (steps of 2) and SLM (steps of 1), never by the dataset
    rng = np.random.default_rng(5)
    scores = {
        (slm, uq, ds): rng.normal(2.0 * i + 1.0 * j, 1.0, 200)
        for j, slm in enumerate(["s1", "s2"])
        for i, uq in enumerate(["m1", "m2", "m3"])
        for ds in ["d1", "d2", "d3"]
    }
    scores[("s3", "m1", "d1")] = np.array([0.0, 1.0, np.nan])  # a lone SLM
    out = C.within_vs_across(scores, metric="ks")
    assert out["n_nan_dropped"] == 1
    ad, au, asl = out["across_datasets"], out["across_uq"], out["across_slm"]
    # (slm, uq) groups: 6 with 3 datasets -> 3 pairs each; (s3, m1) has one member, skipped
    assert (ad["n_groups"], ad["n_pairs"], ad["n_skipped_groups"]) == (6, 18, 1)
    # (slm, dataset) groups: 6 with 3 methods; (s3, d1) skipped
    assert (au["n_groups"], au["n_pairs"], au["n_skipped_groups"]) == (6, 18, 1)
    # (uq, dataset) groups: 9; (m1, d1) has s1, s2, s3 -> 3 pairs, the other 8 one pair each
    assert (asl["n_groups"], asl["n_pairs"], asl["n_skipped_groups"]) == (9, 11, 0)
    assert ad["mean"] < 0.2 < asl["mean"] and ad["mean"] < au["mean"]
    assert set(ad["per_group"]) == {f"{s}__{m}" for s in ["s1", "s2"] for m in ["m1", "m2", "m3"]}
    w = C.within_vs_across(scores, metric="wasserstein")
    assert w["across_datasets"]["mean"] < w["across_uq"]["mean"]


# ---- calibration pools kept apart from the evaluated rows ------------------------------------


def test_transfer_with_calibration_pools_uses_only_them():
    # evaluated rows: the usual uniform scores; calibration (fit-role) rows: every score shifted
    # up by .5, so thresholds from them route nothing below .55 + ... -> errors reveal the source
    fit = {d: pool(VALUES + 0.5, slm=VALUES < 0.5, prefix=f"fit-{d}") for d in SAME}
    rows = C.transfer_table(
        SAME, params=C.CalibrationParams(targets=(0.5,), n_bins=10, frac=0.1), calibration_pools=fit
    )
    cal = [r for r in rows if r["method"] == "calibration"]
    # calibration set: .55, .65, ..., 1.45, two of each; target .5 -> k = 10 of 20 -> s[9] = 1.05
    # (8 above, 2 tied -> tie_frac 1), above every evaluated score (max .95): nothing is routed
    for r in cal:
        assert r["threshold"] > 0.95 and r["realized_call_rate"] == 0.0
        close(r["call_rate_error"], -0.5)
        assert r["n_fit"] == 20
    ind = [r for r in rows if r["method"] == "in_domain"]
    for r in ind:  # fitted on the held-out dataset's own fit rows (all 100), evaluated on all 100
        assert r["n_fit"] == 100 and r["n_eval"] == 100
        assert r["realized_call_rate"] == 0.0


def test_transfer_with_calibration_pools_same_distribution_is_exact():
    fit = {d: pool(VALUES, slm=VALUES < 0.5, prefix=f"fit-{d}") for d in SAME}
    rows = C.transfer_table(
        SAME, params=C.CalibrationParams(targets=TARGETS, n_bins=10, frac=0.1), calibration_pools=fit
    )
    for r in rows:
        if r["method"] in ("calibration", "in_domain"):
            close(r["call_rate_error"], 0.0)


def test_calibration_pools_may_leave_datasets_out_but_in_domain_needs_each():
    cal = {d: SAME[d] for d in ("d1", "d2")}  # d3 has no train/dev rows allowed in calibration sets
    with pytest.raises(ValueError, match=r"in-domain fit pools lack dataset\(s\) \['d3'\]"):
        C.transfer_table(SAME, calibration_pools=cal)
    rows = C.transfer_table(
        SAME, params=C.CalibrationParams(targets=(0.5,), n_bins=10), calibration_pools=cal, in_domain_pools=SAME
    )
    by = {(r["heldout"], r["method"]): r for r in rows}
    assert by[("d3", "calibration")]["n_fit"] == 20 and by[("d1", "calibration")]["n_fit"] == 10
    assert by[("d3", "in_domain")]["n_fit"] == 100
    with pytest.raises(ValueError, match="held-out 'd1' needs another dataset"):
        C.transfer_table(SAME, calibration_pools={"d1": SAME["d1"]}, in_domain_pools=SAME)
    rows = C.transfer_table(SAME, params=C.CalibrationParams(targets=(0.5,), n_bins=10), heldouts=["d2"])
    assert {r["heldout"] for r in rows} == {"d2"}


def test_curve_transfer_with_calibration_pools():
    fit = {d: pool(VALUES, slm=VALUES < 0.5, prefix=f"fit-{d}") for d in SAME}
    out = C.curve_transfer(SAME, "d2", params=C.CalibrationParams(n_bins=10, frac=0.1), calibration_pools=fit)
    assert out["calibration"]["datasets"] == ["d1", "d3"]
    assert out["rms_calibration"] < 1e-9 < out["rms_random"]


# ---- unscored (NaN) rows kept as "most uncertain" ---------------------------------------------


def test_nan_rows_form_their_own_stratum_and_shape_thresholds():
    # 80 scored values + 20 NaN (a verbal method that could not parse 20% of answers)
    u = np.concatenate([np.linspace(0, 1, 80), np.full(20, np.nan)])
    pools = {"a": pool(u, prefix="a"), "b": pool(u, prefix="b")}
    drop = C.build_calibration_set(pools, params=C.CalibrationParams(n_bins=8, frac=0.5), nan_policy="drop")
    keep = C.build_calibration_set(pools, params=C.CalibrationParams(n_bins=8, frac=0.5), nan_policy="most_uncertain")
    assert drop.record["n_nan_dropped"] == 40 and np.isfinite(drop.uncertainty).all()
    assert keep.record["n_nan_kept"] == 40 and keep.record["n_nan_selected"] == 20  # 50% of the NaN stratum
    assert len(keep.record["n_per_bin"]) == 9 and keep.record["n_per_bin"][-1] == 40
    # target 10% < NaN share 20%: only unscored rows are routed, each with probability .5
    thr = C.threshold_for_call_rate(keep.uncertainty, 0.1)
    assert thr.value == np.inf and thr.tie_frac == pytest.approx(0.1 * len(keep) / 20)
    # transfer to a held-out dataset with the same NaN share, whose NaN rows the router sends first
    held = {"a": pools["a"], "b": pools["b"], "c": pool(u, prefix="c")}
    rows = C.transfer_table(
        held, params=C.CalibrationParams(targets=(0.1, 0.5), n_bins=8, frac=0.5), methods=["calibration"]
    )
    assert max(abs(r["call_rate_error"]) for r in rows) < 1e-9
    # a threshold from a set that dropped its NaN rows ignores them: at 10% it routes all 20% unscored
    # rows plus the top scored ones
    thr_drop = C.threshold_for_call_rate(drop.uncertainty, 0.1)
    routed = C.expected_call_rate(np.where(np.isnan(u), np.inf, u), thr_drop)
    assert routed > 0.25


def test_nan_policy_is_checked():
    with pytest.raises(ValueError, match="valid: drop, most_uncertain"):
        C.build_calibration_set({"a": pool([0.1, 0.2])}, nan_policy="ignore")
