"""Grid-level analysis: the numbers behind the paper's three findings, read from the store.

Where this sits in the flow: finished setting units (eval role) and calibration units (fit
role) in the store -> **analysis** -> the report (``jobs/analysis/report.py``), ``uqroute calibrate``.
What is read, and how the grid asked for it, comes as a typed view (``jobs.analysis.inputs.GridView``, built
by ``orchestrator.grid_view.grid_view``); pools are ``jobs.analysis.calibration.Pool``s.

  eval_pools / fit_pools   per (SLM, UQ, LLM): per dataset sample ids, uncertainty, SLM and LLM
                           correctness (eval: the evaluated rows; fit: train/dev rows)
  method_table             AUROC / area / APGR (RouteLLM) / gap recovered vs random / CPT /
                           relative accuracy, with bootstrap CIs, one row per setting
  paired_table             paired bootstrap differences between UQ methods on the same queries
  distance_analysis        distances between uncertainty distributions (finding 2)
  transfer_analysis        leave-one-dataset-out threshold transfer (finding 3)
  group_transfer_analysis  the fully out-of-domain split: calibrate on one dataset group, apply on another
  findings                 the three findings, each with the project's numbers and a verdict
                           (alignment_finding, distribution_finding, transfer_finding)

Pure numpy + pyarrow: no torch, no Ray, no MLflow.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from jobs import metrics as M
from jobs.analysis import calibration as C
from jobs.analysis.calibration import Pool, calibration_scale
from jobs.analysis.inputs import CalibrationUnits, GridView, LeaveOutScore, SettingView
from jobs.store import Store, setting_row, unscored_share
from jobs.uq.definition import DatasetForm, Definition, same_definition

Key = tuple[str, str, str]  # (slm, uq, llm)
Pools = dict[Key, dict[str, Pool]]  # (slm, uq, llm) -> dataset -> pool
Rescored = dict[Key, dict[str, dict[str, Pool]]]  # (slm, uq, llm) -> tag -> dataset -> pool
Definitions = dict[tuple[str, str], Definition]  # (uq, dataset) -> its statistic's definition
VERBAL = ("verbal_1s", "verbal_2s")
PAPER_TOP3 = ("probe", "ood_probe", "perplexity")


def _nanfloat(x) -> float:
    return float("nan") if x is None else float(x)


# ---- pools ------------------------------------------------------------------------------------


def eval_pools(settings: Iterable[SettingView]) -> Pools:
    """(slm, uq, llm) -> dataset -> ``Pool`` (sample ids, uncertainty, SLM and LLM correctness) from
    the per-sample records of every finished setting."""
    out: Pools = {}
    for s in settings:
        d = s.unit
        if not (d.done and d.records_path.is_file()):
            continue
        t = pq.read_table(d.records_path).to_pydict()
        out.setdefault((s.slm, s.uq, s.llm), {})[s.dataset] = Pool(
            sample_id=t["sample_id"],
            uncertainty=np.asarray([_nanfloat(x) for x in t["uncertainty"]], dtype=np.float64),
            slm_correct=np.asarray(t["slm_correct"], dtype=bool),
            llm_correct=np.asarray(t["llm_correct"], dtype=bool),
        )
    return out


def fit_pools(store: Path, settings: Iterable[SettingView], policy: str) -> Pools:
    """Same shape as ``eval_pools``, from the settings' calibration (fit-role) units
    (``SettingView.fit``); empty when the grid did not enable calibration. Rows are the fit-role
    greedy rows with a score; the SLM answer judged is the one the eval settings judge
    (``jobs.scoring.slm_judgement``: verbal_1s's own answer under its default route)."""
    from jobs.judge import judge
    from jobs.scoring import slm_judgement
    from jobs.uq import UQ_METHODS

    judged: dict[tuple, dict[str, bool]] = {}
    st = Store(store)

    def correct_by_id(key: str, fit: CalibrationUnits | None = None) -> dict[str, bool] | None:
        """sample id -> correct, for the gen unit ``key``: the answer ``fit``'s score judges (its
        method's route), or the plain extracted answer (fit None, or a score of no known method)."""
        ck = (key, fit.score_key if fit is not None else None)
        if ck not in judged:
            stages = fit.stage_keys if fit is not None else {}
            if any(not st.gen(k).done for k in {key, *stages.values()}):
                return None
            rows = st.gen(key).rows()
            if fit is None or fit.method is None:
                _, ok = judge(rows, policy)
            else:
                ok = slm_judgement(store, rows, stages, UQ_METHODS.get(fit.method), fit.params, policy)["correct"]
            judged[ck] = {r["sample_id"]: bool(o) for r, o in zip(rows, ok)}
        return judged[ck]

    out: Pools = {}
    for s in settings:
        fit = s.fit
        if fit is None:
            continue
        sdir = st.score(fit.score_key)
        slm_ok = correct_by_id(fit.greedy_key, fit)
        llm_ok = correct_by_id(fit.llm_key)
        if not sdir.done or slm_ok is None or llm_ok is None:
            continue
        rows = [r for r in sdir.rows() if r["sample_id"] in llm_ok]
        out.setdefault((s.slm, s.uq, s.llm), {})[s.dataset] = Pool(
            sample_id=[r["sample_id"] for r in rows],
            uncertainty=np.asarray([_nanfloat(r["uncertainty"]) for r in rows], dtype=np.float64),
            slm_correct=np.asarray([slm_ok[r["sample_id"]] for r in rows], dtype=bool),
            llm_correct=np.asarray([llm_ok[r["sample_id"]] for r in rows], dtype=bool),
        )
    return out


def _rescored_pools(store: Path, sources: Iterable[LeaveOutScore], eval_p: Pools, fit_p: Pools) -> Rescored:
    """(slm, uq, llm) -> without -> dataset -> pool, for each ``LeaveOutScore``: ``dataset``'s
    ``role`` pool with the uncertainty of its score unit (by sample id; rows it did not score are
    left out). Unfinished units are left out."""
    out: Rescored = {}
    for lo in sources:
        slm, uq, ds, tag = lo.slm, lo.uq, lo.dataset, lo.without
        sdir = Store(store).score(lo.score_key)
        if not sdir.done:
            continue
        unc = {r["sample_id"]: r["uncertainty"] for r in sdir.rows()}
        base = fit_p if lo.role == "fit" else eval_p
        for (s2, u2, llm), pools in base.items():
            if (s2, u2) != (slm, uq) or ds not in pools:
                continue
            p = pools[ds]
            keep = np.asarray([i for i, sid in enumerate(p.sample_id) if sid in unc], dtype=int)
            out.setdefault((slm, uq, llm), {}).setdefault(tag, {})[ds] = Pool(
                sample_id=[p.sample_id[i] for i in keep],
                uncertainty=np.asarray([_nanfloat(unc[p.sample_id[i]]) for i in keep], dtype=np.float64),
                slm_correct=p.slm_correct[keep],
                llm_correct=p.llm_correct[keep],
            )
    return out


def leave_out_pools(store: Path, sources: Iterable[LeaveOutScore], eval_p: Pools, fit_p: Pools) -> Rescored:
    """(slm, uq, llm) -> held-out -> dataset -> pool: ``dataset``'s calibration-source pool (its fit
    rows, or its evaluated rows when calibration is off; ``LeaveOutScore.role`` says which) with the
    uncertainty of the leave-out score unit, whose model trained on neither ``dataset`` nor the
    held-out one (``GridView.leave_out``). Only methods trained on other datasets have them;
    unfinished units are left out."""
    return _rescored_pools(store, sources, eval_p, fit_p)


def leave_group_pools(store: Path, sources: Iterable[LeaveOutScore], eval_p: Pools, fit_p: Pools) -> Rescored:
    """(slm, uq, llm) -> target group -> dataset -> pool, as ``leave_out_pools`` but from
    ``GridView.leave_group_out``: scored by a model that trained on no dataset of the target group."""
    return _rescored_pools(store, sources, eval_p, fit_p)


# ---- definitions: which datasets' statistics may be combined ---------------------------------


def dataset_forms(view: GridView) -> dict[str, DatasetForm]:
    """dataset -> how the grid ran it (``jobs.uq.definition.DatasetForm``): its answer mode
    (``GridView.answer_modes``; "generate" for a view that names none) and, in an option-scoring
    mode, the option counts of its questions, read from the stored greedy rows (``option_labels``)
    of its evaluated and fit-role passes, or fixed by its task (yes/no: 2) when none is stored."""
    from jobs.uq.definition import OPTION_MODES, option_counts, task_option_counts

    st = Store(view.store)
    keys: dict[str, set[str]] = {}
    for s in view.settings:
        keys.setdefault(s.dataset, set()).update(k for k in (s.greedy_key, s.fit.greedy_key if s.fit else "") if k)
    out = {}
    for d in view.dataset_names or sorted(keys):
        mode = view.answer_modes.get(d, "generate")
        ks: set[int] = set()
        if mode in OPTION_MODES:
            for k in sorted(keys.get(d, ())):
                u = st.gen(k)
                if u.done:
                    ks.update(option_counts(u.rows(["option_labels"])))
            ks = ks or set(task_option_counts(view.dataset_tasks.get(d, "")))
        out[d] = DatasetForm(mode, tuple(sorted(ks)))
    return out


def method_definitions(methods: dict[str, str], forms: dict[str, DatasetForm]) -> Definitions:
    """(uq, dataset) -> the definition of the uq's statistic there (``jobs.uq.definition``);
    methods: uq name -> UQ method name (a name the registry does not know depends on the answer
    mode, the default)."""
    from jobs.uq import UQ_METHODS
    from jobs.uq.definition import definition_key

    out: Definitions = {}
    for uq, m in methods.items():
        deps = UQ_METHODS.get(m).definition_depends_on if m in UQ_METHODS else ("answer_mode",)
        for d, f in forms.items():
            out[(uq, d)] = definition_key(deps, f, d)
    return out


def definitions_summary(
    methods: dict[str, str],
    forms: dict[str, DatasetForm],
    defs: Definitions,
    transfer: dict,
    cross: dict | None,
    dist: dict,
    needs_leave_out: set[str],
    datasets: Iterable[str],
) -> dict:
    """What the report says about definitions: each dataset's form (label), each method's
    definition per dataset and what it depends on, the datasets left out of each split's pools
    (one sentence per (uq, target, left-out dataset), over SLMs and LLMs), the dataset pairs
    finding 2 does not compare, and, for methods trained on other datasets, the targets whose
    training datasets (every other dataset) include none of the target's definition."""
    from jobs.uq import UQ_METHODS

    def sentences(items: list[dict]) -> list[str]:
        return sorted({x for it in items for x in it["left_out"].values()})

    trained_across = []
    names = list(datasets) or sorted(forms)
    for uq in sorted(needs_leave_out):
        for t in names:
            others = [d for d in names if d != t]
            if others and (uq, t) in defs and not [d for d in others if defs[(uq, d)] == defs[(uq, t)]]:
                trained_across.append(
                    f"{uq} on {t} ({defs[(uq, t)].label}) is trained only on datasets of another definition: "
                    + ", ".join(f"{d} ({defs[(uq, d)].label})" for d in others)
                )
    return {
        "forms": {d: f.label for d, f in sorted(forms.items())},
        "depends_on": {
            uq: list(UQ_METHODS.get(m).definition_depends_on if m in UQ_METHODS else ("answer_mode",))
            for uq, m in sorted(methods.items())
        },
        "by_uq": {uq: {d: defs[(uq, d)].label for d in sorted(forms)} for uq in sorted(methods)},
        "not_pooled": {
            "leave_one_out": sentences(transfer.get("not_pooled", [])),
            "cross_group": sentences((cross or {}).get("not_pooled", [])),
        },
        "not_compared": list(dist.get("not_compared", [])),
        "trained_across_definitions": trained_across,
    }


# ---- finding 1: alignment of each method ------------------------------------------------------


def method_table(settings: Iterable[SettingView]) -> list[dict]:
    """One row per finished setting: axes + summary metrics (with 95% bootstrap CIs)."""
    rows = (setting_row(s.unit, s.name, s.hash, s.axes()) for s in settings)
    return [row for row in rows if row is not None]


#: a setting's AUROC enters its method's mean (the ranking of finding 1) only when the method
#: scored at least this share of the setting's queries: a verbal method that parsed 6 of 50
#: confidences has an AUROC over 6 queries, no ranking evidence
MIN_SCORED_FOR_RANKING = 0.5


#: two methods are one quantity on a setting when they order its queries alike: no discordant
#: pair (ties aside: 1 - p and 1 / p may round two tiny p to one value) and a Spearman rank
#: correlation of at least this (which also rules out a constant score)
SAME_ORDER_MIN_SPEARMAN = 0.999


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return (sums / counts)[inv]


def same_order(a, b) -> bool:
    """Whether uncertainties ``a`` and ``b`` of the same queries are one quantity: the same queries
    unscored (NaN), no pair of queries ordered one way by ``a`` and the other way by ``b``, and a
    Spearman correlation >= ``SAME_ORDER_MIN_SPEARMAN`` (e.g. average token probability 1 - p and
    perplexity 1 / p of a one-token constrained answer: monotone maps of one log p)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return False
    keep = ~np.isnan(a)
    a, b = a[keep], b[keep]
    if len(a) < 2:
        return False
    for x, y in ((a, b), (b, a)):  # sorted by x (ties by y), y must never decrease
        o = np.lexsort((y, x))
        if np.any(np.diff(y[o]) < 0):
            return False
    ra, rb = _average_ranks(a), _average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return False
    return float(np.corrcoef(ra, rb)[0, 1]) >= SAME_ORDER_MIN_SPEARMAN


def coincident_methods(pools: Pools) -> dict[tuple[str, str, str], list[tuple[str, ...]]]:
    """(slm, llm, dataset) -> the classes (sorted names, 2 or more) of UQ methods that are one
    quantity on that setting's evaluated queries (``same_order``), detected from the data."""
    groups: dict[tuple[str, str, str], dict[str, Pool]] = {}
    for (slm, uq, llm), per_ds in pools.items():
        for ds, pool in per_ds.items():
            groups.setdefault((slm, llm, ds), {})[uq] = Pool.of(pool, ds)
    out: dict[tuple[str, str, str], list[tuple[str, ...]]] = {}
    for key, by_uq in sorted(groups.items()):
        classes: list[list[str]] = []
        for uq in sorted(by_uq):
            for c in classes:
                if same_order(by_uq[c[0]].uncertainty, by_uq[uq].uncertainty):
                    c.append(uq)
                    break
            else:
                classes.append([uq])
        found = [tuple(c) for c in classes if len(c) > 1]
        if found:
            out[key] = found
    return out


def _coincide_at(coincide, key: tuple[str, str, str], a: str, b: str) -> bool:
    return any(a in c and b in c for c in (coincide or {}).get(key, []))


def coincidence_sentences(
    coincide: Mapping[tuple[str, str, str], list[tuple[str, ...]]], answer_modes: Mapping[str, str] | None = None
) -> list[str]:
    """One sentence per class of methods that are one quantity somewhere, naming where: "avg_token_prob =
    perplexity in constrained mode (arc_easy, strategyqa)" (by ``answer_modes``: dataset -> its
    answer mode; by dataset alone when unknown)."""
    where: dict[tuple[str, ...], set[str]] = {}
    for (_slm, _llm, ds), classes in coincide.items():
        for c in classes:
            where.setdefault(c, set()).add(ds)
    out = []
    for c, dss in sorted(where.items()):
        modes: dict[str, list[str]] = {}
        for ds in sorted(dss):
            modes.setdefault((answer_modes or {}).get(ds, ""), []).append(ds)
        parts = [f"in {m} mode ({', '.join(d)})" if m else f"on {', '.join(d)}" for m, d in sorted(modes.items())]
        out.append(f"{' = '.join(c)} {'; '.join(parts)}")
    return out


def method_ranking(
    table: list[dict], coincide: Mapping[tuple[str, str, str], list[tuple[str, ...]]] | None = None
) -> list[dict]:
    """UQ methods by mean AUROC over every (SLM, dataset, LLM) they ran on (NaN AUROCs skipped, and
    AUROCs of settings where the method scored under ``MIN_SCORED_FOR_RANKING`` of the queries:
    counted in ``n_mostly_unscored``), with each method's mean unscored share (the queries its AUROC
    leaves out under "drop", or ranks first under "most_uncertain").

    coincide: ``coincident_methods`` of the grid. Methods that are one quantity on every setting
    that enters either's mean are ranked once, as one row named "a = b" (``members``: the names;
    its numbers are the first member's): with constrained answers average token probability and
    perplexity are monotone maps of one log p, and ranking them twice counts one number twice.
    Methods that coincide on some settings only keep their own rows (``coincidence_sentences``
    names where)."""
    by: dict[str, list[float]] = {}
    unscored: dict[str, list[float]] = {}
    where: dict[str, list[tuple[str, str, str]]] = {}
    for row in table:
        by.setdefault(row["uq"], []).append(row["auroc"])
        unscored.setdefault(row["uq"], []).append(unscored_share(row))
        where.setdefault(row["uq"], []).append((row.get("slm", ""), row.get("llm", ""), row.get("dataset", "")))
    out = []
    for uq, vals in by.items():
        shares = unscored[uq]
        ok = [
            x
            for x, sh in zip(vals, shares)
            if x is not None and np.isfinite(x) and not (np.isfinite(sh) and sh > 1 - MIN_SCORED_FOR_RANKING)
        ]
        few = sum(
            1
            for x, sh in zip(vals, shares)
            if x is not None and np.isfinite(x) and np.isfinite(sh) and sh > 1 - MIN_SCORED_FOR_RANKING
        )
        v = np.asarray(ok)
        share = np.asarray([x for x in shares if np.isfinite(x)])
        out.append(
            {
                "uq": uq,
                "mean_auroc": float(v.mean()) if v.size else float("nan"),
                "min_auroc": float(v.min()) if v.size else float("nan"),
                "max_auroc": float(v.max()) if v.size else float("nan"),
                "n": int(v.size),
                "n_mostly_unscored": few,
                "mean_unscored_share": float(share.mean()) if share.size else float("nan"),
            }
        )
        ranked_at = {
            w
            for w, x, sh in zip(where[uq], vals, shares)
            if x is not None and np.isfinite(x) and not (np.isfinite(sh) and sh > 1 - MIN_SCORED_FOR_RANKING)
        }
        out[-1]["_ranked_at"] = ranked_at
    out = _merge_coincident(out, coincide)
    out.sort(key=lambda r: (-r["mean_auroc"] if np.isfinite(r["mean_auroc"]) else math.inf, r["uq"]))
    for i, r in enumerate(out):
        r["rank"] = i + 1
    return out


def _merge_coincident(rows: list[dict], coincide) -> list[dict]:
    """Rows of methods that are one quantity on every setting entering either's mean, as one row."""
    by = {r["uq"]: r for r in rows}
    parent = {u: u for u in by}

    def find(u: str) -> str:
        while parent[u] != u:
            u = parent[u]
        return u

    for a, b in itertools.combinations(sorted(by), 2):
        at_a, at_b = by[a]["_ranked_at"], by[b]["_ranked_at"]
        if at_a and at_a == at_b and all(_coincide_at(coincide, k, a, b) for k in at_a):
            parent[find(b)] = find(a)
    members: dict[str, list[str]] = {}
    for u in sorted(by):
        members.setdefault(find(u), []).append(u)
    out = []
    for ms in members.values():
        row = {k: v for k, v in by[ms[0]].items() if k != "_ranked_at"}
        row["members"] = ms
        if len(ms) > 1:
            row["uq"] = " = ".join(ms)
        out.append(row)
    return out


def _policy(nan_policy: str | dict[str, str], uq: str) -> str:
    """The NaN policy of ``uq``: one policy for every method, or a mapping uq -> policy
    (``orchestrator.config.nan_policy_of`` of each UQ entry)."""
    return nan_policy if isinstance(nan_policy, str) else nan_policy[uq]


def paired_table(
    pools: Pools,
    *,
    nan_policy: str | dict[str, str],
    n_boot: int,
    seed: int = 0,
    ties: str = "expected",
    coincide: Mapping[tuple[str, str, str], list[tuple[str, ...]]] | None = None,
) -> list[dict]:
    """Every pair of UQ methods on the same (SLM, LLM, dataset) queries: paired bootstrap
    differences of AUROC and routing area (``metrics.paired_comparison``). Each method's NaN
    scores follow its own policy (``nan_policy``: one for all, or uq -> policy); a query either
    method drops is left out of the pair, so both are compared on the same queries. A pair that is
    one quantity on that setting (``coincide``, from ``coincident_methods``) is left out: its
    difference is 0 by construction, no evidence."""
    groups: dict[tuple[str, str, str], dict[str, Pool]] = {}
    for (slm, uq, llm), per_ds in pools.items():
        for ds, pool in per_ds.items():
            groups.setdefault((slm, llm, ds), {})[uq] = pool
    rows = []
    for (slm, llm, ds), by_uq in sorted(groups.items()):
        for a, b in itertools.combinations(sorted(by_uq), 2):
            if _coincide_at(coincide, (slm, llm, ds), a, b):
                continue
            pa, pb = by_uq[a], by_uq[b]
            if list(pa.sample_id) != list(pb.sample_id):
                raise ValueError(f"{slm}/{llm}/{ds}: methods {a} and {b} were scored on different samples")
            ua, _ = M.apply_nan_policy(pa.uncertainty, _policy(nan_policy, a))
            ub, _ = M.apply_nan_policy(pb.uncertainty, _policy(nan_policy, b))
            keep = ~(np.isnan(ua) | np.isnan(ub))
            if not keep.any():  # one of them scored none of these queries: nothing to compare
                continue
            res = M.paired_comparison(
                ua[keep],
                ub[keep],
                pa.slm_correct[keep],
                pa.llm_correct[keep],
                n_boot=n_boot,
                seed=seed,
                ties=ties,
            )
            rows.append({"slm": slm, "llm": llm, "dataset": ds, "uq_a": a, "uq_b": b, **res})
    return rows


# ---- finding 2: distributions are set by (SLM, method), not by the dataset -------------------


def _raw_scores(pools: Pools) -> dict[tuple[str, str, str], np.ndarray]:
    """(slm, uq, dataset) -> finite uncertainties (the same SLM scores under every LLM: once)."""
    raw: dict[tuple[str, str, str], np.ndarray] = {}
    for (slm, uq, _llm), per_ds in pools.items():
        for ds, pool in per_ds.items():
            if (slm, uq, ds) in raw:
                continue
            u = np.asarray(pool.uncertainty, dtype=np.float64)
            if np.isfinite(u).any():
                raw[(slm, uq, ds)] = u[np.isfinite(u)]
    return raw


def _rank_scores(raw: dict[tuple[str, str, str], np.ndarray]) -> dict[tuple[str, str, str], np.ndarray]:
    """Each score replaced by its method's pooled empirical CDF (over every SLM and dataset of that
    UQ method), in (0, 1]. One increasing map per method, so KS between its datasets or SLMs is
    unchanged and Wasserstein becomes scale-free: no unit, no outlier stretches it."""
    out = {}
    for uq in sorted({k[1] for k in raw}):
        keys = [k for k in raw if k[1] == uq]
        pooled = np.sort(np.concatenate([raw[k] for k in keys]))
        for k in keys:
            out[k] = np.searchsorted(pooled, raw[k], side="right") / len(pooled)
    return out


def _confidence_scores(
    raw: dict[tuple[str, str, str], np.ndarray], methods: dict[str, str] | None
) -> dict[tuple[str, str, str], np.ndarray]:
    """Each score mapped to its method's paper confidence (``UQMethod.confidence``: 1 - u, 1 / u,
    exp(-u); "complement" for a name the registry does not know): a fixed, bounded scale, the one
    the paper's histograms are drawn on."""
    from jobs.uq import UQ_METHODS

    methods = methods or {}
    out = {}
    for k, u in raw.items():
        m = methods.get(k[1], k[1])
        scale = UQ_METHODS.get(m).confidence if m in UQ_METHODS else "complement"
        if scale == "reciprocal" and not (u > 0).all():
            scale = "exp_neg"
        out[k] = C.to_confidence(u, scale)
    return out


DISTANCE_SCALES = {
    "across_datasets": "rank: each UQ method's pooled empirical CDF (scale-free), datasets of one definition only",
    "across_slm": "rank: each UQ method's pooled empirical CDF (scale-free)",
    "across_uq": "paper confidence of each method (1 - u, 1 / perplexity, exp(-u)); no scale-free "
    "comparison between methods exists",
}


def _by_definition(
    raw: dict[tuple[str, str, str], np.ndarray], definitions: Definitions | None
) -> tuple[dict[tuple[str, str, str], np.ndarray], list[str]]:
    """``raw`` with each UQ method whose datasets have several definitions split into one method
    per definition ("mean_token_entropy [constrained, 4 options]"), so that its datasets are
    compared (and ranked) only within a definition; and the sentence of each dataset pair left out
    ("addsub (generate) not pooled with arc_easy (constrained, 4 options) for mean_token_entropy")."""
    if not definitions:
        return raw, []
    from jobs.uq.definition import not_pooled

    out: dict[tuple[str, str, str], np.ndarray] = {}
    left: list[str] = []
    for uq in sorted({k[1] for k in raw}):
        dss = sorted({k[2] for k in raw if k[1] == uq})
        defs = {d: definitions.get((uq, d), Definition()) for d in dss}
        split = len(set(defs.values())) > 1
        for k in (k for k in raw if k[1] == uq):
            df = defs[k[2]]
            tag = df.label if df.own is None else f"{df.label}: {df.own}"  # a definition of its own stays alone
            out[(k[0], f"{uq} [{tag}]" if split else uq, k[2])] = raw[k]
        left += [
            not_pooled(uq, a, defs[a], b, defs[b])
            for i, a in enumerate(dss)
            for b in dss[i + 1 :]
            if defs[a] != defs[b]
        ]
    return out, left


def distance_analysis(
    pools: Pools, methods: dict[str, str] | None = None, definitions: Definitions | None = None
) -> dict:
    """KS and Wasserstein-1 distances between uncertainty distributions (finding 2).

    Between datasets and between SLMs (one UQ method), scores are compared on the method's pooled
    ranks (``_rank_scores``): both distances are then unchanged by any increasing map of the score,
    so perplexity's unbounded tail or a method's units cannot move them. Between UQ methods a
    scale-free comparison does not exist (any two continuous distributions are an increasing map
    apart), so methods are compared on the paper's confidence scale (``_confidence_scores``), a
    fixed map per method rather than one fitted to the data (the old per-method min-max scaling
    let one extreme score squash a method's whole distribution).
    methods: uq name -> UQ method name (default: the uq name).
    definitions: (uq, dataset) -> ``jobs.uq.definition.Definition``: two datasets are compared for a
    method (and its ranks pooled) only when their definitions are equal. The rank scale cannot
    stand in for that: it is one increasing map per method, under which KS is unchanged, so a
    generated answer's entropy over the vocabulary against a yes/no answer's entropy over two
    options stays at KS ~ 1, a difference of definition, not of data (and a per-dataset quantile
    would make every distribution uniform, leaving nothing to compare). Such a method's datasets
    are compared per definition ("uq [label]" groups) and each pair left out is named in
    ``not_compared``. None: every dataset has one definition.

    Returns {"ks": within_vs_across(...), "wasserstein": ..., "scales": family -> scale used,
    "not_compared": sentences of the dataset pairs left out,
    "by_method": {"slm__uq": {"names": datasets, "ks", "wasserstein": matrices on ranks}},
    "by_dataset": {"slm__dataset": {"names": uq methods, "ks", "wasserstein": matrices on the
    confidence scale}}, "scores": {"slm__uq__dataset": confidence array, the paper's histograms}}
    (matrices as lists)."""
    raw = _raw_scores(pools)
    per_def, not_compared = _by_definition(raw, definitions)
    ranks, conf = _rank_scores(per_def), _confidence_scores(raw, methods)
    out: dict[str, Any] = {}
    for m in C.DISTANCES:
        on_ranks, on_conf = C.within_vs_across(ranks, m), C.within_vs_across(conf, m)
        out[m] = {**on_ranks, "across_uq": on_conf["across_uq"]}
    out["scales"] = dict(DISTANCE_SCALES)
    out["not_compared"] = not_compared

    def matrices(scores: dict, fixed: tuple[int, int], varying: int) -> dict[str, dict]:
        """Distance matrices over key part ``varying``, one per value of the ``fixed`` parts."""
        res = {}
        for gk in sorted({(k[fixed[0]], k[fixed[1]]) for k in scores}):
            g = {k[varying]: v for k, v in sorted(scores.items()) if (k[fixed[0]], k[fixed[1]]) == gk}
            if len(g) >= 2:
                names, ks = C.distance_matrix(g, "ks")
                _, w = C.distance_matrix(g, "wasserstein")
                res["__".join(gk)] = {"names": names, "ks": ks.tolist(), "wasserstein": w.tolist()}
        return res

    out["by_method"], out["by_dataset"] = matrices(ranks, (0, 1), 2), matrices(conf, (0, 2), 1)
    out["scores"] = {"__".join(k): v.tolist() for k, v in sorted(conf.items())}
    return out


# ---- finding 3: thresholds from calibration data transfer -----------------------------------

GAP_FRACTIONS = (0.25, 0.5, 0.75)


def _gap_targets(curve: M.RoutingCurve, fractions=GAP_FRACTIONS) -> list[tuple[float, float]]:
    acc = curve.accuracy
    lo, hi = float(acc[0]), float(acc.max())
    return [(f, lo + f * (hi - lo)) for f in fractions] if hi > lo else []


def _sd(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.std(x, ddof=1)) if x.size > 1 else 0.0


def accuracy_transfer(
    eval_p: dict[str, Pool], cal_p: dict[str, Pool], params: C.CalibrationParams, nan_policy: str
) -> list[dict]:
    """Leave-one-dataset-out transfer of *accuracy* targets: on the calibration set built from
    every other dataset, the threshold at the smallest call rate whose (weighted) expected accuracy
    reaches the target (targets: 25/50/75% of the calibration set's gap between SLM-only and the
    best accuracy on its weighted curve); realized accuracy and call rate on the held-out evaluated
    rows. ``params.n_draws`` sets are drawn (seeds ``params.seeds``); one row per (held-out, gap
    fraction) with means over the draws that reach their target and accuracy_error_sd, n_draws."""
    rows = []
    for heldout in sorted(eval_p):
        others = [d for d in cal_p if d != heldout]
        if not others:
            continue
        ev = eval_p[heldout]
        u, keep = M.apply_nan_policy(ev.uncertainty, nan_policy)
        u, slm, llm = u[keep], ev.slm_correct[keep], ev.llm_correct[keep]
        if not len(u):  # no scored query on the held-out dataset (all dropped)
            continue
        by_frac: dict[float, list[dict]] = {}
        for sd in params.seeds:
            try:
                cal = C.build_calibration_set(
                    cal_p,
                    exclude=[heldout] if heldout in cal_p else [],
                    params=params.with_seed(sd),
                    nan_policy=nan_policy,
                )
            except ValueError:  # e.g. no scored row to calibrate on: the call-rate table says why
                break
            for f, t in _gap_targets(C.calibration_curve(cal)):
                thr = C.threshold_for_accuracy(
                    cal.uncertainty, cal.slm_correct, cal.llm_correct, t, weights=cal.weight, strata=cal.strata
                )
                if thr is None:
                    continue
                realized = C.expected_accuracy(u, slm, llm, thr)
                by_frac.setdefault(f, []).append(
                    {
                        "target_accuracy": t,
                        "predicted_call_rate": C.expected_call_rate(cal.uncertainty, thr, cal.weight),
                        "realized_call_rate": C.expected_call_rate(u, thr),
                        "realized_accuracy": realized,
                        "accuracy_error": realized - t,
                        "threshold": thr.value,
                        "n_fit": len(cal),
                    }
                )
        for f, ds in sorted(by_frac.items()):
            row = {"heldout": heldout, "gap_fraction": f}
            for k in ds[0]:
                row[k] = float(np.mean([d[k] for d in ds]))
            row["n_fit"] = ds[0]["n_fit"]
            row["accuracy_error_sd"] = _sd([d["accuracy_error"] for d in ds])
            row["n_draws"] = len(ds)
            rows.append(row)
    return rows


def transfer_analysis(
    eval_p: Pools,
    fit_p: Pools,
    cal_conf: dict,
    nan_policy: str | dict[str, str],
    calibration_datasets: list[str] | None = None,
    methods: dict[str, str] | None = None,
    leave_out: Rescored | None = None,
    needs_leave_out: set[str] | frozenset[str] = frozenset(),
    definitions: Definitions | None = None,
) -> dict:
    """Per (SLM, UQ, LLM): leave-one-dataset-out call-rate transfer (calibration vs in-domain vs
    fixed), curve distances, and accuracy-target transfer.

    Calibration data come from the fit role (train/dev rows, never evaluated) when the grid ran
    with calibration enabled (``source = "fit"``); otherwise from the other datasets' evaluated
    rows, as in the paper's own leave-one-out (``source = "eval"``; in-domain then splits the
    held-out dataset in half). calibration_datasets: the datasets whose fit rows may feed
    calibration sets (``calibration.pool``; None = all); in-domain fits use any dataset's fit rows.
    methods: uq name -> UQ method name (for the scale, ``CalibrationParams.from_conf``; default: the
    uq name itself). nan_policy: one policy for every method, or uq name -> policy (``nan_policy_of``).
    Calibration sets are drawn ``calibration.n_draws`` times (seeds seed, seed + 1, ...) on the
    ``calibration.scale``; rows and curves carry the mean and spread over the draws.
    needs_leave_out: uq names whose models train on other datasets (the OOD probe): their
    calibration set for held-out T is drawn only from ``leave_out`` pools (``leave_out_pools``:
    each other dataset's rows scored by a model that saw neither it nor T), never from the
    ordinary pools, whose models saw T's fit rows; a dataset without one is left out of T's set
    (rows say ``leave_out``; a T left with no dataset is skipped, saying why).
    definitions: (uq, dataset) -> its ``jobs.uq.definition.Definition``: held-out T's calibration
    set is drawn only from datasets of T's definition for that method (the call-rate rows, the
    curves and the accuracy targets alike); each dataset left out is named in ``not_pooled``, and a
    T left with none is skipped, saying why. None: every dataset has one definition.
    Returns {"call_rate", "curves", "accuracy", "skipped", "not_pooled": [{slm, uq, llm, heldout,
    split, left_out: {dataset: sentence}}]}."""
    out: dict[str, list] = {"call_rate": [], "curves": [], "accuracy": [], "skipped": [], "not_pooled": []}
    allowed = set(calibration_datasets) if calibration_datasets is not None else None
    for key in sorted(eval_p):
        st = _setting_transfer(key, eval_p, fit_p, allowed, cal_conf, methods or {}, nan_policy, needs_leave_out)
        fixed = float((cal_conf.get("fixed_threshold") or {}).get(st.uq, 0.5))
        leave_out_h = (leave_out or {}).get(key, {})
        for h in sorted(st.ev):
            for k, v in _heldout_transfer(st, h, leave_out_h.get(h, {}), definitions, fixed).items():
                out[k] += v
    return out


@dataclass(frozen=True)
class _SettingTransfer:
    """One (SLM, UQ, LLM) as both transfer analyses see it: ev, its evaluated pools; fp, its fit
    pools (None: none); source "fit" | "eval" and cal_src, the pools calibration sets are drawn
    from (``_calibration_sources``; use_fit: they are the fit pools); params, its calibration
    parameters; policy, its NaN policy; lo: its models train on other datasets."""

    key: Key
    ev: dict[str, Pool]
    fp: dict[str, Pool] | None
    source: str
    use_fit: bool
    cal_src: dict[str, Pool]
    params: C.CalibrationParams
    policy: str
    lo: bool

    @property
    def uq(self) -> str:
        return self.key[1]

    def row(self, *parts: Mapping[str, Any]) -> dict:
        """A row of this setting: slm, uq, llm, then the keys of ``parts`` in order (a later value wins)."""
        slm, uq, llm = self.key
        out = {"slm": slm, "uq": uq, "llm": llm}
        for p in parts:
            out.update(p)
        return out


def _setting_transfer(
    key: Key,
    eval_p: Pools,
    fit_p: Pools,
    allowed: set | None,
    cal_conf: dict,
    methods: dict[str, str],
    nan_policy: str | dict[str, str],
    needs_leave_out: set[str] | frozenset[str],
) -> _SettingTransfer:
    """``_SettingTransfer`` of ``key`` (arguments as in ``transfer_analysis``)."""
    uq = key[1]
    ev = eval_p[key]
    fp = fit_p.get(key)
    source, use_fit, cal_src = _calibration_sources(ev, fp, allowed)
    params = C.CalibrationParams.from_conf(cal_conf, methods.get(uq, uq))
    policy = _policy(nan_policy, uq)
    return _SettingTransfer(key, ev, fp, source, use_fit, cal_src, params, policy, uq in needs_leave_out)


def _heldout_transfer(
    st: _SettingTransfer, h: str, leave_out_h: dict[str, Pool], definitions: Definitions | None, fixed: float
) -> dict[str, list]:
    """``transfer_analysis``'s rows for held-out dataset ``h`` of one setting (leave_out_h: the
    other datasets' rows scored by a model that saw neither them nor h)."""
    cal_h, left, why = _heldout_calibration_pools(st, h, leave_out_h, definitions)
    out: dict[str, list] = {}
    if left:
        out["not_pooled"] = [st.row({"heldout": h, "split": "leave_one_out", "left_out": left})]
    if why:
        return out | {"skipped": [st.row({"heldout": h, "reason": why})]}
    try:
        t = C.transfer_table(
            st.ev,
            params=st.params,
            fixed_value=fixed,
            nan_policy=st.policy,
            calibration_pools=st.cal_src if st.use_fit else None,
            in_domain_pools=st.fp if st.use_fit else None,
            heldouts=[h],
            heldout_calibration_pools={h: cal_h},
        )
        c = C.curve_transfer(st.ev, h, params=st.params, nan_policy=st.policy, calibration_pools=cal_h)
    except ValueError as exc:  # e.g. a dataset with no scored row
        return out | {"skipped": [st.row({"heldout": h, "reason": str(exc)})]}
    c.pop("calibration")
    # held-out by held-out: each has its own calibration pools (its definition's, its leave-out scores)
    acc = accuracy_transfer({h: st.ev[h]}, cal_h, st.params, st.policy)
    return out | {
        "call_rate": [st.row({"source": st.source, "scale": st.params.scale, "leave_out": st.lo}, row) for row in t],
        "curves": [st.row({"source": st.source, "leave_out": st.lo}, c)],
        "accuracy": [st.row({"source": st.source, "leave_out": st.lo}, row) for row in acc],
    }


def _heldout_calibration_pools(
    st: _SettingTransfer, h: str, leave_out_h: dict[str, Pool], definitions: Definitions | None
) -> tuple[dict[str, Pool], dict[str, str], str | None]:
    """(the pools held-out h's calibration sets are drawn from, the datasets left out for another
    definition -> why, why h is skipped: None unless no pool is left)."""
    uq, cal_src = st.uq, st.cal_src
    cal_h = {d: p for d, p in cal_src.items() if d != h}
    if st.lo:  # only rows scored by models that never saw h
        cal_h = {d: leave_out_h[d] for d in cal_h if d in leave_out_h}
    same, left = same_definition(uq, h, cal_h, definitions)
    cal_h = {d: cal_h[d] for d in same}
    if cal_h:
        return cal_h, left, None
    why = (
        f"no calibration dataset has {h}'s definition of {uq} ("
        + "; ".join(left.values())
        + "): thresholds are never carried across definitions"
        if left
        else f"{uq} trains on other datasets: no dataset's calibration rows were scored by a model that "
        f"did not see {h} (other datasets: {sorted(d for d in cal_src if d != h)}; a leave-out model "
        f"needs a third dataset to train on)"
        if st.lo
        else f"no other dataset to calibrate on (calibration pools: {sorted(cal_src)})"
    )
    return cal_h, left, why


def _calibration_sources(ev: dict, fp: dict | None, allowed: set | None) -> tuple[str, bool, dict]:
    """(source, use_fit, pools calibration sets are drawn from) for one (SLM, UQ, LLM): its fit
    pools when every evaluated dataset has one (restricted to ``allowed``), else its eval pools."""
    use_fit = fp is not None and set(ev) <= set(fp)
    cal_src = fp if use_fit else ev
    if use_fit and allowed is not None:
        cal_src = {d: p for d, p in fp.items() if d in allowed}
    return ("fit" if use_fit else "eval"), use_fit, cal_src


def group_transfer_analysis(
    eval_p: Pools,
    fit_p: Pools,
    cal_conf: dict,
    nan_policy: str | dict[str, str],
    groups: dict[str, str | None],
    calibration_datasets: list[str] | None = None,
    methods: dict[str, str] | None = None,
    leave_group: Rescored | None = None,
    needs_leave_out: set[str] | frozenset[str] = frozenset(),
    definitions: Definitions | None = None,
) -> dict:
    """The fully out-of-domain split (``calibration.splits: [cross_group]``): per (SLM, UQ, LLM) and
    ordered pair of dataset groups (source G1 -> target G2, G1 != G2; ``groups``: dataset -> group,
    datasets without one take no part), the calibration set is drawn only from G1's datasets and
    its thresholds are applied to every dataset of G2.

    The pools calibration sets come from follow ``transfer_analysis``: fit rows when the grid ran
    with calibration (restricted to ``calibration_datasets``), else the evaluated rows; the same
    ``calibration`` draws, scale and NaN policy. needs_leave_out: uq names trained on other
    datasets; their G1 pools are taken only from ``leave_group`` (``leave_group_pools``: rows scored
    by a model that trained on no dataset of G2), a G1 dataset without one is left out, and a
    direction left with none is skipped, saying why. definitions: as in ``transfer_analysis``: a
    target dataset is calibrated only on the G1 datasets of its definition for the method (so
    source_datasets can differ between the targets of one direction); the others are named in
    ``not_pooled``, and a target left with none is skipped, saying why.

    Returns {"call_rate": one row per (SLM, UQ, LLM, G1, G2, target dataset, target call rate):
    source_group, target_group, source_datasets, heldout (the target dataset) and
    ``calibration.transfer_table``'s keys (method "calibration"); "summary": ``group_transfer_summary``
    of them; "skipped": [{slm, uq, llm, source_group, target_group, reason} (+ heldout when one
    target is skipped)]; "not_pooled": as in ``transfer_analysis``, with split "cross_group"}."""
    out: dict[str, list] = {"call_rate": [], "skipped": [], "not_pooled": []}
    allowed = set(calibration_datasets) if calibration_datasets is not None else None
    for key in sorted(eval_p):
        st = _setting_transfer(key, eval_p, fit_p, allowed, cal_conf, methods or {}, nan_policy, needs_leave_out)
        present = sorted({g for d in st.ev if (g := groups.get(d))})
        for g1, g2 in itertools.permutations(present, 2):
            leave_group_g2 = (leave_group or {}).get(key, {}).get(g2, {})
            for k, v in _direction_transfer(st, g1, g2, groups, leave_group_g2, definitions).items():
                out[k] += v
    rows = out["call_rate"]
    return {
        "call_rate": rows,
        "summary": group_transfer_summary(rows),
        "skipped": out["skipped"],
        "not_pooled": out["not_pooled"],
    }


def _direction_transfer(
    st: _SettingTransfer,
    g1: str,
    g2: str,
    groups: dict[str, str | None],
    leave_group_g2: dict[str, Pool],
    definitions: Definitions | None,
) -> dict[str, list]:
    """``group_transfer_analysis``'s rows for one setting and one direction g1 -> g2 (leave_group_g2:
    rows scored by a model that trained on no dataset of g2)."""
    out: dict[str, list] = {"call_rate": [], "skipped": [], "not_pooled": []}
    base = st.row({"source_group": g1, "target_group": g2})
    src, why = _source_group_pools(st, g1, g2, groups, leave_group_g2)
    if why is not None:
        out["skipped"].append(base | {"reason": why})
        return out
    per_target: dict[str, dict[str, Pool]] = {}
    for tg in sorted(d for d in st.ev if groups.get(d) == g2):  # each only from the G1 datasets of its definition
        same, left = same_definition(st.uq, tg, src, definitions)
        if left:
            out["not_pooled"].append(base | {"heldout": tg, "split": "cross_group", "left_out": left})
        if same:
            per_target[tg] = {d: src[d] for d in same}
        else:
            reason = (
                f"no {g1} dataset has {tg}'s definition of {st.uq} ("
                + "; ".join(left.values())
                + "): thresholds are never carried across definitions"
            )
            out["skipped"].append(base | {"heldout": tg, "reason": reason})
    if not per_target:
        return out
    try:
        t = C.transfer_table(
            st.ev,
            params=st.params,
            methods=["calibration"],
            nan_policy=st.policy,
            calibration_pools=src,
            heldouts=list(per_target),
            heldout_calibration_pools=per_target,
        )
    except ValueError as exc:  # e.g. a dataset with no scored row
        out["skipped"].append(base | {"reason": str(exc)})
        return out
    tag = {"source": st.source, "scale": st.params.scale, "leave_out": st.lo}
    out["call_rate"] = [base | tag | {"source_datasets": sorted(per_target[r["heldout"]]), **r} for r in t]
    return out


def _source_group_pools(
    st: _SettingTransfer, g1: str, g2: str, groups: dict[str, str | None], leave_group_g2: dict[str, Pool]
) -> tuple[dict[str, Pool], str | None]:
    """(g1's pools calibration sets for g2 are drawn from, why the direction is skipped: None
    unless no pool is left)."""
    src = {d: p for d, p in st.cal_src.items() if groups.get(d) == g1}
    if st.lo:
        src = {d: leave_group_g2[d] for d in src if d in leave_group_g2}
    if src:
        return src, None
    g1_all = sorted(d for d in groups if groups[d] == g1)
    why = (
        f"{st.uq} trains on other datasets: no {g1} dataset's calibration rows were scored by a model "
        f"that saw no {g2} dataset ({g1}: {g1_all}; such a model needs a dataset outside {g1}'s "
        f"calibration source and {g2} to train on)"
        if st.lo and [d for d in st.cal_src if groups.get(d) == g1]
        else f"no {g1} dataset may feed calibration sets (calibration pools: {sorted(st.cal_src)})"
    )
    return src, why


def group_transfer_summary(rows: list[dict]) -> list[dict]:
    """Cross-group rows averaged over the target group's datasets: one row per (SLM, UQ, LLM,
    source group, target group, target call rate) with realized_call_rate, call_rate_error
    (realized - target), abs_call_rate_error (mean |error| over datasets and draws),
    accuracy_error (realized - predicted accuracy), n_targets and the target datasets."""
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault(
            (r["slm"], r["uq"], r["llm"], r["source_group"], r["target_group"], r["target_call_rate"]), []
        ).append(r)
    out = []
    for (slm, uq, llm, g1, g2, t), rs in sorted(by.items()):
        out.append(
            {
                "slm": slm,
                "uq": uq,
                "llm": llm,
                "source_group": g1,
                "target_group": g2,
                "target_call_rate": t,
                "realized_call_rate": float(np.mean([r["realized_call_rate"] for r in rs])),
                "call_rate_error": float(np.mean([r["call_rate_error"] for r in rs])),
                "abs_call_rate_error": float(np.mean([_abs_err(r) for r in rs])),
                "accuracy_error": float(np.mean([r["accuracy_error"] for r in rs])),
                "source_datasets": sorted({d for r in rs for d in r["source_datasets"]}),
                "targets": sorted(r["heldout"] for r in rs),
                "n_targets": len(rs),
            }
        )
    return out


def group_transfer_sentences(cross: dict, loo_rows: list[dict]) -> list[dict]:
    """One plain sentence per direction (source group -> target group): the mean |realized -
    target call rate| over UQ methods, target datasets and targets, the worst method, and the
    leave-one-out calibration error on the same target datasets (same SLMs, methods, LLMs) when
    that split ran. Returns [{source_group, target_group, mean_abs_call_rate_error,
    loo_mean_abs_call_rate_error, sentence}]."""
    loo: dict[tuple, list[float]] = {}
    for r in loo_rows:
        if r["method"] == "calibration":
            loo.setdefault((r["slm"], r["uq"], r["llm"], r["heldout"]), []).append(_abs_err(r))
    by: dict[tuple[str, str], list[dict]] = {}
    for r in cross.get("call_rate", []):
        by.setdefault((r["source_group"], r["target_group"]), []).append(r)
    out = []
    for (g1, g2), rs in sorted(by.items()):
        err = float(np.mean([_abs_err(r) for r in rs]))
        per_uq: dict[str, list[float]] = {}
        for r in rs:
            per_uq.setdefault(r["uq"], []).append(_abs_err(r))
        worst = max(per_uq, key=lambda u: np.mean(per_uq[u]))
        best = min(per_uq, key=lambda u: np.mean(per_uq[u]))
        # sorted: a set's order follows string hashes, which change per process (PYTHONHASHSEED),
        # and the float sum with it
        same = [x for r in sorted({(r["slm"], r["uq"], r["llm"], r["heldout"]) for r in rs}) for x in loo.get(r, [])]
        loo_err = float(np.mean(same)) if same else float("nan")
        src = sorted({d for r in rs for d in r["source_datasets"]})
        tgt = sorted({r["heldout"] for r in rs})
        sent = (
            f"Calibrated on {g1} ({', '.join(src)}) and applied to {g2} ({', '.join(tgt)}), thresholds miss "
            f"the target call rate by {_fmt(err)} on average over {len(per_uq)} UQ method(s)"
            + (
                f" (best {best} {_fmt(float(np.mean(per_uq[best])))}, worst {worst} "
                f"{_fmt(float(np.mean(per_uq[worst])))})"
                if len(per_uq) > 1
                else ""
            )
            + (
                f"; leave-one-dataset-out calibration misses by {_fmt(loo_err)} on the same datasets"
                + (
                    f", so leaving the whole group out costs {_fmt(err - loo_err)}."
                    if err > loo_err
                    else ", so here calibrating on another group does no worse."
                )
                if np.isfinite(loo_err)
                else "."
            )
        )
        out.append(
            {
                "source_group": g1,
                "target_group": g2,
                "mean_abs_call_rate_error": err,
                "loo_mean_abs_call_rate_error": loo_err,
                "sentence": sent,
            }
        )
    return out


def _abs_err(r: dict) -> float:
    """|call-rate error| of a transfer row, averaged over its draws (one draw: |error|)."""
    return float(r.get("abs_call_rate_error", abs(r["call_rate_error"])))


def transfer_summary(rows: list[dict]) -> list[dict]:
    """Mean |call-rate error| and mean accuracy error per (uq, method), over held-out datasets,
    targets and calibration draws (and SLMs / LLMs); sd_call_rate_error: the mean over rows of the
    SD of the call-rate error across draws (0 for single-draw methods), n_draws: draws per row."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by.setdefault((r["uq"], r["method"]), []).append(r)
    out = []
    for (uq, method), rs in sorted(by.items()):
        err = np.asarray([_abs_err(r) for r in rs])
        worst = np.asarray([max(abs(x) for x in r.get("call_rate_error_draws", [r["call_rate_error"]])) for r in rs])
        acc = np.asarray([r["accuracy_error"] for r in rs], dtype=np.float64)
        acc = acc[np.isfinite(acc)]
        out.append(
            {
                "uq": uq,
                "method": method,
                "mean_abs_call_rate_error": float(np.mean(err)),
                "max_abs_call_rate_error": float(np.max(worst)),
                "sd_call_rate_error": float(np.mean([r.get("call_rate_error_sd", 0.0) for r in rs])),
                "mean_abs_accuracy_error": float(np.mean(np.abs(acc))) if acc.size else float("nan"),
                "n_draws": int(max(r.get("n_draws", 1) for r in rs)),
                "n": len(rs),
            }
        )
    return out


# ---- the three findings -----------------------------------------------------------------------


def _fmt(x: float, nd: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def findings(
    ranking: list[dict],
    paired: list[dict],
    dist: dict,
    transfer: dict,
    same: Iterable[str] = (),
    fitted_on_target: Iterable[str] = (),
) -> list[dict]:
    """Each of the paper's three findings restated with this grid's numbers: {id, claim,
    verdict (holds | partly | does not hold | not testable), evidence (plain sentences)}.
    same: ``coincidence_sentences`` (finding 1); fitted_on_target: the UQ entries whose scores on a
    dataset come from a model fitted on its own labels (``fitted_on_target``; finding 3)."""
    return [
        alignment_finding(ranking, paired, same),
        distribution_finding(dist),
        transfer_finding(transfer, fitted_on_target),
    ]


def alignment_finding(ranking: list[dict], paired: list[dict], same: Iterable[str] = ()) -> dict:
    """Finding 1: methods differ widely; verbalization aligns poorly; probe, OOD probe and perplexity
    lead (``method_ranking``, ``paired_table``). same: where methods are one quantity
    (``coincidence_sentences``): said first, since the ranking ranks each quantity once."""
    ranked = [r for r in ranking if np.isfinite(r["mean_auroc"])]
    ev1: list[str] = []
    same = list(same)
    if same:
        ev1.append(
            "One quantity under several names, ranked once and left out of the paired comparisons where they "
            "coincide (identical routing order, detected from the scores): " + "; ".join(same) + "."
        )
    if len(ranked) >= 2:
        evidence, checks = _alignment_evidence(ranking, ranked, paired)
        ev1 += evidence
        verdict = "holds" if all(checks) else ("partly" if any(checks) else "does not hold")
    else:
        verdict = "not testable"
        ev1.append("Fewer than two UQ methods have a defined AUROC.")
    return {
        "id": 1,
        "claim": "UQ methods differ widely in how well uncertainty aligns with correctness; "
        "verbalized confidence aligns poorly on SLMs; trained probe, OOD probe and perplexity lead.",
        "verdict": verdict,
        "evidence": ev1,
    }


def _alignment_evidence(ranking: list[dict], ranked: list[dict], paired: list[dict]) -> tuple[list[str], list[bool]]:
    """Finding 1's sentences and its four checks (spread >= 0.1, two of the paper's top three among
    ours, verbal methods in the bottom half, best AUROC >= 0.55), for at least two ranked methods
    (``ranked``: those of ``ranking`` with a finite mean AUROC, best first)."""
    ev1: list[str] = []
    spread = ranked[0]["mean_auroc"] - ranked[-1]["mean_auroc"]
    ev1.append(
        f"Mean AUROC ranges from {_fmt(ranked[-1]['mean_auroc'])} ({ranked[-1]['uq']}) to "
        f"{_fmt(ranked[0]['mean_auroc'])} ({ranked[0]['uq']}), a spread of {_fmt(spread)}."
    )
    sig = [p for p in paired if np.isfinite(p["p_auroc"]) and p["p_auroc"] < 0.05]
    if paired:
        ev1.append(
            f"{len(sig)} of {len(paired)} paired method comparisons differ in AUROC at p < 0.05 "
            f"(paired bootstrap on the same queries)."
        )
    top3 = [r["uq"] for r in ranked[:3]]
    top3_names = {m for r in ranked[:3] for m in r.get("members", [r["uq"]])}
    half = len(ranked) / 2
    verbal = [r for r in ranked if r["uq"] in VERBAL]
    verbal_low = [r for r in verbal if r["rank"] > half]
    ev1.append(
        f"Top three here: {', '.join(top3)} (paper: {', '.join(PAPER_TOP3)}); "
        f"{len(top3_names & set(PAPER_TOP3))} of the paper's three are among them."
    )
    ev1 += _verbal_evidence(ranking, ranked, verbal, all_low=len(verbal_low) == len(verbal))
    best = ranked[0]["mean_auroc"]
    below = [r["uq"] for r in ranked if r["mean_auroc"] < 0.5]
    if best < 0.55 or below:
        ev1.append(
            f"Alignment itself is weak here: the best mean AUROC is {_fmt(best)}"
            + (
                f"; {', '.join(below)} rank correct answers as the *more* uncertain on average (AUROC < 0.5)"
                if below
                else ""
            )
            + ". With an SLM this weak most datasets have only a few correct answers, so each AUROC "
            "rests on a handful of queries (see the CIs)."
        )
    checks = [
        spread >= 0.1,
        len(top3_names & set(PAPER_TOP3)) >= 2,
        (not verbal) or len(verbal_low) == len(verbal),
        best >= 0.55,
    ]
    return ev1, checks


def _verbal_evidence(ranking: list[dict], ranked: list[dict], verbal: list[dict], all_low: bool) -> list[str]:
    """Where the verbalized-confidence methods rank (``verbal``: those of ``ranked``; all_low: all in
    the bottom half), and which of them have no defined AUROC at all."""
    ev1: list[str] = []
    if verbal:
        ev1.append(
            "Verbalized confidence ranks "
            + ", ".join(
                f"{r['uq']} #{r['rank']} of {len(ranked)} (AUROC {_fmt(r['mean_auroc'])}, "
                f"unscored {_fmt(r.get('mean_unscored_share', float('nan')))})"
                for r in verbal
            )
            + ("; all in the bottom half." if all_low else "; not all in the bottom half.")
        )
    unscorable = [r for r in ranking if r["uq"] in VERBAL and not np.isfinite(r["mean_auroc"])]
    if unscorable:
        ev1.append(
            "No defined AUROC for "
            + ", ".join(
                f"{r['uq']} (mean unscored share {_fmt(r['mean_unscored_share'])}: confidences that do not parse "
                f"are dropped)"
                for r in unscorable
            )
            + "."
        )
    return ev1


def distribution_finding(dist: dict) -> dict:
    """Finding 2: uncertainty distributions depend on (SLM, method) more than on the dataset
    (``distance_analysis``)."""
    ks = dist.get("ks", {})
    a_ds = ks.get("across_datasets", {}).get("mean", float("nan"))
    a_uq = ks.get("across_uq", {}).get("mean", float("nan"))
    a_slm = ks.get("across_slm", {}).get("mean", float("nan"))
    if np.isfinite(a_ds) and (np.isfinite(a_uq) or np.isfinite(a_slm)):
        ev2, verdict = _distance_evidence(ks, a_ds, a_uq, a_slm)
    else:
        verdict = "not testable"
        ev2 = ["Needs at least two datasets and two methods or SLMs with scored samples."]
    left = dist.get("not_compared", [])
    if left:
        ev2.append(
            f"{len(left)} dataset pair(s) are not compared because the method's statistic is defined "
            f"differently on them (answer mode, or option count for statistics over the options): "
            + "; ".join(left[:6])
            + (f"; and {len(left) - 6} more (analysis.json: distances.not_compared)" if len(left) > 6 else "")
            + "."
        )
    return {
        "id": 2,
        "claim": "For a fixed SLM and UQ method the uncertainty distribution looks alike across "
        "datasets: it is set by the SLM and the method, not by the data.",
        "verdict": verdict,
        "evidence": ev2,
    }


def _distance_evidence(ks: dict, a_ds: float, a_uq: float, a_slm: float) -> tuple[list[str], str]:
    """Finding 2's sentences and verdict from the mean KS distances across datasets, UQ methods and
    SLMs (``distance_analysis``'s "ks"; a_ds finite, a_uq or a_slm finite)."""
    ev2 = [
        f"Mean KS distance between datasets (SLM and method fixed): {_fmt(a_ds)} over "
        f"{ks['across_datasets']['n_pairs']} pairs."
    ]
    if np.isfinite(a_uq):
        ev2.append(
            f"Between UQ methods (SLM and dataset fixed, each method on the paper's confidence scale: "
            f"1 - u, 1 / perplexity, exp(-u)): {_fmt(a_uq)} over {ks['across_uq']['n_pairs']} pairs. "
            "Between datasets and SLMs distances are on each method's pooled ranks (scale-free); "
            "between methods no scale-free comparison exists, so this half rests on that scale."
        )
    if np.isfinite(a_slm):
        ev2.append(f"Between SLMs (method and dataset fixed): {_fmt(a_slm)} over {ks['across_slm']['n_pairs']} pairs.")
    else:
        ev2.append("Only one SLM in this grid: the across-SLM half of the claim is not tested.")
    per = ks.get("across_datasets", {}).get("per_group", {})
    if per:
        worst = max(per, key=per.get)
        ev2.append(f"Least stable method across datasets: {worst.replace('__', ' / ')} (mean KS {_fmt(per[worst])}).")
    comps = [x for x in (a_uq, a_slm) if np.isfinite(x)]
    ratios = [a_ds / x for x in comps if x > 0]
    ev2.append(
        "Ratio of between-dataset to between-method/SLM distance: "
        + ", ".join(_fmt(x, 2) for x in ratios)
        + " (the finding needs clearly below 1; we ask <= 0.8)."
    )
    verdict = (
        "holds"
        if ratios and all(x <= 0.8 for x in ratios)
        else "partly"
        if any(x < 1 for x in ratios)
        else "does not hold"
    )
    return ev2, verdict


def fitted_on_target(methods: Mapping[str, str]) -> list[str]:
    """The UQ entries (uq name -> UQ method name) whose scores on a dataset come from a model fitted
    on that dataset's own labelled rows (``UQMethod.fit == "in_domain"``: the probe): their
    thresholds never see the target's labels, their scores do."""
    from jobs.uq import UQ_METHODS

    return sorted(uq for uq, m in methods.items() if m in UQ_METHODS and UQ_METHODS.get(m).fit == "in_domain")


def transfer_finding(transfer: dict, fitted_on_target: Iterable[str] = ()) -> dict:
    """Finding 3: thresholds from calibration data transfer to unseen datasets (``transfer_analysis``).

    fitted_on_target: UQ entries whose scores on the target were fitted on the target's own labels
    (``fitted_on_target``). The claim is "no labels from it", so the verdict and its numbers rest
    on the other methods only; theirs are stated beside it."""
    ev3: list[str] = []
    on_target = set(fitted_on_target)
    all_rows = transfer.get("call_rate", [])
    rows = [r for r in all_rows if r.get("uq") not in on_target]
    left_out = [r for r in all_rows if r.get("uq") in on_target]
    summ = transfer_summary(rows)
    by_m: dict[str, list[float]] = {}
    sd_m: dict[str, list[float]] = {}
    for r in rows:
        by_m.setdefault(r["method"], []).append(_abs_err(r))
        sd_m.setdefault(r["method"], []).append(float(r.get("call_rate_error_sd", 0.0)))
    if by_m.get("calibration"):
        cal_err = float(np.mean(by_m["calibration"]))
        ev3 += _call_rate_evidence(rows, left_out, on_target, by_m, sd_m, cal_err)
        ev3 += _curve_and_accuracy_evidence(transfer, on_target)
        fixed_err = float(np.mean(by_m.get("fixed", [np.inf])))
        per_method_ok = [s for s in summ if s["method"] == "calibration" and s["mean_abs_call_rate_error"] <= 0.1]
        n_methods = len([s for s in summ if s["method"] == "calibration"])
        ev3.append(f"{len(per_method_ok)} of {n_methods} UQ methods keep the mean call-rate error within 0.10.")
        verdict = (
            "holds" if cal_err <= 0.1 and cal_err < fixed_err else "partly" if cal_err < fixed_err else "does not hold"
        )
    else:
        verdict = "not testable"
        ev3.append("Needs at least two datasets per (SLM, method, LLM), one of them allowed to feed calibration sets.")
        if transfer.get("skipped"):
            ev3.append(f"Skipped: {transfer['skipped'][0]['reason']}.")
    return {
        "id": 3,
        "claim": "Routing thresholds (and whole routing curves) chosen on calibration data carry "
        "over to a dataset never seen, with no labels from it.",
        "verdict": verdict,
        "evidence": ev3,
    }


def _call_rate_evidence(
    rows: list[dict],
    left_out: list[dict],
    on_target: set[str],
    by_m: dict[str, list[float]],
    sd_m: dict[str, list[float]],
    cal_err: float,
) -> list[str]:
    """Finding 3's call-rate sentences: the mean error per threshold source (by_m: method -> |error|
    per row; sd_m: its SD over draws), what was left out (``left_out``: the rows of the methods
    ``on_target``), the draws and the largest miss."""
    sources = sorted({r["source"] for r in rows})
    ev3 = [
        f"Mean |realized - target call rate| over held-out datasets and targets: calibration "
        f"{_fmt(cal_err)}, in-domain labelled {_fmt(float(np.mean(by_m.get('in_domain', [np.nan]))))}, "
        f"fixed untuned threshold {_fmt(float(np.mean(by_m.get('fixed', [np.nan]))))} "
        f"(calibration data from: {', '.join('fit-role rows, never evaluated' if s == 'fit' else 'other datasets’ evaluated rows' for s in sources)})."
    ]
    lo_cal = [_abs_err(r) for r in left_out if r["method"] == "calibration"]
    if on_target:
        ev3.append(
            f"Left out of these numbers and the verdict: {', '.join(sorted(on_target))}, whose scores on a "
            "held-out dataset come from a model trained on that dataset's own labelled fit rows (its "
            "thresholds never see the target's labels, its scores do)"
            + (f"; its calibration error would be {_fmt(float(np.mean(lo_cal)))}." if lo_cal else ".")
        )
    n_draws = max(int(r.get("n_draws", 1)) for r in rows if r["method"] == "calibration")
    if n_draws > 1:
        ev3.append(
            f"Calibration errors are means over {n_draws} draws of the calibration set (seeds "
            f"{', '.join(str(x) for x in next(r for r in rows if r['method'] == 'calibration')['seeds'])}); "
            f"mean SD across draws {_fmt(float(np.mean(sd_m['calibration'])))}."
        )
    cal_rows = [r for r in rows if r["method"] == "calibration"]
    worst = max(cal_rows, key=_abs_err)
    ev3.append(
        f"Largest miss: {worst['uq']} on held-out {worst['heldout']} at target {worst['target_call_rate']:.1f}: "
        f"realized {_fmt(worst['realized_call_rate'])} ({worst['call_rate_error']:+.3f})."
    )
    return ev3


def _curve_and_accuracy_evidence(transfer: dict, on_target: set[str]) -> list[str]:
    """Finding 3's sentences on routing-curve prediction and accuracy targets (methods
    ``on_target`` left out)."""
    ev3: list[str] = []
    curves = [c for c in transfer.get("curves", []) if c.get("uq") not in on_target]
    if curves:
        rc = float(np.mean([c["rms_calibration"] for c in curves]))  # each a mean over draws
        rr = float(np.mean([c["rms_random"] for c in curves]))
        ev3.append(
            f"Routing-curve prediction: mean RMS distance {_fmt(rc)} from the calibration curve vs "
            f"{_fmt(rr)} from the random-routing line."
            + (
                " The random line is closer: where the LLM is barely more accurate than the SLM every "
                "routing curve is nearly flat, while the calibration curve carries the other datasets' "
                "accuracy level."
                if rr < rc
                else ""
            )
        )
    acc = [r for r in transfer.get("accuracy", []) if r.get("uq") not in on_target]
    if acc:
        ev3.append(
            f"Accuracy targets: mean |realized - target accuracy| {_fmt(float(np.mean([abs(r['accuracy_error']) for r in acc])))} "
            f"over {len(acc)} (held-out, target) pairs."
        )
    return ev3


def analyze(view: GridView) -> dict:
    """Everything the report shows, as plain JSON-able data (numpy arrays turned into lists), from
    a grid's typed view (``orchestrator.grid_view.grid_view``)."""
    store = view.store
    cal_conf = dict(view.calibration)
    ev = eval_pools(view.settings)
    fp = fit_pools(store, view.settings, view.extraction_policy)
    lo = leave_out_pools(store, view.leave_out, ev, fp)
    table = method_table(view.settings)
    coincide = coincident_methods(ev)
    ranking = method_ranking(table, coincide)
    policies = dict(view.nan_policies)
    paired = paired_table(
        ev,
        nan_policy=policies,
        n_boot=int(view.bootstrap) or 200,
        seed=int(view.bootstrap_seed),
        ties=view.ties,
        coincide=coincide,
    )
    methods = dict(view.uq_methods)
    same = coincidence_sentences(coincide, view.answer_modes)
    forms = dataset_forms(view)
    defs = method_definitions(methods, forms)
    dist = distance_analysis(ev, methods, defs)
    sources = dict(view.fit_sources)
    allowed = None if cal_conf["pool"] == "fit" else [d for d, src in sources.items() if src.startswith("split:")]
    from jobs.uq import UQ_METHODS

    needs = {uq for uq, m in methods.items() if UQ_METHODS.get(m).fit == "other_datasets"}
    splits = list(cal_conf.get("splits") or ["leave_one_out"])
    transfer = (
        transfer_analysis(ev, fp, cal_conf, policies, allowed, methods, lo, needs, defs)
        if "leave_one_out" in splits
        else {"call_rate": [], "curves": [], "accuracy": [], "skipped": [], "not_pooled": []}
    )
    cross = _cross_group(view, ev, fp, allowed, needs, defs, transfer) if "cross_group" in splits else None
    return {
        "cross_group": cross,
        "splits": splits,
        "settings": table,
        "ranking": ranking,
        "paired": paired,
        "distances": dist,
        "transfer": transfer,
        "transfer_summary": transfer_summary(transfer["call_rate"]),
        "findings": findings(ranking, paired, dist, transfer, same, fitted_on_target(methods)),
        "same_quantity": same,
        "calibration": cal_conf,
        "calibration_scales": {uq: calibration_scale(cal_conf, m) for uq, m in sorted(methods.items())},
        "nan_policies": policies,
        "fit_sources": sources,
        "calibration_datasets": allowed if allowed is not None else sorted(sources),
        "fit_pools": {"__".join(k): {d: len(p) for d, p in v.items()} for k, v in fp.items()},
        "definitions": definitions_summary(methods, forms, defs, transfer, cross, dist, needs, view.dataset_names),
    }


def _cross_group(
    view: GridView,
    ev: Pools,
    fp: Pools,
    allowed: list[str] | None,
    needs: set[str],
    defs: Definitions,
    transfer: dict,
) -> dict:
    """``analyze``'s cross-group block: ``group_transfer_analysis`` of the grid with its groups and
    one sentence per direction (``group_transfer_sentences``, against the leave-one-out rows of
    ``transfer``)."""
    groups = dict(view.groups)
    cross = group_transfer_analysis(
        ev,
        fp,
        dict(view.calibration),
        dict(view.nan_policies),
        groups,
        allowed,
        dict(view.uq_methods),
        leave_group_pools(view.store, view.leave_group_out, ev, fp),
        needs,
        defs,
    )
    cross["groups"] = groups
    cross["sentences"] = group_transfer_sentences(cross, transfer["call_rate"])
    return cross
