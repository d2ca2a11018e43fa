"""Generation stages: the expensive work, one model pass per (model, dataset, role, stage).

A stage is a function ``(backend, samples, deps, params) -> list[row]`` run in fixed
chunks of samples; each chunk becomes one Parquet part, so a killed unit resumes at
chunk level. Stages and the named stats they provide (the contract read by ``jobs/uq``):

  greedy     token_logprobs, token_entropy, answer_logprob, hidden_state  (+ raw_output)
             prompt_hidden_state, prompt   (the learned routers' query side)
  samples    sampled_texts                 (m samples at temperature T)
  ptrue      ptrue_prob                    (one forward pass; shows the whole greedy answer)
  verbal_1s  verbal_1s_conf                (answer + confidence in one output: verbal_1s_raw)
  verbal_2s  verbal_2s_conf                (second turn after the whole greedy answer)
  llm        raw_output of an LLM (greedy), for the other side of the routing

With ``decoding.answer_mode: constrained`` the greedy, llm and samples stages of mc and yes/no
questions score the options in one forward pass instead of generating (see "constrained answers"
below); the stats keep their names and meanings.

Scoring, extraction and correctness are *not* done here (see ``jobs/scoring.py``): raw
outputs are kept, so they can be recomputed without a model.

This module does not import torch: the backend object is passed in.
"""
from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jobs import prompts
from jobs.answers import parse_confidence
from jobs.datasets.roles import load_role
from jobs.records import (
    existing_parts,
    finish_unit,
    is_complete,
    part_path,
    read_unit,
    unit_dir,
    write_table,
)
from jobs.types import DataError, Sample

STAT_STAGE = {
    "token_logprobs": "greedy",
    "token_entropy": "greedy",
    "answer_logprob": "greedy",
    "hidden_state": "greedy",
    "prompt_hidden_state": "greedy",
    "prompt": "greedy",
    "sampled_texts": "samples",
    "ptrue_prob": "ptrue",
    "verbal_1s_conf": "verbal_1s",
    "verbal_2s_conf": "verbal_2s",
}
STAGE_DEPS = {"greedy": (), "samples": (), "ptrue": ("greedy",), "verbal_1s": (), "verbal_2s": ("greedy",),
              "llm": ()}
STAGES = tuple(STAGE_DEPS)


def _common(s: Sample, role: str, dataset: str) -> dict:
    return {"sample_id": s.id, "dataset": dataset, "role": role, "gold": s.gold, "task": s.task,
            "choices": list(s.choices), "aliases": list(s.aliases), "error": None}


def _greedy(backend, samples, deps, p) -> list[dict]:
    if "answer_mode" in p:
        return _by_mode(backend, samples, deps, p, _constrained_greedy, _greedy)
    msgs = [prompts.answer_messages(s) for s in samples]
    gens = backend.generate(msgs, max_new_tokens=p["max_new_tokens"], with_stats=p.get("with_stats", True),
                            seed=p["seed"])
    rows = []
    for s, m, g in zip(samples, msgs, gens):
        row = {"prompt": backend.render(m), "raw_output": g.text, "n_prompt_tokens": g.n_prompt_tokens,
               "n_new_tokens": g.n_new_tokens, "latency_s": g.latency_s}
        if g.token_logprobs is not None:
            texts = g.token_texts if g.token_texts is not None else backend.token_strings(g.token_ids)
            # HTTP backends see no hidden states: the column is null and probes are refused at config time
            row.update(token_logprobs=g.token_logprobs.tolist(), token_entropy=g.token_entropy.tolist(),
                       token_texts=texts, hidden_state=None if g.hidden is None else g.hidden.tolist(),
                       prompt_hidden_state=_vector(g.prompt_hidden))
        rows.append(row)
    return rows


def _vector(x) -> list | None:
    """A hidden-state vector as a Parquet list column value (None stays None)."""
    return None if x is None else np.asarray(x, dtype=np.float32).tolist()


def _samples(backend, samples, deps, p) -> list[dict]:
    if "answer_mode" in p:
        return _by_mode(backend, samples, deps, p, _constrained_samples, _samples)
    m = p["num_samples"]
    msgs = [prompts.answer_messages(s) for s in samples]
    gens = backend.generate(msgs, max_new_tokens=p["max_new_tokens"], do_sample=True,
                            temperature=p["temperature"], num_return_sequences=m, seed=p["seed"])
    rows = []
    for i, msg in enumerate(msgs):
        chunk = gens[i * m:(i + 1) * m]
        rows.append({"prompt": backend.render(msg), "sampled_texts": [g.text for g in chunk],
                     "sampled_n_tokens": [g.n_new_tokens for g in chunk],
                     "n_prompt_tokens": chunk[0].n_prompt_tokens, "n_new_tokens": sum(g.n_new_tokens for g in chunk),
                     "latency_s": sum(g.latency_s for g in chunk)})
    return rows


# ---------------------------------------------------------------- constrained answers
# decoding.answer_mode "constrained" (mc and yes/no tasks; the unit's params carry answer_mode and
# answer_prefix): the answer is the option with the highest next-token probability after the
# answer prompt plus prompts.ANSWER_PREFIX, from one forward pass (HFBackend.choice_logprobs, scored
# as lm-evaluation-harness scores multiple choice). What each stage does then:
#   greedy / llm  raw_output "The answer is B." (extraction and judging unchanged);
#                 token_logprobs [raw log p of the chosen option under the full vocabulary];
#                 token_entropy [entropy (nats) of the distribution renormalized over the options];
#                 token_texts [" B"] (so answer_logprob is the chosen letter's log p, as for a
#                 generated mc answer); hidden_state at the last prompt token of that pass;
#                 option_labels, option_logprobs (log of the renormalized distribution).
#   samples       m options drawn from the renormalized distribution at temperature T (p^(1/T),
#                 renormalized; numpy generator seeded like the unit's batches); sampled_texts are
#                 the bare options, so the Jaccard degree is 1 - sum_k (n_k / m)^2 over the counts n_k.
#   ptrue, verbal_2s  unchanged: they read the greedy raw_output ("The answer is B.").
#   verbal_1s     unchanged: it generates its own answer and confidence.
# Numeric and freeform samples always generate (prompts.answer_mode).

def _by_mode(backend, samples, deps, p, constrained_fn, generate_fn) -> list[dict]:
    """Run constrained_fn on the samples whose task answers constrained, generate_fn (with
    answer_mode dropped from the params) on the rest; rows in sample order, every row with the
    same columns (so a part mixing both stays one table)."""
    cons = [prompts.answer_mode(p["answer_mode"], s.task) == "constrained" for s in samples]
    gen_p = {k: v for k, v in p.items() if k not in ("answer_mode", "answer_prefix")}
    picked = {True: [s for s, c in zip(samples, cons) if c], False: [s for s, c in zip(samples, cons) if not c]}
    out = {True: constrained_fn(backend, picked[True], deps, p) if picked[True] else [],
           False: generate_fn(backend, picked[False], deps, gen_p) if picked[False] else []}
    its = {k: iter(v) for k, v in out.items()}
    rows = [next(its[c]) for c in cons]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in cols} for r in rows]


def _option_pass(backend, samples, p):
    """(messages, options, raw log p (B, K), renormalized log p (B, K), hidden, seconds per sample)."""
    if not hasattr(backend, "choice_logprobs"):
        raise TypeError(f"backend {type(backend).__name__} has no choice_logprobs; decoding.answer_mode "
                        f"constrained needs one (hf backend), or use answer_mode generate")
    msgs = [prompts.answer_messages(s) for s in samples]
    opts = [prompts.answer_options(s) for s in samples]
    t0 = time.perf_counter()
    raw, hidden = backend.choice_logprobs(msgs, opts, prefix=p["answer_prefix"])
    dt = (time.perf_counter() - t0) / max(1, len(samples))
    raw = np.asarray(raw, dtype=np.float64)
    for s, o, r in zip(samples, opts, raw):
        if not np.isfinite(r[:len(o)]).any():
            raise DataError(f"sample {s.id!r}: none of the options {o} is one token for this model")
    norm = raw - np.logaddexp.reduce(raw, axis=1, keepdims=True)
    return msgs, opts, raw, norm, hidden, dt


def _constrained_greedy(backend, samples, deps, p) -> list[dict]:
    msgs, opts, raw, norm, hidden, dt = _option_pass(backend, samples, p)
    rows = []
    for i, (m, o) in enumerate(zip(msgs, opts)):
        j = int(np.argmax(raw[i, :len(o)]))
        q = np.exp(norm[i, :len(o)])
        entropy = float(-(q[q > 0] * np.log(q[q > 0])).sum())
        row = {"prompt": prompts.with_prefix(backend.render(m), p["answer_prefix"]),
               "raw_output": prompts.constrained_output(o[j], p["answer_prefix"]), "n_prompt_tokens": None,
               "n_new_tokens": 1, "latency_s": dt, "option_labels": list(o),
               "option_logprobs": [float(x) for x in norm[i, :len(o)]]}
        if p.get("with_stats", True):
            row.update(token_logprobs=[float(raw[i, j])], token_entropy=[entropy], token_texts=[" " + o[j]],
                       hidden_state=None if hidden is None else np.asarray(hidden[i], dtype=np.float32).tolist())
            # the option pass's hidden state is already at the last prompt token (the answer prefix's)
            row["prompt_hidden_state"] = row["hidden_state"]
        rows.append(row)
    return rows


def _constrained_samples(backend, samples, deps, p) -> list[dict]:
    m, temp = int(p["num_samples"]), float(p["temperature"])
    msgs, opts, _raw, norm, _hidden, dt = _option_pass(backend, samples, p)
    rng = np.random.default_rng(int(p["seed"]))
    rows = []
    for i, (msg, o) in enumerate(zip(msgs, opts)):
        w = norm[i, :len(o)] / temp
        q = np.exp(w - np.logaddexp.reduce(w))
        drawn = rng.choice(len(o), size=m, p=q / q.sum())
        rows.append({"prompt": prompts.with_prefix(backend.render(msg), p["answer_prefix"]),
                     "sampled_texts": [o[k] for k in drawn], "sampled_n_tokens": [1] * m, "n_prompt_tokens": None,
                     "n_new_tokens": m, "latency_s": dt})
    return rows


# ---------------------------------------------------------------- the answer shown back
# p(True) and verbal-2s show the model its own greedy answer: prompts.shown_answer of the raw output
# (the whole answer, up to an invented follow-up question). Only when the prompt would exceed the
# budget (``params["prompt_budget"]``, set by run_gen_unit from prompt_budget) is the answer cut,
# in its middle (first two thirds and last third kept), so its final "The answer is X" stays.

def fit_answer(backend, make: Callable[[str], list], answer: str, budget: int | None,
               sample_id: str = "?") -> tuple[str, int | None]:
    """``answer``, cut in its middle (``_cut_middle``) to the longest length for which the prompt
    ``make(answer)`` has at most ``budget`` tokens (binary search on characters). Returns the text
    and the prompt's token count with the whole answer when it was cut (None when it fitted; and
    always None when there is no budget or the backend cannot count tokens). Raises DataError when
    even an empty answer does not fit."""
    if budget is None or not hasattr(backend, "prompt_tokens"):
        return answer, None
    n = backend.prompt_tokens(make(answer))
    if n <= budget:
        return answer, None
    lo, hi = 0, len(answer)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if backend.prompt_tokens(make(_cut_middle(answer, mid))) <= budget:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0 and backend.prompt_tokens(make(_cut_middle(answer, 0))) > budget:
        raise DataError(f"sample {sample_id!r}: the prompt that shows the model its answer does not fit in "
                        f"{budget} tokens even with the answer left out; raise max_prompt_tokens")
    return _cut_middle(answer, lo), n


def _shown(backend, samples, deps, p, make) -> list[tuple[list, int | None]]:
    """Per sample: (messages showing the greedy answer, token count before the answer was cut)."""
    out = []
    for s in samples:
        text, cut_from = fit_answer(backend, lambda a, s=s: make(s, a), prompts.shown_answer(deps["greedy"][s.id]),
                                    p.get("prompt_budget"), s.id)
        out.append((make(s, text), cut_from))
    return out


def _ptrue(backend, samples, deps, p) -> list[dict]:
    shown = _shown(backend, samples, deps, p, prompts.ptrue_messages)
    msgs = [m for m, _ in shown]
    t0 = time.perf_counter()
    probs = backend.true_false_prob(msgs)
    dt = (time.perf_counter() - t0) / max(1, len(samples))
    return [{"prompt": backend.render(m), "ptrue_prob": float(x), "n_prompt_tokens": None, "n_new_tokens": 0,
             "latency_s": dt, "answer_truncated_from": c} for (m, c), x in zip(shown, probs)]


def _verbal_1s(backend, samples, deps, p) -> list[dict]:
    msgs = [prompts.verbal_1s_messages(s) for s in samples]
    gens = backend.generate(msgs, max_new_tokens=p["max_new_tokens"], seed=p["seed"])
    return [{"prompt": backend.render(m), "verbal_1s_raw": g.text, "verbal_1s_conf": _conf(g.text, one_stage=True),
             "n_prompt_tokens": g.n_prompt_tokens, "n_new_tokens": g.n_new_tokens, "latency_s": g.latency_s}
            for m, g in zip(msgs, gens)]


def _verbal_2s(backend, samples, deps, p) -> list[dict]:
    shown = _shown(backend, samples, deps, p, prompts.verbal_2s_followup)
    msgs = [m for m, _ in shown]
    gens = backend.generate(msgs, max_new_tokens=p["max_new_tokens"], seed=p["seed"])
    return [{"prompt": backend.render(m), "verbal_2s_raw": g.text, "verbal_2s_conf": _conf(g.text),
             "n_prompt_tokens": g.n_prompt_tokens, "n_new_tokens": g.n_new_tokens, "latency_s": g.latency_s,
             "answer_truncated_from": c} for (m, c), g in zip(shown, gens)]


_STATES_CONFIDENCE = re.compile(r"(?i)confiden")


def _conf(text: str, one_stage: bool = False) -> float:
    """The stated confidence in [0, 1], NaN when none parses. A one-stage output must state it
    ("Confidence: 80%", "80% confident"): its bare numbers belong to the answer ("The answer to
    this question is 1." is not a confidence of 1%)."""
    if one_stage and not _STATES_CONFIDENCE.search(text or ""):
        return math.nan
    c = parse_confidence(text)
    return math.nan if c is None else float(c)


STAGE_FNS: dict[str, Callable] = {"greedy": _greedy, "samples": _samples, "ptrue": _ptrue,
                                  "verbal_1s": _verbal_1s, "verbal_2s": _verbal_2s,
                                  "llm": lambda b, s, d, p: _greedy(b, s, d, dict(p, with_stats=False))}


def _dep_answers(store: Path, dep_key: str) -> dict[str, str]:
    t = read_unit(unit_dir(store, "gen", dep_key), columns=["sample_id", "raw_output"])
    return {sid: (out or "") for sid, out in zip(t.column("sample_id").to_pylist(), t.column("raw_output").to_pylist())}


TRUNCATION_MARK = " [...] "


def prompt_budget(backend, params: dict, max_prompt_tokens: int | None) -> int | None:
    """Tokens a prompt may have: ``max_prompt_tokens``, else the model's context length minus the
    stage's generation budget; None when the backend cannot count tokens (an HTTP endpoint)."""
    if max_prompt_tokens:
        return int(max_prompt_tokens)
    ctx = getattr(backend, "context_length", None)
    if not ctx or not hasattr(backend, "prompt_tokens"):
        return None
    return max(16, int(ctx) - int(params.get("max_new_tokens") or 0))


def fit_prompt(backend, s: Sample, budget: int | None) -> tuple[Sample, int | None]:
    """The sample, shortened until its answer prompt has at most ``budget`` tokens.

    The rule (documented in the README, "Long inputs"): the longest of the passage (context) and
    the question is cut in its middle -- its first two thirds and last third kept, joined by
    " [...] " -- to the longest length that fits (binary search on characters). A passage is cut
    before the question; the instruction and the options are never cut. Returns the sample and
    the prompt's original token count when it was cut (None when it fitted)."""
    if budget is None or not hasattr(backend, "prompt_tokens"):
        return s, None
    n = backend.prompt_tokens(prompts.answer_messages(s))
    if n <= budget:
        return s, None
    import dataclasses

    cut = s
    for field_name in ("context", "question"):
        text = getattr(s, field_name) or ""
        if not text:
            continue

        lo, hi = 0, len(text)
        while lo < hi:  # the longest kept length whose prompt fits
            mid = (lo + hi + 1) // 2
            trial = dataclasses.replace(cut, **{field_name: _cut_middle(text, mid)})
            if backend.prompt_tokens(prompts.answer_messages(trial)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        cut = dataclasses.replace(cut, **{field_name: _cut_middle(text, lo)})
        if backend.prompt_tokens(prompts.answer_messages(cut)) <= budget:
            return cut, n
    raise DataError(f"sample {s.id!r}: even with passage and question cut, the prompt does not fit in "
                    f"{budget} tokens (instruction and options alone exceed it); raise max_prompt_tokens")


def _cut_middle(text: str, keep: int) -> str:
    """``keep`` characters of ``text``: its first two thirds and last third, joined by the mark."""
    head = (2 * keep) // 3
    return text[:head] + TRUNCATION_MARK + text[len(text) - (keep - head):]


def length_order(samples: list[Sample]) -> list[int]:
    """Indices of ``samples`` from shortest to longest prompt text (stable), so that batches hold
    prompts of similar length and one long prompt does not pad the short ones."""
    size = [len(x.question) + len(x.context or "") + sum(len(c) for c in x.choices) for x in samples]
    return sorted(range(len(samples)), key=lambda i: size[i])


def run_gen_unit(backend, unit: dict, store: str | Path, progress: Callable[[int, int], None] | None = None,
                 batch_size: int | None = None, shard: tuple[int, int] | None = None,
                 batch_by_length: bool = False, max_prompt_tokens: int | None = None) -> dict:
    """Run one generation unit (or one shard of it); return a small summary (never the data).

    unit: {"key", "stage", "model", "dataset", "dataset_conf", "run", "role", "params", "deps": {stage: key}}
    shard: ``(j, n)`` runs only the chunks ``ci`` with ``ci % n == j`` (data parallelism across a
    model's replicas); with ``n > 1`` no manifest is written: ``finish_gen_shards`` writes it once
    every shard is done. Chunks already on disk are skipped either way (chunk-level resume), and a
    chunk's rows do not depend on which shard ran it (seeds come from the chunk and batch index).
    batch_by_length: batches are formed over the chunk sorted by prompt length (rows are written
    in the chunk's order). max_prompt_tokens: longer prompts are cut by ``fit_prompt`` and the row
    records ``prompt_truncated_from`` (default budget: context length minus generation budget); the
    stages that show the model its answer (ptrue, verbal_2s) get the budget as
    ``params["prompt_budget"]`` and cut a too-long answer in its middle (``fit_answer``; the row
    records ``answer_truncated_from``).
    """
    store = Path(store)
    udir = unit_dir(store, "gen", unit["key"])
    j, n = shard or (0, 1)
    if is_complete(udir):
        return {"key": unit["key"], "skipped": True, "shard": j, "n_shards": n}
    samples, malformed = load_role(unit["dataset_conf"], unit["run"], unit["role"])
    if not samples:
        reasons = "; ".join(f"row {m.row}: {m.reason}" for m in malformed[:3])
        raise DataError(f"dataset {unit['dataset']!r} ({unit['role']} role) has no usable samples; "
                        f"{len(malformed)} malformed rows{': ' + reasons if reasons else ''}")
    fn = STAGE_FNS[unit["stage"]]
    chunk = int(unit["params"].get("chunk_size", 32))
    bs = int(batch_size or unit["params"].get("batch_size", 8))
    n_chunks = max(1, math.ceil(len(samples) / chunk))
    done = existing_parts(udir)
    todo = [ci for ci in range(n_chunks) if ci % n == j and ci not in done]
    deps = {st: _dep_answers(store, k) for st, k in unit.get("deps", {}).items()} if todo else {}
    t0 = time.perf_counter()
    tokens = 0
    budget = prompt_budget(backend, unit["params"], max_prompt_tokens)
    for ci in todo:
        part = samples[ci * chunk:(ci + 1) * chunk]
        fitted = [fit_prompt(backend, x, budget) for x in part]
        order = length_order([x for x, _ in fitted]) if batch_by_length else list(range(len(part)))
        rows: list = [None] * len(part)
        for bi in range(0, len(part), bs):
            idx = order[bi:bi + bs]
            batch = [fitted[i][0] for i in idx]
            # seed from (unit seed, chunk, batch): identical results however the work is split
            p = dict(unit["params"], seed=int(unit["params"].get("seed", 0)) * 1_000_003 + ci * 1009 + bi,
                     prompt_budget=budget)
            out = fn(backend, batch, deps, p)
            for i, r in zip(idx, out):
                rows[i] = _common(part[i], unit["role"], unit["dataset"]) | r | {"prompt_truncated_from": fitted[i][1]}
                tokens += int(r.get("n_new_tokens") or 0)
        write_table(part_path(udir, ci), rows, meta={"unit": unit["key"], "stage": unit["stage"]})
        if progress:
            progress(ci + 1, n_chunks)
    summary = {"key": unit["key"], "stage": unit["stage"], "model": unit["model"], "dataset": unit["dataset"],
               "role": unit["role"], "n_samples": len(samples), "n_malformed": len(malformed),
               "malformed": [m.__dict__ for m in malformed[:20]], "new_tokens": tokens,
               "seconds": time.perf_counter() - t0, "model_identity": getattr(backend, "identity", None),
               "n_chunks": n_chunks, "chunks_run": len(todo), "samples_run": sum(
                   len(samples[ci * chunk:(ci + 1) * chunk]) for ci in todo)}
    if n == 1:
        finish_unit(udir, summary)
    return summary | {"shard": j, "n_shards": n}


SHARD_FIELDS = ("shard", "n_shards", "chunks_run", "samples_run", "skipped")


def finish_gen_shards(unit: dict, store: str | Path, summaries: list[dict]) -> dict:
    """Write the manifest of a unit run as shards, once every chunk's part is on disk.

    Raises ``RuntimeError`` naming the missing chunks when a shard left a gap (the scheduler
    then reruns the unit, which redoes only the missing chunks)."""
    udir = unit_dir(Path(store), "gen", unit["key"])
    if is_complete(udir):
        return {"key": unit["key"], "skipped": True}
    ran = [s for s in summaries if not s.get("skipped")]
    if not ran:
        raise RuntimeError(f"unit {unit['key']}: no shard summary to finish from")
    n_chunks = int(ran[0]["n_chunks"])
    missing = sorted(set(range(n_chunks)) - existing_parts(udir))
    if missing:
        raise RuntimeError(f"unit {unit['key']}: chunks {missing} of {n_chunks} are missing after all shards")
    first = ran[0]
    summary = {k: v for k, v in first.items() if k not in SHARD_FIELDS}
    summary["new_tokens"] = sum(int(s.get("new_tokens") or 0) for s in ran)
    summary["seconds"] = sum(float(s.get("seconds") or 0.0) for s in ran)
    summary["n_shards"] = len(summaries)
    finish_unit(udir, summary)
    return summary
