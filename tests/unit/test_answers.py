"""Answer extraction, correctness and confidence parsing on realistic small-chat-model outputs."""

from __future__ import annotations

import pytest

from jobs.answers import EXTRACTION_VERSION, extract, is_correct, parse_confidence
from jobs.types import Sample

NUM = Sample("n", "How many?", "numeric", "1234")
MC = Sample("m", "Capital of France?", "mc", "C", choices=("London", "Berlin", "Paris", "Madrid"))
MC2 = Sample("m2", "Where is a revolving door?", "mc", "A", choices=("bank", "bank vault", "library"))
YN = Sample("y", "Is it?", "yesno", "yes")
FF = Sample("f", "Last letters of 'Whitney Erika Tj Benito'?", "freeform", "yajo", aliases=("y a j o",))


def test_version():
    assert EXTRACTION_VERSION == "v3"


# (sample, model output, strict, flexible)
CASES = [
    # numeric
    (NUM, "The answer is 42.", "42", "42"),
    (NUM, "Janet sells 16 - 3 - 4 = 9 eggs and makes 9 * 2 = $18 every day. The answer is 18.", "18", "18"),
    (NUM, "So the answer is: **1,234**", "1234", "1234"),
    (NUM, "THE ANSWER IS $1,234.00", "1234", "1234"),
    (NUM, "The answer is 39.0 apples.", "39", "39"),
    (NUM, "The answer is -5.", "-5", "-5"),
    (NUM, "The answer is:\n\n42", "42", "42"),
    (NUM, "The answer is 12.5%", "12.5", "12.5"),
    (NUM, "First the answer is 3. Wait, I made a mistake. The answer is 5.", "5", "5"),
    (NUM, "The answer is 3/4 of a cup.", "0.75", "0.75"),
    (NUM, "Each gets 12 / 4 = 3", None, "3"),
    (NUM, "The total is $1,234.", None, "1234"),
    (NUM, "Let me think step by step.\n10 - 5 = 5\nSo he has 5 apples left", None, "5"),
    (NUM, "We get \\boxed{42} and check with 7 more.", None, "42"),
    (NUM, "She pays 1,500 and gets 250 back, so 1,250 in total.", None, "1250"),
    (NUM, "The result is 42. Confidence: 85%", None, "42"),
    (NUM, "The answer is 42. Confidence: 85%", "42", "42"),
    (NUM, "I am not sure how to solve this problem.", None, None),
    (NUM, 'End your reply with "The answer is X", where X is a number.', None, None),
    (NUM, "The answer is unknown.", None, None),
    (NUM, "", None, None),
    # multiple choice
    (MC, "The answer is C.", "C", "C"),
    (MC, "the answer is (c)", "C", "C"),
    (MC, "The answer is Paris.", "C", "C"),
    (MC, "The answer is **B**", "B", "B"),
    (MC, "The answer is a city in Europe.", None, None),
    (MC, "The answer is E.", None, None),  # not an option of this sample
    (MC, "**C**", None, "C"),
    (MC, "Answer: (C) Paris", None, "C"),
    (MC, "The correct option is (C).", None, "C"),
    (MC, "I'd go with option c.", None, "C"),
    (MC, "C. Paris", None, "C"),
    (MC, "Paris", None, "C"),
    (MC, "I think the capital of France is Paris, which is a big city.", None, "C"),
    (MC, "A. London\nB. Berlin\nC. Paris\nD. Madrid", None, None),  # echoed options, no answer
    (MC, "A. London\nB. Berlin\nC. Paris\nD. Madrid\n\n(C)", None, "C"),
    (MC, "London is in England and Berlin is in Germany.", None, None),  # two options named
    (MC, "A good question! I do not know.", None, None),  # sentence-initial "A" is not a letter
    (MC2, "A revolving door is common at a bank vault.", None, "B"),  # longest of nested option texts
    # yes / no
    (YN, "The answer is yes.", "yes", "yes"),
    (YN, "The answer is: No", "no", "no"),
    (YN, "I think yes", None, "yes"),
    (YN, "True, the coin is still heads up.", None, "yes"),
    (YN, "No. The coin was flipped twice.", None, "no"),
    (YN, 'Answer yes or no. End your reply with "The answer is yes" or "The answer is no".', None, None),
    (YN, "It depends on the weather.", None, None),
    # free form
    (FF, 'The answer is "yajo".', "yajo", "yajo"),
    (FF, "The answer is YAJO. Confidence: 90%", "yajo", "yajo"),
    (FF, "The last letters are y, a, j, o.\nConcatenated: yajo", None, "yajo"),
    (FF, "Answer: yajo", None, "yajo"),
    (FF, "yajo", None, "yajo"),
]


@pytest.mark.parametrize("sample,text,strict,flexible", CASES)
def test_extract(sample, text, strict, flexible):
    assert extract(text, sample, "strict") == strict
    assert extract(text, sample) == flexible


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown extraction policy 'loose'; valid: strict, flexible"):
        extract("The answer is 1", NUM, "loose")


@pytest.mark.parametrize(
    "pred,sample,correct",
    [
        ("1234", NUM, True),
        ("1234.0000001", NUM, True),
        ("1234.01", NUM, False),
        ("1,234", NUM, True),
        (None, NUM, False),
        ("abc", NUM, False),
        ("C", MC, True),
        ("c", MC, True),
        ("B", MC, False),
        ("yes", YN, True),
        ("true", YN, True),
        ("no", YN, False),
        ("maybe", YN, False),
        ("yajo", FF, True),
        ("Yajo.", FF, True),
        ("y a j o", FF, True),
        ("yaj", FF, False),
    ],
)
def test_is_correct(pred, sample, correct):
    assert is_correct(pred, sample) is correct


def test_extract_then_score_round_trip():
    assert is_correct(extract("She makes $1,234.00 in total.", NUM), NUM)
    assert not is_correct(extract("no idea", NUM, "strict"), NUM)


@pytest.mark.parametrize(
    "text,confidence",
    [
        ("Confidence: 85%", 0.85),
        ("85", 0.85),
        ("0.85", 0.85),
        ("85/100", 0.85),
        ("8 out of 10", 0.8),
        ("100", 1.0),
        ("0", 0.0),
        ("1.0", 1.0),
        ("I am 90% confident that my answer of 42 is correct.", 0.9),
        ("I'm about 75% sure.", 0.75),
        ("My confidence level is 0.9.", 0.9),
        ("The answer is 42. Confidence: 85%", 0.85),
        ("The answer is 42. Confidence: **70%**", 0.7),
        ("The answer is 42.\nConfidence: high (90%)", 0.9),
        ("The answer is 42. 60%", 0.6),
        ("The answer is 42.", None),
        ("The answer is 42. Confidence: high", None),
        ("150", None),
        ("Confidence: 120%", None),
        ("I am very confident.", None),
        ("", None),
    ],
)
def test_parse_confidence(text, confidence):
    result = parse_confidence(text)
    assert result == pytest.approx(confidence) if confidence is not None else result is None
