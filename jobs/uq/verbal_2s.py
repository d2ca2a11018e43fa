"""Verbalization, two stages (paper method 5): uncertainty = 1 - confidence stated in a second turn.

Unparseable confidence -> NaN.
"""
from __future__ import annotations

from jobs.uq.base import UQMethod, complement


def verbal_2s(stats):
    return complement(stats, "verbal_2s_conf")


METHOD = UQMethod(
    name="verbal_2s",
    requires=("verbal_2s_conf",),
    fn=verbal_2s,
    description="1 - verbalized confidence asked for in a second turn",
)
