"""Cheap, model-free stages: judge answers, score UQ methods, evaluate settings.

Everything here reads records from the store and writes records back; it needs no model
and no torch, so metrics and plots can be recomputed from the Parquet store anywhere.

  run_score_unit    stats of one (SLM, dataset) generation pass -> uncertainty per sample
  run_setting_unit  uncertainty + SLM correctness + LLM correctness -> routing curve,
                    metrics, per-sample records and a plot for one setting (curve.json: the
                    routing, random and oracle curves and the relative-accuracy curve; with prices
                    in the unit, the same curve on a cost axis and cost.parquet, ``jobs/cost.py``)
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from jobs import metrics as M
from jobs.answers import extract, is_correct
from jobs.records import (finish_unit, is_complete, part_path, read_json, read_unit, unit_dir, write_json,
                          write_table)
from jobs.types import Sample

_LETTER_STRIP = re.compile(r"^[\s\(\[\*]*([A-Za-z])[\s\)\]\.\*:,]*$")


def _sample_of(row: dict) -> Sample:
    return Sample(id=row["sample_id"], question="", task=row["task"], gold=row["gold"],
                  choices=tuple(row.get("choices") or ()), aliases=tuple(row.get("aliases") or ()))


def judge(rows: list[dict], policy: str) -> tuple[list[str | None], np.ndarray]:
    """Extract and judge the ``raw_output`` of each row (greedy or LLM records)."""
    answers, correct = [], []
    for row in rows:
        if row.get("error") or row.get("raw_output") is None:
            answers.append(None)
            correct.append(False)
            continue
        s = _sample_of(row)
        a = extract(row["raw_output"], s, policy)
        answers.append(a)
        correct.append(bool(is_correct(a, s)))
    return answers, np.asarray(correct, dtype=bool)


def answer_logprob(row: dict, answer: str | None) -> float:
    """log p of the option-letter token of a multiple-choice answer (last occurrence); NaN otherwise."""
    if row["task"] != "mc" or not answer or not row.get("token_texts"):
        return math.nan
    for text, lp in zip(reversed(row["token_texts"]), reversed(row["token_logprobs"])):
        m = _LETTER_STRIP.match(text)
        if m and m.group(1).upper() == answer.upper():
            return float(lp)
    return math.nan


def _rows(store: Path, key: str) -> list[dict]:
    return read_unit(unit_dir(store, "gen", key)).to_pylist()


def load_stats(store: Path, stage_keys: dict[str, str], policy: str) -> tuple[list[str], dict]:
    """Named stats (the contract of jobs/uq) of one generation pass, joined by sample id."""
    greedy = _rows(store, stage_keys["greedy"])
    ids = [r["sample_id"] for r in greedy]
    answers, correct = judge(greedy, policy)
    stats: dict = {
        "token_logprobs": [np.asarray(r.get("token_logprobs") or [], dtype=np.float64) for r in greedy],
        "token_entropy": [np.asarray(r.get("token_entropy") or [], dtype=np.float64) for r in greedy],
        "answer_logprob": np.asarray([answer_logprob(r, a) for r, a in zip(greedy, answers)]),
        "correct": correct,
    }
    if greedy and greedy[0].get("hidden_state") is not None:
        stats["hidden_state"] = np.asarray([r["hidden_state"] for r in greedy], dtype=np.float32)
    stats.update(_router_stats(greedy))
    for stage, key in stage_keys.items():
        if stage == "greedy":
            continue
        by_id = {r["sample_id"]: r for r in _rows(store, key)}
        rows = [by_id[i] for i in ids]
        if stage == "samples":
            stats["sampled_texts"] = [list(r["sampled_texts"] or []) for r in rows]
        elif stage == "ptrue":
            stats["ptrue_prob"] = np.asarray([r["ptrue_prob"] for r in rows], dtype=np.float64)
        elif stage in ("verbal_1s", "verbal_2s"):
            stats[f"{stage}_conf"] = np.asarray([r[f"{stage}_conf"] for r in rows], dtype=np.float64)
    return ids, stats


def _router_stats(greedy: list[dict]) -> dict:
    """The query-side stats of the learned routers (``jobs/routers.py``): the rendered prompt text and
    the probe-layer hidden state at the last prompt token, one entry per row (None where a row has
    none: an HTTP SLM, or a store written before the column existed; the routers give NaN there)."""
    return {"prompt": [r.get("prompt") or "" for r in greedy],
            "prompt_hidden_state": [None if r.get("prompt_hidden_state") is None
                                    else np.asarray(r["prompt_hidden_state"], dtype=np.float32) for r in greedy]}


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


def run_score_unit(unit: dict, store: str | Path) -> dict:
    """Uncertainty of one UQ method for one (SLM, dataset, role); trained methods fit here."""
    from jobs.uq import UQ_METHODS
    from jobs.uq.base import compute

    store = Path(store)
    udir = unit_dir(store, "score", unit["key"])
    if is_complete(udir):
        return read_json(udir / "manifest.json")
    method = UQ_METHODS.get(unit["method"])
    ids, stats = load_stats(store, unit["eval"], unit["policy"])
    fit_stats = None
    if unit["fit"]:
        fit_stats = _concat_stats([load_stats(store, f["stages"], unit["policy"])[1] for f in unit["fit"]])
    if unit.get("crossfit"):
        u = crossfit_scores(method, stats, unit["crossfit"], unit.get("crossfit_seed", 0), dict(unit["params"]))
    else:
        u = compute(method, stats, fit_stats, **dict(unit["params"]))
    write_table(part_path(udir, 0), [{"sample_id": i, "uncertainty": float(x)} for i, x in zip(ids, u)],
                meta={"unit": unit["key"], "uq": unit["uq"]})
    summary = {"key": unit["key"], "uq": unit["uq"], "slm": unit["slm"], "dataset": unit["dataset"],
               "role": unit.get("role", "eval"), "crossfit": unit.get("crossfit", 0), "n": len(ids), "n_nan": int(np.isnan(u).sum()),
               "fit_n": 0 if fit_stats is None else int(len(fit_stats["correct"])),
               "fit_datasets": [f["dataset"] for f in unit["fit"]]}
    finish_unit(udir, summary)
    return summary


def curve_points(curve) -> list[dict]:
    return [{"ratio": float(r), "accuracy": float(a)} for r, a in zip(curve.ratio, curve.accuracy)]


def run_setting_unit(unit: dict, store: str | Path, plot: bool = True) -> dict:
    """Join one setting's inputs, compute its routing metrics, write records, metrics and plot."""
    store = Path(store)
    udir = unit_dir(store, "settings", unit["key"])
    if is_complete(udir):
        return read_json(udir / "manifest.json")
    mc = unit["metrics"]
    score = read_unit(unit_dir(store, "score", unit["score"])).to_pylist()
    slm_rows = _rows(store, unit["slm_greedy"])
    llm_rows = {r["sample_id"]: r for r in _rows(store, unit["llm"])}
    missing = [r["sample_id"] for r in slm_rows if r["sample_id"] not in llm_rows]
    if missing:
        raise ValueError(f"setting {unit['name']}: LLM records lack {len(missing)} samples, e.g. {missing[:3]}")
    llm_list = [llm_rows[r["sample_id"]] for r in slm_rows]
    unc_by_id = {r["sample_id"]: r["uncertainty"] for r in score}
    unc = np.asarray([unc_by_id[r["sample_id"]] for r in slm_rows], dtype=np.float64)
    rank = M.route_ranks(unc, mc["nan_policy"])  # the routing decision, frozen before any answer is judged
    slm_ans, slm_ok = judge(slm_rows, unit["policy"])
    llm_ans, llm_ok = judge(llm_list, unit["policy"])
    summary = M.summarize(unc, slm_ok, llm_ok, nan_policy=mc["nan_policy"], ties=mc["ties"],
                          n_boot=mc["bootstrap"], seed=mc["seed"])
    u_all, keep = M.apply_nan_policy(unc, mc["nan_policy"])
    u_eff = u_all[keep]
    curve = M.routing_curve(u_eff, slm_ok[keep], llm_ok[keep], ties=mc["ties"])
    rnd = M.random_curve(slm_ok[keep], llm_ok[keep])
    orc = M.oracle_curve(slm_ok[keep], llm_ok[keep])
    records = [{"sample_id": r["sample_id"], "setting": unit["name"], "setting_hash": unit["key"],
                "slm_answer": a, "slm_correct": bool(o), "llm_answer": la, "llm_correct": bool(lo),
                "uncertainty": float(x), "route_rank": int(k)}
               for r, a, o, la, lo, x, k in zip(slm_rows, slm_ans, slm_ok, llm_ans, llm_ok, unc, rank)]
    write_table(udir / "records.parquet", records, meta={"setting": unit["name"], "axes": unit["axes"]})
    cost = _setting_cost(store, unit, udir, slm_rows, llm_list, unc, slm_ok, llm_ok, summary)
    # relative_accuracy: the paper's SLM / LLM accuracy on the top k% most confident, k = 10..100
    write_json(udir / "curve.json", {"curve": curve_points(curve), "random": curve_points(rnd),
                                     "oracle": curve_points(orc),
                                     "relative_accuracy": M.relative_accuracy_curve(u_eff, slm_ok[keep], llm_ok[keep],
                                                                                    ties=mc["ties"])}
               | ({"cost": cost} if cost else {}))
    if plot:
        from jobs.plots import plot_routing

        plot_routing({f"{unit['axes']['uq']} (AUROC {summary['auroc']:.3f})": curve}, udir / "curve.png",
                     random=rnd, oracle=orc, title=unit["name"])
    manifest = {"key": unit["key"], "name": unit["name"], **unit["axes"], "metrics": summary}
    finish_unit(udir, manifest)
    return manifest


def _setting_cost(store: Path, unit: dict, udir: Path, slm_rows, llm_rows, unc, slm_ok, llm_ok,
                  summary: dict) -> dict | None:
    """The setting's cost axis (``jobs/cost.py``): adds the ``cost_*`` metrics to ``summary``, writes
    ``cost.parquet`` (usage and USD per query) and returns the curve.json ``cost`` block; None when
    the unit was planned without prices."""
    from jobs import cost as C

    out = C.from_store(store, unit, slm_rows, llm_rows, unc, slm_ok, llm_ok)
    if out is None:
        return None
    sc, block = out
    summary.update(sc.metrics)
    write_table(udir / "cost.parquet", sc.records, meta={"setting": unit["name"], "prices": block["prices"],
                                                         "prices_digest": block["prices_digest"]})
    return block
