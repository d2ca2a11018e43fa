"""Average token probability (paper method 1).

confidence = mean over generated answer tokens of p(token); for multiple choice, the probability of
the option-letter token (used whenever ``answer_logprob`` is finite).
``answer_logprob`` is finite only where an option letter scores the answer: the token at the letter
the extractor matched, or the scored option of a constrained answer. Elsewhere it is NaN (no answer,
an option matched by its text, a lower-case letter, not multiple choice) and the row falls back to
the mean token probability; setting records say which per row (``answer_prob_rule``:
matched_letter_token / constrained_option / none, see ``jobs.judge.ANSWER_PROB_RULES``).
uncertainty = 1 - confidence, in [0, 1]. Empty generation (and no option-letter logprob) -> NaN.
"""

from __future__ import annotations

import numpy as np

from jobs.uq.base import UQMethod, per_sequence


def avg_token_prob(stats) -> np.ndarray:
    mean_prob = per_sequence(stats["token_logprobs"], lambda lp: float(np.mean(np.exp(lp))))
    letter_lp = np.asarray(stats["answer_logprob"], dtype=np.float64).ravel()
    is_mc = np.isfinite(letter_lp)
    conf = mean_prob.copy()
    conf[is_mc] = np.exp(letter_lp[is_mc])
    return 1.0 - conf


METHOD = UQMethod(
    name="avg_token_prob",
    requires=("token_logprobs", "answer_logprob"),
    fn=avg_token_prob,
    description="1 - mean token probability (option-letter probability for multiple choice)",
)
