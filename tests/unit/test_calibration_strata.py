"""Thresholds of a stratified calibration set at stratum boundaries (issue 17.1).

The weighted quantile stops on the lowest *sampled* row of the stratum that completes the target
weight, with tie_frac 1, so the stratum's unsampled pool rows below that row are never routed:
u = 0..299, 30 equal-width bins of 10 rows, one row drawn per bin, target 0.5 routed 0.485 on
average. With equal-frequency bins (and ``scale: rank``) every default target is a boundary. The
cut now goes inside the stratum (``threshold_for_call_rate(..., strata=)``); these tests check the
mean realized call rate on the pool over 60 draws against each default target.
"""

from __future__ import annotations

import numpy as np
import pytest

from jobs.analysis import calibration as C


def pool(kind: str, n: int, seed: int = 0) -> C.Pool:
    rng = np.random.default_rng(seed)
    u = {
        "exp_cubed": lambda: rng.exponential(1.0, n) ** 3,  # unbounded, most mass near 0
        "beta": lambda: rng.beta(0.5, 4.0, n),  # 1 - probability, mass near 0
        "even": lambda: np.arange(float(n)),  # evenly spaced
    }[kind]()
    return C.Pool([f"r{i}" for i in range(n)], u, rng.random(n) < 0.6, rng.random(n) < 0.8)


def mean_realized(p: C.Pool, targets, binning: str, scale: str, draws: int = 60) -> np.ndarray:
    """Mean over ``draws`` calibration sets (seeds 0, 1, ...) of each target's realized call rate."""
    rates = []
    for seed in range(draws):
        cal = C.build_calibration_set({"a": p}, params=C.CalibrationParams(seed=seed, binning=binning, scale=scale))
        rates.append([C.expected_call_rate(p.uncertainty, cal.threshold(t)) for t in targets])
    return np.mean(rates, axis=0)


def test_the_issues_reproduction_routes_the_whole_boundary_stratum():
    p = pool("even", 300)
    (realized,) = mean_realized(p, [0.5], "equal_width", "uncertainty", draws=200)
    assert realized == pytest.approx(0.5, abs=1e-12)  # was 0.4852
    cal = C.build_calibration_set({"a": p}, params=C.CalibrationParams(seed=3))
    thr = cal.threshold(0.5)
    # the 15 upper bins (150..299) are routed, and nothing of the bin below: the lowest pool row
    # of the boundary stratum, whether drawn or not, with tie_frac 1
    assert (thr.value, thr.tie_frac) == (150.0, 1.0)


# equal-frequency bins (and scale rank, whose equal-width bins are equal-frequency) put every
# default target on a stratum boundary; pools of 80 rows (the defect's worst case), 300 and 2,000
@pytest.mark.parametrize("kind", ["exp_cubed", "beta", "even"])
@pytest.mark.parametrize("n", [80, 300, 2000])
@pytest.mark.parametrize("binning, scale", [("equal_freq", "uncertainty"), ("equal_width", "rank")])
def test_equal_frequency_thresholds_are_unbiased_at_every_default_target(kind, n, binning, scale):
    p = pool(kind, n)
    err = mean_realized(p, C.DEFAULT_TARGETS, binning, scale) - C.DEFAULT_TARGETS
    assert np.abs(err).max() <= 0.005, (kind, n, err)


@pytest.mark.parametrize("kind", ["exp_cubed", "beta", "even"])
def test_equal_width_thresholds_are_unbiased_at_every_default_target(kind):
    """Equal-width bins on a skewed score leave one bin with most of the pool, so one draw's
    realized rate varies by several points on small pools; 2,000 rows keep the 60-draw mean's
    own sampling error well under 0.005."""
    p = pool(kind, 2000)
    err = mean_realized(p, C.DEFAULT_TARGETS, "equal_width", "uncertainty") - C.DEFAULT_TARGETS
    assert np.abs(err).max() <= 0.005, (kind, err)


def test_a_cut_between_sampled_rows_interpolates_by_expected_rank():
    """One stratum of 9 rows [0, 8] drawn 2 of (frac 1/4.5 -> take 2): rows 6 and 2 drawn.
    E#{u >= s_j} = j (m + 1) / (t + 1) = 10/3 j; so #{u >= 6} ~ 3.33, #{u > 2} ~ 5.67,
    and #{u >= 0} = 9 (the stratum's lowest row)."""
    u = np.array([6.0, 2.0])
    strata = C.Strata(index=np.array([0, 0]), size=np.array([9.0]), lo=np.array([0.0]), hi=np.array([8.0]))

    def thr(rows):
        t = C.threshold_for_call_rate(u, rows / 9, strata=strata)
        return t.value, t.tie_frac

    assert thr(0) == (8.0, 0.0)  # route u > max: none
    assert thr(9) == (0.0, 1.0)  # route u >= min: all 9
    # 1.5 rows: between (8, tie 0: 0 rows) and (6, tie 0: 10/3 - 1 = 7/3 rows), by value
    assert thr(1.5) == pytest.approx((8.0 - 2.0 * 1.5 / (7 / 3), 0.0))
    # 3 rows: between (6, tie 0: 7/3) and (6, tie 1: 10/3): the drawn row's tie share
    assert thr(3) == pytest.approx((6.0, 2 / 3))
    # 4.5 rows: between (6, tie 1: 10/3) and (2, tie 0: 20/3 - 1), half way: value 4
    assert thr(4.5) == pytest.approx((4.0, 0.0))


def test_ties_and_the_unscored_stratum_keep_tie_fractions():
    """A stratum of tied rows is routed by tie_frac; unscored rows (+inf, most_uncertain) first."""
    rng = np.random.default_rng(1)
    u = np.r_[np.full(40, 0.2), np.full(60, 0.7), np.full(20, np.nan)]
    p = C.Pool([str(i) for i in range(len(u))], u, rng.random(len(u)) < 0.5, rng.random(len(u)) < 0.8)
    cal = C.build_calibration_set({"a": p}, params=C.CalibrationParams(n_bins=5, frac=0.1), nan_policy="most_uncertain")
    scored = np.where(np.isnan(u), np.inf, u)
    for t in (0.1, 1 / 6, 0.3, 0.5, 2 / 3, 0.9):
        thr = cal.threshold(t)
        assert C.expected_call_rate(scored, thr) == pytest.approx(t), t
