"""The greedy answer: the SLM's greedy generation with per-token stats and probe-layer hidden states.

Provides token_logprobs, token_entropy, answer_logprob (the option letter's log p, from the
extracted answer), option_logprobs (the scored options' renormalized distribution; cloze / constrained), hidden_state (last generated token), prompt_hidden_state and prompt (the learned
routers' query side), and the correctness label ``correct``; rows also keep raw_output. Every score
reads this pass (its sample order is the score's). Constrained mc / yes-no: ``constrained.py``; cloze: ``cloze.py``.
"""

from __future__ import annotations

import numpy as np

from jobs import prompts
from jobs import schemas as S
from jobs.judge import answer_logprob, judge_detail, router_stats
from jobs.stages.base import AnswerParams, Stage, StageContext, row_seeds, vector
from jobs.stages.cloze import cloze_greedy
from jobs.stages.constrained import by_mode, constrained_greedy


def greedy(backend, samples, deps, p) -> list[dict]:
    if prompts.AnswerModes.of_params(p) is not None:
        return by_mode(backend, samples, deps, p, constrained_greedy, greedy, cloze_greedy)
    msgs = [prompts.answer_messages(s) for s in samples]
    gens = backend.generate(
        msgs,
        max_new_tokens=p["max_new_tokens"],
        with_stats=p.get("with_stats", True),
        seed=p["seed"],
        row_seeds=row_seeds(p["seed"], samples),
    )
    rows = []
    for m, g in zip(msgs, gens):
        row = {
            "prompt": backend.render(m),
            "raw_output": g.text,
            "n_prompt_tokens": g.n_prompt_tokens,
            "n_new_tokens": g.n_new_tokens,
            "latency_s": g.latency_s,
        }
        if g.token_logprobs is not None:
            texts = g.token_texts if g.token_texts is not None else backend.token_strings(g.token_ids)
            # HTTP backends see no hidden states: the column is null and probes are refused at config time
            row.update(
                token_logprobs=g.token_logprobs.tolist(),
                token_entropy=g.token_entropy.tolist(),
                token_texts=texts,
                hidden_state=None if g.hidden is None else g.hidden.tolist(),
                prompt_hidden_state=vector(g.prompt_hidden),
            )
        rows.append(row)
    return rows


#: the columns of an answer pass (greedy, llm): the raw output, and the options of a constrained one
ANSWER_COLUMNS = {"raw_output": S.STR, "option_labels": S.LIST_STR, "option_logprobs": S.LIST_F64}


def answer_params(ctx: StageContext) -> AnswerParams:
    return AnswerParams(max_new_tokens=ctx.answer_tokens)


def greedy_stats(rows: list[dict], policy: str) -> dict:
    """The greedy pass's stats; ``correct`` and ``answer_logprob`` judge the extracted answer."""
    details, correct = judge_detail(rows, policy)
    stats: dict = {
        "token_logprobs": [np.asarray(r.get("token_logprobs") or [], dtype=np.float64) for r in rows],
        "token_entropy": [np.asarray(r.get("token_entropy") or [], dtype=np.float64) for r in rows],
        "answer_logprob": np.asarray([answer_logprob(r, d)[0] for r, d in zip(rows, details)]),
        "option_logprobs": [np.asarray(r.get("option_logprobs") or [], dtype=np.float64) for r in rows],
        "correct": correct,
    }
    if rows and rows[0].get("hidden_state") is not None:
        stats["hidden_state"] = np.asarray([r["hidden_state"] for r in rows], dtype=np.float32)
    stats.update(router_stats(rows))
    return stats


STAGE = Stage(
    name="greedy",
    run=greedy,
    provides=(
        "token_logprobs",
        "token_entropy",
        "answer_logprob",
        "option_logprobs",
        "hidden_state",
        "prompt_hidden_state",
        "prompt",
        "correct",
    ),
    stats=greedy_stats,
    params=answer_params,
    constrained=True,
    columns=ANSWER_COLUMNS
    | {
        "token_logprobs": S.LIST_F64,
        "token_entropy": S.LIST_F64,
        "token_texts": S.LIST_STR,
        "hidden_state": S.LIST_F64,
        "prompt_hidden_state": S.LIST_F64,
    },
    description="the SLM's greedy answer, with per-token log-probs, entropies and hidden states",
)
