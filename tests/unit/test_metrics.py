"""Routing metrics on hand-computed examples; expected values are derived in the comments."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest

from jobs import metrics as M
from jobs.metrics import RoutingCurve

# The 4-sample example used throughout.
#   idx:  0    1    2    3
#   u:   .9   .1   .5   .7      offload order (most uncertain first): 0, 3, 2, 1
#   slm:  0    1    1    0      SLM correct = 2 -> acc(0) = 2/4
#   llm:  1    1    0    1      LLM correct = 3 -> acc(4) = 3/4
# k=1 offload {0}:      LLM 1 + kept SLM (1,1,0) 2 = 3 -> .75
# k=2 offload {0,3}:    LLM 2 + kept SLM (1,1)   2 = 4 -> 1.0
# k=3 offload {0,3,2}:  LLM 2 + kept SLM (1)     1 = 3 -> .75
U4 = np.array([0.9, 0.1, 0.5, 0.7])
SLM4 = np.array([0, 1, 1, 0], dtype=bool)
LLM4 = np.array([1, 1, 0, 1], dtype=bool)
CURVE4 = [0.5, 0.75, 1.0, 0.75, 0.75]
# area, step .25: (.5+.75)/2 + (.75+1)/2 + (1+.75)/2 + (.75+.75)/2 = 3.125 -> * .25
AREA4 = 0.78125
RANDOM_AREA4 = 0.625  # line from .5 to .75
# oracle: gains (llm - slm) = +1, 0, -1, +1 -> order +1, +1, 0, -1 -> acc .5, .75, 1, 1, .75
ORACLE4 = [0.5, 0.75, 1.0, 1.0, 0.75]
ORACLE_AREA4 = 0.84375  # (.625 + .875 + 1 + .875) * .25
GAP_VS_RANDOM4 = (AREA4 - RANDOM_AREA4) / (ORACLE_AREA4 - RANDOM_AREA4)  # .15625 / .21875 = 5/7
APGR4 = (AREA4 - 0.5) / (0.75 - 0.5)  # RouteLLM's: (AUC - weak) / (strong - weak) = 1.125


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def rand_case(n, seed, levels=None):
    rng = np.random.default_rng(seed)
    u = rng.random(n)
    if levels:  # coarse scores, many ties
        u = np.round(u * levels) / levels
    return u, rng.random(n) < 0.6, rng.random(n) < 0.8


# ---- routing curve ----------------------------------------------------------------------------


@pytest.mark.parametrize("ties", ["expected", "stable"])
def test_routing_curve_hand_example(ties):
    c = M.routing_curve(U4, SLM4, LLM4, ties=ties)
    np.testing.assert_array_equal(c.k, [0, 1, 2, 3, 4])
    close(c.ratio, [0, 0.25, 0.5, 0.75, 1])
    close(c.accuracy, CURVE4)
    assert c.ties == ties and c.n == 4 and c.slm_acc == 0.5 and c.llm_acc == 0.75


# Ties: u = [1, 1, 0, 0], slm = [0, 1, 1, 0], llm all correct; gains +1, 0, 0, +1; SLM correct = 2.
# stable (original order 0, 1, 2, 3): cum gain 0, 1, 1, 1, 2       -> acc .5, .75, .75, .75, 1
# expected: group {0,1} gain 1 -> k=1 expects .5; group {2,3} gain 1 -> k=3 expects 1.5
#           cum gain 0, .5, 1, 1.5, 2                                -> acc .5, .625, .75, .875, 1
U_T = np.array([1.0, 1.0, 0.0, 0.0])
SLM_T = np.array([0, 1, 1, 0], dtype=bool)
LLM_T = np.ones(4, dtype=bool)


@pytest.mark.parametrize(
    "ties, expected",
    [("stable", [0.5, 0.75, 0.75, 0.75, 1.0]), ("expected", [0.5, 0.625, 0.75, 0.875, 1.0])],
)
def test_routing_curve_ties(ties, expected):
    close(M.routing_curve(U_T, SLM_T, LLM_T, ties=ties).accuracy, expected)


def test_stable_ties_follow_original_order():
    # swap samples 0 and 1 (same uncertainty): now the SLM-right one is offloaded first
    # gains 0, +1, 0, +1 -> cum 0, 0, 1, 1, 2 -> acc .5, .5, .75, .75, 1
    p = [1, 0, 2, 3]
    close(M.routing_curve(U_T[p], SLM_T[p], LLM_T[p], ties="stable").accuracy, [0.5, 0.5, 0.75, 0.75, 1.0])


def test_expected_ties_invariant_to_sample_order():
    u, s, l = rand_case(60, 0, levels=4)
    perm = np.random.default_rng(1).permutation(60)
    close(M.routing_curve(u, s, l).accuracy, M.routing_curve(u[perm], s[perm], l[perm]).accuracy)


def test_expected_ties_equal_mean_over_all_orders():
    # brute force: average the stable curve over every order of the tied samples
    u = np.array([0.3, 0.3, 0.3, 0.8, 0.1, 0.1])
    s = np.array([1, 0, 0, 1, 0, 1], dtype=bool)
    l = np.array([0, 1, 1, 0, 1, 1], dtype=bool)
    curves = [
        M.routing_curve(u[list(p)], s[list(p)], l[list(p)], ties="stable").accuracy
        for p in itertools.permutations(range(6))
    ]
    close(M.routing_curve(u, s, l, ties="expected").accuracy, np.mean(curves, axis=0))


def test_all_tied_expected_curve_is_random_line():
    u, s, l = rand_case(37, 2)
    close(M.routing_curve(np.zeros(37), s, l).accuracy, M.random_curve(s, l).accuracy)


@pytest.mark.parametrize("ties", ["expected", "stable"])
@pytest.mark.parametrize("seed, levels", [(0, None), (1, 3), (2, 10), (3, 1)])
def test_oracle_bounds_curve(ties, seed, levels):
    u, s, l = rand_case(80, seed, levels)
    c, o = M.routing_curve(u, s, l, ties=ties), M.oracle_curve(s, l)
    assert np.all(o.accuracy >= c.accuracy - 1e-12)
    assert np.all(c.accuracy >= 0) and np.all(c.accuracy <= 1)
    close(c.accuracy[[0, -1]], [s.mean(), l.mean()])
    close(o.accuracy[[0, -1]], [s.mean(), l.mean()])


def test_oracle_hand_example():
    close(M.oracle_curve(SLM4, LLM4).accuracy, ORACLE4)
    assert M.oracle_curve(SLM4, LLM4).ties == "oracle"


def test_random_curve_is_straight_line():
    r = M.random_curve(SLM4, LLM4)
    close(r.accuracy, [0.5, 0.5625, 0.625, 0.6875, 0.75])  # .5 + k/4 * .25
    u, s, l = rand_case(50, 4)
    acc = M.random_curve(s, l).accuracy
    close(np.diff(acc, 2), np.zeros(49))


def test_curve_arrays_are_read_only():
    c = M.routing_curve(U4, SLM4, LLM4)
    with pytest.raises(ValueError):
        c.accuracy[0] = 1.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.routing_curve([0.1, np.nan, np.nan], [1, 0, 1], [1, 1, 1]), "2 NaN value"),
        (lambda: M.routing_curve([0.1, 0.2], [1, 0, 1], [1, 1, 1]), "same length"),
        (lambda: M.routing_curve([], [], []), "at least one sample"),
        (lambda: M.routing_curve([0.1], [2], [1]), "slm_correct must be bool or 0/1"),
        (lambda: M.routing_curve([0.1], [1], [1], ties="random"), "valid: expected, stable"),
        (lambda: M.auroc([np.nan, 0.1], [1, 0]), "1 NaN value"),
    ],
)
def test_input_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- NaN policy -------------------------------------------------------------------------------


def test_nan_policy_most_uncertain_routes_nan_first():
    u, keep = M.apply_nan_policy([0.2, np.nan, 0.9], "most_uncertain")
    assert keep.all() and u[1] == np.inf and u[0] == 0.2
    # slm [1,0,1], llm [1,1,0]: offload order 1 (NaN), 2, 0
    # k=1: LLM 1 + SLM(0,2) 2 = 3/3; k=2: LLM 1+0 + SLM(0) 1 = 2/3; k=3: 2/3
    close(M.routing_curve(u, [1, 0, 1], [1, 1, 0]).accuracy, [2 / 3, 1.0, 2 / 3, 2 / 3])


def test_nan_policy_drop_and_unknown():
    u, keep = M.apply_nan_policy([0.2, np.nan, 0.9], "drop")
    np.testing.assert_array_equal(keep, [True, False, True])
    close(u[keep], [0.2, 0.9])
    with pytest.raises(ValueError, match="unknown nan policy 'ignore'; valid: most_uncertain, drop"):
        M.apply_nan_policy([0.1], "ignore")


# ---- AUROC ------------------------------------------------------------------------------------


def brute_force_auroc(u, slm):
    """P(uncertainty of an error > that of a correct answer), ties 1/2, by counting pairs."""
    err, ok = u[~slm], u[slm]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in err for b in ok)
    return wins / (len(err) * len(ok))


@pytest.mark.parametrize("seed, levels", [(0, None), (1, 3), (2, 10)])
def test_auroc_matches_pair_count(seed, levels):
    u, s, _ = rand_case(70, seed, levels)
    close(M.auroc(u, s), brute_force_auroc(u, s))


@pytest.mark.parametrize(
    "u, slm, expected",
    [
        # every error more uncertain than every correct answer
        ([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 1.0),
        # inverse ranking
        ([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 0.0),
        # all tied -> every pair counts 1/2
        ([0.5, 0.5, 0.5], [0, 1, 1], 0.5),
        # errors .9, .5; correct .5, .1: pairs 1 + 1 + 1/2 + 1 = 3.5 of 4
        ([0.9, 0.5, 0.5, 0.1], [0, 0, 1, 1], 0.875),
        # the 4-sample example: errors .9, .7 above correct .5, .1
        (U4, SLM4, 1.0),
    ],
)
def test_auroc_hand(u, slm, expected):
    close(M.auroc(np.asarray(u, float), np.asarray(slm, bool)), expected)


@pytest.mark.parametrize("slm", [[1, 1, 1], [0, 0, 0]])
def test_auroc_one_class_is_nan(slm):
    assert np.isnan(M.auroc([0.1, 0.2, 0.3], slm))


# ---- scalar summaries -------------------------------------------------------------------------


def test_area_and_gap_recovered_vs_random_hand_example():
    c, r, o = M.routing_curve(U4, SLM4, LLM4), M.random_curve(SLM4, LLM4), M.oracle_curve(SLM4, LLM4)
    close(M.curve_area(c), AREA4)
    close(M.curve_area(r), RANDOM_AREA4)
    close(M.curve_area(o), ORACLE_AREA4)
    close(M.gap_recovered_vs_random(c, r, o), 5 / 7)
    close(M.gap_recovered_vs_random(o, r, o), 1.0)
    close(M.gap_recovered_vs_random(r, r, o), 0.0)


def test_gap_recovered_vs_random_nan_when_oracle_is_random():
    # SLM never wrong where the LLM is right -> oracle == random line... here both always agree
    s = l = np.array([1, 0, 1], dtype=bool)
    c, r, o = M.routing_curve([0.1, 0.2, 0.3], s, l), M.random_curve(s, l), M.oracle_curve(s, l)
    assert np.isnan(M.gap_recovered_vs_random(c, r, o))


@pytest.mark.parametrize(
    "frac, expected",
    [
        (0.0, 0.0),  # target .5 reached at k=0
        (0.5, 0.25),  # target .625: first reached at k=1 (.75)
        (1.0, 0.25),  # target .75: k=1
    ],
)
def test_call_rate_for_gap(frac, expected):
    close(M.call_rate_for_gap(M.routing_curve(U4, SLM4, LLM4), frac), expected)


def test_call_rate_for_gap_on_random_line():
    # accuracy .5 + .25 r on k/4: target .5 + .8 * .25 = .7 first reached at k=4 (k=3 gives .6875)
    close(M.call_rate_for_gap(M.random_curve(SLM4, LLM4), 0.8), 1.0)


def test_call_rate_nan_without_gap_and_bad_frac():
    s = np.array([1, 1, 0, 0], dtype=bool)
    l = np.array([1, 0, 1, 0], dtype=bool)  # same accuracy as the SLM
    assert np.isnan(M.call_rate_for_gap(M.routing_curve(U4, s, l), 0.5))
    with pytest.raises(ValueError, match="frac must be in"):
        M.call_rate_for_gap(M.routing_curve(U4, s, l), 1.5)


@pytest.mark.parametrize(
    "u, slm, top, expected",
    [
        # most confident first: idx 0, 1, 2, 3; slm 1, 1, 0, 1; llm 1, 0, 1, 1 on the same queries
        ([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 1], 0.5, (2 / 2) / (1 / 2)),
        ([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 1], 0.75, (2 / 3) / (2 / 3)),
        ([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 1], 0.3, (2 / 2) / (1 / 2)),  # ceil(1.2) = 2
        ([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 1], 1.0, (3 / 4) / (3 / 4)),
        # tie at the cut: top 1 from {0, 1} (slm 1, 0; llm 1, 0) -> expected .5 / .5
        ([0.0, 0.0, 1.0, 1.0], [1, 0, 1, 1], 0.25, 0.5 / 0.5),
    ],
)
def test_relative_accuracy(u, slm, top, expected):
    # The paper divides by the LLM's accuracy on the same top-k queries (issue 8.9); the old
    # expected values divided by the LLM's accuracy on the whole dataset (0.8).
    close(M.relative_accuracy(np.array(u), np.array(slm, bool), np.array([1, 0, 1, 1], bool), top), expected)


def test_relative_accuracy_stable_ties_and_zero_llm():
    # stable: the first tied sample (slm correct, llm correct) is the most confident -> 1 / 1
    close(M.relative_accuracy([0.0, 0.0, 1.0], [1, 0, 1], [1, 1, 1], 0.1, ties="stable"), 1.0)
    assert np.isnan(M.relative_accuracy([0.0, 1.0], [1, 0], [0, 1], 0.5))


def test_curve_rms_distance():
    c = M.routing_curve(U4, SLM4, LLM4)
    assert M.curve_rms_distance(c, c) == 0.0
    # y = r (N=2) vs y = 0 (N=4): sqrt(mean over i=0..100 of (i/100)^2)
    #   = sqrt(338350 / (100^2 * 101)) since sum i^2 = 100*101*201/6 = 338350
    line = RoutingCurve(np.arange(3), np.array([0, 0.5, 1]), np.array([0, 0.5, 1.0]))
    zero = RoutingCurve(np.arange(5), np.linspace(0, 1, 5), np.zeros(5))
    close(M.curve_rms_distance(line, zero), np.sqrt(338350 / 1010000))
    # two flat curves .5 apart -> .5
    flat = RoutingCurve(np.arange(2), np.array([0.0, 1.0]), np.array([0.5, 0.5]))
    close(M.curve_rms_distance(zero, flat), 0.5)


# ---- bootstrap --------------------------------------------------------------------------------


def test_batched_stats_agree_with_scalar_functions():
    rows = [rand_case(40, seed, levels) for seed, levels in [(0, None), (1, 4), (2, 2)]]
    u, s, l = (np.stack(x) for x in zip(*rows))
    for ties in ("expected", "stable"):
        area = M.batch_area(u, s, l, ties)
        gap = M.batch_gap_recovered_vs_random(u, s, l, ties)
        apgr = M.batch_apgr(u, s, l, ties)
        for i in range(3):
            c = M.routing_curve(u[i], s[i], l[i], ties=ties)
            close(area[i], M.curve_area(c))
            close(gap[i], M.gap_recovered_vs_random(c, M.random_curve(s[i], l[i]), M.oracle_curve(s[i], l[i])))
            close(apgr[i], M.apgr(c))
    close(M.batch_auroc(u, s, l), [M.auroc(u[i], s[i]) for i in range(3)])


def test_bootstrap_deterministic_and_contains_estimate():
    u, s, l = rand_case(200, 5)
    u = u + 0.8 * ~s  # informative: errors more uncertain
    fns = {"auroc": M.batch_auroc, "area": M.batch_area, "apgr": M.batch_gap_recovered_vs_random}
    a = M.bootstrap_ci(u, s, l, fns, n_boot=300, seed=7)
    assert a == M.bootstrap_ci(u, s, l, fns, n_boot=300, seed=7)
    assert a != M.bootstrap_ci(u, s, l, fns, n_boot=300, seed=8)
    c = M.routing_curve(u, s, l)
    point = {
        "auroc": M.auroc(u, s),
        "area": M.curve_area(c),
        "apgr": M.gap_recovered_vs_random(c, M.random_curve(s, l), M.oracle_curve(s, l)),
    }
    for name, (lo, hi) in a.items():
        assert lo < point[name] < hi, name


def test_bootstrap_per_replicate_adapter_matches_batched():
    u, s, l = rand_case(50, 6, levels=5)
    fast = M.bootstrap_ci(u, s, l, {"auroc": M.batch_auroc}, n_boot=100, seed=1)
    slow = M.bootstrap_ci(u, s, l, {"auroc": M.per_replicate(lambda a, b, c: M.auroc(a, b))}, n_boot=100, seed=1)
    close(fast["auroc"], slow["auroc"])


def test_bootstrap_one_class_resamples_are_left_out():
    # 1 error in 30: many resamples have no error (AUROC NaN); the CI uses the others
    s = np.ones(30, dtype=bool)
    s[0] = False
    lo, hi = M.bootstrap_ci(np.linspace(1, 0, 30), s, s, {"auroc": M.batch_auroc}, n_boot=200)["auroc"]
    assert lo == hi == 1.0
    all_nan = M.bootstrap_ci(np.zeros(3), np.ones(3, bool), np.ones(3, bool), {"auroc": M.batch_auroc}, n_boot=5)
    assert all(np.isnan(all_nan["auroc"]))


def test_bootstrap_checks_stat_shape():
    with pytest.raises(ValueError, match="stat 'bad' returned shape"):
        M.bootstrap_ci(U4, SLM4, LLM4, {"bad": lambda u, s, l: np.zeros(2)}, n_boot=5)


# ---- summarize --------------------------------------------------------------------------------


def test_summarize_hand_example():
    out = M.summarize(U4, SLM4, LLM4, n_boot=50)
    assert set(out) == set(M.summary_keys())
    json.dumps(out)  # plain numbers
    assert type(out["n"]) is int and type(out["n_nan"]) is int and type(out["n_used"]) is int
    assert all(type(v) is float for k, v in out.items() if k not in ("n", "n_nan", "n_used"))
    expected = dict(
        n=4,
        n_nan=0,
        unscored_share=0.0,
        n_used=4,
        slm_acc=0.5,
        llm_acc=0.75,
        auroc=1.0,
        area=AREA4,
        random_area=RANDOM_AREA4,
        oracle_area=ORACLE_AREA4,
        apgr=APGR4,
        gap_recovered_vs_random=GAP_VS_RANDOM4,
        call_rate_50=0.25,
        call_rate_80=0.25,
    )
    for k, v in expected.items():
        close(out[k], v)
    for k in ("auroc", "area", "apgr", "gap_recovered_vs_random"):
        assert out[f"{k}_lo"] <= out[f"{k}_hi"]


def test_summarize_nan_policies():
    u = np.array([0.9, np.nan, 0.5, 0.7])
    most = M.summarize(u, SLM4, LLM4, n_boot=0)
    # NaN -> most uncertain: order 1, 0, 3, 2; gains 0, +1, +1, -1 -> acc .5, .5, .75, 1, .75
    assert most["n"] == 4 and most["n_nan"] == 1
    close(most["area"], (0.5 + 0.625 + 0.875 + 0.875) * 0.25)
    assert np.isnan(most["auroc_lo"])  # n_boot=0: no CI
    drop = M.summarize(u, SLM4, LLM4, nan_policy="drop", n_boot=0)
    # kept idx 0, 2, 3: slm 0, 1, 0 ; llm 1, 0, 1
    assert drop["n"] == 4 and drop["n_nan"] == 1
    close([drop["slm_acc"], drop["llm_acc"]], [1 / 3, 2 / 3])
    empty = M.summarize([np.nan, np.nan], [1, 0], [1, 1], nan_policy="drop")
    assert empty["n"] == 2 and empty["n_nan"] == 2 and np.isnan(empty["area"])


def test_summarize_is_fast():
    u, s, l = rand_case(300, 9, levels=10)
    M.summarize(u, s, l, n_boot=10)  # warm up imports
    t = time.perf_counter()
    M.summarize(u, s, l, n_boot=1000)
    assert time.perf_counter() - t < 2.0  # typically ~0.1 s; loose bound for busy CI machines


# ---- plot -------------------------------------------------------------------------------------


def test_plot_routing_writes_png(tmp_path):
    from jobs.figures import plot_routing  # matplotlib is imported only here

    curves = {f"perplexity (AUROC {M.auroc(U4, SLM4):.2f})": M.routing_curve(U4, SLM4, LLM4)}
    out = plot_routing(
        curves,
        tmp_path / "sub" / "routing.png",
        random=M.random_curve(SLM4, LLM4),
        oracle=M.oracle_curve(SLM4, LLM4),
        title="toy",
    )
    assert out == tmp_path / "sub" / "routing.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
