"""p(True): one forward pass showing the model its whole greedy answer. Provides ptrue_prob."""

from __future__ import annotations

import time

from jobs import prompts
from jobs import schemas as S
from jobs.stages.base import Stage, shown_greedy


def ptrue(backend, samples, deps, p) -> list[dict]:
    shown = shown_greedy(backend, samples, deps, p, prompts.ptrue_messages)
    msgs = [m for m, _ in shown]
    t0 = time.perf_counter()
    probs = backend.true_false_prob(msgs)
    dt = (time.perf_counter() - t0) / max(1, len(samples))
    return [
        {
            "prompt": backend.render(m),
            "ptrue_prob": float(x),
            "n_prompt_tokens": None,
            "n_new_tokens": 0,
            "latency_s": dt,
            "answer_truncated_from": c,
        }
        for (m, c), x in zip(shown, probs)
    ]


STAGE = Stage(
    name="ptrue",
    run=ptrue,
    provides=("ptrue_prob",),
    deps=("greedy",),
    overhead=True,
    columns={"ptrue_prob": S.F64, "answer_truncated_from": S.I64},
    description="P(True) of the greedy answer, one forward pass",
)
