"""Verbal one-stage: answer and stated confidence in one output (``verbal_1s_raw``).

Provides verbal_1s_conf (NaN where no confidence is stated or parses).
"""

from __future__ import annotations

from jobs import prompts
from jobs import schemas as S
from jobs.stages.base import AnswerParams, Stage, StageContext, row_seeds, stated_confidence


def verbal_1s(backend, samples, deps, p) -> list[dict]:
    msgs = [prompts.verbal_1s_messages(s) for s in samples]
    gens = backend.generate(
        msgs, max_new_tokens=p["max_new_tokens"], seed=p["seed"], row_seeds=row_seeds(p["seed"], samples)
    )
    return [
        {
            "prompt": backend.render(m),
            "verbal_1s_raw": g.text,
            "verbal_1s_conf": stated_confidence(g.text, one_stage=True),
            "n_prompt_tokens": g.n_prompt_tokens,
            "n_new_tokens": g.n_new_tokens,
            "latency_s": g.latency_s,
        }
        for m, g in zip(msgs, gens)
    ]


def verbal_1s_params(ctx: StageContext) -> AnswerParams:
    """The answer's budget and the stated confidence's, in one output."""
    return AnswerParams(max_new_tokens=ctx.answer_tokens + ctx.decoding.verbal_max_new_tokens)


STAGE = Stage(
    name="verbal_1s",
    run=verbal_1s,
    provides=("verbal_1s_conf",),
    params=verbal_1s_params,
    overhead=True,
    columns={"verbal_1s_raw": S.STR, "verbal_1s_conf": S.F64},
    description="an answer and its stated confidence in one output",
)
