"""Constrained answers (decoding.answer_mode): the backend's option scoring on real SmolLM2, the
stages on a fake backend, the config check and the keys (generate-mode keys unchanged)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from jobs import prompts
from jobs.answers import extract
from jobs.types import Sample
from orchestrator.config import ConfigError
from orchestrator.plan import make_plan
from tests.helpers import SMOL
from tests.unit.test_config_grid_plan import BASE, load

DATASETS3 = BASE.replace("datasets: [addsub, strategyqa]", "datasets: [addsub, strategyqa, arc_easy]")

# Gen keys of DATASETS3 computed with the code before answer modes existed: generate mode (the
# default) must keep them byte-identical, so existing stores stay valid (the p(True) / verbal
# prompt changes of issue 8 have stage versions and leave greedy, samples and LLM keys alone).
GENERATE_KEYS = {  # re-recorded when conf/slm/smollm2-135m.yaml dropped quantize (issue 16)
    "greedy smollm2-135m addsub eval": "21dd8397b93c2962",
    "llm smollm2-135m addsub eval": "b702fabca0434f97",
    "samples smollm2-135m addsub eval": "82f6e560f3f228b8",
    "greedy smollm2-135m addsub fit": "481905a1e1fd4ed8",
    "greedy smollm2-135m strategyqa fit": "7ad54fa960ab4d9c",
    "greedy smollm2-135m arc_easy fit": "5922144f51a32a87",
    "greedy smollm2-135m strategyqa eval": "526cd4399ae62418",
    "llm smollm2-135m strategyqa eval": "e64c398e1ebdeabb",
    "samples smollm2-135m strategyqa eval": "b7237ae29dd87e6a",
    "greedy smollm2-135m arc_easy eval": "186f42371a67ca25",
    "llm smollm2-135m arc_easy eval": "4f2b2455898327ee",
    "samples smollm2-135m arc_easy eval": "e865ea77237d464a",
}


def _gen(overrides=()):
    plan = make_plan(load(Path(tempfile.mkdtemp()), DATASETS3, overrides))
    return {u.label: u for u in plan.by_kind("gen")}


# ------------------------------------------------------------------------------------- keys
@pytest.mark.parametrize(
    "overrides", [(), ("decoding.answer_mode=generate",), ("decoding.answer_mode={numeric: generate}",)]
)
def test_generate_mode_keys_are_unchanged(overrides):
    gen = _gen(overrides)
    assert {k: u.key for k, u in gen.items()} == GENERATE_KEYS
    assert not any("answer_mode" in u.spec.params for u in gen.values())


def test_constrained_mode_is_recorded_in_keys_of_option_tasks_only():
    gen = _gen(["decoding.answer_mode=constrained"])
    for label, u in gen.items():
        stage, _, dataset, _ = label.split()
        if dataset == "addsub":  # numeric: still generates, same key
            assert u.key == GENERATE_KEYS[label] and "answer_mode" not in u.spec.params
        else:
            assert u.key != GENERATE_KEYS[label]
            assert u.spec.params["answer_mode"] == "constrained"
            assert u.spec.params["answer_prefix"] == prompts.ANSWER_PREFIX


def test_per_task_mapping_constrains_only_the_named_tasks():
    gen = _gen(["decoding.answer_mode={mc: constrained, yesno: generate}"])
    assert gen["greedy smollm2-135m arc_easy eval"].spec.params["answer_mode"] == "constrained"
    assert gen["greedy smollm2-135m strategyqa eval"].key == GENERATE_KEYS["greedy smollm2-135m strategyqa eval"]


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "override,needles",
    [
        ("decoding.answer_mode=sampled", ["answer_mode='sampled'", "generate, constrained"]),
        (
            "decoding.answer_mode={numeric: constrained}",
            ["answer_mode.numeric='constrained'", "valid choices: generate", "mc, yesno"],
        ),
        ("decoding.answer_mode={mc: best}", ["answer_mode.mc='best'", "generate, constrained"]),
        ("decoding.answer_mode={multiple_choice: constrained}", ["task='multiple_choice'", "mc, yesno"]),
    ],
)
def test_bad_answer_mode_names_key_value_and_choices(tmp_path, override, needles):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, DATASETS3, [override])
    assert "decoding" in str(e.value)
    for n in needles:
        assert n in str(e.value)


def test_answer_mode_helper():
    assert prompts.answer_mode("constrained", "mc") == "constrained"
    assert prompts.answer_mode("constrained", "numeric") == "generate"
    assert prompts.answer_mode({"yesno": "constrained"}, "mc") == "generate"
    assert prompts.with_prefix("<|im_start|>assistant\n", "The answer is").endswith("\nThe answer is")
    assert prompts.with_prefix("Question: q\nAnswer:", "The answer is").endswith("Answer: The answer is")


# --------------------------------------------------------------------- stages (fake backend)
class FakeOptions:
    """choice_logprobs from a fixed table; generate answers "The answer is 7"."""

    identity = "fake"

    def __init__(self, table):
        self.table = table  # sample question -> raw log p per option
        self.calls = []

    def render(self, m):
        return prompts.plain_prompt(m)

    def choice_logprobs(self, msgs, options, prefix=""):
        self.calls.append(("choice", len(msgs), prefix))
        k = max(len(o) for o in options)
        out = np.full((len(msgs), k), -np.inf)
        for i, m in enumerate(msgs):
            row = next(v for q, v in self.table.items() if q in m[0]["content"])
            out[i, : len(row)] = row
        return out, np.arange(len(msgs) * 3, dtype=np.float32).reshape(len(msgs), 3)

    def generate(self, msgs, *, max_new_tokens, with_stats=False, seed=0, **kw):
        from jobs.backends.base import Generation

        self.calls.append(("generate", len(msgs)))
        n = kw.get("num_return_sequences", 1)
        return [
            Generation(
                text="The answer is 7",
                n_prompt_tokens=5,
                n_new_tokens=4,
                token_ids=[1, 2, 3, 4],
                token_logprobs=np.zeros(4, np.float32),
                token_entropy=np.zeros(4, np.float32),
                hidden=np.zeros(3, np.float32),
            )
            for _ in range(len(msgs) * n)
        ]

    def token_strings(self, ids):
        return [str(i) for i in ids]


MC = Sample(id="m1", question="Which is a mammal?", task="mc", gold="B", choices=("trout", "cat", "crow"))
YN = Sample(id="y1", question="Is ice cold?", task="yesno", gold="yes")
NUM = Sample(id="n1", question="What is 3 + 4?", task="numeric", gold="7")
TABLE = {"mammal": [np.log(0.1), np.log(0.6), np.log(0.1)], "ice": [np.log(0.3), np.log(0.1)]}
PARAMS = {"seed": 3, "max_new_tokens": 8, "answer_mode": "constrained", "answer_prefix": prompts.ANSWER_PREFIX}


def test_constrained_greedy_rows_and_stats():
    from jobs.stages import stage

    b = FakeOptions(TABLE)
    rows = stage("greedy").run(b, [MC, NUM, YN], {}, PARAMS)
    assert [r["raw_output"] for r in rows] == ["The answer is B.", "The answer is 7", "The answer is yes."]
    assert [extract(r["raw_output"], s, "strict") for r, s in zip(rows, [MC, NUM, YN])] == ["B", "7", "yes"]
    mc, num, yn = rows
    assert mc["token_logprobs"] == pytest.approx([np.log(0.6)]) and mc["token_texts"] == [" B"]
    q = np.array([0.125, 0.75, 0.125])
    assert np.exp(mc["option_logprobs"]) == pytest.approx(q)
    assert mc["token_entropy"] == pytest.approx([float(-(q * np.log(q)).sum())])
    assert mc["hidden_state"] == [0.0, 1.0, 2.0] and mc["prompt"].endswith("Answer: The answer is")
    assert yn["option_labels"] == ["yes", "no"] and np.exp(yn["option_logprobs"]).sum() == pytest.approx(1)
    assert num["option_labels"] is None and set(num) == set(mc)  # one schema for the part
    assert ("generate", 1) in b.calls and ("choice", 2, "The answer is") in b.calls


def test_llm_stage_constrained_has_no_stats_and_samples_draw_options():
    from jobs.stages import stage
    from jobs.uq.jaccard import METHOD as JACCARD

    rows = stage("llm").run(FakeOptions(TABLE), [MC], {}, PARAMS)
    assert rows[0]["raw_output"] == "The answer is B." and "token_logprobs" not in rows[0]
    p = dict(PARAMS, num_samples=400, temperature=1.0)
    # samples draw from the greedy pass's stored distribution (issue 17.3a): no option pass
    greedy = stage("greedy").run(FakeOptions(TABLE), [MC, YN], {}, PARAMS)
    deps = {"greedy.options": {s.id: (r["option_labels"], r["option_logprobs"]) for s, r in zip([MC, YN], greedy)}}
    backend = FakeOptions(TABLE)
    a = stage("samples").run(backend, [MC, YN], deps, p)
    b = stage("samples").run(FakeOptions(TABLE), [MC, YN], deps, p)
    assert backend.calls == []  # no model work
    assert [r["sampled_texts"] for r in a] == [r["sampled_texts"] for r in b]  # seeded
    texts = a[0]["sampled_texts"]
    assert set(texts) <= {"A", "B", "C"} and abs(texts.count("B") / 400 - 0.75) < 0.08
    u = JACCARD.fn({"sampled_texts": [texts]})
    assert u[0] == pytest.approx(1 - sum((texts.count(x) / 400) ** 2 for x in "ABC"))


def test_backend_without_option_scoring_is_a_clear_error():
    from jobs.stages import stage

    class NoOptions:  # e.g. an HTTP backend
        identity = "no-options"
        render = FakeOptions.render

    b = NoOptions()
    with pytest.raises(TypeError, match="choice_logprobs"):
        stage("greedy").run(b, [MC], {}, PARAMS)


# ------------------------------------------------------------------ real SmolLM2 (one forward)
@pytest.fixture(scope="module")
def smol():
    torch = pytest.importorskip("torch")
    from jobs.backends.hf import HFBackend, HFModelSpec

    threads = torch.get_num_threads()
    b = HFBackend(HFModelSpec(**SMOL, dtype="float32", device="cpu", hidden_layer=-8), torch_threads=1)
    yield b
    torch.set_num_threads(threads)


def _arc(n):
    from jobs.datasets import load_samples

    try:
        return load_samples("arc_easy").samples[:n]
    except FileNotFoundError:
        pytest.skip("shared datasets not present")


def test_choice_logprobs_matches_a_manual_forward_pass(smol):
    import torch

    samples = _arc(3)
    msgs = [prompts.answer_messages(s) for s in samples]
    opts = [list(s.choice_labels()) for s in samples]
    logp, hidden = smol.choice_logprobs(msgs, opts, prefix=prompts.ANSWER_PREFIX)  # one padded batch
    assert logp.shape == (3, max(map(len, opts))) and hidden.shape == (3, smol.model.config.hidden_size)
    for i, (m, o) in enumerate(zip(msgs, opts)):
        text = prompts.with_prefix(smol.render(m), prompts.ANSWER_PREFIX)
        ids = smol.tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            out = smol.model(input_ids=ids, output_hidden_states=True)
        full = torch.log_softmax(out.logits[0, -1].float(), -1)
        manual = []
        for label in o:
            toks = {smol.tok.encode(v, add_special_tokens=False)[0] for v in (label, " " + label)}
            assert all(smol.tok.decode([t]).strip() == label for t in toks)
            manual.append(float(torch.logsumexp(full[sorted(toks)], 0)))
        assert int(np.argmax(logp[i, : len(o)])) == int(np.argmax(manual))
        np.testing.assert_allclose(logp[i, : len(o)], manual, atol=2e-3)
        np.testing.assert_allclose(hidden[i], out.hidden_states[-8][0, -1].numpy(), atol=2e-3)
        norm = np.exp(logp[i, : len(o)] - np.logaddexp.reduce(logp[i, : len(o)]))
        assert norm.sum() == pytest.approx(1.0) and np.all(logp[i, : len(o)] < 0)
    assert np.all(np.isneginf(logp[[j for j, o in enumerate(opts) if len(o) < logp.shape[1]], -1]))


def test_yes_no_tokens_are_whole_words(smol):
    for word in ("yes", "no"):
        ids = smol.option_token_ids(word)
        assert ids and {smol.tok.decode([i]).strip().lower() for i in ids} == {word}
