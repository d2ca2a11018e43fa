"""Calibration ("proxy routing") data: routing thresholds for a dataset with no labels.

Where this sits in the flow: per-sample records of one SLM + one UQ method on many datasets ->
**calibration** -> reports. Pure numpy functions over arrays; routing curves and distances come
from ``jobs.metrics``. A dataset's rows are a ``Pool``; how sets are drawn is one
``CalibrationParams`` (the grid's ``calibration`` block for one method), passed as ``params=``.

The paper's pipeline (Chuang et al. 2025, "Confident or Seek Stronger"):
  1. pool every dataset but the target; 2. take the pooled uncertainty distribution; 3. cut it
  into ``n_bins`` bins; 4. from each bin sample ``frac`` of its instances (a stratified subsample
  covering every confidence level) -> the calibration set; 5. on a new dataset, the threshold for
  call rate r is the r-quantile of the calibration uncertainties, and the calibration set's
  routing curve predicts the new dataset's curve.

Two corrections keep that recipe statistically right (issue 8.4):
  * weights: a bin of m rows contributes max(1, round(frac * m)) of them, so sparse bins (a skewed
    score's tail) are over-represented. Each selected row carries the inverse of its bin's sampling
    fraction, w = m / take (Horvitz-Thompson), so the weights of a set sum to the pool size, and
    every quantile, rate, accuracy and curve of a calibration set is weighted
    (``CalibrationSet.weight``; ``threshold_for_call_rate(..., weights=)``, ``calibration_curve``).
  * scale: the paper bins "the pooled confidence distribution" (step 2 of its recipe), not the raw
    uncertainty, which is unbounded for perplexity. ``CalibrationParams.scale`` maps u to
    a bounded confidence before binning (``to_confidence``; each UQ method declares its paper
    confidence in ``UQMethod.confidence``; the grid default ``calibration.scale: paper`` uses it).
    Narrow confidence bins keep the bin that holds a threshold small, so the weighted quantile's
    sampling error on the pool is small.
Because one draw is one random sample, transfer runs ``n_draws`` draws (seeds seed, seed + 1, ...;
the paper's three runs) and reports the mean and spread over them.

Convention: uncertainty higher = more uncertain; the MOST uncertain queries go to the LLM.

Routing rule for a ``Threshold(value, tie_frac)``: sample i goes to the LLM iff u_i > value;
samples with u_i == value go with probability ``tie_frac``. Every rate and accuracy here is the
exact expectation over those coin flips (no RNG), so call rates are exact even with ties and
constant scores. The expected accuracy as a function of the expected number routed is the
piecewise-linear interpolation of ``metrics.routing_curve(..., ties="expected")``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from jobs.metrics import (
    RoutingCurve,
    _as_bool,
    _as_uncertainty,
    _check_lengths,
    _offload_cumsum,
    apply_nan_policy,
    curve_rms_distance,
    random_curve,
    routing_curve,
)

BINNINGS: tuple[str, ...] = ("equal_width", "equal_freq")
#: which fit-role rows may feed calibration sets: only datasets with a real train/dev split, or
#: also the never-evaluated rows of test-only datasets
POOLS: tuple[str, ...] = ("train_dev", "fit")
#: the transfer analyses (jobs/analysis/findings.py): leave one dataset out, and calibrate on one dataset
#: group, apply on another
SPLITS: tuple[str, ...] = ("leave_one_out", "cross_group")
#: Scales a calibration set's bins are cut on (``to_confidence``); "uncertainty" = the raw score.
SCALES: tuple[str, ...] = ("uncertainty", "complement", "reciprocal", "exp_neg", "rank")
TRANSFER_METHODS: tuple[str, ...] = ("calibration", "in_domain", "fixed")
DISTANCES: tuple[str, ...] = ("wasserstein", "ks")
POOL_KEYS: tuple[str, ...] = ("sample_id", "uncertainty", "slm_correct", "llm_correct")
DEFAULT_TARGETS: tuple[float, ...] = tuple(i / 10 for i in range(1, 10))

# k = rate * N is snapped to the nearest integer when this close, so that e.g. 0.3 * 10
# (= 3.0000000000000004) gives tie_frac 1.0 on the 3rd value, not 4e-16 on the 4th.
_SNAP = 1e-9


# ---- pools and parameters ---------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Pool:
    """One dataset's labelled, scored rows for one (SLM, UQ method, LLM): what calibration sets are
    drawn from and what transfer is evaluated on (``jobs.analysis.findings`` reads them from the store).

    sample_id: the rows' ids, in row order; uncertainty: float array (NaN = the method could not
    score the row); slm_correct, llm_correct: bool arrays. Every function here that takes pools
    takes ``{dataset: Pool}``; a plain mapping with the ``POOL_KEYS`` is accepted too (``Pool.of``).
    """

    sample_id: Sequence[str]
    uncertainty: np.ndarray
    slm_correct: np.ndarray
    llm_correct: np.ndarray

    def __len__(self) -> int:
        return len(self.sample_id)

    @classmethod
    def of(cls, pool: Pool | Mapping[str, Any], name: str = "pool") -> Pool:
        """``pool`` itself, or the Pool of a mapping with the ``POOL_KEYS`` (ValueError naming the
        keys it lacks; ``name``: the dataset, for the message)."""
        if isinstance(pool, Pool):
            return pool
        missing = [k for k in POOL_KEYS if k not in pool]
        if missing:
            raise ValueError(f"pools[{name!r}] lacks {missing}; needs {list(POOL_KEYS)}, has {sorted(pool)}")
        return cls(*(pool[k] for k in POOL_KEYS))


Pools = Mapping[str, Pool]  # dataset -> its pool


def calibration_scale(cal_conf: Mapping[str, Any], method: str | None) -> str:
    """The scale calibration bins are cut on for UQ method ``method`` (``calibration.scale``):
    "paper" (the default) = the method's own confidence (``UQMethod.confidence``; "rank" for a name
    the registry does not know), otherwise the configured scale for every method."""
    scale = cal_conf.get("scale", "paper")
    if scale != "paper":
        return scale
    from jobs.uq import UQ_METHODS

    return UQ_METHODS.get(method).confidence if method is not None and method in UQ_METHODS else "rank"


@dataclass(frozen=True)
class CalibrationParams:
    """How calibration sets are drawn and which call rates they are asked for: a grid's
    ``calibration`` block (``orchestrator.config.CalibrationConf``) for one UQ method, with its
    scale resolved (``from_conf``). Passed as ``params=`` to ``build_calibration_set``,
    ``transfer_table`` and ``curve_transfer``, and so by ``jobs.analysis.findings`` and
    ``orchestrator.calibrate``.

    n_bins, binning: the bins the pooled scores are cut into ("equal_width" | "equal_freq");
    frac: the share of each bin drawn; seed: the draw's RNG seed; scale: what the bins are cut on
    (``to_confidence``; never "paper" here); n_draws: how many sets transfer draws (seeds ``seeds``);
    targets: the target call rates thresholds are chosen for. Bad values are a ValueError.
    """

    n_bins: int = 30
    frac: float = 0.1
    seed: int = 50
    binning: str = "equal_width"
    scale: str = "uncertainty"
    n_draws: int = 1
    targets: tuple[float, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        if self.binning not in BINNINGS:
            raise ValueError(f"unknown binning {self.binning!r}; valid: {', '.join(BINNINGS)}")
        if self.scale not in SCALES:
            raise ValueError(f"unknown calibration scale {self.scale!r}; valid: {', '.join(SCALES)}")
        if int(self.n_bins) != self.n_bins or self.n_bins < 1:
            raise ValueError(f"n_bins must be a positive integer; got {self.n_bins!r}")
        if not 0.0 < self.frac <= 1.0:
            raise ValueError(f"frac must be in (0, 1]; got {self.frac!r}")
        if int(self.n_draws) != self.n_draws or self.n_draws < 1:
            raise ValueError(f"n_draws must be a positive integer; got {self.n_draws!r}")
        object.__setattr__(self, "targets", tuple(_check_rate(t, "target call rate") for t in self.targets))

    @classmethod
    def from_conf(cls, cal_conf: Mapping[str, Any], method: str | None = None) -> CalibrationParams:
        """The parameters of a ``calibration`` block (n_bins, frac, seed, binning, targets; scale
        default "paper", n_draws default 1) for UQ method ``method``: scale "paper" becomes the
        method's own confidence (``calibration_scale``)."""
        return cls(
            n_bins=int(cal_conf["n_bins"]),
            frac=float(cal_conf["frac"]),
            seed=int(cal_conf["seed"]),
            binning=cal_conf["binning"],
            scale=calibration_scale(cal_conf, method),
            n_draws=int(cal_conf.get("n_draws", 1)),
            targets=tuple(cal_conf["targets"]),
        )

    @property
    def seeds(self) -> list[int]:
        """The seeds of the ``n_draws`` sets: seed, seed + 1, ..."""
        return [int(self.seed) + i for i in range(int(self.n_draws))]

    def with_seed(self, seed: int) -> CalibrationParams:
        """The same parameters, drawing with ``seed``."""
        return replace(self, seed=int(seed))


# ---- thresholds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """Route u > value to the LLM; u == value with probability tie_frac (in [0, 1])."""

    value: float
    tie_frac: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.tie_frac <= 1.0:
            raise ValueError(f"Threshold.tie_frac must be in [0, 1]; got {self.tie_frac!r}")
        if math.isnan(self.value):
            raise ValueError("Threshold.value must not be NaN")


def _check_rate(rate: float, name: str = "rate") -> float:
    r = float(rate)
    if not 0.0 <= r <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1]; got {rate!r}")
    return r


def _as_weights(weights, n: int, name: str = "weights") -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like the scores; got {w.shape}")
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError(f"{name} must be finite and > 0")
    return w


@dataclass(frozen=True, eq=False)
class Strata:
    """The strata a calibration set was drawn from, for ``threshold_for_call_rate(..., strata=)``.

    index: (n,) int, the stratum of each calibration row (row order of the set); size: (S,) the
    number of pool rows of each stratum (m_b); lo, hi: (S,) the smallest and largest pool
    uncertainty of each stratum (+inf for the unscored stratum of nan_policy "most_uncertain").
    Strata are contiguous, disjoint ranges of uncertainty (bins on a monotone scale), so they are
    ordered by ``hi``. A stratum with no pool row has size 0 and is never read.
    """

    index: np.ndarray
    size: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def from_record(cls, record: Mapping[str, Any], index: Sequence[int | None]) -> Strata | None:
        """The strata of a stored set: its record's ``n_per_bin``, ``bin_u_min`` and ``bin_u_max``
        (None = no pool row, or the unscored stratum's +inf) and its rows' stratum; None for a set
        stored before strata were kept (its thresholds are then weighted quantiles)."""
        if "bin_u_min" not in record or any(i is None for i in index):
            return None
        size = np.asarray(record["n_per_bin"], dtype=np.float64)

        def bound(xs):
            return np.array([np.inf if x is None and m else np.nan if x is None else x for x, m in zip(xs, size)])

        return cls(np.asarray(index, dtype=np.int64), size, bound(record["bin_u_min"]), bound(record["bin_u_max"]))


def _stratified_anchors(u: np.ndarray, strata: Strata) -> list[tuple[float, float, float]]:
    """The (value, tie_frac, expected pool rows routed) points of ``threshold_for_call_rate``'s
    stratified rule, in increasing count (see its docstring)."""
    idx = np.asarray(strata.index)
    if idx.shape != u.shape:
        raise ValueError(f"strata.index must have shape {u.shape} like the scores; got {idx.shape}")
    anchors: list[tuple[float, float, float]] = []
    before = 0.0
    for b in sorted(set(idx.tolist()), key=lambda b: -float(strata.hi[b])):
        m, lo, hi = float(strata.size[b]), float(strata.lo[b]), float(strata.hi[b])
        s = np.sort(u[idx == b])[::-1]
        t = len(s)
        if not (1 <= t <= m) or s[0] > hi or s[-1] < lo:
            raise ValueError(
                f"stratum {b}: {t} sampled row(s) in [{s[-1]}, {s[0]}] do not fit its pool of {m:g} row(s) in [{lo}, {hi}]"
            )
        g = (m + 1.0) / (t + 1.0)  # E[rank of the j-th largest of t draws among m] = j * g
        anchors.append((hi, 0.0, before))
        values, first = np.unique(-s, return_index=True)  # distinct values, descending
        last = np.append(first[1:], t) - 1
        for v, j0, j1 in zip(-values, first + 1, last + 1):
            gt = before + (0.0 if v == hi else j0 * g - 1.0)
            ge = before + (m if v == lo else j1 * g)
            anchors += [(float(v), 0.0, gt), (float(v), 1.0, ge)]
        anchors.append((lo, 1.0, before + m))
        before += m
    return anchors


def _stratified_threshold(u: np.ndarray, r: float, strata: Strata) -> Threshold:
    anchors = _stratified_anchors(u, strata)
    total = anchors[-1][2]
    k = r * total
    counts = np.array([a[2] for a in anchors])
    hit = np.flatnonzero(np.abs(counts - k) <= _SNAP * max(total, 1.0))
    if hit.size:  # on an anchor; between strata, the lowest row of the one above, tie_frac 1
        return Threshold(anchors[hit[0]][0], anchors[hit[0]][1])
    i = int(np.searchsorted(counts, k))  # counts[i - 1] < k < counts[i]
    (va, fa, ca), (vb, fb, cb) = anchors[i - 1], anchors[i]
    x = (k - ca) / (cb - ca)
    if va == vb:  # one value: the share of its ties routed
        return Threshold(va, min(1.0, max(0.0, fa + x * (fb - fa))))
    return Threshold(float(va + x * (vb - va)), 0.0)


def threshold_for_call_rate(cal_u, rate: float, weights=None, strata: Strata | None = None) -> Threshold:
    """Threshold whose expected routed fraction on ``cal_u`` is exactly ``rate`` (or, with
    ``strata``, on the pool a stratified calibration set ``cal_u`` was drawn from).

    cal_u: 1-D uncertainties, no NaN. rate: fraction in [0, 1] (ValueError outside).
    weights: optional positive weight per score (a calibration set's ``weight``): then the routed
    *weight* fraction is exactly ``rate`` (a weighted quantile); None = every score weighs 1.
    The value is always one of the scores: with s sorted descending and k = rate * N, it is
    s[ceil(k) - 1] (s[0] with tie_frac 0 for k = 0), and tie_frac = (k - #{u > value}) /
    #{u == value}. So constant scores give value = that score and tie_frac = rate, and on data
    with distinct scores and integer k the k-th largest score is routed with tie_frac 1
    (i.e. "route u >= value"). With weights, counts become sums of weights: the value is the first
    score (descending) whose cumulative weight reaches rate * total weight.

    strata (a stratified calibration set's ``CalibrationSet.strata``; ``weights`` is then not
    read): the cut is placed *inside* the stratum, unbiased for the pool rows routed. The weighted
    quantile above is biased low there: when rate * N is a stratum boundary it stops on the lowest
    *sampled* row of the stratum with tie_frac 1, and the stratum's unsampled rows below it are
    never routed (u = 0..299, 30 bins, frac 0.1, rate 0.5: 0.485 routed on average, issue 17.1).
    The rule: a stratum of m pool rows in [lo, hi] with t sampled rows s_1 >= ... >= s_t. The
    j-th largest of t rows drawn without replacement from m has expected rank j (m + 1) / (t + 1)
    among them (order statistics of a simple random sample; e.g. David & Nagaraja, "Order
    Statistics", 3rd ed., sec. 2.1), so among the pool rows of the stratum, E#{u >= s_j} =
    j (m + 1) / (t + 1) and E#{u > s_j} = that minus 1 (a tie group of sampled rows j0..j1: j0
    and j1); #{u > hi} = 0 and #{u >= lo} = m exactly. These expected counts, added to the pool
    rows of the strata above, are anchors (value, tie_frac): (hi, 0), (s_j, 0), (s_j, 1), (lo, 1).
    For rate * N between two anchors the threshold interpolates linearly: the tie share of one
    value, or the value itself between two values (tie_frac 0, route u > value; unbiased for rows
    spread evenly in value up to the pool's granularity of one row, approximate otherwise). At a
    boundary between strata it is (lo of the stratum above, 1): every row of the strata above is
    routed, as the unweighted rule routes "u >= value" at integer k. So the value need not be one
    of the scores; constant scores still give value = that score and tie_frac = rate, and strata
    sampled in full (frac 1) give the unweighted rule's threshold. Measured (60 draws, pools of
    80, 300 and 2,000 rows: exponential cubed, beta(0.5, 4), evenly spaced; equal-width and
    equal-frequency bins, scale rank): the mean realized call rate is within 0.005 of every
    default target (``tests/unit/test_calibration_strata.py``).
    """
    r = _check_rate(rate)
    u = _as_uncertainty(cal_u, "cal_u")
    n = _check_lengths(cal_u=u)
    if strata is not None:
        return _stratified_threshold(u, r, strata)
    w = _as_weights(weights, n)
    if w is None:
        return _unweighted_threshold(u, r)
    return _weighted_threshold(u, r, w)


def _unweighted_threshold(u: np.ndarray, r: float) -> Threshold:
    """``threshold_for_call_rate`` with every score weighing 1: s[ceil(r N) - 1] of the scores
    sorted descending (r N snapped to an integer within ``_SNAP``)."""
    n = len(u)
    k = r * n
    if abs(k - round(k)) < _SNAP:
        k = float(round(k))
    s = np.sort(u)[::-1]
    value = s[0] if k == 0 else s[math.ceil(k) - 1]
    above = int(np.sum(u > value))
    tied = int(np.sum(u == value))
    tie_frac = min(1.0, max(0.0, (k - above) / tied))
    return Threshold(float(value), float(tie_frac))


def _weighted_threshold(u: np.ndarray, r: float, w: np.ndarray) -> Threshold:
    """``threshold_for_call_rate`` with weights: the first score (descending) whose cumulative
    weight reaches r * total weight."""
    n = len(u)
    total = float(w.sum())
    k = r * total
    order = np.argsort(-u, kind="stable")
    cw = np.cumsum(w[order])
    j = min(int(np.searchsorted(cw, k - _SNAP * total, side="left")), n - 1)
    value = float(u[order[j]])
    above = float(w[u > value].sum())
    tied = float(w[u == value].sum())
    frac = (k - above) / tied
    if abs(frac - round(frac)) < _SNAP:
        frac = float(round(frac))
    return Threshold(value, float(min(1.0, max(0.0, frac))))


def route_probability(u, thr: Threshold) -> np.ndarray:
    """Per-sample probability of going to the LLM under ``thr``: 1, tie_frac or 0."""
    u = _as_uncertainty(u)
    return np.where(u > thr.value, 1.0, np.where(u == thr.value, thr.tie_frac, 0.0))


def expected_call_rate(u, thr: Threshold, weights=None) -> float:
    """Expected fraction of ``u`` routed to the LLM under ``thr`` (over the tie coin flips);
    with ``weights``, the routed fraction of the total weight."""
    p = route_probability(u, thr)
    n = _check_lengths(uncertainty=p)
    w = _as_weights(weights, n)
    return float(p.mean()) if w is None else float(np.sum(w * p) / w.sum())


def expected_accuracy(u, slm_correct, llm_correct, thr: Threshold, weights=None) -> float:
    """Expected accuracy of the mixed system under ``thr``: mean of p_i*llm_i + (1-p_i)*slm_i
    (weighted mean with ``weights``)."""
    p = route_probability(u, thr)
    slm, llm = _as_bool(slm_correct, "slm_correct"), _as_bool(llm_correct, "llm_correct")
    n = _check_lengths(uncertainty=p, slm_correct=slm, llm_correct=llm)
    w = _as_weights(weights, n)
    acc = p * llm + (1.0 - p) * slm
    return float(acc.mean()) if w is None else float(np.sum(w * acc) / w.sum())


def weighted_routing_curve(uncertainty, slm_correct, llm_correct, weights=None) -> RoutingCurve:
    """Routing curve of weighted rows (ties="expected"): after routing the k most uncertain rows,
    ratio = their share of the total weight and accuracy = the weighted accuracy of the mix.

    Inside a tie group both grow linearly in k, so the curve between the group's ends is the
    straight line the tie coin flips give in expectation. weights None (or all equal) gives
    ``metrics.routing_curve(..., ties="expected")``. k, ratio, accuracy: (N + 1,) arrays; the
    ratio grid is not uniform, which ``curve_area`` and ``curve_rms_distance`` allow.
    """
    u = _as_uncertainty(uncertainty)
    slm, llm = _as_bool(slm_correct, "slm_correct"), _as_bool(llm_correct, "llm_correct")
    n = _check_lengths(uncertainty=u, slm_correct=slm, llm_correct=llm)
    w = _as_weights(weights, n)
    if w is None:
        return routing_curve(u, slm, llm, ties="expected")
    total = w.sum()
    gain = w * (llm.astype(np.float64) - slm)
    cum_w = _offload_cumsum(u[None], w[None], "expected")[0]
    cum_g = _offload_cumsum(u[None], gain[None], "expected")[0]
    ratio = np.clip(cum_w / total, 0.0, 1.0)
    ratio[0], ratio[-1] = 0.0, 1.0
    arrays = [np.arange(n + 1), ratio, (np.sum(w * slm) + cum_g) / total]
    for a in arrays:
        a.setflags(write=False)
    return RoutingCurve(*arrays, ties="expected")


def threshold_for_accuracy(
    cal_u, cal_slm, cal_llm, target_acc: float, weights=None, strata: Strata | None = None
) -> Threshold | None:
    """Threshold at the smallest call rate whose expected accuracy on the calibration data
    reaches ``target_acc``; None when no call rate reaches it.

    The expected accuracy after routing x (real, 0..N) samples is the linear interpolation of the
    ``ties="expected"`` routing curve between integer k, so the smallest x is found exactly on
    the segment where the curve first crosses the target (1e-12 tolerance for cumsum rounding).
    weights: as in ``threshold_for_call_rate`` (the weighted curve, ``weighted_routing_curve``);
    strata: as there (the call rate found is cut inside its stratum).
    """
    t = float(target_acc)
    if math.isnan(t):
        raise ValueError("target_acc must not be NaN")
    if weights is None:
        acc = routing_curve(cal_u, cal_slm, cal_llm, ties="expected").accuracy
        ratio = np.arange(len(acc)) / (len(acc) - 1)
    else:
        c = weighted_routing_curve(cal_u, cal_slm, cal_llm, weights)
        acc, ratio = c.accuracy, c.ratio
    n = len(acc) - 1
    reached = np.flatnonzero(acc >= t - 1e-12)
    if reached.size == 0:
        return None
    k = int(reached[0])
    if k == 0:
        x = 0.0
    else:
        lo, hi = acc[k - 1], acc[k]  # lo < target <= hi (up to tolerance)
        f = min(1.0, max(0.0, (t - lo) / (hi - lo)))
        if weights is None:
            return threshold_for_call_rate(cal_u, (k - 1 + f) / n)
        x = ratio[k - 1] + f * (ratio[k] - ratio[k - 1])
    return threshold_for_call_rate(cal_u, x, weights=weights, strata=strata)


def fixed_threshold(value: float) -> Threshold:
    """The untuned baseline: route u > value (e.g. 0.5 for probability-style uncertainties)."""
    return Threshold(float(value), 0.0)


# ---- the calibration set ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CalibrationSet:
    """A stratified subsample of pooled datasets, with SLM and LLM correctness.

    dataset, sample_id: str arrays (n,); uncertainty: float array (n,); slm_correct, llm_correct:
    bool arrays (n,). Rows are in pooled order (datasets sorted by name, then original order).
    record: plain-JSON description of what went in (see ``build_calibration_set``).
    weight: float array (n,), each row's inverse sampling fraction (its bin's m / take; they sum
    to the pool size); None = every row weighs 1 (a set stored before weights existed).
    strata: the stratum of each row and each stratum's pool size and uncertainty range: thresholds
    then place their cut inside the stratum (``threshold_for_call_rate``); None = the weighted
    quantile (a set stored before strata were kept).
    """

    dataset: np.ndarray
    sample_id: np.ndarray
    uncertainty: np.ndarray
    slm_correct: np.ndarray
    llm_correct: np.ndarray
    record: dict
    weight: np.ndarray | None = None
    strata: Strata | None = None

    def __len__(self) -> int:
        return len(self.uncertainty)

    def threshold(self, rate: float) -> Threshold:
        """The threshold for call rate ``rate`` on the pool: the cut inside the stratum
        (``strata``), else the weighted quantile."""
        return threshold_for_call_rate(self.uncertainty, rate, weights=self.weight, strata=self.strata)

    def expected_accuracy(self, thr: Threshold) -> float:
        """The set's (weighted) expected accuracy under ``thr``: the predicted accuracy."""
        return expected_accuracy(self.uncertainty, self.slm_correct, self.llm_correct, thr, weights=self.weight)


def calibration_curve(cal: CalibrationSet) -> RoutingCurve:
    """The calibration set's routing curve, each row weighted by ``cal.weight``: the paper's
    prediction of a new dataset's curve (``weighted_routing_curve``)."""
    return weighted_routing_curve(cal.uncertainty, cal.slm_correct, cal.llm_correct, cal.weight)


def to_confidence(u, scale: str) -> np.ndarray:
    """Map finite uncertainties to the scale a calibration set's bins are cut on.

    The paper bins "the pooled confidence distribution"; every UQ method defines a confidence
    (higher = more certain), and ``UQMethod.confidence`` names the map from our uncertainty:
      "complement":  c = 1 - u, for u = 1 - probability in [0, 1] (avg token prob, p(True),
                     verbalized, Jaccard's 1 - U, probes);
      "reciprocal":  c = 1 / u, for u = perplexity = exp(mean NLL) >= 1; the paper's confidence
                     "1 / exp(mean negative log-likelihood)", in (0, 1];
      "exp_neg":     c = exp(-u), for unbounded u >= 0 in nats (mean token entropy, max token NLL:
                     exp(-max NLL) is the least likely token's probability), in (0, 1];
      "rank":        c = fraction of the pooled scores that are >= u, in (0, 1]: scale-free, any
                     monotone method gives the same bins (equal-width on it = equal-frequency);
      "uncertainty": c = u, the raw score (the behaviour before bins were cut on confidence).
    Every map is monotone (decreasing, except "uncertainty"), so a bin holds a contiguous range of
    uncertainties and thresholds are unchanged; only which rows share a bin changes.
    """
    u = np.asarray(u, dtype=np.float64)
    if scale == "uncertainty":
        return u.copy()
    if scale == "complement":
        return 1.0 - u
    if scale == "reciprocal":
        if u.size and not (u > 0).all():
            raise ValueError(
                "scale reciprocal needs uncertainties > 0 (a perplexity is >= 1); "
                f"got min {float(u.min())!r}; use exp_neg or rank for this score"
            )
        return 1.0 / u
    if scale == "exp_neg":
        return np.exp(-u)
    if scale == "rank":
        s = np.sort(u)
        return (len(u) - np.searchsorted(s, u, side="left")) / max(len(u), 1)
    raise ValueError(f"unknown calibration scale {scale!r}; valid: {', '.join(SCALES)}")


def _pool_arrays(name: str, pool: Pool | Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    pool = Pool.of(pool, name)
    ids = np.asarray(pool.sample_id).astype(str)
    u = _as_uncertainty(pool.uncertainty, f"pools[{name!r}]['uncertainty']", allow_nan=True)
    slm = _as_bool(pool.slm_correct, f"pools[{name!r}]['slm_correct']")
    llm = _as_bool(pool.llm_correct, f"pools[{name!r}]['llm_correct']")
    lengths = {k: len(v) for k, v in zip(POOL_KEYS, (ids, u, slm, llm))}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"pools[{name!r}] arrays must have the same length; got {lengths}")
    n_inf = int(np.isinf(u).sum())
    if n_inf:
        raise ValueError(f"pools[{name!r}]['uncertainty'] has {n_inf} infinite value(s); bins need finite scores")
    return ids, u, slm, llm


def _bin_edges(u: np.ndarray, n_bins: int, binning: str) -> np.ndarray:
    if binning == "equal_width":
        return np.linspace(u.min(), u.max(), n_bins + 1)
    if binning == "equal_freq":
        return np.quantile(u, np.linspace(0.0, 1.0, n_bins + 1))
    raise ValueError(f"unknown binning {binning!r}; valid: {', '.join(BINNINGS)}")


def _bin_index(u: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: [e_j, e_{j+1}), the last bin closed; out-of-range values clip to the
    first or last bin. Repeated edges (equal_freq with ties) leave empty bins."""
    return np.searchsorted(edges[1:-1], u, side="right")


DEFAULT_PARAMS = CalibrationParams()


def build_calibration_set(
    pools: Pools,
    *,
    exclude: Iterable[str] = (),
    params: CalibrationParams = DEFAULT_PARAMS,
    nan_policy: str = "drop",
) -> CalibrationSet:
    """Stratified calibration set from every dataset in ``pools`` not in ``exclude``.

    pools[dataset] = a ``Pool`` of one SLM + one UQ method; params: n_bins, frac, seed, binning and
    scale below (``CalibrationParams``; n_draws and targets are not read here).
    NaN uncertainties (the method could not score) follow ``nan_policy``: "drop" removes them (and
    counts them); "most_uncertain" keeps them as +inf, as the router treats them (sent to the LLM
    first), in a stratum of their own after the bins, sampled at the same ``frac`` -- so a
    threshold from the set accounts for the share of unscored queries. Infinite inputs are an error.
    The pooled scores, mapped by ``to_confidence(u, scale)`` (the grid passes each method's
    paper confidence; the default "uncertainty" bins the raw score), are cut into ``n_bins`` bins
    ("equal_width" over [min, max], or "equal_freq" at the quantiles); from each non-empty bin of
    m instances, take = max(1, floor(frac * m + 0.5)) are drawn without replacement with
    ``np.random.default_rng(seed)``, bins in ascending order, and each drawn row gets the weight
    m / take. Datasets are pooled in sorted name order, so the result does not depend on dict
    order. Use the set through its weights (``CalibrationSet.threshold``, ``calibration_curve``):
    unweighted, sparse bins are over-represented.

    record: datasets, excluded, n_pooled_per_dataset (after NaN drop), n_selected_per_dataset,
    n_nan_dropped, n_nan_dropped_per_dataset, n_pooled, n_selected, n_per_bin,
    n_selected_per_bin, bin_weights (m / take, 0 for empty bins), bin_edges (on the scale),
    bin_u_min, bin_u_max (each stratum's pool uncertainty range, the NaN stratum last; None =
    empty or +inf), n_bins, binning, scale, frac, seed. The set's ``strata`` (each row's stratum
    and these ranges) let thresholds cut inside a stratum (``threshold_for_call_rate``).
    """
    n_bins, binning, scale = int(params.n_bins), params.binning, params.scale
    excluded, names = _pooled_names(pools, exclude)
    if nan_policy not in ("drop", "most_uncertain"):
        raise ValueError(f"unknown nan policy {nan_policy!r}; valid: drop, most_uncertain")
    keep_nan = nan_policy == "most_uncertain"
    ds, ids, u, slm, llm, nan_per = _pool_rows(pools, names, keep_nan)
    finite = np.isfinite(u)
    c = np.zeros(len(u))
    c[finite] = to_confidence(u[finite], scale)
    edges = _bin_edges(c[finite], n_bins, binning) if finite.any() else np.zeros(n_bins + 1)
    bins = np.where(finite, _bin_index(c, edges), n_bins)  # NaN stratum last
    draw = _draw_strata(bins, u, n_bins + (1 if keep_nan else 0), params.frac, params.seed)
    idx = draw.idx
    arrays = [ds[idx], ids[idx], u[idx], slm[idx], llm[idx], draw.weight[idx]]
    for a in arrays:
        a.setflags(write=False)
    record = {
        "datasets": names,
        "excluded": excluded,
        "n_pooled_per_dataset": {d: int(np.sum(ds == d)) for d in names},
        "n_selected_per_dataset": {d: int(np.sum(arrays[0] == d)) for d in names},
        **_nan_record(nan_policy, nan_per, u[idx]),
        **draw.record(len(u), edges, params),
    }
    *cols, w = arrays
    strata = Strata(index=bins[idx], size=np.array(draw.n_per_bin, dtype=np.float64), lo=draw.lo, hi=draw.hi)
    return CalibrationSet(*cols, record=record, weight=w, strata=strata)


def _pooled_names(pools: Pools, exclude: Iterable[str]) -> tuple[list[str], list[str]]:
    """(the excluded datasets, the datasets to pool), both sorted; every excluded one must be known."""
    excluded = sorted(set(exclude))
    unknown = [d for d in excluded if d not in pools]
    if unknown:
        raise ValueError(f"exclude names unknown dataset(s) {unknown}; available: {sorted(pools)}")
    names = sorted(d for d in pools if d not in excluded)
    if not names:
        raise ValueError(f"no dataset left to pool after excluding {excluded}")
    return excluded, names


def _pool_rows(
    pools: Pools, names: list[str], keep_nan: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """The rows of ``names``' pools, concatenated in that order: (dataset, sample id, uncertainty
    (NaN as +inf when ``keep_nan``, else dropped), slm_correct, llm_correct, dataset -> its NaN count)."""
    parts: list[tuple[np.ndarray, ...]] = []
    nan_per: dict[str, int] = {}
    for name in names:
        ids, u, slm, llm = _pool_arrays(name, pools[name])
        keep = np.ones(len(u), bool) if keep_nan else ~np.isnan(u)
        nan_per[name] = int(np.isnan(u).sum())
        parts.append(
            (np.full(int(keep.sum()), name), ids[keep], np.where(np.isnan(u), np.inf, u)[keep], slm[keep], llm[keep])
        )
    ds, ids, u, slm, llm = (np.concatenate([p[i] for p in parts]) for i in range(5))
    if not np.isfinite(u).any() and not (keep_nan and len(u)):
        raise ValueError(f"no scored (non-NaN) sample in datasets {names}")
    return ds, ids, u, slm, llm, nan_per


def _nan_record(nan_policy: str, nan_per: dict[str, int], selected_u: np.ndarray) -> dict:
    """The calibration set record's NaN counts (``build_calibration_set``)."""
    keep_nan = nan_policy == "most_uncertain"
    return {
        "nan_policy": nan_policy,
        "n_nan_dropped": 0 if keep_nan else int(sum(nan_per.values())),
        "n_nan_dropped_per_dataset": {d: 0 for d in nan_per} if keep_nan else nan_per,
        "n_nan_kept": int(sum(nan_per.values())) if keep_nan else 0,
        "n_nan_selected": int(np.sum(~np.isfinite(selected_u))),
    }


@dataclass(frozen=True)
class _StrataDraw:
    """One stratified draw (``_draw_strata``): idx, the drawn pool rows (sorted); weight, each pool
    row's m / take (0 in a stratum drawn from not at all); lo, hi: each stratum's uncertainty
    range (NaN: empty); per stratum: its pool size, how many were drawn and the weight."""

    idx: np.ndarray
    weight: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_per_bin: list[int]
    n_selected_per_bin: list[int]
    bin_weights: list[float]

    def record(self, n_pooled: int, edges: np.ndarray, params: CalibrationParams) -> dict:
        """The calibration set record's keys from n_pooled on (``build_calibration_set``)."""
        return {
            "n_pooled": int(n_pooled),
            "n_selected": int(len(self.idx)),
            "n_per_bin": self.n_per_bin,
            "n_selected_per_bin": self.n_selected_per_bin,
            "bin_weights": self.bin_weights,
            "bin_edges": [float(e) for e in edges],
            "n_bins": int(params.n_bins),
            "binning": params.binning,
            "scale": params.scale,
            "frac": float(params.frac),
            "seed": int(params.seed),
            # plain JSON: None = an empty bin, or the unscored stratum's +inf (``Strata.from_record``)
            "bin_u_min": [float(x) if np.isfinite(x) else None for x in self.lo],
            "bin_u_max": [float(x) if np.isfinite(x) else None for x in self.hi],
        }


def _draw_strata(bins: np.ndarray, u: np.ndarray, n_strata: int, frac: float, seed: int) -> _StrataDraw:
    """From each non-empty stratum of m rows (``bins`` = each row's stratum), draw
    max(1, floor(frac * m + 0.5)) without replacement with ``np.random.default_rng(seed)``, strata in
    ascending order."""
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    weight = np.zeros(len(u))
    u_lo, u_hi = np.full(n_strata, np.nan), np.full(n_strata, np.nan)
    n_per_bin, n_sel_per_bin, bin_weights = [], [], []
    for b in range(n_strata):
        members = np.flatnonzero(bins == b)
        m = len(members)
        take = max(1, math.floor(frac * m + 0.5)) if m else 0
        n_per_bin.append(m)
        n_sel_per_bin.append(take)
        bin_weights.append(m / take if take else 0.0)
        if take:
            chosen.append(rng.choice(members, size=take, replace=False))
            weight[members] = m / take
            u_lo[b], u_hi[b] = u[members].min(), u[members].max()
    idx = np.sort(np.concatenate(chosen))
    return _StrataDraw(idx, weight, u_lo, u_hi, n_per_bin, n_sel_per_bin, bin_weights)


# ---- transfer evaluation (leave one dataset out) ----------------------------------------------


def _heldout_arrays(pools: Pools, name: str, nan_policy: str):
    if name not in pools:
        raise ValueError(f"unknown held-out dataset {name!r}; available: {sorted(pools)}")
    _, u_raw, slm, llm = _pool_arrays(name, pools[name])
    u, keep = apply_nan_policy(u_raw, nan_policy)
    u, slm, llm = u[keep], slm[keep], llm[keep]
    if len(u) == 0:
        raise ValueError(f"held-out dataset {name!r} has no scored sample")
    return u, slm, llm, int(np.isnan(u_raw).sum())


def transfer_table(
    pools: Pools,
    *,
    params: CalibrationParams = DEFAULT_PARAMS,
    methods: Iterable[str] = TRANSFER_METHODS,
    fixed_value: float = 0.5,
    in_domain_frac: float = 0.5,
    nan_policy: str = "most_uncertain",
    calibration_pools: Pools | None = None,
    in_domain_pools: Pools | None = None,
    heldouts: Iterable[str] | None = None,
    heldout_calibration_pools: Mapping[str, Pools] | None = None,
) -> list[dict]:
    """Leave-one-dataset-out transfer of call-rate thresholds; one row per (held-out, method,
    target), held-out datasets in sorted order, targets ``params.targets``.

    methods:
      "calibration": threshold from the calibration set built on every other dataset;
                     applied to all of the held-out dataset.
      "in_domain":   upper bound: threshold fitted on a random ``in_domain_frac`` of the held-out
                     dataset (``np.random.default_rng(params.seed)`` permutation), evaluated on the rest.
      "fixed":       ``fixed_threshold(fixed_value)`` for every target (predicts nothing, so its
                     predicted_accuracy and accuracy_error are NaN).
    nan_policy: how the held-out dataset's NaN scores are routed (``metrics.apply_nan_policy``;
    "most_uncertain" sends them to the LLM, as a deployed router would). The calibration set and
    in-domain fits treat theirs the same way (``build_calibration_set(nan_policy=...)``).
    calibration_pools: labelled pools kept apart from the evaluated ones (the ``fit`` role:
    train/dev splits, or rows disjoint from the evaluated ones), same datasets as ``pools``. When
    given, "calibration" builds its set from every *other* dataset's calibration pool (so no
    evaluated row is ever used for a threshold), and "in_domain" fits on the held-out dataset's
    own calibration pool and is evaluated on all of its evaluated rows. When None, both draw on
    ``pools`` (calibration: the other datasets; in_domain: a random split of the held-out one).
    in_domain_pools: where "in_domain" fits instead (default: ``calibration_pools``), e.g. when
    only some datasets may feed calibration sets but every dataset has labelled fit rows.
    heldouts: evaluate only these held-out datasets (default: all of ``pools``).
    heldout_calibration_pools: held-out -> the pools "calibration" draws its set from for that
    held-out dataset, in place of ``calibration_pools`` / ``pools``: for methods trained on other
    datasets (the OOD probe), the other datasets' rows scored by models that never saw the
    held-out one (``jobs.analysis.inputs.GridView.leave_out``); a held-out dataset missing here
    uses the default pools.
    params: how calibration sets are drawn (``build_calibration_set``; their thresholds are weighted
    quantiles and their predicted accuracy is weighted) and the targets. "calibration" draws
    ``params.n_draws`` sets, seeds ``params.seeds`` (the paper repeats its calibration three
    times), and reports their mean and spread; the other methods draw once.
    Row keys: ``_transfer_row``. All rates and accuracies are exact expectations over tie coin flips.
    """
    methods = _check_transfer_methods(methods, in_domain_frac)
    in_source = in_domain_pools if in_domain_pools is not None else calibration_pools
    chosen = _chosen_heldouts(pools, heldouts, in_source if "in_domain" in methods else None)
    cal_default = pools if calibration_pools is None else calibration_pools
    cal_sources = _calibration_sources(cal_default, heldout_calibration_pools or {}, chosen, "calibration" in methods)
    rule = _FitRule(params, nan_policy, in_source, in_domain_frac)
    rows: list[dict] = []
    for heldout in chosen:
        u, slm, llm, n_nan = _heldout_arrays(pools, heldout, nan_policy)
        for method in methods:
            fits, evaluated, seeds = _method_fits(method, heldout, (u, slm, llm), cal_sources[heldout], rule)
            for target in params.targets:
                rows.append(_transfer_row(heldout, method, target, fits, evaluated, n_nan, seeds, fixed_value))
    return rows


def _check_transfer_methods(methods: Iterable[str], in_domain_frac: float) -> list[str]:
    methods = list(methods)
    bad = [m for m in methods if m not in TRANSFER_METHODS]
    if bad:
        raise ValueError(f"unknown transfer method(s) {bad}; valid: {', '.join(TRANSFER_METHODS)}")
    if not 0.0 < in_domain_frac < 1.0:
        raise ValueError(f"in_domain_frac must be in (0, 1); got {in_domain_frac!r}")
    return methods


def _chosen_heldouts(pools: Pools, heldouts: Iterable[str] | None, in_source: Pools | None) -> list[str]:
    """The held-out datasets to evaluate (sorted), each known to ``pools`` and, when in-domain fits
    have pools of their own (``in_source``), to those."""
    chosen = sorted(pools) if heldouts is None else sorted(set(heldouts))
    unknown = [h for h in chosen if h not in pools]
    if unknown:
        raise ValueError(f"unknown held-out dataset(s) {unknown}; available: {sorted(pools)}")
    if in_source is not None:
        lacking = [h for h in chosen if h not in in_source]
        if lacking:
            raise ValueError(f"in-domain fit pools lack dataset(s) {lacking}; they have {sorted(in_source)}")
    return chosen


def _calibration_sources(
    default: Pools, per_heldout: Mapping[str, Pools], chosen: list[str], check: bool
) -> dict[str, Pools]:
    """held-out -> the pools its leave-one-out calibration sets are drawn from (``per_heldout``'s,
    else ``default``); with ``check``, each must hold a dataset other than the held-out one."""
    sources = {h: per_heldout.get(h, default) for h in chosen}
    if check:
        for h in chosen:
            if not [d for d in sources[h] if d != h]:
                raise ValueError(
                    f"leave-one-out for held-out {h!r} needs another dataset to calibrate on; "
                    f"calibration pools have {sorted(sources[h])}"
                )
    return sources


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # uncertainty, slm_correct, llm_correct


@dataclass(frozen=True)
class _FitRule:
    """How ``transfer_table``'s methods fit their thresholds (its arguments of the same names);
    in_source: the pools in-domain fits draw on (None: a split of the held-out rows)."""

    params: CalibrationParams
    nan_policy: str
    in_source: Pools | None
    in_domain_frac: float


def _method_fits(
    method: str, heldout: str, evaluated: Arrays, cal_source: Pools, rule: _FitRule
) -> tuple[list[tuple], Arrays, list[int]]:
    """What one transfer method fits its thresholds on for one held-out dataset: (fits, the arrays
    it is evaluated on, seeds). fits: one (u, slm_correct, llm_correct, weight, strata) per draw (the
    calibration sets of ``params.seeds``; the in-domain fit rows; none for "fixed"). "in_domain"
    without pools of its own splits the held-out rows and is evaluated on the other part."""
    params, nan_policy, in_source, in_domain_frac = rule.params, rule.nan_policy, rule.in_source, rule.in_domain_frac
    if method == "calibration":
        fits = []
        for sd in params.seeds:
            cal = build_calibration_set(
                cal_source,
                exclude=[heldout] if heldout in cal_source else [],
                params=params.with_seed(sd),
                nan_policy=nan_policy,
            )
            fits.append((cal.uncertainty, cal.slm_correct, cal.llm_correct, cal.weight, cal.strata))
        return fits, evaluated, params.seeds
    seeds = [int(params.seed)]
    if method == "in_domain" and in_source is not None:
        fu, fs, fl, _ = _heldout_arrays(in_source, heldout, nan_policy)
        return [(fu, fs, fl, None, None)], evaluated, seeds
    if method == "in_domain":
        u, slm, llm = evaluated
        n_fit = int(round(len(u) * in_domain_frac))
        if not 0 < n_fit < len(u):
            raise ValueError(
                f"held-out dataset {heldout!r} has {len(u)} scored sample(s); too few to "
                f"split with in_domain_frac={in_domain_frac}"
            )
        perm = np.random.default_rng(params.seed).permutation(len(u))
        f, e = perm[:n_fit], perm[n_fit:]
        return [(u[f], slm[f], llm[f], None, None)], (u[e], slm[e], llm[e]), seeds
    return [], evaluated, seeds


def _spread(x) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def _apply_fits(
    target: float, fits: list[tuple], evaluated: Arrays, fixed_value: float
) -> list[tuple[Threshold, float, float, float]]:
    """Per fit (the fixed threshold when there is none): (its threshold for ``target``, the realized
    call rate and accuracy on the evaluated rows, the accuracy the fit's own rows predict)."""
    ev_u, ev_slm, ev_llm = evaluated
    draws = []
    for fit in fits or [None]:
        thr = (
            threshold_for_call_rate(fit[0], target, weights=fit[3], strata=fit[4])
            if fit is not None
            else fixed_threshold(fixed_value)
        )
        realized_rate = expected_call_rate(ev_u, thr)
        realized_acc = expected_accuracy(ev_u, ev_slm, ev_llm, thr)
        predicted = expected_accuracy(fit[0], fit[1], fit[2], thr, weights=fit[3]) if fit is not None else float("nan")
        draws.append((thr, realized_rate, realized_acc, predicted))
    return draws


def _transfer_row(
    heldout: str,
    method: str,
    target: float,
    fits: list[tuple],
    evaluated: Arrays,
    n_nan: int,
    seeds: list[int],
    fixed_value: float,
) -> dict:
    """One row of ``transfer_table``: each fit's threshold for ``target`` applied to the evaluated
    rows (the fixed threshold when there is no fit), means and spread over the fits.

    Row keys: heldout, method, target_call_rate, threshold, tie_frac, realized_call_rate,
    call_rate_error (= realized - target), realized_accuracy, predicted_accuracy (the fitting
    data's expected accuracy at the threshold: the calibration set, or the in-domain fit half),
    accuracy_error (= realized - predicted), n_fit, n_eval, n_nan_heldout; over the draws:
    threshold, tie_frac and n_fit are the first draw's (seed ``params.seed``), the rates,
    accuracies and errors are means, and n_draws, seeds, call_rate_error_draws,
    realized_call_rate_draws, predicted_accuracy_draws (one per draw, in seed order),
    call_rate_error_sd (sample SD, 0 for one draw), call_rate_error_min/_max, abs_call_rate_error
    (mean |error| over draws), accuracy_error_sd and threshold_sd give the spread."""
    ev_u = evaluated[0]
    draws = _apply_fits(target, fits, evaluated, fixed_value)
    thr0 = draws[0][0]
    rate = np.array([d[1] for d in draws])
    acc = np.array([d[2] for d in draws])
    pred = np.array([d[3] for d in draws])
    err = rate - target
    return {
        "heldout": heldout,
        "method": method,
        "target_call_rate": target,
        "threshold": thr0.value,
        "tie_frac": thr0.tie_frac,
        "realized_call_rate": float(rate.mean()),
        "call_rate_error": float(err.mean()),
        "realized_accuracy": float(acc.mean()),
        "predicted_accuracy": float(pred.mean()),
        "accuracy_error": float((acc - pred).mean()),
        "n_fit": len(fits[0][0]) if fits else 0,
        "n_eval": len(ev_u),
        "n_nan_heldout": n_nan,
        "n_draws": len(draws),
        "seeds": seeds if fits else [],
        "call_rate_error_draws": [float(x) for x in err],
        "realized_call_rate_draws": [float(x) for x in rate],
        "predicted_accuracy_draws": [float(x) for x in pred],
        "call_rate_error_sd": _spread(err),
        "call_rate_error_min": float(err.min()),
        "call_rate_error_max": float(err.max()),
        "abs_call_rate_error": float(np.abs(err).mean()),
        "accuracy_error_sd": _spread(acc - pred) if fits else float("nan"),
        "threshold_sd": _spread(np.array([d[0].value for d in draws])),
    }


def curve_transfer(
    pools: Pools,
    heldout: str,
    *,
    params: CalibrationParams = DEFAULT_PARAMS,
    nan_policy: str = "most_uncertain",
    n_grid: int = 101,
    calibration_pools: Pools | None = None,
) -> dict:
    """The paper's curve distance: how well the calibration set's (weighted) routing curve
    (``calibration_curve``; the set built from every dataset but ``heldout`` with ``params``)
    predicts the true routing curve on ``heldout``.

    Returns {heldout, rms_calibration (RMS distance calibration curve vs true curve, mean over
    draws), rms_calibration_sd, rms_calibration_draws, n_draws, seeds, rms_random (RMS distance of
    the held-out random-routing line vs the true curve, the naive reference), n_calibration,
    n_heldout, calibration: the first draw's record}. Distances are ``metrics.curve_rms_distance``
    on ``n_grid`` ratios; curves use ties="expected". Sets are drawn ``params.n_draws`` times, seeds
    ``params.seeds``; their NaN scores follow ``nan_policy`` too.
    calibration_pools: as in ``transfer_table`` (the calibration set comes from them when given).
    """
    u, slm, llm, _ = _heldout_arrays(pools, heldout, nan_policy)
    source = pools if calibration_pools is None else calibration_pools
    seeds = params.seeds
    true = routing_curve(u, slm, llm, ties="expected")
    rms, first = [], None
    for sd in seeds:
        cal = build_calibration_set(
            source,
            exclude=[heldout] if heldout in source else [],
            params=params.with_seed(sd),
            nan_policy=nan_policy,
        )
        first = first or cal
        rms.append(curve_rms_distance(calibration_curve(cal), true, n_grid))
    return {
        "heldout": heldout,
        "rms_calibration": float(np.mean(rms)),
        "rms_calibration_sd": float(np.std(rms, ddof=1)) if len(rms) > 1 else 0.0,
        "rms_calibration_draws": rms,
        "n_draws": len(seeds),
        "seeds": seeds,
        "rms_random": curve_rms_distance(random_curve(slm, llm), true, n_grid),
        "n_calibration": len(first),
        "n_heldout": len(u),
        "calibration": first.record,
    }


# ---- applying a calibration set to new, unlabelled data ---------------------------------------


def apply_to_unlabelled(cal: CalibrationSet, target_u, rate: float, *, nan_policy: str = "most_uncertain") -> dict:
    """Route a user's unlabelled data at call rate ``rate`` using only the calibration set.

    Returns {threshold, tie_frac, target_call_rate, expected_call_rate (on target_u),
    predicted_accuracy (the calibration set's expected accuracy at the threshold), n,
    n_routed_expected (= expected_call_rate * n), n_routed_surely (u > threshold),
    n_tied (u == threshold, each routed with probability tie_frac), n_nan, route_prob (array)}.
    NaN scores follow ``nan_policy`` ("most_uncertain": routed; "drop": left out of n).
    """
    thr = cal.threshold(rate)
    u_raw = _as_uncertainty(target_u, "target_u", allow_nan=True)
    u, keep = apply_nan_policy(u_raw, nan_policy)
    u = u[keep]
    p = route_probability(u, thr)
    n = len(u)
    rate_on_target = float(p.mean()) if n else float("nan")
    return {
        "threshold": thr.value,
        "tie_frac": thr.tie_frac,
        "target_call_rate": float(rate),
        "expected_call_rate": rate_on_target,
        "predicted_accuracy": cal.expected_accuracy(thr),
        "n": n,
        "n_routed_expected": float(p.sum()),
        "n_routed_surely": int(np.sum(u > thr.value)),
        "n_tied": int(np.sum(u == thr.value)),
        "n_nan": int(np.isnan(u_raw).sum()),
        "route_prob": p,
    }


# ---- distribution distances (finding 2) -------------------------------------------------------


def _as_sample(x: Any, name: str, finite: bool) -> np.ndarray:
    a = _as_uncertainty(x, name)  # 1-D, no NaN
    _check_lengths(**{name: a})
    if finite and not np.isfinite(a).all():
        raise ValueError(f"{name} has infinite value(s); the Wasserstein distance needs finite ones")
    return np.sort(a)


def _cdfs_at_jumps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both empirical CDFs (right-continuous) at every pooled value, pooled values sorted."""
    x = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(a, x, side="right") / len(a)
    fb = np.searchsorted(b, x, side="right") / len(b)
    return x, fa, fb


def wasserstein_1d(a, b) -> float:
    """Exact 1-D Wasserstein-1 distance between two samples: integral of |F_a - F_b| dx.

    Sizes may differ; NaN or infinite values and empty samples are a ValueError.
    """
    x, fa, fb = _cdfs_at_jumps(_as_sample(a, "a", True), _as_sample(b, "b", True))
    # the CDFs are constant on [x_i, x_{i+1})
    return float(np.sum(np.abs(fa[:-1] - fb[:-1]) * np.diff(x)))


def ks_statistic(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup_x |F_a(x) - F_b(x)|, in [0, 1]."""
    x, fa, fb = _cdfs_at_jumps(_as_sample(a, "a", False), _as_sample(b, "b", False))
    return float(np.max(np.abs(fa - fb)))


def _distance_fn(metric: str):
    if metric == "wasserstein":
        return wasserstein_1d
    if metric == "ks":
        return ks_statistic
    raise ValueError(f"unknown distance metric {metric!r}; valid: {', '.join(DISTANCES)}")


def distance_matrix(groups: Mapping[str, Any], metric: str = "wasserstein") -> tuple[list[str], np.ndarray]:
    """Symmetric matrix of pairwise distances between score samples, names in dict order."""
    fn = _distance_fn(metric)
    names = list(groups)
    m = np.zeros((len(names), len(names)))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            m[i, j] = m[j, i] = fn(groups[names[i]], groups[names[j]])
    return names, m


def within_vs_across(scores: Mapping[tuple[str, str, str], Any], metric: str = "ks") -> dict:
    """Finding 2: is a score distribution set by the (SLM, UQ method) rather than the dataset?

    scores[(slm, uq, dataset)] = uncertainty array. Three families of pairwise distances:
      across_datasets: pairs of datasets, (slm, uq) fixed;
      across_uq:       pairs of UQ methods, (slm, dataset) fixed;
      across_slm:      pairs of SLMs, (uq, dataset) fixed.
    Each reports mean (over all pairs of all groups; NaN if none), n_groups, n_pairs,
    n_skipped_groups (fewer than 2 members) and per_group means keyed "a__b".
    NaN scores are dropped first (n_nan_dropped); an all-NaN array is left out.
    Default metric "ks" because it is scale-free: UQ methods live on different scales
    (perplexity vs probability), which would dominate Wasserstein means across groups.
    """
    fn = _distance_fn(metric)
    clean: dict[tuple[str, str, str], np.ndarray] = {}
    n_nan = 0
    for key, arr in scores.items():
        if len(key) != 3:
            raise ValueError(f"scores keys must be (slm, uq, dataset); got {key!r}")
        a = _as_uncertainty(arr, f"scores[{key!r}]", allow_nan=True)
        n_nan += int(np.isnan(a).sum())
        a = a[~np.isnan(a)]
        if len(a):
            clean[tuple(key)] = a

    # family -> positions of the key parts held fixed; the remaining part varies
    families = {"across_datasets": (0, 1), "across_uq": (0, 2), "across_slm": (1, 2)}
    out: dict[str, Any] = {"metric": metric, "n_nan_dropped": n_nan}
    for family, fixed in families.items():
        groups: dict[tuple[str, ...], list[np.ndarray]] = {}
        for key in sorted(clean):
            groups.setdefault(tuple(key[i] for i in fixed), []).append(clean[key])
        dists: list[float] = []
        per_group: dict[str, float] = {}
        skipped = 0
        for gkey, members in groups.items():
            if len(members) < 2:
                skipped += 1
                continue
            d = [fn(members[i], members[j]) for i in range(len(members)) for j in range(i + 1, len(members))]
            per_group["__".join(gkey)] = float(np.mean(d))
            dists.extend(d)
        out[family] = {
            "mean": float(np.mean(dists)) if dists else float("nan"),
            "n_groups": len(per_group),
            "n_pairs": len(dists),
            "n_skipped_groups": skipped,
            "per_group": per_group,
        }
    return out
