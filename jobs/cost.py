"""The cost axis: what routing costs, the UQ method's own passes included.

Where this sits in the flow: per-sample generation records (tokens and wall time of every pass)
+ a price table (``conf/prices/<name>.yaml``) -> **cost per query** -> the routing curve on a cost
axis, cost to reach x% of the SLM-to-LLM gap, the Pareto frontier across UQ methods -> setting
manifest / MLflow / report. numpy only; every number is recomputed from the Parquet records.

What one query costs (mean USD per query over a setting's N queries):

  SLM answer   the greedy pass: ``n_prompt_tokens`` in, ``n_new_tokens`` out, ``latency_s``.
  UQ overhead  the passes the method reads beyond greedy (the score unit's ``eval`` stages):
               samples (m sampled answers: one prompt -- the prefill is shared locally and an API
               bills a request with n choices one prompt -- and the m answers' ``sampled_n_tokens``),
               ptrue (a prefill, no generation), verbal_2s (a prefill plus the confidence turn),
               verbal_1s (its own answer-and-confidence pass). Paid for every query, routed or not.
               Methods that read only the greedy pass (token probabilities, entropies, hidden
               states) have none; training a probe or router is a one-off cost, not per query,
               and is left out, as is the (CPU-only, model-free) scoring arithmetic itself.
  LLM          the LLM's pass, paid only for routed queries.

At call rate r = k / N (the k most uncertain queries routed, in ``jobs.metrics.routing_curve``'s
order, ties by the same rule):

    cost(k) = (sum SLM answer + sum UQ overhead + sum over the k routed of LLM) / N.

Pricing (``PriceTable``): a model is priced by tokens (an API: per-1k input and output prices) or
by time (a machine you rent: wall time per query x price per hour). The table's first ``models``
entry whose pattern matches the model's config name, ``model_name`` or ``id`` decides; else its
backend's default (hf -> ``local``, openai -> ``api``). ``latency_s`` is the batch's wall time
divided by its size, so a local query's time is its share of the device. A prompt whose token
count was not recorded (p(True)'s prefill, constrained answers) is counted as
ceil(len(prompt) / ``CHARS_PER_TOKEN``) and the number of such estimates is reported.

Units: costs in USD per query (``cost_*`` metrics); the MLflow curve ``cost_curve_accuracy`` has
step = cost in micro-dollars per query (``cost_curve_metric``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jobs import metrics as M
from jobs.stages import declared as declared_stages
from jobs.units import SettingSpec

#: Characters per token for a prompt whose count was not recorded (OpenAI's rule of thumb for
#: English text); only used where the record has no ``n_prompt_tokens``.
CHARS_PER_TOKEN = 4
#: Fractions of the SLM-to-LLM accuracy gap whose cost the setting reports.
GAP_FRACTIONS: tuple[float, ...] = (0.5, 0.8)
MICRO = 1e6  # USD -> micro-dollars (the MLflow step unit)
REPO_PRICES = Path(__file__).resolve().parents[1] / "conf" / "prices"


def overhead_stages() -> tuple[str, ...]:
    """The stages a UQ method may read beyond the greedy answer: those declared ``overhead``
    (``jobs.stages``; samples, ptrue, verbal_1s, verbal_2s), in declaration order. Read from the
    registry when asked (importing this module imports no stage)."""
    return tuple(st.name for st in declared_stages() if st.overhead)


class PriceError(ValueError):
    """A price table that cannot be used; the message names the file, the field and the value."""


# ---- price tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """How one model is priced.

    kind:          "tokens" (per-1k input / output prices) or "time" (per hour of wall time).
    input_per_1k, output_per_1k: USD per 1000 prompt / generated tokens (kind "tokens").
    per_hour:      USD per hour of wall time (kind "time").
    matched:       the table entry that decided: a pattern, or "local" / "api" (the defaults).
    """

    kind: str
    input_per_1k: float = 0.0
    output_per_1k: float = 0.0
    per_hour: float = 0.0
    matched: str = ""

    def usd(self, prompt_tokens, new_tokens, seconds) -> np.ndarray:
        """USD per query for arrays of prompt tokens, generated tokens and seconds."""
        if self.kind == "tokens":
            return (
                np.asarray(prompt_tokens, dtype=np.float64) * self.input_per_1k
                + np.asarray(new_tokens, dtype=np.float64) * self.output_per_1k
            ) / 1000.0
        return np.asarray(seconds, dtype=np.float64) * self.per_hour / 3600.0

    def describe(self) -> str:
        if self.kind == "tokens":
            return f"${self.input_per_1k:g} / ${self.output_per_1k:g} per 1k tokens in / out ({self.matched})"
        return f"${self.per_hour:g} per hour of wall time ({self.matched})"


@dataclass(frozen=True)
class PriceTable:
    """A parsed ``conf/prices/<name>.yaml`` (see the file for the format)."""

    name: str
    currency: str
    local: Rate
    api: Rate
    models: tuple[tuple[str, Rate], ...] = ()
    source: str = ""

    @property
    def digest(self) -> str:
        """Hash of the prices themselves (not of the file's comments): which table priced a number."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        """Plain data (what a work unit's payload carries); ``from_dict`` reads it back."""

        def rate(r: Rate) -> dict:
            return (
                {"input_per_1k": r.input_per_1k, "output_per_1k": r.output_per_1k}
                if r.kind == "tokens"
                else {"per_hour": r.per_hour}
            )

        return {
            "name": self.name,
            "currency": self.currency,
            "local": rate(self.local),
            "api": rate(self.api),
            "models": [{"pattern": p, **rate(r)} for p, r in self.models],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "") -> PriceTable:
        where = source or "price table"
        allowed = {"name", "currency", "local", "api", "models"}
        bad = sorted(set(d) - allowed)
        if bad:
            raise PriceError(f"{where}: unknown key(s) {', '.join(bad)}; valid: {', '.join(sorted(allowed))}")
        for key in ("name", "local", "api"):
            if key not in d:
                raise PriceError(f"{where}: {key!r} is required")
        local = _rate(d["local"], f"{where}: local", "local", kinds=("time",))
        api = _rate(d["api"], f"{where}: api", "api", kinds=("tokens",))
        models = []
        for i, e in enumerate(d.get("models") or []):
            w = f"{where}: models[{i}]"
            if not isinstance(e, Mapping) or not isinstance(e.get("pattern"), str) or not e["pattern"]:
                raise PriceError(f"{w}: needs a 'pattern' (a model name or glob like 'gpt-4o-mini*'); got {e!r}")
            models.append((e["pattern"], _rate({k: v for k, v in e.items() if k != "pattern"}, w, e["pattern"])))
        return cls(
            name=str(d["name"]),
            currency=str(d.get("currency", "USD")),
            local=local,
            api=api,
            models=tuple(models),
            source=source,
        )

    def rate_for(self, model: Any) -> Rate:
        """The rate of one model config (a resolved ``ModelConf``, or a mapping of its fields): the
        first pattern matching its name, model name or id, else the rate its backend is priced as
        (``ModelConf.priced_as``)."""
        from jobs.backends import model_conf

        m = model_conf(model)
        names = [str(v).lower() for k in ("name", "model_name", "id") if (v := getattr(m, k, None))]
        for pattern, rate in self.models:
            if any(fnmatch.fnmatchcase(n, pattern.lower()) for n in names):
                return rate
        return self.api if type(m).priced_as == "api" else self.local


def _rate(d: Any, where: str, matched: str, kinds: tuple[str, ...] = ("tokens", "time")) -> Rate:
    if not isinstance(d, Mapping):
        raise PriceError(f"{where}: expected a mapping of prices; got {d!r}")
    token_keys, time_keys = {"input_per_1k", "output_per_1k"}, {"per_hour"}
    bad = sorted(set(d) - token_keys - time_keys)
    if bad:
        raise PriceError(
            f"{where}: unknown key(s) {', '.join(bad)}; valid: input_per_1k, output_per_1k "
            f"(an API) or per_hour (a machine)"
        )
    kind = "tokens" if set(d) & token_keys else "time" if set(d) & time_keys else None
    if kind is None or (set(d) & token_keys and set(d) & time_keys):
        raise PriceError(f"{where}: give either input_per_1k and output_per_1k, or per_hour; got {dict(d)!r}")
    if kind not in kinds:
        raise PriceError(f"{where}: must be priced by {' or '.join(kinds)}; got {dict(d)!r}")
    if kind == "tokens" and set(d) != token_keys:
        raise PriceError(f"{where}: needs both input_per_1k and output_per_1k; got {dict(d)!r}")
    vals = {}
    for k, v in d.items():
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise PriceError(f"{where}: {k}={v!r} is not a number") from None
        if not (math.isfinite(x) and x >= 0):
            raise PriceError(f"{where}: {k}={v!r} must be a finite price >= 0")
        vals[k] = x
    return Rate(kind=kind, matched=matched, **vals)


def price_tables(conf_dirs: Iterable[Path] = ()) -> dict[str, Path]:
    """name -> file of every price table in ``<conf_dir>/prices`` (earlier folders win), then the
    repository's ``conf/prices``."""
    out: dict[str, Path] = {}
    for folder in [*(Path(c) / "prices" for c in conf_dirs), REPO_PRICES]:
        if folder.is_dir():
            for p in sorted(folder.glob("*.yaml")):
                out.setdefault(p.stem, p)
    return out


def load_prices(name: str, conf_dirs: Iterable[Path] = ()) -> PriceTable:
    """The price table ``name`` (a file in a ``prices/`` folder of ``conf_dirs`` or of the repository),
    or a path to a YAML file. Raises PriceError naming the bad name and the tables available."""
    import yaml

    tables = price_tables(conf_dirs)
    path = tables.get(name)
    if path is None and (name.endswith((".yaml", ".yml")) or "/" in name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise PriceError(f"cost.prices={name!r}: no such file")
    if path is None:
        from jobs.registry import UnknownNameError

        raise PriceError(str(UnknownNameError("price table (cost.prices)", name, list(tables))))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PriceError(f"{path}: cannot parse: {e}") from None
    if not isinstance(data, Mapping):
        raise PriceError(f"{path}: expected a mapping with name, local, api, models; got {type(data).__name__}")
    table = PriceTable.from_dict(data, source=str(path))
    if path.stem != table.name and name == path.stem:
        raise PriceError(f"{path}: name {table.name!r} must equal the file name {path.stem!r}")
    return table


# ---- usage per query ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What one component (the SLM's answer, the UQ overhead, the LLM) used per query; arrays (N,).

    prompt_tokens: tokens read (prefill); new_tokens: tokens generated; seconds: wall time;
    passes: model passes (a sampled answer counts one); estimated: prompt counts estimated from
    characters (``CHARS_PER_TOKEN``) because the record had none.
    """

    prompt_tokens: np.ndarray
    new_tokens: np.ndarray
    seconds: np.ndarray
    passes: np.ndarray
    estimated: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> Usage:
        z = np.zeros(n)
        return cls(z, z.copy(), z.copy(), z.copy(), np.zeros(n, dtype=np.int64))

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self._arrays(), other._arrays())))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return self.prompt_tokens, self.new_tokens, self.seconds, self.passes, self.estimated

    def subset(self, keep: np.ndarray) -> Usage:
        return Usage(*(a[keep] for a in self._arrays()))


def _num(x) -> float:
    return 0.0 if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def pass_usage(rows: Sequence[Mapping[str, Any]], stage: str) -> Usage:
    """Usage of one pass (one stage's records, one row per query, in query order).

    A samples row counts its prompt once and the sum of its ``sampled_n_tokens`` (one pass per
    sampled answer); every other row counts ``n_prompt_tokens`` (estimated from the prompt's
    characters when null), ``n_new_tokens`` and ``latency_s`` as one pass. A row that records
    ``n_passes`` caused that many model passes (0: constrained samples drawn from the greedy
    pass's stored option distribution, with 0 tokens and 0 s). Null counts of a failed row count 0.
    """
    n = len(rows)
    pt, nt, sec, passes = np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n)
    est = np.zeros(n, dtype=np.int64)
    for i, r in enumerate(rows):
        if r.get("n_prompt_tokens") is None:
            est[i] = 1
            pt[i] = math.ceil(len(r.get("prompt") or "") / CHARS_PER_TOKEN)
        else:
            pt[i] = float(r["n_prompt_tokens"])
        if stage == "samples" and r.get("sampled_n_tokens") is not None:
            counts = [int(x) for x in r["sampled_n_tokens"]]
            nt[i], passes[i] = float(sum(counts)), float(len(counts))
        else:
            nt[i] = _num(r.get("n_new_tokens"))
        sec[i] = _num(r.get("latency_s"))
        if r.get("n_passes") is not None:
            passes[i] = float(r["n_passes"])
    return Usage(pt, nt, sec, passes, est)


def align(rows: Iterable[Mapping[str, Any]], ids: Sequence[str], what: str) -> list[Mapping[str, Any]]:
    """``rows`` in the order of ``ids`` (by sample_id); KeyError naming the missing samples."""
    by_id = {r["sample_id"]: r for r in rows}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise KeyError(f"{what} records lack {len(missing)} of {len(ids)} samples, e.g. {missing[:3]}")
    return [by_id[i] for i in ids]


@dataclass(frozen=True)
class QueryUsage:
    """Usage of one setting's queries by component; ``overhead_stages`` names the UQ passes."""

    slm: Usage
    uq: Usage
    llm: Usage
    overhead_stages: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.slm.seconds)

    def subset(self, keep: np.ndarray) -> QueryUsage:
        return QueryUsage(self.slm.subset(keep), self.uq.subset(keep), self.llm.subset(keep), self.overhead_stages)


def answer_stage(method: str | None, params: Mapping[str, Any] | None = None) -> str | None:
    """The stage whose pass gives the answer a setting of UQ method ``method`` judges and routes
    from: its ``answer_stage`` when its ``route`` is "own_answer" (verbal_1s by default), else None
    (the greedy pass). A name the registry does not know: None."""
    from jobs.uq import UQ_METHODS

    if not method or method not in UQ_METHODS:
        return None
    m = UQ_METHODS.get(method)
    return m.answer_stage if m.answer_stage is not None and m.route(params or {}) == "own_answer" else None


def query_usage(
    slm_rows: Sequence[Mapping],
    stage_rows: Mapping[str, Sequence[Mapping]],
    llm_rows: Sequence[Mapping],
    answer_stage: str | None = None,
) -> QueryUsage:
    """Usage per query from the greedy rows, the UQ method's other stages (stage -> rows; greedy
    and stages that are not UQ passes are ignored) and the LLM rows, all aligned by sample id to
    the greedy rows' order.

    answer_stage: the stage whose pass gives the answer routed from (``answer_stage(method,
    params)``; verbal_1s under ``route: own_answer``): that pass is the SLM answer and no
    overhead, and the greedy pass, which the system would not run, is not charged. Each method is
    charged the passes its routed answer and its score need, nothing else."""
    ids = [r["sample_id"] for r in slm_rows]
    n = len(ids)
    uq = Usage.zeros(n)
    stages = tuple(st for st in overhead_stages() if st in stage_rows and st != answer_stage)
    for st in stages:
        uq = uq + pass_usage(align(stage_rows[st], ids, f"stage {st}"), st)
    if answer_stage is None:
        slm = pass_usage(slm_rows, "greedy")
    elif answer_stage in stage_rows:
        slm = pass_usage(align(stage_rows[answer_stage], ids, f"stage {answer_stage}"), answer_stage)
    else:
        raise KeyError(f"the routed answer comes from stage {answer_stage!r}, whose records are not given")
    return QueryUsage(slm, uq, pass_usage(align(llm_rows, ids, "LLM"), "llm"), stages)


@dataclass(frozen=True)
class QueryCosts:
    """USD per query by component, arrays (N,)."""

    slm: np.ndarray
    uq: np.ndarray
    llm: np.ndarray

    def subset(self, keep: np.ndarray) -> QueryCosts:
        return QueryCosts(self.slm[keep], self.uq[keep], self.llm[keep])


def price(usage: QueryUsage, slm_rate: Rate, llm_rate: Rate) -> QueryCosts:
    """Price the SLM's passes (answer and UQ overhead) at ``slm_rate`` and the LLM's at ``llm_rate``."""

    def usd(u: Usage, r: Rate) -> np.ndarray:
        return r.usd(u.prompt_tokens, u.new_tokens, u.seconds)

    return QueryCosts(usd(usage.slm, slm_rate), usd(usage.uq, slm_rate), usd(usage.llm, llm_rate))


# ---- curves on the cost axis ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CostCurve:
    """Mean cost per query and accuracy after routing the k most uncertain of N queries, k = 0..N.

    ratio, cost (USD per query), accuracy: arrays (N+1,); cost[0] = SLM answer + UQ overhead,
    cost[N] = that + the LLM on every query.
    """

    ratio: np.ndarray
    cost: np.ndarray
    accuracy: np.ndarray

    def points(self) -> list[dict]:
        return [
            {"ratio": float(r), "cost": float(c), "accuracy": float(a)}
            for r, c, a in zip(self.ratio, self.cost, self.accuracy)
        ]


def cost_curve(uncertainty, slm_correct, llm_correct, costs: QueryCosts, ties: str = "expected") -> CostCurve:
    """The routing curve on a cost axis (NaN-free uncertainty: apply the NaN policy first)."""
    curve = M.routing_curve(uncertainty, slm_correct, llm_correct, ties=ties)
    n = curve.n
    if len(costs.slm) != n:
        raise ValueError(f"costs cover {len(costs.slm)} queries; the curve has {n}")
    fixed = float(costs.slm.sum() + costs.uq.sum())
    cost = (fixed + M.expected_offloaded_sum(uncertainty, costs.llm, ties)) / n
    return CostCurve(curve.ratio, cost, curve.accuracy)


def all_queries_cost_curve(
    uncertainty, slm_correct, llm_correct, costs: QueryCosts, nan_policy: str, ties: str = "expected"
) -> CostCurve:
    """The routing curve on a cost axis over *every* query of the setting, so that methods of one
    (SLM, dataset, LLM) are compared on the same queries (the Pareto frontier, issue 17.2).

    uncertainty: raw, NaN = unscored. Under ``nan_policy`` "most_uncertain" every query is routable
    (NaN first) and this is ``cost_curve`` of them all. Under "drop" an unscored query is never
    routed: the SLM answers it, and it costs what the method spent on it (the SLM answer and the
    UQ overhead); the k most uncertain *scored* queries are routed, k = 0..n_scored, so the curve
    ends at call rate n_scored / N. Accuracy and cost are means over all N queries.
    """
    u, keep = M.apply_nan_policy(uncertainty, nan_policy)
    slm = np.asarray(slm_correct, dtype=bool)
    llm = np.asarray(llm_correct, dtype=bool)
    n = len(u)
    if n == 0:
        return CostCurve(np.zeros(0), np.zeros(0), np.zeros(0))
    fixed = float(costs.slm.sum() + costs.uq.sum())
    if not keep.any():  # nothing scored: the SLM answers every query
        return CostCurve(np.zeros(1), np.array([fixed / n]), np.array([float(slm.mean())]))
    part = M.routing_curve(u[keep], slm[keep], llm[keep], ties=ties)
    routed_llm = M.expected_offloaded_sum(u[keep], costs.llm[keep], ties)
    n_kept = int(keep.sum())
    k = np.arange(n_kept + 1)
    acc = (part.accuracy * n_kept + float(slm[~keep].sum())) / n
    return CostCurve(k / n, (fixed + routed_llm) / n, acc)


def random_cost_curve(slm_correct, llm_correct, costs: QueryCosts) -> CostCurve:
    """Random routing with no UQ method (so no overhead): the expected accuracy and cost lines."""
    rnd = M.random_curve(slm_correct, llm_correct)
    cost = float(costs.slm.mean()) + rnd.ratio * float(costs.llm.mean())
    return CostCurve(rnd.ratio, cost, rnd.accuracy)


def cost_to_gap(curve: CostCurve, frac: float, llm_acc: float | None = None) -> float:
    """Cost per query at the first call rate whose accuracy reaches slm_acc + frac * (llm_acc - slm_acc)
    (the first crossing, as ``metrics.call_rate_for_gap``). NaN when the LLM is not more accurate
    than the SLM (no gap); inf when the curve never reaches the target.
    llm_acc: the LLM's accuracy on the curve's queries; default the curve's end (every query
    routed). Give it for a curve that cannot route every query (``all_queries_cost_curve``)."""
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"frac must be in [0, 1]; got {frac!r}")
    lo = float(curve.accuracy[0])
    hi = float(curve.accuracy[-1]) if llm_acc is None else float(llm_acc)
    if not hi > lo:
        return float("nan")
    reached = np.flatnonzero(curve.accuracy >= lo + frac * (hi - lo) - 1e-12)
    return float(curve.cost[reached[0]]) if reached.size else float("inf")


def pareto_frontier(curves: Mapping[str, CostCurve]) -> list[dict]:
    """Points (over every label's curve) that no other point beats: none cheaper-or-equal with higher
    accuracy, none cheaper with equal accuracy. Sorted by cost; each {"label", "ratio", "cost",
    "accuracy"}. A label absent from the frontier never gives the best accuracy for its cost."""
    pts = [
        (float(c), -float(a), label, float(r))
        for label, cv in curves.items()
        for r, c, a in zip(cv.ratio, cv.cost, cv.accuracy)
    ]
    pts.sort()
    out, best = [], -math.inf
    for c, neg_a, label, r in pts:
        if -neg_a > best + 1e-12:
            out.append({"label": label, "ratio": r, "cost": c, "accuracy": -neg_a})
            best = -neg_a
    return out


def cost_curve_metric(points: Sequence[Mapping[str, float]], n_steps: int = 101) -> list[tuple[int, float]]:
    """(step, accuracy) for MLflow's ``cost_curve_accuracy``: step = cost in micro-dollars per query,
    rounded, at ``n_steps`` call rates from 0 to 1 (interpolated); where two rates round to one step,
    the higher accuracy is kept."""
    r = np.array([p["ratio"] for p in points])
    c = np.array([p["cost"] for p in points])
    a = np.array([p["accuracy"] for p in points])
    grid = np.linspace(0.0, 1.0, n_steps)
    steps = np.rint(np.interp(grid, r, c) * MICRO).astype(np.int64)
    acc = np.interp(grid, r, a)
    best: dict[int, float] = {}
    for s, x in zip(steps.tolist(), acc.tolist()):
        best[s] = max(x, best.get(s, -math.inf))
    return sorted(best.items())


# ---- one setting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingCost:
    """Everything the cost axis says about one setting (from ``setting_cost``)."""

    metrics: dict
    curve: CostCurve
    random: CostCurve
    records: list[dict] = field(repr=False)
    #: the curves over every query of the setting (``all_queries_cost_curve``; random routing
    #: with no UQ method over them): what the Pareto frontier compares methods on
    all_queries: CostCurve | None = None
    all_queries_random: CostCurve | None = None


def setting_cost(
    usage: QueryUsage,
    uncertainty,
    slm_correct,
    llm_correct,
    *,
    slm_rate: Rate,
    llm_rate: Rate,
    nan_policy: str,
    ties: str,
    sample_ids: Sequence[str] | None = None,
) -> SettingCost:
    """Cost metrics, curves and per-query cost records of one setting.

    uncertainty: the method's raw uncertainty (NaN allowed; ``nan_policy`` applies as in the
    routing metrics, and costs are means over the queries the policy keeps). Metrics, USD per query:
      cost_slm, cost_uq_overhead, cost_llm_all   mean SLM answer, UQ overhead, LLM-on-every-query cost
      cost_slm_only                              the system at r = 0 (SLM answer + overhead)
      cost_all_routed                            r = 1 (+ the LLM on every query)
      cost_to_50_gap, cost_to_80_gap             cost to reach 50% / 80% of the SLM-to-LLM gap,
                                                 overhead counted (NaN: no gap)
      cost_to_50_gap_random, cost_to_80_gap_random  the same for random routing with no UQ method
      cost_ratio_80_vs_llm                       cost_to_80_gap / cost_llm_all (the LLM alone)
      tokens_*/seconds_* per query and uq_passes (model passes of the method beyond greedy),
      n_prompt_tokens_estimated (prompt counts estimated from characters).
    ``SettingCost.all_queries``: the curve over every query (``all_queries_cost_curve``).
    """
    u_all, keep = M.apply_nan_policy(uncertainty, nan_policy)
    slm_ok, llm_ok = np.asarray(slm_correct, dtype=bool), np.asarray(llm_correct, dtype=bool)
    costs_all = price(usage, slm_rate, llm_rate)
    use, costs = usage.subset(keep), costs_all.subset(keep)
    metrics: dict[str, float] = {}
    curve = rnd = CostCurve(np.zeros(0), np.zeros(0), np.zeros(0))
    if keep.any():
        curve = cost_curve(u_all[keep], slm_ok[keep], llm_ok[keep], costs, ties=ties)
        rnd = random_cost_curve(slm_ok[keep], llm_ok[keep], costs)
        metrics.update(_kept_metrics(use, costs, curve, rnd))
    metrics["n_prompt_tokens_estimated"] = int(sum(u.estimated.sum() for u in (usage.slm, usage.uq, usage.llm)))
    whole = all_queries_cost_curve(uncertainty, slm_ok, llm_ok, costs_all, nan_policy, ties)
    ids = list(sample_ids) if sample_ids is not None else [str(i) for i in range(usage.n)]
    records = _cost_records(usage, costs_all, ids)
    whole_random = random_cost_curve(slm_ok, llm_ok, costs_all) if len(slm_ok) else None
    return SettingCost(metrics, curve, rnd, records, whole, whole_random)


def _kept_metrics(use: QueryUsage, costs: QueryCosts, curve: CostCurve, rnd: CostCurve) -> dict[str, float]:
    """``setting_cost``'s metrics over the queries its NaN policy keeps (``use``, ``costs``: theirs;
    ``curve``, ``rnd``: the method's and random routing's cost curves on them), in metric order."""
    metrics: dict[str, float] = dict(
        cost_slm=float(costs.slm.mean()),
        cost_uq_overhead=float(costs.uq.mean()),
        cost_llm_all=float(costs.llm.mean()),
        cost_slm_only=float(curve.cost[0]),
        cost_all_routed=float(curve.cost[-1]),
    )
    for f in GAP_FRACTIONS:
        pct = round(100 * f)
        metrics[f"cost_to_{pct}_gap"] = cost_to_gap(curve, f)
        metrics[f"cost_to_{pct}_gap_random"] = cost_to_gap(rnd, f)
    c80, llm_all = metrics["cost_to_80_gap"], metrics["cost_llm_all"]
    metrics["cost_ratio_80_vs_llm"] = c80 / llm_all if llm_all > 0 and math.isfinite(c80) else float("nan")
    for part, u in (("slm", use.slm), ("uq", use.uq), ("llm", use.llm)):
        metrics[f"tokens_{part}_prompt"] = float(u.prompt_tokens.mean())
        metrics[f"tokens_{part}_new"] = float(u.new_tokens.mean())
        metrics[f"seconds_{part}"] = float(u.seconds.mean())
    metrics["uq_passes"] = float(use.uq.passes.mean())
    return metrics


def _cost_records(usage: QueryUsage, costs: QueryCosts, ids: Sequence[str]) -> list[dict]:
    """One per-query cost record per id (in ``usage``'s query order): sample_id, each part's
    (slm, uq, llm) prompt_tokens, new_tokens, seconds and passes, and its cost in USD."""
    return [
        {
            "sample_id": sid,
            **{
                f"{part}_{k}": float(getattr(u, attr)[i])
                for part, u in (("slm", usage.slm), ("uq", usage.uq), ("llm", usage.llm))
                for k, attr in (
                    ("prompt_tokens", "prompt_tokens"),
                    ("new_tokens", "new_tokens"),
                    ("seconds", "seconds"),
                    ("passes", "passes"),
                )
            },
            "slm_usd": float(costs.slm[i]),
            "uq_usd": float(costs.uq[i]),
            "llm_usd": float(costs.llm[i]),
        }
        for i, sid in enumerate(ids)
    ]


def curve_json(
    sc: SettingCost, table: PriceTable, slm_rate: Rate, llm_rate: Rate, overhead_stages: Sequence[str]
) -> dict:
    """The ``cost`` block of a setting's curve.json: the curves, the prices and what was counted."""
    return {
        "unit": f"{table.currency} per query",
        "prices": table.name,
        "prices_digest": table.digest,
        "slm_rate": asdict(slm_rate),
        "llm_rate": asdict(llm_rate),
        "overhead_stages": list(overhead_stages),
        "curve": sc.curve.points(),
        "random": sc.random.points(),
    }


def from_store(
    store: Path,
    unit: SettingSpec,
    slm_rows: Sequence[Mapping],
    llm_rows: Sequence[Mapping],
    uncertainty,
    slm_correct,
    llm_correct,
) -> tuple[SettingCost, dict] | None:
    """A setting unit's cost, from its spec's ``cost`` block (``cost_payload``): reads the UQ
    method's extra stage records from the store. None when the spec has no cost block."""
    spec = unit.cost
    if not spec:
        return None
    from jobs.store import Store

    overhead = overhead_stages()
    stages = {st: k for st, k in (spec.get("uq_stages") or {}).items() if st in overhead}
    stage_rows = {st: Store(store).gen(k).rows() for st, k in stages.items()}
    usage = query_usage(slm_rows, stage_rows, llm_rows, answer_stage(unit.method, unit.uq_params))
    table = PriceTable.from_dict(spec["prices"], source=spec["prices"].get("name", ""))
    slm_rate, llm_rate = Rate(**spec["slm_rate"]), Rate(**spec["llm_rate"])
    mc = unit.metrics
    sc = setting_cost(
        usage,
        uncertainty,
        slm_correct,
        llm_correct,
        slm_rate=slm_rate,
        llm_rate=llm_rate,
        nan_policy=mc.nan_policy,
        ties=mc.ties,
        sample_ids=[r["sample_id"] for r in slm_rows],
    )
    return sc, curve_json(sc, table, slm_rate, llm_rate, usage.overhead_stages)


def cost_payload(table: PriceTable, slm_conf: Any, llm_conf: Any, uq_stages: Mapping[str, str]) -> dict:
    """What a setting unit needs to price itself (plain data, planned on the driver)."""
    return {
        "prices": table.to_dict(),
        "slm_rate": asdict(table.rate_for(slm_conf)),
        "llm_rate": asdict(table.rate_for(llm_conf)),
        "uq_stages": dict(uq_stages),
    }


# ---- which method is worth its own cost -------------------------------------------------------------


def worth_verdict(rows: Sequence[Mapping[str, Any]], frac: float = 0.8) -> str:
    """One plain sentence for one (SLM, dataset, LLM): which UQ method reaches ``frac`` of the gap
    cheapest with its overhead counted, and which cost more than random routing with no UQ method.

    rows: one per UQ method with "uq", f"cost_to_{pct}_gap", f"cost_to_{pct}_gap_random",
    "cost_uq_overhead", "cost_llm_all" (USD per query).
    """
    pct = round(100 * frac)
    key, rkey = f"cost_to_{pct}_gap", f"cost_to_{pct}_gap_random"
    ok = [r for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    if not ok:
        return (
            "No UQ method is worth its cost here: the LLM is not more accurate than the SLM, so there is no "
            "gap to buy and every routed query only adds the LLM's cost."
            if rows
            else "No setting here has cost records yet."
        )
    best = min(ok, key=lambda r: (r[key], r["uq"]))
    rnd = [r[rkey] for r in ok if r.get(rkey) is not None and math.isfinite(r[rkey])]
    rnd_cost = float(np.median(rnd)) if rnd else float("nan")
    llm = float(np.median([r["cost_llm_all"] for r in ok]))
    worse = sorted(r["uq"] for r in ok if math.isfinite(rnd_cost) and r[key] > rnd_cost * (1 + 1e-9))
    heavy = sorted(r["uq"] for r in ok if r.get("cost_uq_overhead", 0) > 0 and r["uq"] in worse)
    s = (
        f"{best['uq']} is worth its cost most: it reaches {pct}% of the SLM-to-LLM gap at "
        f"{_usd_per_1k(best[key])} per 1k queries, overhead included "
        f"({_share(best[key], llm)} of sending every query to the LLM, {_usd_per_1k(llm)}; random routing "
        f"with no UQ method needs {_usd_per_1k(rnd_cost)})"
    )
    if worse:
        s += (
            f"; {', '.join(worse)} cost more than random routing to get there"
            + (
                f" ({', '.join(heavy)} because of {'its' if len(heavy) == 1 else 'their'} extra passes)"
                if heavy
                else ""
            )
            + ", so they are not worth their cost here"
        )
    elif len(ok) > 1:
        s += "; every method beats random routing on cost here"
    if llm < best[key]:
        s += (
            f". Sending every query to the LLM alone is cheaper still ({_usd_per_1k(llm)}) with these prices: "
            f"routing pays here only where the SLM's own cost is not paid per query (an on-device SLM)"
        )
    return s + "."


def _usd_per_1k(x: float) -> str:
    return "–" if not math.isfinite(x) else f"${1000 * x:.4g}"


def _share(x: float, of: float) -> str:
    if not (math.isfinite(x) and of > 0):
        return "–"
    return f"{x / of:.0%}" if x / of < 2 else f"{x / of:.3g} times the cost"
