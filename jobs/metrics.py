"""Routing metrics: uncertainty + SLM/LLM correctness -> routing curves, AUROC, areas, CIs.

Where this sits in the flow: per-sample records (uncertainty from ``jobs/uq``, SLM and LLM
correctness) -> **metrics** -> MLflow / reports. numpy only, so every number can be
recomputed from the Parquet records without a GPU.

A setting's scalar metrics are declared once, in ``METRICS`` (a ``Metric``: name, function of the
setting's ``Queries``, label, direction, bootstrap interval, where it is shown); ``summarize``, the
summary files, MLflow's views and the report's settings table are derived from it.

Routing rule: offload the k most uncertain queries to the LLM (uncertainty: higher = more
uncertain, as every ``jobs/uq`` method returns). With N queries,
    accuracy(k) = (LLM-correct among offloaded + SLM-correct among kept) / N,   ratio = k / N,
so k = 0 is the SLM alone and k = N the LLM alone. Curves are computed exactly at every k = 0..N.

Ties (verbalized confidences are coarse) follow a recorded rule, ``ties``:
    "expected" (default): the exact expected accuracy when queries of equal uncertainty are
                offloaded in uniformly random order, i.e. linear interpolation inside a tie group;
    "stable":   ties broken by original sample order (the earlier sample is offloaded first).
NaN uncertainties are rejected by the curve functions; apply a NaN policy first
(``apply_nan_policy``; ``summarize`` does it for you).

The paper reports AUROC, routing curves, relative accuracy and curve distance; areas, APGR and
call rate for a fraction of the SLM->LLM gap are our RouteLLM-style additions. Names shared with
RouteLLM mean what RouteLLM computes (lm-sys/RouteLLM, ``routellm/evals/evaluate.py``,
``generate_results``): ``apgr`` = (AUC - weak) / (strong - weak), random routing 0.5, and ``cpt`` =
its "x% qual" call rate by ``np.interp``; our own gap ratio against random routing is named
``gap_recovered_vs_random`` (random 0, oracle 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

TIES: tuple[str, ...] = ("expected", "stable")
NAN_POLICIES: tuple[str, ...] = ("most_uncertain", "drop")

# A bootstrap statistic: batched arrays (B, N) of uncertainty, SLM correct, LLM correct -> (B,).
BatchStat = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class RoutingCurve:
    """Accuracy after offloading the k most uncertain of N queries, for k = 0..N.

    k:        int array (N+1,), number offloaded.
    ratio:    float array (N+1,), k / N (the routing ratio).
    accuracy: float array (N+1,), accuracy in [0, 1] of the mixed system.
    ties:     the rule that produced the curve: "expected" | "stable" | "random" | "oracle".
    """

    k: np.ndarray
    ratio: np.ndarray
    accuracy: np.ndarray
    ties: str = "expected"

    @property
    def n(self) -> int:
        return len(self.k) - 1

    @property
    def slm_acc(self) -> float:
        return float(self.accuracy[0])

    @property
    def llm_acc(self) -> float:
        return float(self.accuracy[-1])


def _make_curve(accuracy: np.ndarray, ties: str) -> RoutingCurve:
    n = len(accuracy) - 1
    k = np.arange(n + 1)
    ratio, acc = k / n, np.asarray(accuracy, dtype=np.float64)
    for a in (k, ratio, acc):
        a.setflags(write=False)
    return RoutingCurve(k, ratio, acc, ties=ties)


# ---- input checking -------------------------------------------------------------------------


def _as_bool(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {a.shape}")
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be bool or 0/1; got values {np.unique(a)[:5].tolist()}")
        a = a.astype(bool)
    return a


def _as_uncertainty(x: Any, name: str = "uncertainty", allow_nan: bool = False) -> np.ndarray:
    u = np.asarray(x, dtype=np.float64)
    if u.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {u.shape}")
    if not allow_nan:
        n_nan = int(np.isnan(u).sum())
        if n_nan:
            raise ValueError(
                f"{name} has {n_nan} NaN value(s) of {len(u)}; apply a NaN policy first "
                f"(apply_nan_policy, one of {NAN_POLICIES})"
            )
    return u


def _check_lengths(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"arrays must have the same length; got {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("need at least one sample; got 0")
    return n


def _check_ties(ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"unknown ties rule {ties!r}; valid: {', '.join(TIES)}")


def apply_nan_policy(uncertainty, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """Deal with NaN (unscored) uncertainties before routing.

    Returns ``(uncertainty, keep)``, both of the input's length:
      "most_uncertain": NaN -> +inf (offloaded to the LLM first, tied among themselves);
                        ``keep`` is all True.
      "drop":           ``keep`` is False where the uncertainty is NaN; the caller keeps
                        ``uncertainty[keep]`` and the matching correctness entries.
    Raises ValueError for an unknown policy, naming the valid choices.
    """
    u = _as_uncertainty(uncertainty, allow_nan=True)
    nan = np.isnan(u)
    if policy == "most_uncertain":
        return np.where(nan, np.inf, u), np.ones(len(u), dtype=bool)
    if policy == "drop":
        return u.copy(), ~nan
    raise ValueError(f"unknown nan policy {policy!r}; valid: {', '.join(NAN_POLICIES)}")


# ---- curves -----------------------------------------------------------------------------------


def _tie_groups(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (B, N) keys sorted along axis 1: per position, the [start, end) of its tie group (the
    run of equal keys it belongs to)."""
    b, n = sorted_keys.shape
    j = np.arange(n)
    first = np.ones((b, n), dtype=bool)
    first[:, 1:] = sorted_keys[:, 1:] != sorted_keys[:, :-1]
    last = np.ones((b, n), dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, j, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, j + 1, n)[:, ::-1], axis=1)[:, ::-1]
    return start, end


def route_ranks(uncertainty, nan_policy: str) -> np.ndarray:
    """The routing decision of one setting, from uncertainty alone: rank of each query in the
    offloading order (0 = first sent to the LLM), -1 for a query the NaN policy drops.

    The order is descending uncertainty after ``apply_nan_policy`` (NaN first under
    "most_uncertain"), ties by original sample order (stable), the order ``routing_curve`` with
    ties="stable" offloads in. It reads no correctness: routing decisions are frozen before any
    answer is judged (a lesson from RouterArena submissions that changed choices after seeing
    answers), and ``tests/unit/test_route_audit.py`` checks it.
    """
    u, keep = apply_nan_policy(uncertainty, nan_policy)
    order = np.argsort(-u[keep], kind="stable")
    rank = np.full(len(u), -1)
    rank[np.flatnonzero(keep)[order]] = np.arange(len(order))
    return rank


def expected_offloaded_sum(uncertainty, value, ties: str = "expected") -> np.ndarray:
    """Sum of ``value`` over the k most uncertain queries, for k = 0..N: (N+1,).

    The same offloading order (and, for ties="expected", the same random-order expectation inside
    a tie group) as ``routing_curve``, so a per-query quantity such as the LLM's cost lines up with
    the accuracy curve point by point (``jobs.cost``).
    """
    _check_ties(ties)
    u = _as_uncertainty(uncertainty)
    v = np.asarray(value, dtype=np.float64)
    _check_lengths(uncertainty=u, value=v)
    return _offload_cumsum(u[None], v[None], ties)[0]


def _offload_cumsum(key: np.ndarray, value: np.ndarray, ties: str) -> np.ndarray:
    """Cumulative sum of ``value`` taken in descending ``key`` order, at every count 0..N.

    key, value: (B, N). Returns (B, N+1); column k is the (expected, for ties="expected") sum of
    ``value`` over the k rows with the largest key.
    """
    b, n = key.shape
    order = np.argsort(-key, axis=1, kind="stable")  # stable: ties in original order
    ks = np.take_along_axis(key, order, axis=1)
    vs = np.take_along_axis(value, order, axis=1)
    c = np.zeros((b, n + 1))
    np.cumsum(vs, axis=1, out=c[:, 1:])
    if ties == "stable":
        return c
    # Inside a tie group every subset of a given size is equally likely, so the expected sum
    # grows linearly from c[start] to c[end].
    start, end = _tie_groups(ks)
    j = np.arange(n)
    cs = np.take_along_axis(c, start, axis=1)
    ce = np.take_along_axis(c, end, axis=1)
    out = c.copy()
    out[:, :n] = cs + (j - start) / (end - start) * (ce - cs)
    return out


def _batch_accuracy(u: np.ndarray, slm: np.ndarray, llm: np.ndarray, ties: str) -> np.ndarray:
    """(B, N) inputs -> (B, N+1) routing accuracy."""
    gain = llm.astype(np.float64) - slm
    return (slm.sum(axis=1, keepdims=True) + _offload_cumsum(u, gain, ties)) / u.shape[1]


def routing_curve(uncertainty, slm_correct, llm_correct, ties: str = "expected") -> RoutingCurve:
    """Routing curve offloading the most uncertain first, exact at every k (O(N log N))."""
    _check_ties(ties)
    u = _as_uncertainty(uncertainty)
    slm, llm = _as_bool(slm_correct, "slm_correct"), _as_bool(llm_correct, "llm_correct")
    _check_lengths(uncertainty=u, slm_correct=slm, llm_correct=llm)
    return _make_curve(_batch_accuracy(u[None], slm[None], llm[None], ties)[0], ties)


def random_curve(slm_correct, llm_correct) -> RoutingCurve:
    """Expected curve of uniformly random routing: the straight line from SLM to LLM accuracy."""
    slm, llm = _as_bool(slm_correct, "slm_correct"), _as_bool(llm_correct, "llm_correct")
    n = _check_lengths(slm_correct=slm, llm_correct=llm)
    a0, a1 = slm.mean(), llm.mean()
    return _make_curve(a0 + np.arange(n + 1) / n * (a1 - a0), "random")


def _oracle_accuracy(slm: np.ndarray, llm: np.ndarray) -> np.ndarray:
    """(B, N) -> (B, N+1): offload gains +1 (SLM wrong, LLM right) first, then 0, then -1."""
    gain = llm.astype(np.float64) - slm
    gs = -np.sort(-gain, axis=1)
    c = np.zeros((gain.shape[0], gain.shape[1] + 1))
    np.cumsum(gs, axis=1, out=c[:, 1:])
    return (slm.sum(axis=1, keepdims=True) + c) / gain.shape[1]


def oracle_curve(slm_correct, llm_correct) -> RoutingCurve:
    """Best achievable accuracy at every k: offload first where the SLM is wrong and the LLM
    right, then where both are wrong (or both right), last where only the SLM is right."""
    slm, llm = _as_bool(slm_correct, "slm_correct"), _as_bool(llm_correct, "llm_correct")
    _check_lengths(slm_correct=slm, llm_correct=llm)
    return _make_curve(_oracle_accuracy(slm[None], llm[None])[0], "oracle")


# ---- scalar metrics ---------------------------------------------------------------------------


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along axis 1, tied values sharing their average rank (numpy only)."""
    b, n = x.shape
    order = np.argsort(x, axis=1, kind="stable")
    start, end = _tie_groups(np.take_along_axis(x, order, axis=1))
    ranks = np.empty((b, n))
    np.put_along_axis(ranks, order, (start + end - 1) / 2 + 1, axis=1)
    return ranks


def _batch_auroc_values(u: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC per row of uncertainty as a score for ``err`` (ties count 1/2)."""
    ranks = _average_ranks(u)
    n_pos = err.sum(axis=1).astype(np.float64)
    n_neg = err.shape[1] - n_pos
    u_stat = (ranks * err).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u_stat / (n_pos * n_neg), np.nan)


def auroc(uncertainty, slm_correct) -> float:
    """AUROC of uncertainty as a predictor of SLM error (= AUROC of confidence for correctness).

    Ties count 1/2 (Mann-Whitney). NaN when the SLM is always right or always wrong.
    """
    u = _as_uncertainty(uncertainty)
    slm = _as_bool(slm_correct, "slm_correct")
    _check_lengths(uncertainty=u, slm_correct=slm)
    return float(_batch_auroc_values(u[None], ~slm[None])[0])


def curve_area(curve: RoutingCurve) -> float:
    """Trapezoid area under accuracy vs ratio over [0, 1]."""
    a, r = curve.accuracy, curve.ratio
    return float(np.sum((a[1:] + a[:-1]) / 2 * np.diff(r)))


def _gap_ratio(area: Any, rnd_area: Any, oracle_area: Any) -> Any:
    den = np.asarray(oracle_area, dtype=np.float64) - rnd_area
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(den) > 1e-12, (np.asarray(area) - rnd_area) / den, np.nan)


def apgr(curve: RoutingCurve) -> float:
    """APGR as RouteLLM defines it: (AUC - weak AUC) / (strong AUC - weak AUC).

    Source: lm-sys/RouteLLM, ``routellm/evals/evaluate.py``, ``generate_results.apgr_metric``: AUC
    is ``np.trapz(accuracy, strong_percentage / 100)`` over the router's curve, and the weak and
    strong AUCs are the same trapezoid over constant lines at the weak (SLM) and strong (LLM)
    accuracy. On our curve (ratios 0..1) that is (area - slm_acc) / (llm_acc - slm_acc): 0 = SLM
    alone, 1 = as good as the LLM alone over the whole curve, random routing 0.5 (above 1 when
    routing beats the LLM). NaN when the LLM is exactly as accurate as the SLM (RouteLLM divides by
    zero there). Our random-based ratio is ``gap_recovered_vs_random``.
    """
    a0, a1 = curve.slm_acc, curve.llm_acc
    span = float(curve.ratio[-1] - curve.ratio[0])
    return float(_gap_ratio(curve_area(curve), a0 * span, a1 * span))


def gap_recovered_vs_random(curve: RoutingCurve, rnd: RoutingCurve, oracle: RoutingCurve) -> float:
    """Share of the random-to-oracle area gap recovered: (area - random area) / (oracle area -
    random area). Ours (this was called "APGR" before; RouteLLM's APGR is ``apgr``).

    1 = oracle routing, 0 = no better than random, negative = worse than random. NaN when the
    oracle is no better than random (the SLM is never wrong where the LLM is right).
    """
    return float(_gap_ratio(curve_area(curve), curve_area(rnd), curve_area(oracle)))


def call_rate_for_gap(curve: RoutingCurve, frac: float) -> float:
    """Smallest routing ratio whose accuracy reaches slm_acc + frac * (llm_acc - slm_acc).

    NaN when the LLM is not more accurate than the SLM (there is no gap to recover). Unlike
    ``cpt`` this is the first crossing, well defined on curves that are not monotone.
    """
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"frac must be in [0, 1]; got {frac!r}")
    lo, hi = curve.slm_acc, curve.llm_acc
    if not hi > lo:
        return float("nan")
    target = lo + frac * (hi - lo)
    reached = np.flatnonzero(curve.accuracy >= target - 1e-12)  # tolerance for cumsum rounding
    return float(curve.ratio[reached[0]])


def cpt(curve: RoutingCurve, frac: float) -> float:
    """CPT(x%) as RouteLLM computes it ("20% / 50% / 80% qual"): the call rate whose accuracy is
    slm_acc + frac * (llm_acc - slm_acc), by ``np.interp(target, accuracy, call_rate)``.

    Source: lm-sys/RouteLLM, ``routellm/evals/evaluate.py``, ``generate_results.pct_call_metric``.
    Returned as a fraction (RouteLLM prints percent: multiply by 100). Like RouteLLM it does not
    check that accuracy rises along the curve: np.interp assumes increasing x, so on a curve that
    is not monotone the value is what np.interp gives (``call_rate_for_gap`` is the first
    crossing); a target outside the curve's accuracies clips to an end.
    """
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"frac must be in [0, 1]; got {frac!r}")
    lo, hi = curve.slm_acc, curve.llm_acc
    return float(np.interp(frac * (hi - lo) + lo, curve.accuracy, curve.ratio))


RELATIVE_ACCURACY_PCTS: tuple[int, ...] = tuple(range(10, 101, 10))


def relative_accuracy(uncertainty, slm_correct, llm_correct, top_frac: float, ties: str = "expected") -> float:
    """The paper's relative accuracy: on the ceil(top_frac * N) most confident queries, SLM
    accuracy divided by the LLM's accuracy on the same queries.

    (The paper's example: on PIQA, Danube-3.1-4B nearly matches GPT-4o mini on its 20% most
    confident queries.) Ties at the cut follow ``ties``: "expected" gives the ratio of the expected
    numbers of correct answers when tied queries enter in random order, "stable" takes the earlier
    sample first. NaN when the LLM gets none of those queries right.
    """
    _check_ties(ties)
    if not 0.0 < top_frac <= 1.0:
        raise ValueError(f"top_frac must be in (0, 1]; got {top_frac!r}")
    u = _as_uncertainty(uncertainty)
    slm, llm = _as_bool(slm_correct, "slm_correct"), _as_bool(llm_correct, "llm_correct")
    n = _check_lengths(uncertainty=u, slm_correct=slm, llm_correct=llm)
    n_top = max(1, math.ceil(top_frac * n - 1e-9))
    # most confident first = largest -uncertainty first; both models on the same (expected) set
    both = _offload_cumsum(np.stack([-u, -u]), np.stack([slm, llm]).astype(np.float64), ties)[:, n_top]
    return float(both[0] / both[1]) if both[1] > 1e-12 else float("nan")


def relative_accuracy_curve(
    uncertainty, slm_correct, llm_correct, pcts=RELATIVE_ACCURACY_PCTS, ties: str = "expected"
) -> list[dict]:
    """``relative_accuracy`` at top k% for each k in ``pcts`` (default 10, 20, ..., 100):
    [{"top_pct": k, "relative_accuracy": value}, ...] (NaN where undefined)."""
    return [
        {
            "top_pct": int(k),
            "relative_accuracy": relative_accuracy(uncertainty, slm_correct, llm_correct, k / 100, ties),
        }
        for k in pcts
    ]


def curve_rms_distance(curve_a: RoutingCurve, curve_b: RoutingCurve, n_grid: int = 101) -> float:
    """RMS of accuracy differences after interpolating both curves onto ``n_grid`` ratios in [0, 1]."""
    grid = np.linspace(0.0, 1.0, n_grid)
    a = np.interp(grid, curve_a.ratio, curve_a.accuracy)
    b = np.interp(grid, curve_b.ratio, curve_b.accuracy)
    return float(np.sqrt(np.mean((a - b) ** 2)))


# ---- batched statistics for the bootstrap -----------------------------------------------------


def batch_auroc(u: np.ndarray, slm: np.ndarray, llm: np.ndarray) -> np.ndarray:
    """AUROC per row of (B, N) arrays."""
    return _batch_auroc_values(u, ~slm)


def _batch_area(acc: np.ndarray) -> np.ndarray:
    # uniform ratio grid of step 1/N
    return (acc.sum(axis=1) - (acc[:, 0] + acc[:, -1]) / 2) / (acc.shape[1] - 1)


def batch_area(u: np.ndarray, slm: np.ndarray, llm: np.ndarray, ties: str = "expected") -> np.ndarray:
    """Routing-curve area per row of (B, N) arrays."""
    return _batch_area(_batch_accuracy(u, slm, llm, ties))


def batch_apgr(u: np.ndarray, slm: np.ndarray, llm: np.ndarray, ties: str = "expected") -> np.ndarray:
    """RouteLLM's APGR (``apgr``) per row of (B, N) arrays."""
    return _gap_ratio(batch_area(u, slm, llm, ties), slm.mean(axis=1), llm.mean(axis=1))


def batch_gap_recovered_vs_random(
    u: np.ndarray, slm: np.ndarray, llm: np.ndarray, ties: str = "expected"
) -> np.ndarray:
    """``gap_recovered_vs_random`` per row of (B, N) arrays."""
    rnd_area = (slm.mean(axis=1) + llm.mean(axis=1)) / 2  # area under the straight line
    return _gap_ratio(batch_area(u, slm, llm, ties), rnd_area, _batch_area(_oracle_accuracy(slm, llm)))


def per_replicate(fn: Callable[[np.ndarray, np.ndarray, np.ndarray], float]) -> BatchStat:
    """Adapt a scalar statistic ``fn(u, slm, llm) -> float`` for ``bootstrap_ci`` (loops; slower)."""

    def batched(u: np.ndarray, slm: np.ndarray, llm: np.ndarray) -> np.ndarray:
        return np.array([fn(*row) for row in zip(u, slm, llm)], dtype=np.float64)

    return batched


def bootstrap_ci(
    uncertainty,
    slm_correct,
    llm_correct,
    stat_fns: Mapping[str, BatchStat],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals, resampling queries with replacement.

    stat_fns: name -> batched statistic ``fn(u, slm, llm) -> (B,)`` taking (B, N) arrays, one row per
              bootstrap replicate (see ``batch_auroc``, ``batch_area``, ``batch_apgr``; wrap a scalar
              function with ``per_replicate``). All statistics see the same resamples (paired).
    Returns name -> (lo, hi), the alpha/2 and 1 - alpha/2 quantiles over the replicates where the
    statistic is defined (NaN replicates, e.g. a one-class resample for AUROC, are left out);
    (nan, nan) when none is. Deterministic for a seed (``np.random.default_rng(seed)``).
    """
    u = _as_uncertainty(uncertainty)
    slm, llm = _as_bool(slm_correct, "slm_correct"), _as_bool(llm_correct, "llm_correct")
    n = _check_lengths(uncertainty=u, slm_correct=slm, llm_correct=llm)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    rng = np.random.default_rng(seed)
    values = {name: np.empty(n_boot) for name in stat_fns}
    chunk = max(1, 2_000_000 // n)  # bounds memory at a few (chunk, N) arrays
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        ub, sb, lb = u[idx], slm[idx], llm[idx]
        for name, fn in stat_fns.items():
            out = np.asarray(fn(ub, sb, lb), dtype=np.float64)
            if out.shape != (b,):
                raise ValueError(f"bootstrap stat {name!r} returned shape {out.shape}; expected ({b},)")
            values[name][start : start + b] = out
    result = {}
    for name, v in values.items():
        v = v[np.isfinite(v)]
        if v.size == 0:
            result[name] = (float("nan"), float("nan"))
        else:
            lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2])
            result[name] = (float(lo), float(hi))
    return result


# ---- the registry: one declaration per metric of a setting ------------------------------------


@dataclass(frozen=True, eq=False)
class Queries:
    """One setting's queries as a metric reads them: after the NaN policy (``apply_nan_policy``),
    with the counts from before it and the routing curves, built once on first use.

    u, slm, llm: the uncertainty, SLM and LLM correctness of the queries the metrics use (n_used of
    them; a NaN uncertainty is +inf under "most_uncertain", left out under "drop").
    ties:        the tie rule of the curves (``TIES``).
    n, n_nan:    the queries given, and how many of them had a NaN uncertainty.
    """

    u: np.ndarray
    slm: np.ndarray
    llm: np.ndarray
    ties: str = "expected"
    n: int = 0
    n_nan: int = 0

    @cached_property
    def curve(self) -> RoutingCurve:
        return routing_curve(self.u, self.slm, self.llm, ties=self.ties)

    @cached_property
    def random(self) -> RoutingCurve:
        return random_curve(self.slm, self.llm)

    @cached_property
    def oracle(self) -> RoutingCurve:
        return oracle_curve(self.slm, self.llm)


def queries(
    uncertainty, slm_correct, llm_correct, nan_policy: str = "most_uncertain", ties: str = "expected"
) -> Queries:
    """Check one setting's arrays and apply its NaN policy: what ``summarize`` hands each metric."""
    _check_ties(ties)
    u_raw = _as_uncertainty(uncertainty, allow_nan=True)
    slm, llm = _as_bool(slm_correct, "slm_correct"), _as_bool(llm_correct, "llm_correct")
    n = _check_lengths(uncertainty=u_raw, slm_correct=slm, llm_correct=llm)
    u, keep = apply_nan_policy(u_raw, nan_policy)
    return Queries(u[keep], slm[keep], llm[keep], ties, n=n, n_nan=int(np.isnan(u_raw).sum()))


#: Where a metric is shown besides the summary dict (every metric is in ``summarize``'s dict, the
#: setting manifest, ``summary.json``, the analysis and the setting's MLflow run):
#:   "summary": a column of ``summary.csv`` (``orchestrator.runner.summary_csv``);
#:   "mlflow":  a bar in the first section of each group's MLflow view and a column of the grid's
#:              settings table there (``orchestrator.mlflow_sink``); the first one orders the runs;
#:   "report":  a column of the report's settings table (``jobs.analysis.report``), its interval beside it.
PLACES: tuple[str, ...] = ("summary", "mlflow", "report")
#: The bootstrap statistic of a metric with an interval: (B, N) uncertainty, SLM and LLM
#: correctness and the tie rule -> (B,), one value per resample.
IntervalStat = Callable[[np.ndarray, np.ndarray, np.ndarray, str], np.ndarray]


@dataclass(frozen=True, eq=False)
class Metric:
    """One scalar metric of a setting, declared once in ``METRICS``; ``summarize``, the summary
    files, MLflow and the report all read it from there.

    name:             its key (``summarize``'s dict, the manifest, summary.json, MLflow).
    fn:               its value from the setting's ``Queries`` (a number; NaN where undefined).
    label:            its column header (report, summary tables).
    higher_is_better: its direction: True, False, or None for a count or a reference value that
                      says nothing about the UQ method by itself.
    has_interval:     a 95% paired percentile bootstrap interval, keys ``<name>_lo`` / ``<name>_hi``
                      (``bootstrap_ci``; all metrics see the same resamples).
    batch:            the interval's statistic on all resamples at once (``IntervalStat``); None:
                      ``fn`` once per resample (``per_replicate``: correct, slower).
    shown_in:         the ``PLACES`` that show it.
    needs_queries:    False for the counts, computed even when the NaN policy leaves no query (the
                      others are NaN then).
    """

    name: str
    fn: Callable[[Queries], float]
    label: str = ""
    higher_is_better: bool | None = None
    has_interval: bool = False
    batch: IntervalStat | None = None
    shown_in: tuple[str, ...] = ()
    needs_queries: bool = True

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"metric name {self.name!r} must be an identifier (it becomes a column and a key)")
        bad = [p for p in self.shown_in if p not in PLACES]
        if bad:
            raise ValueError(f"metric {self.name!r}: unknown place(s) {bad} in shown_in; valid: {', '.join(PLACES)}")
        if self.batch is not None and not self.has_interval:
            raise ValueError(f"metric {self.name!r} has a batch statistic but has_interval=False")
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def interval_keys(self) -> tuple[str, ...]:
        return (f"{self.name}_lo", f"{self.name}_hi") if self.has_interval else ()


def _rel_acc(k: int) -> Metric:
    return Metric(
        f"relative_accuracy_at_{k}",
        lambda q: relative_accuracy(q.u, q.slm, q.llm, k / 100, q.ties),
        f"relative acc. top {k}%",
        higher_is_better=True,
    )


#: The shipped metrics, in the order every place shows them (a metric with an interval: its bounds
#: come after all metrics in ``summarize``'s dict, beside it in the report). A new metric is one
#: ``Metric(...)`` here (``tests/unit/test_metric_registry.py``); bump ``jobs.scoring.SCORING_VERSION``
#: for existing stores to get it (``uqroute rescore``).
METRICS: tuple[Metric, ...] = (
    Metric("slm_acc", lambda q: float(q.slm.mean()), "SLM acc", shown_in=("summary",)),
    Metric("llm_acc", lambda q: float(q.llm.mean()), "LLM acc", shown_in=("summary",)),
    Metric(
        "auroc",
        lambda q: auroc(q.u, q.slm),
        "AUROC",
        higher_is_better=True,
        has_interval=True,
        batch=lambda u, slm, llm, ties: batch_auroc(u, slm, llm),
        shown_in=("summary", "mlflow", "report"),
    ),
    # beside the AUROC whatever the policy: under "drop" the metrics describe only the scored share;
    # under "most_uncertain" the unscored queries sit at the top of the ranking
    Metric(
        "unscored_share",
        lambda q: q.n_nan / q.n,
        "unscored",
        higher_is_better=False,
        shown_in=("summary", "mlflow", "report"),
        needs_queries=False,
    ),
    Metric(
        "area",
        lambda q: curve_area(q.curve),
        "area",
        higher_is_better=True,
        has_interval=True,
        batch=batch_area,
        shown_in=("summary", "mlflow", "report"),
    ),
    Metric(
        "apgr",
        lambda q: apgr(q.curve),
        "APGR",
        higher_is_better=True,
        has_interval=True,
        batch=batch_apgr,
        shown_in=("summary", "mlflow", "report"),
    ),
    Metric(
        "gap_recovered_vs_random",
        lambda q: gap_recovered_vs_random(q.curve, q.random, q.oracle),
        "gap vs random",
        higher_is_better=True,
        has_interval=True,
        batch=batch_gap_recovered_vs_random,
        shown_in=("report",),
    ),
    Metric(
        "call_rate_50",
        lambda q: call_rate_for_gap(q.curve, 0.5),
        "call rate 50%",
        higher_is_better=False,
        shown_in=("summary",),
    ),
    Metric(
        "call_rate_80",
        lambda q: call_rate_for_gap(q.curve, 0.8),
        "call rate 80%",
        higher_is_better=False,
        shown_in=("summary",),
    ),
    Metric("cpt_20", lambda q: cpt(q.curve, 0.2), "CPT(20%)", higher_is_better=False),
    Metric("cpt_50", lambda q: cpt(q.curve, 0.5), "CPT(50%)", higher_is_better=False, shown_in=("report",)),
    Metric("cpt_80", lambda q: cpt(q.curve, 0.8), "CPT(80%)", higher_is_better=False, shown_in=("report",)),
    *(_rel_acc(k) for k in RELATIVE_ACCURACY_PCTS),
    Metric("random_area", lambda q: curve_area(q.random), "random area"),
    Metric("oracle_area", lambda q: curve_area(q.oracle), "oracle area"),
    Metric("n", lambda q: q.n, "n", needs_queries=False),
    Metric("n_nan", lambda q: q.n_nan, "NaN", higher_is_better=False, shown_in=("report",), needs_queries=False),
    Metric("n_used", lambda q: len(q.u), "n used", needs_queries=False),
)


def registry() -> tuple[Metric, ...]:
    """``METRICS``, checked: every key (a name or an interval bound) once."""
    keys = [k for m in METRICS for k in (m.name, *m.interval_keys)]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"metric key(s) {dup} declared twice in jobs.metrics.METRICS")
    return METRICS


def metric(name: str) -> Metric:
    """The declaration of metric ``name``; an unknown name is an error naming the valid ones."""
    found = [m for m in registry() if m.name == name]
    if not found:
        raise ValueError(f"unknown metric {name!r}; valid: {', '.join(m.name for m in METRICS)}")
    return found[0]


def summary_keys() -> tuple[str, ...]:
    """The keys of ``summarize``'s dict: every metric, then the interval bounds."""
    ms = registry()
    return (*(m.name for m in ms), *(k for m in ms for k in m.interval_keys))


def shown(place: str) -> tuple[Metric, ...]:
    """The metrics shown in ``place`` (one of ``PLACES``), in registry order."""
    if place not in PLACES:
        raise ValueError(f"unknown place {place!r}; valid: {', '.join(PLACES)}")
    return tuple(m for m in registry() if place in m.shown_in)


def report_columns() -> list[tuple[str, str]]:
    """The metric columns of the report's settings table, (key, header): each metric shown in the
    report with its interval's columns ("lo", "hi") after it."""
    return [c for m in shown("report") for c in ((m.name, m.label), *zip(m.interval_keys, ("lo", "hi")))]


def _interval_stat(m: Metric, ties: str) -> BatchStat:
    batch = m.batch
    if batch is not None:
        return lambda u, slm, llm: batch(u, slm, llm, ties)
    return per_replicate(lambda u, slm, llm: m.fn(Queries(u, slm, llm, ties, n=len(u))))


def summarize(
    uncertainty,
    slm_correct,
    llm_correct,
    *,
    nan_policy: str = "most_uncertain",
    ties: str = "expected",
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, float | int]:
    """Every metric of ``METRICS`` for one setting, as plain JSON-serializable numbers.

    n is the number of queries given, n_nan how many had NaN uncertainty (the method could not
    score them) and unscored_share = n_nan / n, to be reported beside the AUROC; n_used is how
    many queries the metrics used (n - n_nan under "drop", n under "most_uncertain"). With
    nan_policy="drop" every other value is computed on the n_used queries (all NaN when none is
    left). Intervals (``*_lo``/``*_hi``, 95 %) come from ``n_boot`` paired bootstrap resamples;
    n_boot=0 skips them (NaN). apgr and cpt_20/50/80 are RouteLLM's (``apgr``, ``cpt``; cpt as a
    fraction), gap_recovered_vs_random ours, call_rate_50/80 the first crossing
    (``call_rate_for_gap``), relative_accuracy_at_k the paper's relative accuracy on the top k%
    most confident queries, k = 10..100.
    """
    q = queries(uncertainty, slm_correct, llm_correct, nan_policy, ties)
    ms = registry()
    out: dict[str, float | int] = {k: float("nan") for k in summary_keys()}
    for m in ms:
        if len(q.u) or not m.needs_queries:
            out[m.name] = m.fn(q)
    with_ci = [m for m in ms if m.has_interval]
    if n_boot > 0 and len(q.u) and with_ci:
        stats = {m.name: _interval_stat(m, ties) for m in with_ci}
        for name, (lo, hi) in bootstrap_ci(q.u, q.slm, q.llm, stats, n_boot=n_boot, seed=seed).items():
            out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
    return out


# ---- paired comparison of two UQ methods on the same queries -----------------------------------


def paired_comparison(
    u_a,
    u_b,
    slm_correct,
    llm_correct,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    ties: str = "expected",
) -> dict[str, float]:
    """AUROC and routing-area differences (a - b) of two methods scored on the same queries.

    Both methods see the same bootstrap resamples of queries, so the interval is on the paired
    difference (much tighter than comparing two separate CIs). NaN scores must be removed or
    filled by the caller (``apply_nan_policy``). Returns auroc_a, auroc_b, auroc_diff,
    auroc_diff_lo/hi, p_auroc (two-sided bootstrap p-value: 2 * min(P(diff <= 0), P(diff >= 0)),
    capped at 1), and the same for area (area_diff, area_diff_lo/hi, p_area); n.
    """
    ua, ub = _as_uncertainty(u_a, "u_a"), _as_uncertainty(u_b, "u_b")
    slm, llm = _as_bool(slm_correct, "slm_correct"), _as_bool(llm_correct, "llm_correct")
    n = _check_lengths(u_a=ua, u_b=ub, slm_correct=slm, llm_correct=llm)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    _check_ties(ties)
    out: dict[str, float] = {"n": n}
    point = {
        "auroc": (auroc(ua, slm), auroc(ub, slm)),
        "area": (curve_area(routing_curve(ua, slm, llm, ties)), curve_area(routing_curve(ub, slm, llm, ties))),
    }
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    bs, bl = slm[idx], llm[idx]
    boots = {
        "auroc": batch_auroc(ua[idx], bs, bl) - batch_auroc(ub[idx], bs, bl),
        "area": batch_area(ua[idx], bs, bl, ties) - batch_area(ub[idx], bs, bl, ties),
    }
    for name, (a, b) in point.items():
        out[f"{name}_a"], out[f"{name}_b"], out[f"{name}_diff"] = a, b, a - b
        d = boots[name][np.isfinite(boots[name])]
        if d.size == 0:
            out[f"{name}_diff_lo"] = out[f"{name}_diff_hi"] = out[f"p_{name}"] = float("nan")
            continue
        lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
        out[f"{name}_diff_lo"], out[f"{name}_diff_hi"] = float(lo), float(hi)
        out[f"p_{name}"] = float(min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))))
    return out
