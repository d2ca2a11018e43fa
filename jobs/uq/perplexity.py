"""Perplexity (paper method 2).

The paper's confidence is 1 / exp(mean NLL of the generated tokens). Its monotone complement is
the perplexity itself, so we use uncertainty = exp(mean NLL) (>= 1, higher = more uncertain); AUROC
and routing curves depend only on the order, which is the same. Empty generation -> NaN.
"""

from __future__ import annotations

import numpy as np

from jobs.uq.base import UQMethod, per_sequence


def perplexity(stats) -> np.ndarray:
    return per_sequence(stats["token_logprobs"], lambda lp: float(np.exp(-np.mean(lp))))


METHOD = UQMethod(
    name="perplexity",
    requires=("token_logprobs",),
    fn=perplexity,
    description="perplexity exp(mean NLL) of the generated answer",
    confidence="reciprocal",
)
