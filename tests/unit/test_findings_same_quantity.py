"""Findings 1 and 3 say what their numbers rest on (issue 17.5 and 17.6).

17.6: with constrained answers the token log p is the chosen option's alone, so average token
probability (1 - p) and perplexity (1 / p) are monotone maps of one number: Finding 1 ranked them
as two methods and compared them with a difference of exactly 0. The scores below come from the
methods' own functions on hand-made token log-probabilities.

17.5: Finding 3's claim is "with no labels from it", but the in-domain probe's scores on a target
come from a probe trained on the target's own labelled fit rows: it is left out of the verdict and
stated beside it.
"""

from __future__ import annotations

import numpy as np
import pytest

from jobs.analysis import findings as A
from jobs.analysis.calibration import Pool
from jobs.metrics import auroc
from jobs.uq import UQ_METHODS

N = 40
RNG = np.random.default_rng(3)


def scores(name: str, token_logprobs: list[np.ndarray]) -> np.ndarray:
    stats = {"token_logprobs": token_logprobs, "answer_logprob": np.full(len(token_logprobs), np.nan)}
    if name == "mean_token_entropy":
        stats = {"token_entropy": [np.abs(lp) * 0.5 + RNG.random() for lp in token_logprobs]}
    return np.asarray(UQ_METHODS.get(name).fn(stats), dtype=np.float64)


def dataset(constrained: bool):
    """Token log-probs of N answers (one token each when constrained) and SLM correctness that
    follows the answer's probability."""
    n_tok = [1] * N if constrained else RNG.integers(2, 6, N).tolist()
    lps = [np.log(RNG.uniform(0.05, 1.0, k)) for k in n_tok]
    slm = np.array([RNG.random() < np.exp(lp.mean()) for lp in lps])
    return lps, slm


def pools_and_table(modes: dict[str, bool]):
    methods = ("avg_token_prob", "perplexity", "mean_token_entropy")
    pools: dict = {}
    table = []
    for ds, constrained in modes.items():
        lps, slm = dataset(constrained)
        for m in methods:
            u = scores(m, lps)
            pools.setdefault(("s", m, "l"), {})[ds] = Pool([f"{ds}{i}" for i in range(N)], u, slm, np.ones(N, bool))
            table.append(
                {"slm": "s", "llm": "l", "dataset": ds, "uq": m, "auroc": auroc(u, slm), "unscored_share": 0.0}
            )
    return pools, table


def test_same_order_is_one_quantity_and_nothing_else():
    p = np.random.default_rng(0).uniform(0.01, 1, 50)
    assert A.same_order(1 - p, 1 / p) and A.same_order(1 - p, -np.log(p))
    assert not A.same_order(1 - p, p)  # the reverse order
    assert not A.same_order(1 - p, np.r_[1 / p[:-2], 1 / p[-1], 1 / p[-2]])  # one pair swapped
    assert not A.same_order(np.ones(50), 1 / p)  # a constant score orders nothing
    assert not A.same_order(np.r_[np.nan, 1 - p[1:]], 1 / p)  # another query unscored
    # 1 - p rounds tiny p to one value where 1 / p still tells them apart: still one quantity
    tiny = np.r_[1e-18, 2e-18, p[2:]]
    assert A.same_order(1 - tiny, 1 / tiny)


def test_constrained_grid_ranks_avg_token_prob_and_perplexity_once():
    pools, table = pools_and_table({"arc_easy": True, "strategyqa": True})
    coincide = A.coincident_methods(pools)
    assert all(classes == [("avg_token_prob", "perplexity")] for classes in coincide.values())
    ranking = A.method_ranking(table, coincide)
    names = [r["uq"] for r in ranking]
    assert "avg_token_prob = perplexity" in names and "perplexity" not in names and len(names) == 2
    merged = next(r for r in ranking if r["members"] == ["avg_token_prob", "perplexity"])
    want = np.mean([r["auroc"] for r in table if r["uq"] == "perplexity"])
    assert merged["mean_auroc"] == pytest.approx(want)
    # no paired comparison of the pair (its difference is 0 by construction)
    paired = A.paired_table(pools, nan_policy="most_uncertain", n_boot=20, coincide=coincide)
    assert {(r["uq_a"], r["uq_b"]) for r in paired} == {
        ("avg_token_prob", "mean_token_entropy"),
        ("mean_token_entropy", "perplexity"),
    }
    same = A.coincidence_sentences(coincide, {"arc_easy": "constrained", "strategyqa": "constrained"})
    assert same == ["avg_token_prob = perplexity in constrained mode (arc_easy, strategyqa)"]
    f1 = A.findings(ranking, paired, {}, {}, same)[0]
    assert "avg_token_prob = perplexity in constrained mode (arc_easy, strategyqa)" in f1["evidence"][0]


def test_generated_answers_keep_two_quantities_and_say_where_they_coincide():
    pools, table = pools_and_table({"arc_easy": True, "gsm8k": False})
    coincide = A.coincident_methods(pools)
    assert list(coincide) == [("s", "l", "arc_easy")]  # several tokens: mean p and exp(mean NLL) differ
    names = [r["uq"] for r in A.method_ranking(table, coincide)]
    assert {"avg_token_prob", "perplexity"} <= set(names)
    same = A.coincidence_sentences(coincide, {"arc_easy": "constrained", "gsm8k": "generate"})
    assert same == ["avg_token_prob = perplexity in constrained mode (arc_easy)"]
    # the paired comparison of the pair stays where they differ, not where they coincide
    paired = A.paired_table(pools, nan_policy="most_uncertain", n_boot=20, coincide=coincide)
    pair = [r["dataset"] for r in paired if {r["uq_a"], r["uq_b"]} == {"avg_token_prob", "perplexity"}]
    assert pair == ["gsm8k"]


def _transfer(errors: dict[str, float]) -> dict:
    rows = []
    for uq, err in errors.items():
        for method, e in (("calibration", err), ("in_domain", 0.01), ("fixed", 0.3)):
            for t in (0.2, 0.5):
                rows.append(
                    {
                        "slm": "s",
                        "uq": uq,
                        "llm": "l",
                        "source": "fit",
                        "heldout": "d1",
                        "method": method,
                        "target_call_rate": t,
                        "realized_call_rate": t + e,
                        "call_rate_error": e,
                        "accuracy_error": 0.0,
                    }
                )
    return {"call_rate": rows, "curves": [], "accuracy": []}


def test_finding_3_leaves_methods_fitted_on_the_target_out_of_its_verdict():
    methods = {"perplexity": "perplexity", "probe": "probe", "ood_probe": "ood_probe", "knn": "knn_router"}
    assert A.fitted_on_target(methods) == ["probe"]
    # the probe transfers well, perplexity badly: pooled, the mean error (0.08) would say "holds"
    t = _transfer({"perplexity": 0.15, "probe": 0.01})
    pooled = A.findings([], [], {}, t)[2]
    assert pooled["verdict"] == "holds" and "0.080" in pooled["evidence"][0]
    f3 = A.findings([], [], {}, t, (), A.fitted_on_target({"perplexity": "perplexity", "probe": "probe"}))[2]
    assert f3["verdict"] == "partly" and "calibration 0.150" in f3["evidence"][0]
    beside = f3["evidence"][1]
    assert beside.startswith("Left out of these numbers and the verdict: probe") and "0.010" in beside
