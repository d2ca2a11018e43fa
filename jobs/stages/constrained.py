"""Constrained answers: the option-scoring pass of the ``constrained`` stages (greedy, llm, samples).

decoding.answer_mode "constrained" (mc and yes/no tasks; the unit's params carry answer_mode and
answer_prefix): the answer is the option with the highest next-token probability after the
answer prompt plus prompts.ANSWER_PREFIX, from one forward pass (the backend's
``choice_logprobs``, scored as lm-evaluation-harness scores multiple choice). What each stage does:

  greedy / llm  raw_output "The answer is B." (extraction and judging unchanged);
                token_logprobs [raw log p of the chosen option under the full vocabulary];
                token_entropy [entropy (nats) of the distribution renormalized over the options];
                token_texts [" B"] (so answer_logprob is the chosen letter's log p, as for a
                generated mc answer); hidden_state at the last prompt token of that pass;
                option_labels, option_logprobs (log of the renormalized distribution).
  samples       m options drawn from the greedy pass's stored distribution (its option_logprobs)
                at temperature T (p^(1/T), renormalized), draw j seeded by row_seed(seed, sample
                id, j); no model pass (the unit depends on the greedy unit in constrained mode
                only, ``Stage.constrained_deps``), so the cost axis charges it nothing
                (n_passes 0). sampled_texts are the bare options, so the Jaccard degree is
                1 - sum_k (n_k / m)^2 over the counts n_k.
  ptrue, verbal_2s  unchanged: they read the greedy raw_output ("The answer is B.").
  verbal_1s     unchanged: it generates its own answer and confidence.

Numeric and freeform samples always generate (prompts.answer_mode).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from jobs import prompts
from jobs.stages.base import OPTIONS, StageFn, row_seed
from jobs.types import DataError


def by_mode(
    backend, samples, deps, p, constrained_fn: StageFn, generate_fn: StageFn, cloze_fn: StageFn | None = None
) -> list[dict]:
    """Run constrained_fn on the samples whose task answers constrained, cloze_fn on those that
    answer cloze (``jobs/stages/cloze.py``), generate_fn (with the answer-mode params dropped) on
    the rest; rows in sample order, every row with the same columns (so a part mixing them stays
    one table)."""
    unit_modes = prompts.AnswerModes.of_params(p)
    if unit_modes is None:
        raise ValueError("by_mode runs a unit whose params carry answer_mode (a constrained or cloze unit)")
    modes = [unit_modes.mode(s.task) for s in samples]
    gen_p = {k: v for k, v in p.items() if k not in MODE_PARAMS}
    fns = {"constrained": (constrained_fn, p), "cloze": (cloze_fn, p), "generate": (generate_fn, gen_p)}
    out: dict[str, Iterator[dict]] = {}
    for mode, (fn, params) in fns.items():
        picked = [s for s, m in zip(samples, modes) if m == mode]
        if not picked:
            out[mode] = iter([])
            continue
        if fn is None:
            raise TypeError(
                f"this stage has no {mode} pass; answer_mode {mode} is for the greedy, llm and samples stages"
            )
        out[mode] = iter(fn(backend, picked, deps, params))
    rows = [next(out[m]) for m in modes]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in cols} for r in rows]


#: the params of a unit that say how its option tasks answer (dropped for the samples that generate)
MODE_PARAMS = ("answer_mode", "answer_prefix", "cloze_format", "cloze_version")


def option_pass(backend, samples, p):
    """(messages, options, raw log p (B, K), renormalized log p (B, K), hidden, seconds per sample)."""
    if not hasattr(backend, "choice_logprobs"):
        raise TypeError(
            f"backend {type(backend).__name__} has no choice_logprobs; decoding.answer_mode "
            f"constrained needs one (hf backend), or use answer_mode generate"
        )
    msgs = [prompts.answer_messages(s) for s in samples]
    opts = [prompts.answer_options(s) for s in samples]
    t0 = time.perf_counter()
    raw, hidden = backend.choice_logprobs(msgs, opts, prefix=p["answer_prefix"])
    dt = (time.perf_counter() - t0) / max(1, len(samples))
    raw = np.asarray(raw, dtype=np.float64)
    for s, o, r in zip(samples, opts, raw):
        if not np.isfinite(r[: len(o)]).any():
            raise DataError(f"sample {s.id!r}: none of the options {o} is one token for this model")
    norm = raw - np.logaddexp.reduce(raw, axis=1, keepdims=True)
    return msgs, opts, raw, norm, hidden, dt


def constrained_greedy(backend, samples, deps, p) -> list[dict]:
    msgs, opts, raw, norm, hidden, dt = option_pass(backend, samples, p)
    rows = []
    for i, (m, o) in enumerate(zip(msgs, opts)):
        j = int(np.argmax(raw[i, : len(o)]))
        q = np.exp(norm[i, : len(o)])
        entropy = float(-(q[q > 0] * np.log(q[q > 0])).sum())
        row = {
            "prompt": prompts.with_prefix(backend.render(m), p["answer_prefix"]),
            "raw_output": prompts.constrained_output(o[j], p["answer_prefix"]),
            "n_prompt_tokens": None,
            "n_new_tokens": 1,
            "latency_s": dt,
            "option_labels": list(o),
            "option_logprobs": [float(x) for x in norm[i, : len(o)]],
        }
        if p.get("with_stats", True):
            row.update(
                token_logprobs=[float(raw[i, j])],
                token_entropy=[entropy],
                token_texts=[" " + o[j]],
                hidden_state=None if hidden is None else np.asarray(hidden[i], dtype=np.float32).tolist(),
            )
            # the option pass's hidden state is already at the last prompt token (the answer prefix's)
            row["prompt_hidden_state"] = row["hidden_state"]
        rows.append(row)
    return rows


def constrained_samples(backend, samples, deps, p) -> list[dict]:
    """m options drawn from the greedy pass's stored option distribution (``draw_options``); the
    prompt recorded is the one the greedy pass scored (rendered, not run)."""
    return draw_options(
        samples, deps, p, lambda s: prompts.with_prefix(backend.render(prompts.answer_messages(s)), p["answer_prefix"])
    )


def draw_options(samples, deps, p, prompt_of) -> list[dict]:
    """m options drawn from the greedy pass's stored option distribution (its rows'
    ``option_logprobs``, read through ``deps["greedy" + OPTIONS]``), for constrained and cloze units
    alike: no model pass runs, so the row records 0 passes, 0 prompt and 0 new tokens and 0 s
    (``n_passes``; the draw's arithmetic is left out of the cost axis like the scoring arithmetic).
    Draw j of a sample is the inverse CDF of the distribution at temperature T (p^(1/T),
    renormalized) at one uniform from ``np.random.default_rng(row_seed(seed, sample id, j))``: a
    row's draws depend on its own seed alone. The options drawn are the greedy row's
    ``option_labels`` (letters, or yes / no), so the Jaccard degree counts identical answers only;
    ``prompt_of(sample)`` is the prompt recorded."""
    m, temp = int(p["num_samples"]), float(p["temperature"])
    options = deps.get("greedy" + OPTIONS)
    if options is None:
        raise DataError("option samples need the greedy pass's option distributions (deps 'greedy.options')")
    rows = []
    for s in samples:
        labels, logp = options.get(s.id, ([], None))
        if not labels or logp is None:
            raise DataError(f"sample {s.id!r}: the greedy pass stored no option distribution to draw from")
        w = np.asarray(logp, dtype=np.float64) / temp
        cdf = np.cumsum(np.exp(w - np.logaddexp.reduce(w)))
        u = [np.random.default_rng(row_seed(p["seed"], s.id, j)).random() * cdf[-1] for j in range(m)]
        drawn = np.minimum(np.searchsorted(cdf, u, side="right"), len(labels) - 1)
        rows.append(
            {
                "prompt": prompt_of(s),
                "sampled_texts": [labels[k] for k in drawn],
                "sampled_n_tokens": [0] * m,
                "n_passes": 0,
                "n_prompt_tokens": 0,
                "n_new_tokens": 0,
                "latency_s": 0.0,
            }
        )
    return rows
