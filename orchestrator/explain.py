"""``uqroute explain <output folder> <setting> <sample_id>``: one query's full trail.

What the SLM was asked (rendered from the dataset sample by ``jobs/prompts.py``), what every stage
the setting's UQ method read returned (raw outputs of greedy, samples, p(True), verbal ...), what
the LLM answered, the extracted answers and their correctness, every UQ method's score for this
query, any per-row provenance columns the records carry (shown generically), and the routing
decision at a call rate: is the query sent to the LLM, and where it ranks by uncertainty.
Everything is read from the store; nothing is recomputed.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import numpy as np

from jobs.conf import plain
from jobs.store import Store, UnitDir
from jobs.units import ScoreSpec, SettingSpec
from orchestrator.config import ConfigError

#: per-token / per-state columns: shown by their length (and mean, for numbers), not in full
BULKY = ("token_logprobs", "token_entropy", "token_texts", "hidden_state", "option_logprobs")
#: columns every generation row has (shown once, in the sample block), not per stage
COMMON = ("sample_id", "dataset", "role", "gold", "task", "choices", "aliases")
#: setting-record columns shown in the answers block; any other record column is provenance
RECORD_BASE = (
    "sample_id",
    "setting",
    "setting_hash",
    "slm_answer",
    "slm_correct",
    "llm_answer",
    "llm_correct",
    "uncertainty",
    "route_rank",
)


def find_setting(plan, query: str):
    """A setting of the plan by its name or a prefix of its hash (at least 4 characters)."""
    by_name = {s.name: s for s in plan.settings}
    if query in by_name:
        return by_name[query]
    if len(query) >= 4:
        hits = [s for s in plan.settings if s.hash.startswith(query)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise ConfigError(
                f"setting hash prefix {query!r} is ambiguous: {', '.join(f'{s.hash} ({s.name})' for s in hits)}"
            )
    close = difflib.get_close_matches(query, list(by_name), n=5, cutoff=0.4)
    if not close:  # parts of a name: "ptrue" -> the settings with that UQ method
        close = [n for n in by_name if query and query in n][:5]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"unknown setting {query!r}: give a setting name or a prefix of its hash (4+ characters).{hint} "
        f"This folder has {len(by_name)} settings, e.g. {', '.join(list(by_name)[:3])}"
    )


def _row_of(udir: UnitDir, sample_id: str) -> dict | None:
    if not udir.done:
        return None
    for row in udir.rows():
        if str(row["sample_id"]) == sample_id:
            return row
    return None


def _brief(col: str, v: Any) -> Any:
    """A value as shown: bulky lists by length (and mean), the rest as they are."""
    if col in BULKY and isinstance(v, (list, tuple)):
        nums = [x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if col == "hidden_state":
            return f"<{len(v)} floats>"
        if nums and len(nums) == len(v):
            return f"<{len(v)} values, mean {float(np.mean(nums)):.4f}>"
        return v if len(v) <= 12 else f"<{len(v)} items: {v[:12]} ...>"
    return v


def _nan_policy(metrics_conf: dict, uq: str, method: str) -> str:
    p = metrics_conf.get("nan_policy", "most_uncertain")
    if isinstance(p, dict):  # per UQ method
        return p.get(uq) or p.get(method) or p.get("default") or "most_uncertain"
    return p


def routing_decision(uncertainty: np.ndarray, i: int, rate: float, nan_policy: str) -> dict:
    """Whether row ``i`` goes to the LLM at call rate ``rate``: the exact threshold of
    ``jobs.analysis.calibration.threshold_for_call_rate`` on the setting's own scores (a tie at the threshold
    is routed with probability tie_frac), and the row's rank by uncertainty (1 = most uncertain;
    rank_last: the last position among rows with the same score)."""
    from jobs import metrics as M
    from jobs.analysis import calibration as C

    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"--rate {rate!r} must be in [0, 1]")
    u, keep = M.apply_nan_policy(uncertainty, nan_policy)
    if not keep[i]:
        return {
            "rate": rate,
            "scored": False,
            "route_probability": None,
            "why": f"unscored (NaN) and dropped by nan_policy={nan_policy!r}: not part of the routing",
        }
    ue = u[keep]
    thr = C.threshold_for_call_rate(ue, rate)
    p = float(C.route_probability(np.asarray([u[i]]), thr)[0])
    return {
        "rate": rate,
        "scored": bool(np.isfinite(uncertainty[i])),
        "threshold": thr.value,
        "tie_frac": thr.tie_frac,
        "route_probability": p,
        "routed": p == 1.0 if p in (0.0, 1.0) else None,
        "rank": int(np.sum(ue > u[i])) + 1,
        "rank_last": int(np.sum(ue >= u[i])),
        "n": len(ue),
    }


def _records_of(res, sd, s, su_key: str, out: Path, sample_id: str) -> tuple[list[dict], int]:
    """The setting's records and the row index of ``sample_id``; a clear error when either is missing."""
    records = res.records_table(setting=s.name).to_pylist()
    if not records:
        raise FileNotFoundError(
            f"setting {s.name} has no results in {sd.path} yet (its unit key {su_key}); run "
            f"`uqroute resume {out}` or `uqroute rescore {out}`"
        )
    ids = [str(x["sample_id"]) for x in records]
    if sample_id not in ids:
        close = difflib.get_close_matches(sample_id, ids, n=5, cutoff=0.3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"sample {sample_id!r} is not among the {len(ids)} evaluated rows of {s.dataset} in this "
            f"folder.{hint} First ids: {', '.join(ids[:5])}"
        )
    return records, ids.index(sample_id)


def _sample_info(r, dataset: str, sample_id: str) -> dict | None:
    """The sample and its prompt, rendered from the dataset; None when its files are not here."""
    from jobs import prompts
    from jobs.datasets.roles import load_role

    try:
        samples, _ = load_role(r.datasets[dataset], r.dataset_run(dataset), "eval")
    except (OSError, ValueError, KeyError):  # the dataset files are not here (a folder moved elsewhere)
        samples = []
    sample = next((x for x in samples if str(x.id) == sample_id), None)
    if sample is None:
        return None
    return {
        "question": sample.question,
        "context": sample.context,
        "choices": list(sample.choices),
        "gold": sample.gold,
        "aliases": list(sample.aliases),
        "task": sample.task,
        "prompt": prompts.answer_messages(sample),
    }


def _stage_outputs(store: Store, stages: dict, sample_id: str) -> dict:
    """The row of ``sample_id`` in each stage's generation unit (None: not in the store), briefly."""
    outputs = {}
    for stage, key in stages.items():
        row = _row_of(store.gen(key), sample_id)
        outputs[stage] = None if row is None else {c: _brief(c, v) for c, v in row.items() if c not in COMMON}
    return outputs


def _scores_of(plan, store: Store, s, sample_id: str) -> dict:
    """Every UQ method's score of this query (same SLM and dataset)."""
    scores: dict[str, dict] = {}
    for other in plan.settings:
        if other.slm != s.slm or other.dataset != s.dataset or other.uq in scores:
            continue
        sk = plan.setting_unit(other).spec.score
        row = _row_of(store.score(sk), sample_id)
        if row is not None:
            scores[other.uq] = {
                "uncertainty": row.get("uncertainty"),
                **{c: v for c, v in row.items() if c not in ("sample_id", "uncertainty")},
            }
    return scores


def explain(out: Path, setting: str, sample_id: str, rate: float = 0.3) -> dict:
    """Everything ``uqroute explain`` prints, as data."""
    from orchestrator.results import open as open_results

    res = open_results(Path(out))  # the public API (``uqroute.open``): it refuses a damaged setting
    r, plan = res.resolved, res.plan
    s = find_setting(plan, setting)
    su = plan.setting_unit(s)
    store = Store(r.store_dir)
    records, i = _records_of(res, store.setting(su.key), s, su.key, out, sample_id)
    rec = records[i]
    spec = su.spec
    assert isinstance(spec, SettingSpec)
    score_spec = plan.spec(spec.score)
    assert isinstance(score_spec, ScoreSpec)
    method = score_spec.method
    u = np.asarray([math.nan if x["uncertainty"] is None else float(x["uncertainty"]) for x in records])
    nan_policy = _nan_policy(plain(spec.metrics), s.uq, method)
    return {
        "setting": s.name,
        "hash": s.hash,
        "unit_key": su.key,
        "axes": s.axes(),
        "method": method,
        "sample_id": sample_id,
        "sample": _sample_info(r, s.dataset, sample_id),
        # every stage the method read, and the LLM pass
        "outputs": _stage_outputs(store, dict(score_spec.stages) | {"llm": spec.llm}, sample_id),
        "answers": {k: rec.get(k) for k in ("slm_answer", "slm_correct", "llm_answer", "llm_correct")},
        "uncertainty": rec.get("uncertainty"),
        "route_rank": rec.get("route_rank"),
        "provenance": {c: v for c, v in rec.items() if c not in RECORD_BASE},
        "scores": _scores_of(plan, store, s, sample_id),
        "nan_policy": nan_policy,
        "routing": routing_decision(u, i, rate, nan_policy),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def _indent(text: str, pad: str = "    ") -> str:
    return "\n".join(pad + line for line in str(text).splitlines()) if text else pad + "(empty)"


def _format_sample(smp: dict | None) -> list[str]:
    if smp is None:
        return [
            "sample: not found in the dataset files as configured now (not here, or its rows changed); "
            "the prompt sent is shown per stage below"
        ]
    L = [
        f"question  [{smp['task']}] gold: {smp['gold']}" + (f"  aliases: {smp['aliases']}" if smp["aliases"] else ""),
        "prompt (jobs/prompts.py answer_messages):",
    ]
    for m in smp["prompt"]:
        L.append(f"  {m['role']}:")
        L.append(_indent(m["content"]))
    return L


def _format_outputs(outputs: dict) -> list[str]:
    L = []
    for stage, row in outputs.items():
        L.append(f"stage {stage}:" + (" (not in the store)" if row is None else ""))
        if row is None:
            continue
        for c, v in row.items():
            if v is None:  # no error, not truncated, ...
                continue
            if c == "prompt":
                L.append("  prompt sent:")
                L.append(_indent(v, "      "))
            elif isinstance(v, str) and "\n" in v:
                L.append(f"  {c}:")
                L.append(_indent(v, "      "))
            else:
                L.append(f"  {c}: {_fmt(v)}")
    return L


def _format_answers_scores(e: dict) -> list[str]:
    a = e["answers"]
    L = [
        "",
        "answers:",
        f"  SLM answer {a['slm_answer']!r}: {'correct' if a['slm_correct'] else 'wrong'}",
        f"  LLM answer {a['llm_answer']!r}: {'correct' if a['llm_correct'] else 'wrong'}",
    ]
    if e["provenance"]:
        L.append("provenance (per-row columns of the setting records):")
        L += [f"  {c}: {_fmt(v)}" for c, v in e["provenance"].items()]
    L += ["", f"scores of this query (same SLM and dataset; this setting: {e['axes']['uq']}):"]
    for uq, sc in e["scores"].items():
        extra = ", ".join(f"{c}={_fmt(v)}" for c, v in sc.items() if c != "uncertainty")
        L.append(
            f"  {'*' if uq == e['axes']['uq'] else ' '} {uq}: {_fmt(sc['uncertainty'])}"
            + (f"  ({extra})" if extra else "")
        )
    return L


def _format_routing(e: dict) -> list[str]:
    rt = e["routing"]
    L = ["", f"routing at call rate {rt['rate']:.0%} (nan_policy {e['nan_policy']}):"]
    if rt["route_probability"] is None:
        L.append(f"  {rt['why']}")
        return L
    if rt["routed"] is True:
        verdict = "routed to the LLM"
    elif rt["routed"] is False:
        verdict = "kept on the SLM"
    else:
        verdict = f"tied at the threshold: routed with probability {rt['route_probability']:.2f}"
    rank = f"{rt['rank']}" if rt["rank"] == rt["rank_last"] else f"{rt['rank']}-{rt['rank_last']} (tied)"
    L.append(
        f"  {verdict}; uncertainty {_fmt(e['uncertainty'])} ranks {rank} of {rt['n']} (1 = most "
        f"uncertain); threshold {_fmt(rt['threshold'])} (ties routed with p={rt['tie_frac']:.2f})"
    )
    L.append(f"  route_rank in the records: {e['route_rank']} (0 = first sent to the LLM)")
    return L


def format_explain(e: dict) -> str:
    """The trail as plain text (what the command prints): the sample and its prompt, each stage's
    output, the answers and every method's score, and the routing decision."""
    L = [
        f"setting   {e['setting']}  (hash {e['hash']}, unit {e['unit_key']})",
        f"sample    {e['sample_id']}  (UQ method {e['method']})",
        "",
    ]
    L += _format_sample(e["sample"])
    L.append("")
    L += _format_outputs(e["outputs"])
    L += _format_answers_scores(e)
    L += _format_routing(e)
    return "\n".join(L)
