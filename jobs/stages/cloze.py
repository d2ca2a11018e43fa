"""Cloze answers: the option-text scoring pass of the ``constrained`` stages (greedy, llm, samples).

decoding.answer_mode "cloze" (mc and yes/no tasks; per task, or per dataset with the dataset
conf's ``answer_mode``): each option's text is scored as the continuation of the question prompt,
without a chat template, in the dataset's format (``jobs/cloze.py``: the lm-evaluation-harness task
each format follows, and the acc / acc_norm rule that decides). The unit's params carry
``answer_mode``, ``cloze_format`` and ``cloze_version``. The backend's ``continuation_logprobs``
(``jobs.backends.base.ScoresContinuations``: hf, openai) gives each option's token log p.

What each stage records, and the statistics the UQ methods then read:

  greedy / llm  raw_output "The answer is B." / "The answer is yes." (extraction and judging
                unchanged: the letter of the option the dataset's rule picked);
                token_logprobs   the chosen option's per-token log p (its continuation tokens; so
                                 avg_token_prob, the mean token probability, and perplexity,
                                 exp of the mean negative log p, are different numbers; answer_logprob
                                 is NaN unless the option is one token, where both agree);
                token_entropy    the full-vocabulary entropy (nats) at each of those positions, as a
                                 generated answer's (mean_token_entropy then reads the same kind of
                                 number in every mode; the option distribution's own entropy is
                                 what option_logprobs gives);
                token_texts      the chosen option's tokens;
                option_labels    the options' labels (letters, or yes / no);
                option_logprobs  the option distribution renormalized over the options: log softmax
                                 of the rule's per-option scores (summed log p for acc, log p per
                                 character for acc_norm), so its argmax is the answer and its maximum
                                 is what ``option_max_prob`` reads (NaN for a generated answer);
                hidden_state = prompt_hidden_state: the probe layer's hidden state at the last
                                 question token (of the chosen option's context: WinoGrande's
                                 contexts differ per option);
                n_new_tokens     the scored continuation tokens of all options.
  samples       m options drawn from the greedy pass's stored distribution (option_logprobs) at
                temperature T (p^(1/T), renormalized), draw j seeded by ``row_seed(seed, sample
                id, j)``; no model pass (the unit depends on the greedy unit,
                ``Stage.constrained_deps``), as in constrained mode (``constrained.draw_options``);
                sampled_texts are the option labels (letters, or yes / no), so the Jaccard degree is
                1 - sum_k (n_k / m)^2 over the counts n_k.
  ptrue, verbal_2s  unchanged: they read the greedy raw_output ("The answer is B."), shown under
                the question block that lists every option with its letter (``prompts.question_block``),
                so the letter names the option text.
  verbal_1s     unchanged: it generates its own answer and confidence.

``score_questions(backend, samples, fmt)`` is the pass itself, for callers outside a grid
(``benchmarks/reference_accuracy.py``): one ``ClozeResult`` per sample with both the acc and the
acc_norm choice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from jobs import cloze
from jobs.types import Sample


@dataclass(frozen=True)
class ClozeResult:
    """One question scored.

    labels / choices: the options (labels: letters or yes / no; choices: their texts).
    logprobs:   summed log p of each option's continuation (lm-eval's log-likelihood).
    acc_choice / acc_norm_choice: the option index argmax of the sums / of the sums per character.
    rule:       the dataset's deciding rule; ``choice`` is the index it picked, ``answer`` its label.
    option_logprobs: log of the option distribution renormalized over the options (under the rule).
    scores:     each option's ``ContinuationScore`` (token log p, entropies, texts, hidden state).
    seconds:    this question's share of the batch's wall time.
    """

    sample_id: str
    labels: tuple[str, ...]
    choices: tuple[str, ...]
    logprobs: tuple[float, ...]
    acc_choice: int
    acc_norm_choice: int
    rule: str
    option_logprobs: tuple[float, ...]
    scores: tuple
    seconds: float

    @property
    def choice(self) -> int:
        return self.acc_choice if self.rule == "acc" else self.acc_norm_choice

    @property
    def answer(self) -> str:
        return self.labels[self.choice]


def score_questions(backend, samples: list[Sample], fmt: str = "qa") -> list[ClozeResult]:
    """Score every option of every sample (one ``continuation_logprobs`` call); one result per
    sample, in order. ``fmt``: a ``jobs.cloze.FORMATS`` name (``jobs.cloze.format_of(dataset_conf)``
    gives a dataset's). A sample is correct under acc when ``labels[acc_choice] == gold``."""
    if not hasattr(backend, "continuation_logprobs"):
        raise TypeError(
            f"backend {type(backend).__name__} has no continuation_logprobs; decoding.answer_mode "
            f"cloze needs one (hf or openai backend), or use answer_mode generate"
        )
    qs = [cloze.cloze_question(s, fmt) for s in samples]
    t0 = time.perf_counter()
    scored = backend.continuation_logprobs([q.requests for q in qs])
    dt = (time.perf_counter() - t0) / max(1, len(samples))
    out = []
    for s, q, sc in zip(samples, qs, scored):
        sums = [x.logprob for x in sc]
        _, acc, acc_norm = cloze.pick(sums, q.choices, q.rule)
        dec = cloze.decision_scores(sums, q.choices, q.rule)
        norm = dec - np.logaddexp.reduce(dec)
        out.append(
            ClozeResult(
                sample_id=s.id,
                labels=q.labels,
                choices=q.choices,
                logprobs=tuple(float(x) for x in sums),
                acc_choice=acc,
                acc_norm_choice=acc_norm,
                rule=q.rule,
                option_logprobs=tuple(float(x) for x in norm),
                scores=tuple(sc),
                seconds=dt,
            )
        )
    return out


def cloze_greedy(backend, samples, deps, p) -> list[dict]:
    from jobs.prompts import constrained_output

    results = score_questions(backend, samples, p["cloze_format"])
    rows = []
    for s, r in zip(samples, results):
        j = r.choice
        chosen = r.scores[j]
        row = {
            "prompt": cloze.cloze_question(s, p["cloze_format"]).contexts[j],
            "raw_output": constrained_output(r.answer),
            "n_prompt_tokens": None,
            "n_new_tokens": int(sum(len(x.token_logprobs) for x in r.scores)),
            "latency_s": r.seconds,
            "option_labels": list(r.labels),
            "option_logprobs": list(r.option_logprobs),
        }
        if p.get("with_stats", True):
            hidden = None if chosen.hidden is None else np.asarray(chosen.hidden, dtype=np.float32).tolist()
            row.update(
                token_logprobs=[float(x) for x in chosen.token_logprobs],
                token_entropy=[float(x) for x in chosen.token_entropy],
                token_texts=list(chosen.token_texts),
                hidden_state=hidden,
                prompt_hidden_state=hidden,
            )
        rows.append(row)
    return rows


def cloze_samples(backend, samples, deps, p) -> list[dict]:
    """m options drawn from the greedy pass's stored option distribution, exactly as constrained
    units draw them (``jobs.stages.constrained.draw_options``: no model pass, draw j seeded by
    ``row_seed(seed, sample id, j)``); the prompt recorded is the question's cloze context."""
    from jobs.stages.constrained import draw_options

    return draw_options(samples, deps, p, lambda s: cloze.cloze_question(s, p["cloze_format"]).contexts[0])
