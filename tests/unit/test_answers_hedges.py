"""Extraction v3 (issue 17, defect 4): an answer hedged across options names none; an echoed
instruction is no answer; a self-correction takes the last committed answer; mixed numbers, spaced
thousands and scientific notation are read whole; times and ratios are not numbers."""

from __future__ import annotations

import pytest

from jobs.answers import EXTRACTION_VERSION, extract, is_correct
from jobs.types import Sample

NUM = Sample("n", "How many?", "numeric", "2")
YN = Sample("y", "Is it?", "yesno", "yes")
MC = Sample("m", "Which simple machine lifts a flag?", "mc", "C", choices=("a lever", "a ramp", "a pulley", "a wheel"))

# (sample, output, strict, flexible)
CASES = [
    # the reproductions
    (MC, "The answer is A, B, C, or D.", None, None),
    (MC, "The answer is (A) a pulley or (C) a wheel.", None, None),
    (YN, "Yes and no.", None, None),
    (YN, 'The answer is "yes" or "no".', None, None),
    (YN, "The answer is no, yes.", None, None),
    (NUM, "The answer is 5-3.", "2", "2"),
    (NUM, "The answer is 5 - 3.", "2", "2"),
    (NUM, "The answer is 3 1/2.", "3.5", "3.5"),
    (NUM, "The answer is 1.5e3.", "1500", "1500"),
    (NUM, "The answer is 1 000 000.", "1000000", "1000000"),
    # a listing of letters right after "The answer is:" names none of them
    (MC, "The answer is:\nA.\nB.\nC.", None, None),
    (MC, "The answer is:\nA. a lever\nB. a ramp\nC. a pulley", None, None),
    # more hedges
    (MC, "The answer is B or C.", None, None),
    (MC, "The answer is C/D.", None, None),
    (MC, "The answer is either (B) or (C).", None, None),
    (MC, "The answer is a pulley or a wheel.", None, None),
    (NUM, "The answer is 5 or 6.", None, None),
    (NUM, "The answer is 5-10.", None, None),  # a range
    (YN, "The answer is yes or no.", None, None),
    (YN, "Yes or no? Yes, it is.", None, "yes"),  # the echoed "Yes or no?" then a yes
    # self-corrections: the last committed answer
    (MC, "The answer is A. No wait, the answer is C.", "C", "C"),
    (YN, "The answer is no. Actually, the answer is yes.", "yes", "yes"),
    (NUM, "The answer is 3. Sorry, the answer is 2.", "2", "2"),
    # not hedges: one answer with an explanation that names another option
    (MC, "The answer is C, because A is a lever.", "C", "C"),
    (MC, "The answer is (C) a pulley.", "C", "C"),
    (YN, "The answer is yes, and no one disputes it.", "yes", "yes"),
    (YN, "The answer is no, because it is not.", "no", "no"),
    # times and ratios are not numbers
    (NUM, "The answer is 3:30.", None, None),
    (NUM, "The answer is 3:2.", None, None),
    (NUM, "The train leaves at 3:30.", None, None),
    # two statements of different answers: a self-correction takes the last, a contradiction none
    (YN, "The answer is yes.\n\nThe answer is no.", None, None),
    (YN, "The answer to this question is yes.\n\nThe answer to this question is no", None, None),
    (MC, "The answer is B.\nThe answer is C.", None, None),
    (MC, "The answer is B.\nThe answer is B.", "B", "B"),
    # runaway digits cut by the token limit, an expression cut off: no definite number
    (NUM, "The answer is " + "1" + "0" * 40, None, None),
    (NUM, "The answer is 1000 * (1 + 1/1", None, None),
    # a letter used as a line prefix ("A. 2018") names no choice, even when a bare "A" line follows
    (MC, "A. 2018\n\nA. 2018\n\nA", None, None),
    # scientific notation in other spellings, spaced thousands in running text
    (NUM, "The answer is 2.5 x 10^3.", "2500", "2500"),
    (NUM, "It costs 12 500 dollars.", None, "12500"),
]


def test_version_bumped():
    assert EXTRACTION_VERSION == "v3"


@pytest.mark.parametrize("sample,text,strict,flexible", CASES, ids=[c[1][:40] for c in CASES])
def test_hedges_echoes_and_number_forms(sample, text, strict, flexible):
    assert extract(text, sample, "strict") == strict
    assert extract(text, sample, "flexible") == flexible


@pytest.mark.parametrize(
    "pred,gold,equal",
    [
        ("3.5", "7/2", True),
        ("1500", "1.5e3", True),
        ("1000000", "10^6", True),
        ("2", "5-3", True),
        ("3", "3:30", False),
    ],
)
def test_math_verify_agrees_on_the_numeric_forms(pred, gold, equal):
    """Where math-verify decides (gold not a plain number), it reads these forms as we do."""
    assert is_correct(pred, Sample("n", "", "numeric", gold)) is equal
