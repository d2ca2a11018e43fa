"""Judging one pass's rows: extract each answer, decide whether it is correct, and find the log p of
the option letter it names.

Below both the stages (a stage's ``stats`` judge the rows it wrote: ``jobs.stages.greedy``) and the
units that score a setting (``jobs.scoring``): it reads rows as plain dicts and imports neither.
Extraction and correctness are ``jobs.answers``'; this module applies them to stored rows.
"""

from __future__ import annotations

import difflib
import math
import re

import numpy as np

from jobs.answers import NO_ANSWER, Extraction, extract_detail, is_correct
from jobs.types import Sample

# a token that is one upper-case option letter, maybe with brackets / punctuation around it (" B", "(B", "B.")
_LETTER_TOKEN = re.compile(r"^[\s\(\[\*]*([A-Z])[\s\)\]\.\*:,]*$")
#: Which rule gave a row's answer probability (``answer_prob_rule`` in setting records):
#: matched_letter_token  the generated token at the option letter the extractor matched;
#: constrained_option    the scored option of a constrained answer (decoding.answer_mode constrained);
#: none                  no option-letter token (not mc, no answer, the option matched by its text, a
#:                       lower-case letter): answer_logprob is NaN and avg_token_prob falls back to the
#:                       mean token probability.
ANSWER_PROB_RULES: tuple[str, ...] = ("matched_letter_token", "constrained_option", "none")


def _sample_of(row: dict) -> Sample:
    return Sample(
        id=row["sample_id"],
        question="",
        task=row["task"],
        gold=row["gold"],
        choices=tuple(row.get("choices") or ()),
        aliases=tuple(row.get("aliases") or ()),
    )


def judge_detail(rows: list[dict], policy: str) -> tuple[list[Extraction], np.ndarray]:
    """Extract (with the rule and span, :func:`jobs.answers.extract_detail`) and judge the
    ``raw_output`` of each row (greedy or LLM records); error rows get no answer and are wrong."""
    details, correct = [], []
    for row in rows:
        if row.get("error") or row.get("raw_output") is None:
            details.append(NO_ANSWER)
            correct.append(False)
            continue
        s = _sample_of(row)
        d = extract_detail(row["raw_output"], s, policy)
        details.append(d)
        correct.append(bool(is_correct(d.answer, s)))
    return details, np.asarray(correct, dtype=bool)


def judge(rows: list[dict], policy: str) -> tuple[list[str | None], np.ndarray]:
    """Extract and judge the ``raw_output`` of each row (greedy or LLM records)."""
    details, correct = judge_detail(rows, policy)
    return [d.answer for d in details], correct


def _token_at(texts: list[str], text: str, pos: int) -> int | None:
    """Index of the token that holds character ``pos`` of ``text``, the generated text those tokens
    decode to. The two differ in whitespace (the text is stripped, a token decodes with its leading
    space) and may differ in the tail (the text is cut at stop strings), so they are aligned on their
    non-space characters; None when that character has no counterpart among the tokens."""
    if text[pos].isspace():
        return None
    owner = [i for i, t in enumerate(texts) for c in t if not c.isspace()]
    tokens = "".join(c for t in texts for c in t if not c.isspace())
    k = sum(not c.isspace() for c in text[:pos])  # pos among the text's non-space characters
    chars = "".join(c for c in text if not c.isspace())
    if tokens.startswith(chars):
        return owner[k]
    for a, b, size in difflib.SequenceMatcher(None, chars, tokens, autojunk=False).get_matching_blocks():
        if a <= k < a + size:
            return owner[b + k - a]
    return None


def answer_logprob(row: dict, extraction: Extraction) -> tuple[float, str]:
    """(log p, rule) of the option letter of a multiple-choice answer; (NaN, "none") otherwise.

    The token is the one at the character the extractor matched (``extraction.span``), and it must be
    that upper-case letter alone: an article "A", a lower-case "(a)" or an option matched by its
    text give "none". Constrained answers score their option directly. See ``ANSWER_PROB_RULES``."""
    texts, lps = row.get("token_texts"), row.get("token_logprobs")
    answer = extraction.answer
    if row["task"] != "mc" or not answer or not texts or not lps or extraction.span is None:
        return math.nan, "none"
    if row.get("option_labels"):  # constrained: one scored token, the chosen option (" B")
        # (a cloze row's tokens are its option's text: only a one-token option can match, and then
        # its log p is also its mean token log p)
        if len(texts) == 1 and texts[0].strip() == answer:
            return float(lps[0]), "constrained_option"
        return math.nan, "none"
    start, end = extraction.span
    text = row["raw_output"]
    if end - start != 1 or text[start] != answer:
        return math.nan, "none"
    i = _token_at(texts, text, start)
    m = _LETTER_TOKEN.match(texts[i]) if i is not None else None
    if m and m.group(1) == answer:
        return float(lps[i]), "matched_letter_token"
    return math.nan, "none"


def router_stats(greedy: list[dict]) -> dict:
    """The query-side stats of the learned routers (``jobs/uq/routers.py``): the rendered prompt text and
    the probe-layer hidden state at the last prompt token, one entry per row (None where a row has
    none: an HTTP SLM, or a store written before the column existed; the routers give NaN there)."""
    return {
        "prompt": [r.get("prompt") or "" for r in greedy],
        "prompt_hidden_state": [
            None if r.get("prompt_hidden_state") is None else np.asarray(r["prompt_hidden_state"], dtype=np.float32)
            for r in greedy
        ],
    }
