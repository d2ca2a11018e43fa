"""Long inputs (issue 12.2): a prompt over budget is cut by a documented rule and recorded, never
run blind; batches by length keep the chunk's row order; a token budget per batch
(``max_batch_tokens``, issue 16) runs a long prompt alone instead of padding the short ones to it.
The rules are tested with a word-count tokenizer, then on the real SmolLM2 with a 6,000-word question."""

from __future__ import annotations

import json

import pytest

from jobs import prompts
from jobs.backends.base import Generation
from jobs.engine import fit_prompt, length_order, prompt_budget, run_gen_unit, token_batches
from jobs.records import read_unit, unit_dir
from jobs.stages.base import TRUNCATION_MARK
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
    import jobs.engine as st

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


def _run_unit(tmp_path, samples, backend, **kw):
    import jobs.engine as st

    unit = {
        "key": "u",
        "stage": "llm",
        "model": "w",
        "dataset": "d",
        "role": "eval",
        "deps": {},
        "params": {"seed": 0, "chunk_size": 32, "max_new_tokens": 4},
        "dataset_conf": {},
        "run": {},
    }
    orig = st.load_role
    st.load_role = lambda dc, run, role: (samples, [])
    try:
        run_gen_unit(backend, unit, tmp_path, **kw)
    finally:
        st.load_role = orig
    return read_unit(unit_dir(tmp_path, "gen", "u")).to_pylist()


def test_token_batches_keep_rows_times_longest_within_the_budget():
    lens = [50, 7000, 40, 60, 45, 55, 48]  # the case: six short questions, one 6,000-word one
    batches = token_batches(lens, 32, 8192)
    assert [sorted(lens[i] for i in b) for b in batches] == [[40, 45, 48, 50, 55, 60], [7000]]
    assert token_batches(lens, 32, None) == [sorted(range(7), key=lambda i: lens[i])]  # all 7: one batch
    assert [len(b) for b in token_batches(lens, 4, 8192)] == [4, 2, 1]  # batch_size still caps rows
    # a prompt longer than the budget runs alone; every other batch stays within it
    lens = [10, 300, 20, 90, 95, 30, 31, 500, 29]
    batches = token_batches(lens, 8, 100)
    assert sorted(i for b in batches for i in b) == list(range(len(lens)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lens[i] for i in b) <= 100
    assert [lens[i] for i in batches[-1]] == [500] and [lens[i] for i in batches[-2]] == [300]
    # each batch is as full as the budget allows: the next row would not have fitted
    for b, nxt in zip(batches, batches[1:]):
        assert (len(b) + 1) * lens[nxt[0]] > 100
    assert token_batches([], 8, 100) == []


def test_max_batch_tokens_runs_the_long_prompt_alone_in_run_gen_unit(tmp_path):
    lens = [30, 2, 28, 3, 6000, 4, 27]
    samples = [sample(n, i=i) for i, n in enumerate(lens)]
    b = WordBackend()
    b.context_length = 10_000
    rows = _run_unit(tmp_path, samples, b, batch_size=32, max_batch_tokens=8192)
    ntok = [b.prompt_tokens(prompts.answer_messages(s)) for s in samples]
    assert sorted(map(sorted, b.batches)) == sorted([sorted(x for x in ntok if x < 6000), [max(ntok)]])
    assert [r["sample_id"] for r in rows] == [s.id for s in samples]  # written in the chunk's order
    b2 = WordBackend()
    b2.context_length = 10_000
    _run_unit(tmp_path / "none", samples, b2, batch_size=32)
    assert [len(x) for x in b2.batches] == [7]  # without the budget: one batch padded to 6,000+ tokens


@pytest.mark.slow
def test_a_6000_word_question_runs_cut_on_the_real_model():
    from jobs.backends import make_backend
    from jobs.stages.greedy import greedy as _greedy

    b = make_backend({"name": "s", "backend": "hf", **SMOL, "torch_threads": 1})
    assert b.context_length == 8192
    s = Sample(id="long", question=("word " * 6000) + "How many words are above?", task="numeric", gold="6000")
    cut, was = fit_prompt(b, s, 256)
    assert was > 6000 and b.prompt_tokens(prompts.answer_messages(cut)) <= 256
    assert cut.question.endswith("How many words are above?")
    [row] = _greedy(b, [cut], {}, {"max_new_tokens": 4, "seed": 0})
    assert row["n_prompt_tokens"] <= 256
    assert json.dumps(row["raw_output"])
