"""Maximum token NLL (extra baseline): the least likely generated token, max_t -log p(token_t).
Empty generation -> NaN."""

from __future__ import annotations

import numpy as np

from jobs.uq.base import UQMethod, per_sequence


def max_token_nll(stats) -> np.ndarray:
    return per_sequence(stats["token_logprobs"], lambda lp: float(np.max(-lp)))


METHOD = UQMethod(
    name="max_token_nll",
    requires=("token_logprobs",),
    fn=max_token_nll,
    description="largest negative log-probability among generated tokens",
    confidence="exp_neg",
)
