"""Maximum option probability: 1 - the largest probability of the option distribution.

For an answer that scores its options (``decoding.answer_mode`` cloze or constrained), the greedy
pass records ``option_logprobs``: the log of the option distribution renormalized over the options
(cloze: a softmax of the dataset's rule scores, ``jobs/stages/cloze.py``; constrained: the option
letters' next-token probabilities, ``jobs/stages/constrained.py``). Its maximum is the chosen
option's probability: lm-polygraph's ``MaximumSequenceProbability`` read over the options
(Fadeeva et al. 2023), the "maximum option probability" of issue 16, and the confidence
lm-evaluation-harness's multiple-choice log-likelihoods give directly.

uncertainty = 1 - max_k p_k, in [0, 1 - 1/K]; NaN for a generated answer (no options scored).
"""

from __future__ import annotations

import numpy as np

from jobs.uq.base import UQMethod, per_sequence


def option_max_prob(stats) -> np.ndarray:
    return 1.0 - per_sequence(stats["option_logprobs"], lambda lp: float(np.exp(np.max(lp))))


METHOD = UQMethod(
    name="option_max_prob",
    requires=("option_logprobs",),
    fn=option_max_prob,
    description="1 - largest probability of the scored options (cloze / constrained answers)",
)
