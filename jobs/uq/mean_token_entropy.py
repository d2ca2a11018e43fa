"""Mean token entropy (extra baseline): mean over generated positions of the full-vocabulary
entropy in nats. Empty generation -> NaN."""

from __future__ import annotations

import numpy as np

from jobs.uq.base import UQMethod, per_sequence


def mean_token_entropy(stats) -> np.ndarray:
    return per_sequence(stats["token_entropy"], lambda h: float(np.mean(h)))


METHOD = UQMethod(
    name="mean_token_entropy",
    requires=("token_entropy",),
    fn=mean_token_entropy,
    description="mean predictive entropy (nats) over generated tokens",
    confidence="exp_neg",
    # constrained / cloze: the entropy of the distribution renormalized over the K options, <= ln K;
    # generated: over the whole vocabulary
    definition_depends_on=("answer_mode", "option_count"),
)
