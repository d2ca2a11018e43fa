"""Prompt templates: message structure and the exact wording the extraction relies on."""

from __future__ import annotations

import pytest

from jobs import prompts
from jobs.types import Sample

NUM = Sample("n1", "Tom has 3 apples and buys 4 more. How many apples does he have?", "numeric", "7")
MC = Sample("m1", "What is the capital of France?", "mc", "C", choices=("London", "Berlin", "Paris"))
YN = Sample("y1", "Is the sky green?", "yesno", "no", context="The sky is blue on clear days.")
FF = Sample("f1", 'Take the last letters of each words in "Ann Bob" and concatenate them.', "freeform", "nb")


def test_version():
    # the whole-answer p(True)/verbal-2s prompts and the 1-stage parse bumped those stages only
    assert prompts.PROMPT_VERSION == "v1"
    assert prompts.STAGE_PROMPT_VERSIONS == {"ptrue": "2", "verbal_2s": "2", "verbal_1s": "2"}


def test_mc_answer_prompt_exact_text():
    assert prompts.answer_messages(MC) == [
        {
            "role": "user",
            "content": "Question: What is the capital of France?\n"
            "Options:\nA. London\nB. Berlin\nC. Paris\n\n"
            'Choose the correct option. End your reply with "The answer is X", where X is the option letter.',
        }
    ]


@pytest.mark.parametrize(
    "sample,instruction",
    [
        (NUM, 'where X is a number.'),
        (MC, 'where X is the option letter.'),
        (YN, '"The answer is yes" or "The answer is no".'),
        (FF, 'where X is your answer.'),
    ],
)
def test_answer_prompt_per_task(sample, instruction):
    (message,) = prompts.answer_messages(sample)
    assert message["role"] == "user"
    assert message["content"].endswith(instruction)
    assert f"Question: {sample.question}" in message["content"]
    assert ("Options:" in message["content"]) == bool(sample.choices)


def test_context_comes_first():
    content = prompts.answer_messages(YN)[0]["content"]
    assert content.startswith("Passage: The sky is blue on clear days.\n\nQuestion: Is the sky green?")


@pytest.mark.parametrize(
    "sample,slot", [(NUM, "a number"), (MC, "the letter of the correct option"), (YN, "yes or no")]
)
def test_verbal_1s_asks_for_answer_and_confidence(sample, slot):
    content = prompts.verbal_1s_messages(sample)[0]["content"]
    assert f'End your reply with "The answer is X. Confidence: N%", where X is {slot}' in content
    assert "0 to 100" in content


def test_verbal_2s_followup_is_the_whole_conversation():
    messages = prompts.verbal_2s_followup(NUM, "3 + 4 = 7. The answer is 7.")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0] == prompts.answer_messages(NUM)[0]
    assert messages[1]["content"] == "3 + 4 = 7. The answer is 7."
    assert messages[2]["content"] == (
        "How confident are you that your answer is correct? Reply with a number from 0 to 100."
    )


def test_ptrue_shows_the_proposed_answer_as_given():
    # the stage passes the model's whole answer; mc options are in the question block above it
    answer = "Paris is the capital and largest city of France.\nThe answer is C."
    content = prompts.ptrue_messages(MC, answer)[0]["content"]
    assert content.endswith(
        "C. Paris\n\nProposed answer: " + answer + "\n\n"
        "Is the proposed answer true or false? Answer with one word: True or False."
    )
    assert "Proposed answer: C\n" in prompts.ptrue_messages(MC, "C")[0]["content"]  # a bare letter: as is


@pytest.mark.parametrize(
    "raw,shown",
    [
        ("6 + 7 = 13. The answer is 13.", "6 + 7 = 13. The answer is 13."),
        # an invented follow-up question (our prompts' field names at a line start) is not the answer
        ("The answer is 13.\n\nQuestion: Tom has 4 apples...\nThe answer is 9.", "The answer is 13."),
        ("The answer is B.\nOptions:\nA. x", "The answer is B."),
        ("  The answer is yes.  ", "The answer is yes."),
        ("Question: restated first\nThe answer is 2.", "Question: restated first\nThe answer is 2."),
        ("", ""),
    ],
)
def test_shown_answer_is_the_whole_output_up_to_an_invented_question(raw, shown):
    assert prompts.shown_answer(raw) == shown


def test_plain_prompt_renders_turns():
    assert prompts.plain_prompt(prompts.answer_messages(NUM)).endswith("where X is a number.\nAnswer:")
    text = prompts.plain_prompt(
        [{"role": "system", "content": "Be brief."}, *prompts.verbal_2s_followup(NUM, " The answer is 7. ")]
    )
    assert text.startswith("Be brief.\n\nQuestion: Tom has 3 apples")
    assert "\nAnswer: The answer is 7.\n\nHow confident are you" in text
    assert text.endswith("from 0 to 100.\nAnswer:")


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="unknown message role 'tool'; valid: system, user, assistant"):
        prompts.plain_prompt([{"role": "tool", "content": "x"}])
    with pytest.raises(ValueError, match="unknown task 'essay'"):
        prompts.answer_messages(Sample("e", "q", "essay", "x"))
