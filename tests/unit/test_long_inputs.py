"""Long inputs (issue 12.2): a prompt over budget is cut by a documented rule and recorded, never
run blind; batches by length keep the chunk's row order. The rule is tested with a word-count
tokenizer, then on the real SmolLM2 with a 6,000-word question."""

from __future__ import annotations

import json

import pytest

from jobs import prompts
from jobs.backends.base import Generation
from jobs.records import read_unit, unit_dir
from jobs.stages import TRUNCATION_MARK, fit_prompt, length_order, prompt_budget, run_gen_unit
from jobs.types import Sample
from tests.helpers import SMOL


class WordBackend:
    """One token per whitespace-separated word; records the batches it was given."""

    identity = "words"
    context_length = 64

    def __init__(self):
        self.batches = []

    def render(self, messages, add_generation_prompt=True):
        return " ".join(m["content"] for m in messages)

    def prompt_tokens(self, messages):
        return len(self.render(messages).split())

    def generate(self, msgs, *, max_new_tokens, seed=0, **kw):
        self.batches.append([self.prompt_tokens(m) for m in msgs])
        return [
            Generation(
                text=f"The answer is {self.prompt_tokens(m)}.", n_prompt_tokens=self.prompt_tokens(m), n_new_tokens=1
            )
            for m in msgs
        ]


def sample(words: int, context: int = 0, i: int = 0) -> Sample:
    return Sample(
        id=f"s{i}",
        question=" ".join(f"q{k}" for k in range(words)),
        task="numeric",
        gold="1",
        context=" ".join(f"c{k}" for k in range(context)) or None,
    )


def test_short_prompts_are_untouched_and_the_budget_is_context_minus_generation():
    b = WordBackend()
    assert prompt_budget(b, {"max_new_tokens": 16}, None) == 48
    assert prompt_budget(b, {"max_new_tokens": 16}, 30) == 30
    s = sample(5)
    assert fit_prompt(b, s, 48) == (s, None)


def test_a_long_passage_is_cut_first_in_its_middle():
    b = WordBackend()
    s = sample(5, context=500)
    cut, was = fit_prompt(b, s, 48)
    assert was == b.prompt_tokens(prompts.answer_messages(s)) > 500
    assert b.prompt_tokens(prompts.answer_messages(cut)) <= 48
    assert cut.question == s.question  # the question survives while cutting the passage is enough
    assert cut.context.startswith("c0 c1") and cut.context.endswith("c499") and TRUNCATION_MARK in cut.context


def test_a_long_question_is_cut_when_there_is_no_passage():
    b = WordBackend()
    s = sample(6000)
    cut, was = fit_prompt(b, s, 48)
    assert was > 6000 and b.prompt_tokens(prompts.answer_messages(cut)) <= 48
    assert cut.question.startswith("q0 ") and cut.question.endswith("q5999")


def test_batches_by_length_keep_the_chunk_order(tmp_path):
    lens = [30, 2, 28, 3, 29, 1, 27, 4]
    samples = [sample(n, i=i) for i, n in enumerate(lens)]
    assert [lens[i] for i in length_order(samples)] == sorted(lens)
    unit = {
        "key": "u",
        "stage": "llm",
        "model": "w",
        "dataset": "d",
        "role": "eval",
        "deps": {},
        "params": {"seed": 0, "chunk_size": 8, "max_new_tokens": 4},
    }
    import jobs.stages as st

    def fake_load(dc, run, role):
        return samples, []

    orig = st.load_role
    st.load_role = fake_load
    try:
        b = WordBackend()
        run_gen_unit(b, unit | {"dataset_conf": {}, "run": {}}, tmp_path, batch_size=4, batch_by_length=True)
    finally:
        st.load_role = orig
    spread = lambda bs: sum(max(x) - min(x) for x in bs)  # noqa: E731 - padding within batches
    assert spread(b.batches) < spread(
        [[len(s.question.split()) + 30 for s in samples[:4]], [len(s.question.split()) + 30 for s in samples[4:]]]
    )
    rows = read_unit(unit_dir(tmp_path, "gen", "u")).to_pylist()
    assert [r["sample_id"] for r in rows] == [s.id for s in samples]  # written in the chunk's order
    assert all(r["prompt_truncated_from"] is None for r in rows)


@pytest.mark.slow
def test_a_6000_word_question_runs_cut_on_the_real_model():
    from jobs.backends import make_backend
    from jobs.stages import _greedy

    b = make_backend({"name": "s", "backend": "hf", **SMOL, "torch_threads": 1})
    assert b.context_length == 8192
    s = Sample(id="long", question=("word " * 6000) + "How many words are above?", task="numeric", gold="6000")
    cut, was = fit_prompt(b, s, 256)
    assert was > 6000 and b.prompt_tokens(prompts.answer_messages(cut)) <= 256
    assert cut.question.endswith("How many words are above?")
    [row] = _greedy(b, [cut], {}, {"max_new_tokens": 4, "seed": 0})
    assert row["n_prompt_tokens"] <= 256
    assert json.dumps(row["raw_output"])
