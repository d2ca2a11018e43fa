"""The OpenAI-compatible SLM backend's reading of log-prob payloads, on hand-made payloads: the
top-k + tail-bucket entropy (and its bound), p(True) from next-token top log-probs, and the
trailing EOS entry vLLM reports."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jobs.backends.openai_http import answer_entries, tail_mass, topk_entropy, true_false_from_top


def _top(**probs):
    return [{"token": t.replace("_", " "), "logprob": math.log(p)} for t, p in probs.items()]


@pytest.mark.parametrize(
    "probs, expected",
    [
        ([1.0], 0.0),  # all mass listed: exact
        ([0.5, 0.5], math.log(2)),
        ([0.25] * 4, math.log(4)),
        ([0.5, 0.25], -(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 0.25 * math.log(0.25))),  # tail bucket 0.25
        ([0.2] * 3, -(3 * 0.2 * math.log(0.2) + 0.4 * math.log(0.4))),
    ],
)
def test_topk_entropy_is_listed_tokens_plus_one_tail_bucket(probs, expected):
    assert topk_entropy([math.log(p) for p in probs]) == pytest.approx(expected, abs=1e-12)


def test_topk_entropy_is_a_lower_bound_within_r_log_v_minus_k():
    rng = np.random.default_rng(0)
    v, k = 500, 20
    for alpha in (0.05, 0.3, 1.0, 5.0):
        p = np.sort(rng.dirichlet(np.full(v, alpha)))[::-1]
        exact = float(-(p * np.log(p)).sum())
        lps = np.log(p[:k]).tolist()
        approx = topk_entropy(lps)
        assert 0 <= exact - approx <= tail_mass(lps) * math.log(v - k) + 1e-9


def test_topk_entropy_tolerates_rounding_above_one():
    assert topk_entropy([math.log(0.6), math.log(0.400001)]) == pytest.approx(
        -(0.6 * math.log(0.6) + 0.400001 * math.log(0.400001))
    )


def test_ptrue_sums_whole_word_variants_and_normalizes():
    top = _top(**{"_True": 0.3, "True": 0.1, "_false": 0.2, "_Tr": 0.3, "_Falsehood": 0.05})
    assert true_false_from_top(top) == pytest.approx(0.4 / 0.6)


def test_ptrue_missing_word_gets_the_tail_floor():
    # listed mass 0.9: tail 0.1, smallest listed 0.2 -> False's floor is 0.1
    top = _top(**{"_True": 0.5, "_Yes": 0.2, "_No": 0.2})
    assert true_false_from_top(top) == pytest.approx(0.5 / 0.6)
    # smallest listed p below the tail mass: that is the floor (an unlisted token is no likelier)
    top = _top(**{"_False": 0.6, "_Yes": 0.01})
    assert true_false_from_top(top) == pytest.approx(0.01 / 0.61)


def test_ptrue_neither_word_listed_or_empty_is_one_half():
    assert true_false_from_top(_top(**{"_Yes": 0.5, "_No": 0.4})) == 0.5
    assert true_false_from_top([]) == 0.5


def test_ptrue_accepts_byte_level_space_marks():
    top = [{"token": "\u0120True", "logprob": math.log(0.3)}, {"token": "\u2581False", "logprob": math.log(0.1)}]
    assert true_false_from_top(top) == pytest.approx(0.75)


def _entries(*tokens):
    return [{"token": t, "logprob": -0.1} for t in tokens]


@pytest.mark.parametrize(
    "tokens, content, reason, kept",
    [
        (("Yes", ",", " it", "<|im_end|>"), "Yes, it", "stop", 3),  # EOS as a special token string
        (("Yes", ""), "Yes", "stop", 1),  # EOS decoded as ""
        (("Yes", "\n"), "Yes", "stop", 2),  # whitespace the text stripped: kept
        (("Yes", ",", " it"), "Yes, it", "length", 3),  # cut by max_tokens: nothing to drop
        ((" The", " answer"), "The answer", "stop", 2),  # a stop string ended it: no EOS entry
    ],
)
def test_trailing_stop_token_is_dropped(tokens, content, reason, kept):
    assert len(answer_entries(_entries(*tokens), content, reason)) == kept


# ---- cloze over /v1/completions with echo (a canned vLLM-shaped answer) -------------------------
def test_cloze_request_and_the_continuation_tokens_read_by_text_offset():
    from jobs.backends.openai_http import OpenAIBackend

    b = OpenAIBackend("http://x/v1", "m", top_logprobs=2)
    sent = []
    context, cont = "Question: q\nAnswer: ", "yes please"  # the trailing space moves to the continuation
    prompt = "Question: q\nAnswer: yes please"
    toks = ["Question", ":", " q", "\n", "Answer", ":", " yes", " please", "!"]  # "!" was generated
    offsets = [0, 8, 9, 11, 12, 18, 19, 23, 30]
    lps = [None, -1.0, -2.0, -0.5, -0.1, -0.2, -0.7, -1.3, -4.0]
    tops = [None] + [{"a": math.log(0.5), "b": math.log(0.25)}] * 8

    def post(body, path="/chat/completions"):
        sent.append((path, body))
        return {
            "choices": [
                {
                    "index": 0,
                    "text": prompt + "!",
                    "logprobs": {"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets},
                }
            ]
        }

    b._post = post
    (scores,) = b.continuation_logprobs([[(context, cont)]])
    ((path, body),) = sent
    # lm-eval local-completions' loglikelihood payload: the whole text, echo, logprobs, temperature 0
    assert path == "/completions"
    assert body["prompt"] == prompt and body["echo"] is True and body["temperature"] == 0.0
    assert body["max_tokens"] == 1 and body["logprobs"] == 2
    (s,) = scores
    assert s.token_texts == [" yes", " please"] and s.token_logprobs.tolist() == [-0.7, -1.3]
    assert s.logprob == pytest.approx(-2.0) and s.hidden is None
    h = -(0.5 * math.log(0.5) + 0.25 * math.log(0.25) + 0.25 * math.log(0.25))
    np.testing.assert_allclose(s.token_entropy, [h, h])
