"""The LLM's answer: its greedy generation (no stats), the other side of the routing.

Provides no stat: setting units judge its ``raw_output`` directly. Constrained like ``greedy``.
"""

from __future__ import annotations

from jobs.stages.base import Stage
from jobs.stages.greedy import ANSWER_COLUMNS, answer_params, greedy


def llm(backend, samples, deps, p) -> list[dict]:
    return greedy(backend, samples, deps, dict(p, with_stats=False))


STAGE = Stage(
    name="llm",
    run=llm,
    params=answer_params,
    constrained=True,
    columns=ANSWER_COLUMNS,
    description="the LLM's greedy answer",
)
