"""Verbal two-stage: a second turn after the whole greedy answer asks for a confidence.

Provides verbal_2s_conf (NaN where none parses); rows keep verbal_2s_raw.
"""

from __future__ import annotations

from jobs import prompts
from jobs import schemas as S
from jobs.stages.base import AnswerParams, Stage, StageContext, row_seeds, shown_greedy, stated_confidence


def verbal_2s(backend, samples, deps, p) -> list[dict]:
    shown = shown_greedy(backend, samples, deps, p, prompts.verbal_2s_followup)
    msgs = [m for m, _ in shown]
    gens = backend.generate(
        msgs, max_new_tokens=p["max_new_tokens"], seed=p["seed"], row_seeds=row_seeds(p["seed"], samples)
    )
    return [
        {
            "prompt": backend.render(m),
            "verbal_2s_raw": g.text,
            "verbal_2s_conf": stated_confidence(g.text),
            "n_prompt_tokens": g.n_prompt_tokens,
            "n_new_tokens": g.n_new_tokens,
            "latency_s": g.latency_s,
            "answer_truncated_from": c,
        }
        for (m, c), g in zip(shown, gens)
    ]


def verbal_2s_params(ctx: StageContext) -> AnswerParams:
    """The stated confidence's budget (the second turn)."""
    return AnswerParams(max_new_tokens=ctx.decoding.verbal_max_new_tokens)


STAGE = Stage(
    name="verbal_2s",
    run=verbal_2s,
    provides=("verbal_2s_conf",),
    deps=("greedy",),
    params=verbal_2s_params,
    overhead=True,
    columns={"verbal_2s_raw": S.STR, "verbal_2s_conf": S.F64, "answer_truncated_from": S.I64},
    description="a stated confidence asked after the greedy answer",
)
