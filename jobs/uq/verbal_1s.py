"""Verbalization, one stage (paper method 4): uncertainty = 1 - stated confidence in [0, 1].

The confidence comes from the prompt that asks for answer and confidence in one output; which answer
is scored is decided (and recorded) by the generation stage. Unparseable confidence -> NaN (the
metrics' NaN policy decides what happens to those samples).
"""
from __future__ import annotations

from jobs.uq.base import UQMethod, complement


def verbal_1s(stats):
    return complement(stats, "verbal_1s_conf")


METHOD = UQMethod(
    name="verbal_1s",
    requires=("verbal_1s_conf",),
    fn=verbal_1s,
    description="1 - verbalized confidence given with the answer (one prompt)",
)
