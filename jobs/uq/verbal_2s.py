"""Verbalization, two stages (paper method 5): uncertainty = 1 - confidence stated in a second turn
about the model's whole greedy answer (shown back to it in the conversation).

Unparseable confidence -> NaN; the method's NaN policy is ``drop`` (the later version of the paper
drops those samples): they are left out of the metrics, and the setting reports their share
(``unscored_share``) beside the AUROC and each record's ``confidence_parse``.
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
    nan_policy="drop",
    parsed_stat="verbal_2s_conf",
    definition_depends_on=(),  # a stated probability about the answer shown, in every answer mode
)
