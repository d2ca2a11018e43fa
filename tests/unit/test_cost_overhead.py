"""Every UQ method is charged the passes it caused, in every answer mode (issue 17.3).

(a) Constrained Jaccard re-ran the option forward pass and the cost axis charged m passes and m new
tokens for it; its samples now draw from the greedy pass's stored option distribution, with no
model work, and are charged nothing. (b) verbal_1s under ``route: own_answer`` was charged the
greedy pass and its own pass although the routed answer is its own: it is now charged its own
pass, as the SLM answer, and no overhead.

The records are hand-made, except where the mode's stage code makes them (constrained greedy and
samples run on a fake backend that records every model call). A new answer mode (cloze) adds its
row makers to ``MODES`` and its column to ``OVERHEAD_PASSES``.
"""

from __future__ import annotations

import numpy as np
import pytest

from jobs import cost as C
from jobs import prompts
from jobs.stages import stage, stat_stages
from jobs.types import Sample
from jobs.uq import UQ_METHODS

M = 5  # sampled answers per query
SAMPLES = [
    Sample(id="m1", question="Which is a mammal?", task="mc", gold="B", choices=("trout", "cat", "crow")),
    Sample(id="y1", question="Is ice cold?", task="yesno", gold="yes"),
]
IDS = [s.id for s in SAMPLES]


class OptionsOnly:
    """choice_logprobs from a table; counts every model call (``calls``)."""

    identity = "fake"

    def __init__(self):
        self.calls: list[str] = []

    def render(self, m):
        return prompts.plain_prompt(m)

    def choice_logprobs(self, msgs, options, prefix=""):
        self.calls.append("choice_logprobs")
        table = {"mammal": [np.log(0.1), np.log(0.6), np.log(0.3)], "ice": [np.log(0.7), np.log(0.3)]}
        out = np.full((len(msgs), 3), -np.inf)
        for i, m in enumerate(msgs):
            row = next(v for q, v in table.items() if q in m[0]["content"])
            out[i, : len(row)] = row
        return out, None


def hand(stage: str, prompt: int, new: int, seconds: float, **extra) -> list[dict]:
    return [
        {"sample_id": i, "n_prompt_tokens": prompt, "n_new_tokens": new, "latency_s": seconds, **extra} for i in IDS
    ]


# the passes every stage writes when it runs a model: hand-made token counts, one row per query
PASSES = {
    "ptrue": lambda: hand("ptrue", 80, 0, 0.2),
    "verbal_1s": lambda: hand("verbal_1s", 60, 30, 1.5),
    "verbal_2s": lambda: hand("verbal_2s", 90, 6, 0.4),
    "llm": lambda: hand("llm", 50, 20, 3.0),
}


def generate_rows() -> dict[str, list[dict]]:
    return {
        "greedy": hand("greedy", 50, 20, 1.0),
        "samples": hand("samples", 50, 10 * M, 5.0, sampled_n_tokens=[10] * M, sampled_texts=["x"] * M),
        **{k: f() for k, f in PASSES.items()},
    }


def constrained_rows(backend: OptionsOnly) -> dict[str, list[dict]]:
    """greedy and samples as the constrained stages write them; the samples stage reads the greedy
    rows' option distributions as ``run_gen_unit`` hands them (``deps['greedy.options']``)."""
    p = {"seed": 7, "max_new_tokens": 8, "answer_mode": "constrained", "answer_prefix": prompts.ANSWER_PREFIX}
    greedy = stage("greedy").run(backend, SAMPLES, {}, p)
    deps = {"greedy.options": {s.id: (r["option_labels"], r["option_logprobs"]) for s, r in zip(SAMPLES, greedy)}}
    backend.calls.clear()
    samples = stage("samples").run(backend, SAMPLES, deps, dict(p, num_samples=M, temperature=1.0))
    assert backend.calls == [], "constrained samples ran the model"
    tag = [{"sample_id": i} for i in IDS]
    return {
        "greedy": [t | r for t, r in zip(tag, greedy)],
        "samples": [t | r for t, r in zip(tag, samples)],
        **{k: f() for k, f in PASSES.items()},
    }


MODES = {"generate": lambda: generate_rows(), "constrained": lambda: constrained_rows(OptionsOnly())}

# model passes per query beyond the routed answer, per answer mode (methods not listed: 0, they
# read the greedy pass only): Jaccard's m sampled answers generate, and are drawn from the greedy
# pass's distribution when constrained; p(True) and verbal 2s run one pass each in every mode;
# verbal 1s is its own routed answer (route: own_answer, its default)
OVERHEAD_PASSES = {
    "generate": {"jaccard": M, "jaccard_lmpolygraph": M, "ptrue": 1, "verbal_2s": 1},
    "constrained": {"jaccard": 0, "jaccard_lmpolygraph": 0, "ptrue": 1, "verbal_2s": 1},
}


def method_stages(method) -> set[str]:
    """The stages a setting of ``method`` reads, as the plan finds them (``orchestrator.plan``)."""
    provider = stat_stages()
    return {provider[x] for x in method.requires if x in provider} | {"greedy"}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name", sorted(UQ_METHODS))
def test_each_method_is_charged_the_passes_it_caused(name, mode):
    method = UQ_METHODS.get(name)
    rows = MODES[mode]()
    stages = {st: rows[st] for st in method_stages(method) if st != "greedy"}
    usage = C.query_usage(rows["greedy"], stages, rows["llm"], C.answer_stage(name, {}))
    want = OVERHEAD_PASSES[mode].get(name, 0)
    assert usage.uq.passes.tolist() == [want] * len(IDS), (name, mode)
    answered_by = C.answer_stage(name, {}) or "greedy"
    assert answered_by == ("verbal_1s" if name == "verbal_1s" else "greedy")
    # the routed answer is one pass: the stage that wrote it, with its tokens
    assert usage.slm.passes.tolist() == [1] * len(IDS)
    answer = C.pass_usage(rows[answered_by], answered_by)
    assert usage.slm.prompt_tokens.tolist() == answer.prompt_tokens.tolist()
    assert usage.slm.new_tokens.tolist() == answer.new_tokens.tolist()
    # the overhead's tokens and seconds are the charged stages' own, nothing else
    charged = list(usage.overhead_stages)
    assert answered_by not in charged
    assert usage.uq.new_tokens.sum() == sum(C.pass_usage(rows[st], st).new_tokens.sum() for st in charged)
    if want == 0:
        assert usage.uq.prompt_tokens.sum() == usage.uq.new_tokens.sum() == usage.uq.seconds.sum() == 0


def test_constrained_jaccard_costs_nothing_beyond_the_answer():
    """The issue's StrategyQA case: overhead was 5 passes and 5 new tokens for what is one pass."""
    rows = constrained_rows(OptionsOnly())
    usage = C.query_usage(rows["greedy"], {"samples": rows["samples"]}, rows["llm"])
    costs = C.price(usage, C.Rate("tokens", 0.1, 0.4), C.Rate("tokens", 1.0, 4.0))
    assert costs.uq.tolist() == [0.0, 0.0] and (costs.slm > 0).all()
    # and the draws are seeded per row: one sample's draws do not depend on its batch-mates
    p = {"seed": 7, "answer_prefix": prompts.ANSWER_PREFIX, "num_samples": 50, "temperature": 1.0}
    deps = {"greedy.options": {r["sample_id"]: (r["option_labels"], r["option_logprobs"]) for r in rows["greedy"]}}
    from jobs.stages.constrained import constrained_samples

    both = constrained_samples(OptionsOnly(), SAMPLES, deps, p)
    alone = constrained_samples(OptionsOnly(), SAMPLES[1:], deps, p)
    assert both[1]["sampled_texts"] == alone[0]["sampled_texts"]
    assert set(both[0]["sampled_texts"]) <= {"A", "B", "C"}


def test_verbal_1s_routes_either_answer_and_is_charged_for_that():
    rows = generate_rows()
    own = C.query_usage(rows["greedy"], {"verbal_1s": rows["verbal_1s"]}, rows["llm"], C.answer_stage("verbal_1s", {}))
    greedy = C.query_usage(
        rows["greedy"],
        {"verbal_1s": rows["verbal_1s"]},
        rows["llm"],
        C.answer_stage("verbal_1s", {"route": "greedy_answer"}),
    )
    # own answer: its pass is the answer (60 in, 30 out) and there is no overhead
    assert own.slm.prompt_tokens.tolist() == [60, 60] and own.uq.passes.tolist() == [0, 0]
    # greedy answer: the greedy pass answers (50 in) and verbal 1s is one extra pass
    assert greedy.slm.prompt_tokens.tolist() == [50, 50] and greedy.uq.passes.tolist() == [1, 1]
    assert greedy.uq.new_tokens.tolist() == [30, 30]


def test_constrained_samples_units_read_the_greedy_unit_and_generate_keys_stay():
    """The default grid answers StrategyQA and ARC-Easy constrained, AddSub generated: only the
    constrained samples units depend on their greedy unit (generate-mode keys are unchanged:
    ``tests/fixtures/plan_keys.json``)."""
    from pathlib import Path

    from orchestrator.config import load_grid
    from orchestrator.plan import make_plan

    root = Path(__file__).resolve().parents[2]
    plan = make_plan(load_grid(root / "conf/grid/default.yaml", ["output_dir=/tmp/uqroute-plan-keys"]))
    seen = set()
    for u in plan.units.values():
        if u.kind != "gen" or u.spec.stage != "samples":
            continue
        constrained = "answer_mode" in u.spec.params
        seen.add(constrained)
        if constrained:
            greedy = plan.units[u.spec.deps["greedy"]].spec
            assert (greedy.stage, greedy.dataset, greedy.role) == ("greedy", u.spec.dataset, u.spec.role)
        else:
            assert u.spec.deps == {}
    assert seen == {True, False}
