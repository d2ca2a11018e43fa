"""Cheap, model-free stages: judge answers, score UQ methods, evaluate settings.

Everything here reads records from the store and writes records back; it needs no model
and no torch, so metrics and plots can be recomputed from the Parquet store anywhere.

  run_score_unit    stats of one (SLM, dataset) generation pass -> uncertainty per sample
  run_setting_unit  uncertainty + SLM correctness + LLM correctness -> routing curve,
                    metrics, per-sample records and a plot for one setting (curve.json: the
                    routing, random and oracle curves and the relative-accuracy curve; with prices
                    in the unit, the same curve on a cost axis and cost.parquet, ``jobs/cost.py``).
                    The NaN policy is the setting's (``metrics.nan_policy`` of the unit: the UQ
                    entry's or its method's); the judged SLM answer and a verbal method's
                    provenance columns come from ``slm_judgement``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from jobs import metrics as M
from jobs.judge import answer_logprob, judge_detail
from jobs.records import write_json
from jobs.store import Store, write_rows
from jobs.units import ScoreManifest, ScoreSpec, SettingManifest, SettingSpec

#: Version of what score and setting units compute from their inputs (this module, ``jobs/metrics.py``
#: and its ``METRICS``, the UQ methods of ``jobs/uq``): bump it when one of them changes a result;
#: every score and setting unit's key carries it (``orchestrator.plan``), so a bump reruns them all
#: (``uqroute rescore`` does it with no model).
SCORING_VERSION = "1"


def _rows(store: Path | Store, key: str) -> list[dict]:
    return (store if isinstance(store, Store) else Store(store)).gen(key).rows()


def load_stats(store: Path, stage_keys: dict[str, str], policy: str) -> tuple[list[str], dict]:
    """Named stats (the contract of jobs/uq) of one generation pass, joined by sample id.

    stage_keys: {stage: gen unit key}, the greedy pass's included (its sample order is the stats');
    each stage's rows become the stats it provides by its declaration (``jobs.stages.base.Stage.stats``)."""
    from jobs.stages import stage

    greedy = _rows(store, stage_keys["greedy"])
    ids = [r["sample_id"] for r in greedy]
    stats: dict = stage("greedy").load(greedy, policy)
    for name, key in stage_keys.items():
        if name == "greedy":
            continue
        by_id = {r["sample_id"]: r for r in _rows(store, key)}
        stats.update(stage(name).load([by_id[i] for i in ids], policy))
    return ids, stats


def _concat_stats(parts: list[dict]) -> dict:
    out: dict = {}
    for k in parts[0]:
        vals = [p[k] for p in parts]
        if isinstance(vals[0], np.ndarray):
            out[k] = np.concatenate(vals, axis=0)
        else:
            out[k] = [x for v in vals for x in v]
    return out


def _subset_stats(stats: dict, idx: np.ndarray) -> dict:
    return {k: (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]) for k, v in stats.items()}


def crossfit_scores(method, stats: dict, folds: int, seed: int, params: dict) -> np.ndarray:
    """Out-of-fold uncertainty of a trained method on its own training rows: rows are split into
    ``folds`` random folds (``default_rng(seed)``); each fold is scored by the method trained on
    the other folds, so no row is scored by a model that saw its label."""
    from jobs.uq.base import compute

    n = len(stats["correct"])
    if n < 2:
        raise ValueError(f"cross-fitting {method.name!r} needs at least 2 rows; got {n}")
    folds = min(int(folds), n)
    perm = np.random.default_rng(seed).permutation(n)
    out = np.full(n, np.nan)
    for f in range(folds):
        test = np.sort(perm[f::folds])
        train = np.sort(np.setdiff1d(perm, test))
        out[test] = compute(method, _subset_stats(stats, test), _subset_stats(stats, train), **params)
    return out


def run_score_unit(unit: ScoreSpec, store: str | Path) -> dict:
    """Uncertainty of one UQ method for one (SLM, dataset, role); trained methods fit here."""
    from jobs.uq import UQ_METHODS
    from jobs.uq.base import compute

    unit = ScoreSpec.of(unit)
    store = Path(store)
    udir = Store(store).score(unit.key)
    if udir.done:
        return udir.manifest_json()
    method = UQ_METHODS.get(unit.method)
    ids, stats = load_stats(store, dict(unit.stages), unit.policy)
    fit_stats = None
    if unit.fit:
        fit_stats = _concat_stats([load_stats(store, dict(f.stages), unit.policy)[1] for f in unit.fit])
    if unit.crossfit:
        u = crossfit_scores(method, stats, unit.crossfit, unit.crossfit_seed, dict(unit.params))
    else:
        u = compute(method, stats, fit_stats, **dict(unit.params))
    write_rows(
        udir.part_path(0),
        [{"sample_id": i, "uncertainty": float(x)} for i, x in zip(ids, u)],
        "score",
        meta={"unit": unit.key, "uq": unit.uq},
    )
    manifest = ScoreManifest(
        unit.key,
        unit.uq,
        unit.slm,
        unit.dataset,
        role=unit.role,
        crossfit=unit.crossfit,
        n=len(ids),
        n_nan=int(np.isnan(u).sum()),
        fit_n=0 if fit_stats is None else len(fit_stats["correct"]),
        fit_datasets=tuple(f.dataset for f in unit.fit),
    )
    return udir.finish(manifest)


# A stated confidence ("Confidence: 90%", "confidence level of 0.9"): cut off a one-stage output
# before its answer is extracted, so the flexible rules never take the confidence for the answer.
_CONFIDENCE_CLAUSE = re.compile(r"(?i)[\s.,;(]*\bconfidence\b(?:\s+(?:level|score))?[^0-9\n]{0,12}\d")


def without_confidence(text: str | None) -> str | None:
    """A one-stage verbal output without its confidence clause: the text before the last
    "confidence" followed (within a few characters) by a number; unchanged when there is none."""
    if not text:
        return text
    hits = list(_CONFIDENCE_CLAUSE.finditer(text))
    return text[: hits[-1].start()] if hits and text[: hits[-1].start()].strip() else text


def verbal_answer_rows(rows: list[dict], stage: str) -> list[dict]:
    """A verbal stage's rows as rows ``judge`` reads: raw_output = the stage's own output
    (``<stage>_raw``) without its confidence clause."""
    return [dict(r, raw_output=without_confidence(r.get(f"{stage}_raw"))) for r in rows]


def slm_judgement(
    store: Path, greedy_rows: list[dict], stages: dict[str, str], method, params: dict, policy: str
) -> dict:
    """Which SLM answer a setting judges, and the per-sample provenance a UQ method adds.

    greedy_rows: the SLM's greedy rows (the setting's row order); stages: {stage: gen key} the score
    read; method: the ``UQMethod`` (None: greedy only). Returns {"answers", "correct" (bool array),
    "details" (the judged answers' ``Extraction``s), "greedy_details", "route", "columns": {name:
    per-row list}, "metrics": {name: float}}:

    - a method with an ``answer_stage`` (verbal_1s): its own answer is extracted from that stage's
      output (``verbal_answer_rows``) and recorded (``<stage>_answer``, ``<stage>_correct``,
      ``<stage>_agrees``: the same extracted answer as the greedy pass), with ``greedy_answer`` and
      ``greedy_correct``; metric ``answer_agreement`` = share of rows that agree (all rows) and
      ``greedy_slm_acc``. ``method.route(params)`` says which answer is judged.
    - a method with a ``parsed_stat`` (verbal methods): column ``confidence_parse``, "ok" where the
      confidence parsed, "unparsed" where it is NaN.
    """
    greedy_det, correct = judge_detail(greedy_rows, policy)
    answers = [d.answer for d in greedy_det]
    out = {
        "answers": answers,
        "correct": correct,
        "route": "greedy_answer",
        "columns": {},
        "metrics": {},
        "details": greedy_det,
        "greedy_details": greedy_det,
    }
    if method is None:
        return out
    ids = [r["sample_id"] for r in greedy_rows]
    stage = method.answer_stage
    if stage is not None and stage in stages:
        own_det, own_ok, columns, metrics = _own_answers(store, stages[stage], stage, ids, answers, correct, policy)
        out["columns"] |= columns
        out["metrics"] |= metrics
        out["route"] = method.route(params)
        if out["route"] == "own_answer":
            out["answers"], out["correct"], out["details"] = columns[f"{stage}_answer"], own_ok, own_det
    if method.parsed_stat is not None:
        parse = _confidence_parse(store, stages, method.parsed_stat, ids)
        if parse is not None:
            out["columns"]["confidence_parse"] = parse
    return out


def _own_answers(store: Path, key: str, stage: str, ids: list, answers: list, correct, policy: str):
    """The answers a verbal stage (gen unit ``key``) gave itself, judged, against the greedy
    ``answers``: (details, correct array, the rows' columns, the metrics) as ``slm_judgement``
    records them."""
    by_id = {r["sample_id"]: r for r in _rows(store, key)}
    own_det, own_ok = judge_detail(verbal_answer_rows([by_id[i] for i in ids], stage), policy)
    own_ans = [d.answer for d in own_det]
    agrees = [a is not None and a == g for a, g in zip(own_ans, answers)]
    columns = {
        "greedy_answer": answers,
        "greedy_correct": [bool(x) for x in correct],
        f"{stage}_answer": own_ans,
        f"{stage}_correct": [bool(x) for x in own_ok],
        f"{stage}_agrees": agrees,
    }
    metrics = {
        "answer_agreement": float(np.mean(agrees)) if agrees else math.nan,
        "greedy_slm_acc": float(np.mean(correct)) if len(correct) else math.nan,
    }
    return own_det, own_ok, columns, metrics


def _confidence_parse(store: Path, stages: dict[str, str], stat: str, ids: list) -> list[str] | None:
    """Per row, "ok" where the stated confidence ``stat`` parsed, "unparsed" where it is NaN or
    missing; None when the setting read no stage that provides ``stat``."""
    from jobs.stages import stat_stages

    key = stages.get(stat_stages()[stat])
    if key is None:
        return None
    by_id = {r["sample_id"]: r for r in _rows(store, key)}
    return ["ok" if by_id[i].get(stat) is not None and math.isfinite(by_id[i][stat]) else "unparsed" for i in ids]


def _method_of(unit: SettingSpec):
    """The setting's UQMethod (None: judge the greedy answer only)."""
    from jobs.uq import UQ_METHODS

    return UQ_METHODS.get(unit.method) if unit.method else None


def curve_points(curve) -> list[dict]:
    return [{"ratio": float(r), "accuracy": float(a)} for r, a in zip(curve.ratio, curve.accuracy)]


def run_setting_unit(unit: SettingSpec, store: str | Path, plot: bool = True) -> dict:
    """Join one setting's inputs, compute its routing metrics, write records, metrics and plot."""
    unit = SettingSpec.of(unit)
    store = Path(store)
    st = Store(store)
    udir = st.setting(unit.key)
    if udir.done:
        return udir.manifest_json()
    mc = unit.metrics
    slm_rows, llm_list, unc = _setting_inputs(st, unit)
    rank = M.route_ranks(unc, mc.nan_policy)  # the routing decision, frozen before any answer is judged
    judged = slm_judgement(st, slm_rows, dict(unit.slm_stages), _method_of(unit), dict(unit.uq_params), unit.policy)
    slm_ok = judged["correct"]
    llm_det, llm_ok = judge_detail(llm_list, unit.policy)
    summary = (
        M.summarize(unc, slm_ok, llm_ok, nan_policy=mc.nan_policy, ties=mc.ties, n_boot=mc.bootstrap, seed=mc.seed)
        | judged["metrics"]
    )
    records = _setting_records(unit, slm_rows, judged, llm_det, llm_ok, unc, rank)
    write_rows(udir.records_path, records, "setting", meta={"setting": unit.name, "axes": dict(unit.axes)})
    cost = _setting_cost(store, unit, udir, slm_rows, llm_list, unc, slm_ok, llm_ok, summary)
    _write_curves(unit, udir, unc, slm_ok, llm_ok, summary, cost, plot)
    manifest = SettingManifest(
        unit.key,
        unit.setting_hash,
        unit.name,
        **unit.axes,
        metrics=summary,
        nan_policy=mc.nan_policy,
        answer_route=judged["route"],
    )
    return udir.finish(manifest)


def _setting_inputs(st: Store, unit: SettingSpec) -> tuple[list[dict], list[dict], np.ndarray]:
    """The SLM's greedy rows, the LLM's rows in the same order and the score unit's uncertainties
    in that order; a ValueError naming the setting when the LLM lacks some of the SLM's samples."""
    score = st.score(unit.score).rows()
    slm_rows = _rows(st, unit.slm_greedy)
    llm_rows = {r["sample_id"]: r for r in _rows(st, unit.llm)}
    missing = [r["sample_id"] for r in slm_rows if r["sample_id"] not in llm_rows]
    if missing:
        raise ValueError(f"setting {unit.name}: LLM records lack {len(missing)} samples, e.g. {missing[:3]}")
    llm_list = [llm_rows[r["sample_id"]] for r in slm_rows]
    unc_by_id = {r["sample_id"]: r["uncertainty"] for r in score}
    unc = np.asarray([unc_by_id[r["sample_id"]] for r in slm_rows], dtype=np.float64)
    return slm_rows, llm_list, unc


def _setting_records(
    unit: SettingSpec, slm_rows: list[dict], judged: dict, llm_det, llm_ok, unc: np.ndarray, rank
) -> list[dict]:
    """records.parquet's rows: each query's answers, correctness, uncertainty, route rank and
    provenance -- the extraction rule of each judged answer (``jobs.answers.Extraction.rule``) and the
    rule that gave the SLM's answer probability (``ANSWER_PROB_RULES``; from the greedy pass) -- plus
    a verbal method's own answer and parse status (``judged["columns"]``)."""
    setting_hash = unit.setting_hash  # the setting's identity; "key" is its unit key
    records = [
        {
            "sample_id": r["sample_id"],
            "setting": unit.name,
            "setting_hash": setting_hash,
            "slm_answer": a.answer,
            "slm_correct": bool(o),
            "llm_answer": la.answer,
            "llm_correct": bool(lo),
            "uncertainty": float(x),
            "route_rank": int(k),
            "extraction_rule": a.rule,
            "llm_extraction_rule": la.rule,
            "answer_prob_rule": answer_logprob(r, g)[1],
        }
        for r, a, g, o, la, lo, x, k in zip(
            slm_rows, judged["details"], judged["greedy_details"], judged["correct"], llm_det, llm_ok, unc, rank
        )
    ]
    for name, col in judged["columns"].items():
        for rec, v in zip(records, col):
            rec[name] = v
    return records


def _write_curves(unit: SettingSpec, udir, unc, slm_ok, llm_ok, summary: dict, cost: dict | None, plot: bool) -> None:
    """curve.json (routing, random and oracle curves; relative_accuracy: the paper's SLM / LLM accuracy
    on the top k% most confident, k = 10..100; the cost block) and, with ``plot``, curve.png. Under
    "drop" every query may be unscored (a verbal method whose confidences never parse): then there is
    no curve; the metrics are NaN and unscored_share is 1."""
    mc = unit.metrics
    u_all, keep = M.apply_nan_policy(unc, mc.nan_policy)
    block: dict = {"curve": [], "random": [], "oracle": [], "relative_accuracy": []}
    scored = bool(keep.any())
    if scored:
        curve = M.routing_curve(u_all[keep], slm_ok[keep], llm_ok[keep], ties=mc.ties)
        rnd = M.random_curve(slm_ok[keep], llm_ok[keep])
        orc = M.oracle_curve(slm_ok[keep], llm_ok[keep])
        block = {
            "curve": curve_points(curve),
            "random": curve_points(rnd),
            "oracle": curve_points(orc),
            "relative_accuracy": M.relative_accuracy_curve(u_all[keep], slm_ok[keep], llm_ok[keep], ties=mc.ties),
        }
    write_json(udir.curve_path, block | ({"cost": cost} if cost else {}))
    if plot and scored:
        from jobs.figures import plot_routing

        plot_routing(
            {f"{unit.axes['uq']} (AUROC {summary['auroc']:.3f})": curve},
            udir.plot_path,
            random=rnd,
            oracle=orc,
            title=unit.name,
        )


def _setting_cost(
    store: Path, unit: SettingSpec, udir, slm_rows, llm_rows, unc, slm_ok, llm_ok, summary: dict
) -> dict | None:
    """The setting's cost axis (``jobs/cost.py``): adds the ``cost_*`` metrics to ``summary``, writes
    ``cost.parquet`` (usage and USD per query) and returns the curve.json ``cost`` block; None when
    the unit was planned without prices."""
    from jobs import cost as C

    out = C.from_store(store, unit, slm_rows, llm_rows, unc, slm_ok, llm_ok)
    if out is None:
        return None
    sc, block = out
    summary.update(sc.metrics)
    write_rows(
        udir.cost_path,
        sc.records,
        "cost",
        meta={"setting": unit.name, "prices": block["prices"], "prices_digest": block["prices_digest"]},
    )
    return block
