"""p(True) (paper method 3): uncertainty = 1 - P("True"), normalized over {True, False}."""

from __future__ import annotations

from jobs.uq.base import UQMethod, complement


def ptrue(stats):
    return complement(stats, "ptrue_prob")


METHOD = UQMethod(
    name="ptrue",
    requires=("ptrue_prob",),
    fn=ptrue,
    description="1 - P(True) that the proposed answer is true",
    # one question about the answer shown, asked the same way whatever produced that answer
    definition_depends_on=(),
)
