"""p(True) and verbal 2-stage see the model's whole answer (issue 8, item 1).

Before: ``raw_output[:300]``, so a long math answer lost its final "The answer is X" and p(True)
judged an answer it never saw. Now the whole answer is shown, and only a prompt over the budget
cuts it -- in its middle, so its end survives. A word-count tokenizer makes the budget exact.
"""

from __future__ import annotations

import pytest

from jobs import engine, prompts
from jobs.backends.base import Generation
from jobs.engine import run_gen_unit
from jobs.records import read_unit, unit_dir
from jobs.stages import stage as stage_decl
from jobs.stages.base import TRUNCATION_MARK, fit_answer
from jobs.types import DataError, Sample

SAMPLE = Sample(
    id="q1", question="Ann has 3 boxes of 14 pens and gives away 11. How many are left?", task="numeric", gold="31"
)
# a long worked answer (> 300 characters) whose final answer is at the very end
LONG = " ".join(f"step{k}: 14 + 14 + 14 = 42 pens;" for k in range(40)) + " 42 - 11 = 31. The answer is 31."


class WordBackend:
    """One token per whitespace-separated word; records every prompt it scores."""

    identity = "words"

    def __init__(self, context_length: int = 4096, answer: str = LONG):
        self.context_length = context_length
        self.answer = answer
        self.scored: list[list[dict]] = []

    def render(self, messages, add_generation_prompt=True):
        return " ".join(m["content"] for m in messages)

    def prompt_tokens(self, messages):
        return len(self.render(messages).split())

    def generate(self, msgs, *, max_new_tokens, seed=0, **kw):
        self.scored += msgs
        return [Generation(text=self.answer, n_prompt_tokens=self.prompt_tokens(m), n_new_tokens=3) for m in msgs]

    def true_false_prob(self, msgs):
        self.scored += msgs
        return [0.5] * len(msgs)


def test_long_answer_reaches_ptrue_and_verbal_2s_whole():
    assert len(LONG) > 300
    b = WordBackend()
    deps = {"greedy": {SAMPLE.id: LONG}}
    (pt,) = stage_decl("ptrue").run(b, [SAMPLE], deps, {"prompt_budget": 4096})
    (v2,) = stage_decl("verbal_2s").run(b, [SAMPLE], deps, {"max_new_tokens": 8, "seed": 0, "prompt_budget": 4096})
    assert f"Proposed answer: {LONG}\n" in pt["prompt"]
    assert pt["answer_truncated_from"] is None
    assert LONG in v2["prompt"] and v2["prompt"].endswith(prompts.VERBAL_2S_QUESTION)
    assert "The answer is 31." in pt["prompt"] and "The answer is 31." in v2["prompt"]
    # no budget (an HTTP endpoint cannot count tokens): shown whole as well
    (pt_http,) = stage_decl("ptrue").run(b, [SAMPLE], deps, {})
    assert f"Proposed answer: {LONG}\n" in pt_http["prompt"]


def test_an_invented_follow_up_question_is_not_shown():
    b = WordBackend()
    raw = "14 * 3 = 42, 42 - 11 = 31. The answer is 31.\n\nQuestion: Bob has 5 cats. How many legs?\nThe answer is 20."
    (pt,) = stage_decl("ptrue").run(b, [SAMPLE], {"greedy": {SAMPLE.id: raw}}, {})
    assert "Proposed answer: 14 * 3 = 42, 42 - 11 = 31. The answer is 31.\n" in pt["prompt"]
    assert "Bob" not in pt["prompt"]


@pytest.mark.parametrize("stage", ["ptrue", "verbal_2s"])
def test_an_answer_over_the_budget_loses_its_middle_not_its_end(stage):
    b = WordBackend()
    make = prompts.ptrue_messages if stage == "ptrue" else prompts.verbal_2s_followup
    whole = b.prompt_tokens(make(SAMPLE, LONG))
    budget = whole - 100
    fn = stage_decl(stage).run
    (row,) = fn(b, [SAMPLE], {"greedy": {SAMPLE.id: LONG}}, {"max_new_tokens": 8, "seed": 0, "prompt_budget": budget})
    assert row["answer_truncated_from"] == whole
    (msgs,) = b.scored
    assert b.prompt_tokens(msgs) <= budget
    text = row["prompt"]
    assert TRUNCATION_MARK.strip() in text
    assert "step0: 14 + 14" in text and "42 - 11 = 31. The answer is 31." in text  # head and end kept
    assert "step25:" not in text  # the middle went


def test_fit_answer_keeps_the_longest_answer_that_fits_and_refuses_an_impossible_budget():
    b = WordBackend()

    def make(a):
        return prompts.ptrue_messages(SAMPLE, a)

    empty = b.prompt_tokens(make(""))
    cut, was = fit_answer(b, make, LONG, empty + 30, SAMPLE.id)
    assert was == b.prompt_tokens(make(LONG)) and b.prompt_tokens(make(cut)) <= empty + 30
    assert cut.endswith("The answer is 31.") and b.prompt_tokens(make(cut)) >= empty + 25  # near the budget
    with pytest.raises(DataError, match="q1.*does not fit in 3 tokens"):
        fit_answer(b, make, LONG, 3, SAMPLE.id)


def test_run_gen_unit_gives_the_stages_the_prompt_budget(tmp_path, monkeypatch):
    # a context of 200 words: the greedy answer (~330 words) cannot be shown whole to p(True)
    b = WordBackend(context_length=200)
    monkeypatch.setattr(engine, "load_role", lambda dc, run, role: ([SAMPLE], []))
    base = {"model": "w", "dataset": "d", "dataset_conf": {}, "run": {}, "role": "eval"}
    run_gen_unit(
        b,
        base
        | {
            "key": "G",
            "stage": "greedy",
            "deps": {},
            "params": {"seed": 0, "chunk_size": 8, "max_new_tokens": 4, "with_stats": False},
        },
        tmp_path,
    )
    b.scored.clear()
    run_gen_unit(
        b,
        base | {"key": "P", "stage": "ptrue", "deps": {"greedy": "G"}, "params": {"seed": 0, "chunk_size": 8}},
        tmp_path,
    )
    (row,) = read_unit(unit_dir(tmp_path, "gen", "P")).to_pylist()
    assert row["answer_truncated_from"] > 200
    assert b.prompt_tokens(b.scored[0]) <= 200
    assert row["prompt"].rstrip().endswith("True or False.") and "The answer is 31." in row["prompt"]
