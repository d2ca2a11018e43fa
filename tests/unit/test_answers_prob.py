"""The multiple-choice answer probability (issue 8, item 3): the token at the span the extractor
matched, upper-case letters only, and per-row provenance in the setting records."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from jobs import records
from jobs.answers import extract_detail
from jobs.judge import ANSWER_PROB_RULES, answer_logprob, judge, judge_detail
from jobs.scoring import run_setting_unit
from jobs.types import Sample
from tests.helpers import extraction_corpus, setting_unit, store_scores, store_unit
from tests.unit.test_records_scoring import _row as _greedy_row

CHOICES = ("a wedge", "a pulley", "an inclined plane")


def _row(out, texts, lps, task="mc", gold="A", choices=CHOICES, **extra):
    """A greedy record (``test_records_scoring._row``) with exactly these token texts."""
    return _greedy_row("s", task, gold, out, choices, lps=lps, texts=texts) | {"token_texts": texts} | extra


def _prob(row, policy="flexible"):
    s = Sample(row["sample_id"], "", row["task"], row["gold"], choices=tuple(row["choices"]))
    return answer_logprob(row, extract_detail(row["raw_output"], s, policy))


def test_the_article_a_is_not_the_option_letter():
    # the answer A is the letter after "The answer is"; the article "A" that follows is another token
    texts = ["The", " answer", " is", " A", ".", " A", " wedge", " splits", " wood", "."]
    lps = [-0.1, -0.2, -0.3, -0.7, -0.05, -2.5, -0.4, -0.6, -0.2, -0.1]
    row = _row("The answer is A. A wedge splits wood.", texts, lps)
    assert _prob(row) == (pytest.approx(-0.7), "matched_letter_token")


def test_an_option_matched_by_its_text_has_no_letter_token():
    # v1 took the article "A" for option A and returned its log p
    texts = ["The", " answer", " is", " a", " wedge", ".", "\n", "A", " wedge", " splits", " wood", "."]
    lps = [-0.1, -0.2, -0.3, -0.9, -0.4, -0.05, -0.1, -2.5, -0.4, -0.6, -0.2, -0.1]
    lp, rule = _prob(_row("The answer is a wedge.\nA wedge splits wood.", texts, lps))
    assert math.isnan(lp) and rule == "none"


def test_lower_case_letters_do_not_count():
    lp, rule = _prob(
        _row("The answer is (a).", ["The", " answer", " is", " (", "a", ")."], [-0.1, -0.2, -0.3, -0.4, -0.8, -0.1])
    )
    assert math.isnan(lp) and rule == "none"


def test_tokens_are_aligned_on_the_output_text():
    # generation text is stripped and cut; per-token texts keep the leading space and the cut tail
    texts = ["\n", " I", " pick", " (", "B", ")", " here", "\n\n", "Question", ":", " more"]
    lps = [-0.1, -0.2, -0.3, -0.4, -1.25, -0.1, -0.2, -0.3, -0.4, -0.5, -0.6]
    row = _row("I pick (B) here", texts, lps, gold="B")
    assert _prob(row) == (pytest.approx(-1.25), "matched_letter_token")
    # a letter inside a longer token ("B." / "(B") is still that letter's token
    row = _row("Answer: B.", ["Answer", ":", " B."], [-0.1, -0.2, -0.6], gold="B")
    assert _prob(row) == (pytest.approx(-0.6), "matched_letter_token")


def test_constrained_rows_use_the_scored_option():
    row = _row(
        "The answer is B.", [" B"], [-0.35], gold="B", option_labels=["A", "B", "C"], option_logprobs=[-2.0, -0.2, -3.0]
    )
    assert _prob(row) == (pytest.approx(-0.35), "constrained_option")


def test_other_tasks_and_empty_answers_have_none():
    num = _row(
        "The answer is 4.", ["The", " answer", " is", " 4", "."], [-0.1] * 5, task="numeric", gold="4", choices=()
    )
    assert _prob(num)[1] == "none" and math.isnan(_prob(num)[0])
    empty = _row("I do not know.", ["I", " do", " not", " know", "."], [-0.1] * 5)
    assert _prob(empty)[1] == "none"
    assert set(ANSWER_PROB_RULES) == {"matched_letter_token", "constrained_option", "none"}


CORPUS = extraction_corpus()
WITH_TOKENS = [r for r in CORPUS if r.get("token_texts")]


def test_real_smollm2_tokens_give_the_letter_the_extractor_matched():
    """SmolLM2's own tokens (the labelled corpus keeps them for its multiple-choice outputs): every
    letter answer is scored by the token that holds the matched letter, and no other answer is."""
    assert len(WITH_TOKENS) >= 50
    letters = 0
    for r in WITH_TOKENS:
        row = _row(
            r["raw_output"], r["token_texts"], r["token_logprobs"], gold=r["gold_answer"], choices=tuple(r["options"])
        )
        s = Sample(r["sample_id"], "", "mc", r["gold_answer"], choices=tuple(r["options"]))
        d = extract_detail(r["raw_output"], s)
        lp, rule = answer_logprob(row, d)
        is_letter = d.span is not None and d.span[1] - d.span[0] == 1 and r["raw_output"][d.span[0]].isupper()
        assert (rule == "matched_letter_token") == is_letter, (r["id"], d, rule)
        if is_letter:
            letters += 1
            # found independently: the one token holding that letter with as many capitals before it
            # as the output has before the span
            capitals = sum(c.isupper() for c in r["raw_output"][: d.span[0]])
            at = [
                i
                for i, t in enumerate(r["token_texts"])
                if t.strip(" ().:*\n") == d.answer
                and sum(c.isupper() for c in "".join(r["token_texts"][:i])) == capitals
            ]
            assert len(at) == 1 and lp == pytest.approx(r["token_logprobs"][at[0]]), (r["id"], at)
    assert letters >= 3


def test_judge_is_judge_detail_without_the_detail():
    rows = [_row("The answer is A.", None, []), _row("It is a pulley.", None, [])]
    details, ok = judge_detail(rows, "flexible")
    assert [d.rule for d in details] == ["strict:the_answer_is", "flexible:option_text"]
    answers, ok2 = judge(rows, "flexible")
    assert answers == ["A", "B"] and ok.tolist() == ok2.tolist() == [True, False]


def test_setting_records_say_which_rule_gave_the_answer_and_its_probability(tmp_path):
    texts = ["The", " answer", " is", " A", "."]
    slm = [
        dict(_row("The answer is A.", texts, [-0.1, -0.2, -0.3, -0.7, -0.1]), sample_id="s0"),
        dict(_row("A pulley, I think.", ["A", " pulley", ",", " I", " think", "."], [-0.5] * 6), sample_id="s1"),
        dict(_row("No idea.", ["No", " idea", "."], [-0.5] * 3), sample_id="s2"),
    ]
    llm = [dict(_row("The answer is A.", texts, [-0.1] * 5), sample_id=f"s{i}") for i in range(3)]
    store_unit(tmp_path, "G", slm)
    store_unit(tmp_path, "L", llm)
    store_scores(tmp_path, [f"s{i}" for i in range(3)], range(3))
    unit = setting_unit("avg_token_prob", bootstrap=10)
    run_setting_unit(unit, tmp_path, plot=False)
    t = pq.read_table(records.unit_dir(tmp_path, "settings", "H") / "records.parquet").to_pylist()
    assert [r["extraction_rule"] for r in t] == ["strict:the_answer_is", "flexible:option_text", "none"]
    assert [r["answer_prob_rule"] for r in t] == ["matched_letter_token", "none", "none"]
    assert [r["llm_extraction_rule"] for r in t] == ["strict:the_answer_is"] * 3
    assert [r["slm_answer"] for r in t] == ["A", "B", None]  # the columns there before are unchanged
