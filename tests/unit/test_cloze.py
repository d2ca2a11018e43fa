"""Cloze answers (decoding.answer_mode cloze): the prompts and continuations per dataset against
lm-evaluation-harness's task templates, the acc / acc_norm rule, the config and the unit keys, and
the stages on a fake backend. The real-model checks are in tests/unit/test_cloze_model.py."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

from jobs import cloze, prompts
from jobs.answers import extract
from jobs.backends.base import ContinuationScore
from jobs.datasets import DATASETS, load_samples
from jobs.stages.cloze import cloze_greedy, cloze_samples, score_questions
from jobs.stages.greedy import greedy, greedy_stats
from jobs.stages.samples import samples as samples_stage
from jobs.types import DataError, Sample
from jobs.uq import UQ_METHODS, compute
from orchestrator.config import ConfigError
from orchestrator.plan import make_plan
from tests.unit.test_config_grid_plan import load
from tests.unit.test_constrained import DATASETS3, GENERATE_KEYS


# ----------------------------------------------------------------- formats on the shipped files
def _first(name: str, n: int = 1) -> list[Sample]:
    return load_samples(name, limit=None).samples[:n]


def test_arc_is_lm_eval_arc_easy():
    # arc_easy.yaml: doc_to_text "Question: {{question}}\nAnswer:", doc_to_choice choices.text, acc + acc_norm
    s = _first("arc_easy")[0]
    q = cloze.cloze_question(s, "arc")
    assert set(q.contexts) == {f"Question: {s.question}\nAnswer:"}
    assert q.continuations == tuple(" " + c for c in s.choices)
    assert q.labels == s.choice_labels() and q.rule == "acc_norm"


def test_hellaswag_is_lm_eval_preprocessed_query_and_endings():
    s = _first("hellaswag")[0]  # the file's first item (hellaswag_val_full.txt.bz2)
    q = cloze.cloze_question(s, "hellaswag")
    assert q.contexts[0] == "Roof shingle removal: A man is sitting on a roof. he"
    assert q.continuations[0] == " is using wrap to wrap a pair of skis."
    assert q.rule == "acc_norm"
    # utils.preprocess: " [title]" -> ". ", other [brackets] dropped, double spaces collapsed
    assert cloze.hellaswag_preprocess(" How to dry [header] Dry it [title] Fast ") == "How to dry Dry it. Fast"


def test_piqa_strips_the_letter_prompt_lead_in():
    s = _first("piqa")[0]
    q = cloze.cloze_question(s, "piqa")
    goal = s.question.split("Goal: ", 1)[1]
    assert q.contexts[0] == f"Question: {goal}\nAnswer:" and "Which solution" not in q.contexts[0]
    assert q.continuations == (" " + s.choices[0], " " + s.choices[1]) and q.rule == "acc_norm"


def test_winogrande_is_partial_evaluation():
    s = _first("winogrande")[0]
    sentence = s.question.split("\n", 1)[1]
    i = sentence.index("_")
    q = cloze.cloze_question(s, "winogrande")
    # preprocess_winogrande.py: context = sentence[:blank] + option, target = rest after the blank
    assert q.contexts == tuple(sentence[:i] + o for o in s.choices)
    assert q.continuations == (" " + sentence[i + 1 :].strip(),) * 2
    assert q.rule == "acc"


def test_boolq_is_lm_eval_super_glue_boolq():
    # super_glue/boolq/default.yaml: "{{passage}}\nQuestion: {{question}}?\nAnswer:" on SuperGLUE's row,
    # whose passage is "{title} -- {passage}" and whose question is the release's lower-case one
    # (SuperGLUE validation row 0 = BoolQ dev row 0, "does ethanol take more energy make that produces")
    s = _first("boolq")[0]
    q = cloze.cloze_question(s, "boolq")
    head = "Ethanol fuel -- All biomass goes through at least some of these steps: it needs to be grown,"
    tail = "\nQuestion: does ethanol take more energy make that produces?\nAnswer:"
    assert q.contexts[0].startswith(head) and q.contexts[0].endswith(tail)
    assert q.contexts[0] == f"Ethanol fuel -- {s.context}{tail}"
    assert q.continuations == (" yes", " no") and q.labels == ("yes", "no") and q.rule == "acc"
    # the letter / generate prompts keep the adapter's capitalized question
    assert s.question == "Does ethanol take more energy make that produces?"


def test_boolq_format_without_the_adapter_meta_uses_the_question_and_context():
    s = Sample(id="x", question="Is it cold?", task="yesno", gold="yes", context="Snow fell.")
    assert cloze.cloze_question(s, "boolq").contexts[0] == "Snow fell.\nQuestion: Is it cold?\nAnswer:"


def test_social_iqa_truthfulqa_mmlu_templates():
    s = _first("social_iqa")[0]
    assert cloze.cloze_question(s, "social_iqa").contexts[0] == f"Q: {s.context} {s.question}\nA:"
    t = _first("truthfulqa")[0]
    ctx = cloze.cloze_question(t, "truthfulqa").contexts[0]
    assert ctx.startswith("Q: What is human life expectancy") and ctx.endswith(f"\n\nQ: {t.question}\nA:")
    m = _first("mmlu")[0]
    subject = m.meta["subject"].replace("_", " ")
    assert cloze.cloze_question(m, "mmlu").contexts[0] == (
        f"The following are questions (with answers) about {subject}.\n\nQuestion: {m.question.strip()}\nAnswer:"
    )


def test_strategyqa_and_other_yes_no_score_yes_and_no_after_the_question():
    s = _first("strategyqa")[0]
    q = cloze.cloze_question(s, cloze.format_of("strategyqa"))
    assert q.contexts[0] == f"Question: {s.question.strip()}\nAnswer:"
    assert q.continuations == (" yes", " no") and q.rule == "acc"


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if DATASETS.get(n).task in ("mc", "yesno")])
def test_every_shipped_option_dataset_has_a_cloze_format(name):
    fmt = cloze.format_of(name)
    for s in _first(name, 20):
        q = cloze.cloze_question(s, fmt)
        n = len(s.choices) if s.task == "mc" else 2
        assert len(q.contexts) == len(q.continuations) == len(q.labels) == len(q.choices) == n
        assert all(c.startswith(" ") and c.strip() for c in q.continuations)
        assert all(x.strip() for x in q.contexts)
        assert q.rule in cloze.RULES
        gold = s.gold
        assert gold in q.labels


def test_a_changed_lead_in_fails_loudly():
    s = Sample(id="p", question="Pick one.\nGoal: x", task="mc", gold="A", choices=("a", "b"))
    with pytest.raises(DataError, match="cloze expects"):
        cloze.cloze_question(s, "piqa")


def test_bad_format_names_valid_choices():
    with pytest.raises(ValueError, match="valid choices: arc"):
        cloze.format_of("arc_easy", "arcc")


# ------------------------------------------------------------------------------- acc vs acc_norm
def test_acc_and_acc_norm_follow_lm_eval_process_results():
    # lm-eval: acc = argmax(lls); acc_norm = argmax(lls / completion_len), len in characters
    sums = [-5.0, -8.0]
    choices = ["a", "a much longer answer"]  # -5/1 = -5 vs -8/20 = -0.4
    assert cloze.pick(sums, choices, "acc") == (0, 0, 1)
    assert cloze.pick(sums, choices, "acc_norm") == (1, 0, 1)
    np.testing.assert_allclose(cloze.decision_scores(sums, choices, "acc_norm"), [-5.0, -0.4])
    with pytest.raises(ValueError, match="valid choices: acc, acc_norm"):
        cloze.pick(sums, choices, "acc_bytes")


# ------------------------------------------------------------------------------------ config
def _gen(overrides=(), body=DATASETS3):
    plan = make_plan(load(Path(tempfile.mkdtemp()), body, overrides))
    return {u.label: u for u in plan.by_kind("gen")}


def test_cloze_keys_only_cloze_units_and_leaves_generate_keys_alone():
    gen = _gen(["decoding.answer_mode={mc: cloze, yesno: cloze, numeric: generate}"])
    for label, u in gen.items():
        stage, _, dataset, _ = label.split()
        if dataset == "addsub" or stage not in ("greedy", "llm", "samples"):
            assert u.key == GENERATE_KEYS[label] and "answer_mode" not in u.spec.params
        else:
            assert u.key != GENERATE_KEYS[label]
            p = u.spec.params
            assert p["answer_mode"] == "cloze" and p["cloze_version"] == cloze.CLOZE_VERSION
            assert p["cloze_format"] == {"arc_easy": "arc", "strategyqa": "qa"}[dataset]
            assert "answer_prefix" not in p
    constrained = _gen(["decoding.answer_mode=constrained"])
    assert constrained["greedy smollm2-135m arc_easy eval"].key != gen["greedy smollm2-135m arc_easy eval"].key


def test_a_dataset_conf_answer_mode_wins_over_the_grid():
    body = DATASETS3.replace("arc_easy]", "{name: arc_easy, answer_mode: cloze}]")
    gen = _gen((), body)
    assert gen["greedy smollm2-135m arc_easy eval"].spec.params["answer_mode"] == "cloze"
    assert gen["greedy smollm2-135m strategyqa eval"].key == GENERATE_KEYS["greedy smollm2-135m strategyqa eval"]
    assert gen["greedy smollm2-135m addsub eval"].key == GENERATE_KEYS["greedy smollm2-135m addsub eval"]
    # and over a grid-wide constrained
    gen = _gen(["decoding.answer_mode=constrained"], body)
    assert gen["greedy smollm2-135m arc_easy eval"].spec.params["answer_mode"] == "cloze"
    assert gen["greedy smollm2-135m strategyqa eval"].spec.params["answer_mode"] == "constrained"


@pytest.mark.parametrize(
    "body_from,body_to,override,needles",
    [
        (None, None, "decoding.answer_mode=clozed", ["answer_mode='clozed'", "generate, constrained, cloze"]),
        (None, None, "decoding.answer_mode={mc: close}", ["answer_mode.mc='close'", "generate, constrained, cloze"]),
        (
            "arc_easy]",
            "{name: arc_easy, answer_mode: clozy}]",
            None,
            ["arc_easy", "'clozy'", "generate, constrained, cloze"],
        ),
        ("[addsub,", "[{name: addsub, answer_mode: cloze},", None, ["addsub", "'cloze'", "'numeric'", "valid choices"]),
        (
            "arc_easy]",
            "{name: arc_easy, cloze_format: arcc}]",
            None,
            ["arc_easy", "cloze_format='arcc'", "arc, hellaswag"],
        ),
    ],
)
def test_bad_cloze_config_names_key_value_and_choices(tmp_path, body_from, body_to, override, needles):
    body = DATASETS3 if body_from is None else DATASETS3.replace(body_from, body_to)
    with pytest.raises(ConfigError) as e:
        load(tmp_path, body, [override] if override else [])
    for n in needles:
        assert n in str(e.value)


# --------------------------------------------------------------------- stages (fake backend)
class FakeScorer:
    """continuation_logprobs from a table: continuation text -> per-token log p (entropy 1 each)."""

    identity = "fake"

    def __init__(self, table):
        self.table = table
        self.calls = 0

    def render(self, m):
        return prompts.plain_prompt(m)

    def token_strings(self, ids):
        return [str(i) for i in ids]

    def continuation_logprobs(self, questions):
        self.calls += 1
        return [
            [
                ContinuationScore(
                    token_logprobs=np.asarray(self.table[x], dtype=np.float64),
                    token_entropy=np.ones(len(self.table[x])),
                    token_texts=[f"t{i}" for i in range(len(self.table[x]))],
                    hidden=np.full(3, float(len(c)), np.float32),
                )
                for c, x in reqs
            ]
            for reqs in questions
        ]


MC = Sample(id="m1", question="Which is a mammal?", task="mc", gold="B", choices=("trout", "house cat", "crow"))
YN = Sample(id="y1", question="Is ice cold?", task="yesno", gold="yes")
TABLE = {" trout": [-3.0], " house cat": [-0.5, -1.5], " crow": [-4.0], " yes": [-0.2], " no": [-2.0]}
P = {"seed": 3, "max_new_tokens": 8, "answer_mode": "cloze", "cloze_format": "qa", "cloze_version": "1"}


def test_cloze_greedy_rows_and_the_stats_the_methods_read():
    rows = greedy(FakeScorer(TABLE), [MC, YN], {}, P)
    mc, yn = rows
    assert mc["raw_output"] == "The answer is B." and yn["raw_output"] == "The answer is yes."
    assert extract(mc["raw_output"], MC) == "B" and extract(yn["raw_output"], YN) == "yes"
    assert mc["token_logprobs"] == [-0.5, -1.5]  # the chosen option's tokens
    assert mc["prompt"] == "Question: Which is a mammal?\nAnswer:"
    q = np.exp(mc["option_logprobs"])
    np.testing.assert_allclose(q.sum(), 1.0)
    np.testing.assert_allclose(q, np.exp([-3.0, -2.0, -4.0]) / np.exp([-3.0, -2.0, -4.0]).sum())
    assert mc["hidden_state"] == mc["prompt_hidden_state"] is not None
    stats = greedy_stats(
        [
            dict(r, sample_id=s.id, task=s.task, gold=s.gold, choices=list(s.choices), aliases=[], error=None)
            for r, s in zip(rows, [MC, YN])
        ],
        "flexible",
    )
    assert stats["correct"].tolist() == [True, True]
    atp = compute(UQ_METHODS.get("avg_token_prob"), stats)
    ppl = compute(UQ_METHODS.get("perplexity"), stats)
    omp = compute(UQ_METHODS.get("option_max_prob"), stats)
    assert math.isnan(stats["answer_logprob"][0])  # a two-token option: no letter token
    assert atp[0] == pytest.approx(1 - np.mean(np.exp([-0.5, -1.5])))
    assert ppl[0] != pytest.approx(atp[0])  # no longer the same number
    assert omp[0] == pytest.approx(1 - q.max())


def test_acc_norm_dataset_decides_by_length_normalized_score():
    arc = Sample(id="a", question="q?", task="mc", gold="A", choices=("ab", "abcdefghij"))
    table = {" ab": [-3.0], " abcdefghij": [-2.0, -2.0]}  # acc: A (-3 > -4); acc_norm: B (-0.4 > -1.5)
    (r,) = score_questions(FakeScorer(table), [arc], "arc")
    assert (r.acc_choice, r.acc_norm_choice, r.rule, r.answer) == (0, 1, "acc_norm", "B")
    (g,) = cloze_greedy(FakeScorer(table), [arc], {}, dict(P, cloze_format="arc"))
    assert g["raw_output"] == "The answer is B." and np.argmax(g["option_logprobs"]) == 1


def test_cloze_samples_draw_per_row_whatever_the_batch():
    """Cloze samples draw from the greedy pass's stored option distribution (no model pass), each row
    from its own seeds: alone or beside another row, the same draws."""
    p = dict(P, num_samples=50, temperature=1.0)
    rows = greedy(FakeScorer(TABLE), [YN, MC], {}, dict(P, with_stats=False))
    deps = {"greedy.options": {s.id: (r["option_labels"], r["option_logprobs"]) for s, r in zip([YN, MC], rows)}}

    class NoModel:  # any model call fails the test
        def __getattr__(self, name):
            raise AssertionError(f"cloze samples called the model ({name})")

    alone = cloze_samples(NoModel(), [MC], deps, p)[0]
    batched = samples_stage(NoModel(), [YN, MC], deps, p)[1]
    assert alone["sampled_texts"] == batched["sampled_texts"]
    assert alone["n_passes"] == 0 and alone["n_new_tokens"] == 0
    labels = rows[1]["option_labels"]
    assert set(alone["sampled_texts"]) <= set(labels)
    best = labels[int(np.argmax(rows[1]["option_logprobs"]))]
    assert alone["sampled_texts"].count(best) > 25  # p = 0.67


def test_mixed_modes_in_one_batch_keep_sample_order():
    num = Sample(id="n", question="1+1?", task="numeric", gold="2")

    class Both(FakeScorer):
        def generate(self, msgs, **kw):
            from jobs.backends.base import Generation

            return [Generation(text="The answer is 2", n_prompt_tokens=3, n_new_tokens=4) for _ in msgs]

    rows = greedy(Both(TABLE), [num, MC], {}, dict(P, answer_mode={"mc": "cloze"}, with_stats=False))
    assert [r["raw_output"] for r in rows] == ["The answer is 2", "The answer is B."]


def test_a_backend_without_continuation_scoring_is_named():
    class NoScore:
        pass

    with pytest.raises(TypeError, match="NoScore has no continuation_logprobs"):
        score_questions(NoScore(), [MC], "qa")
