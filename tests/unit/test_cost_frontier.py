"""The Pareto frontier compares UQ methods on the same queries (issue 17.2).

A method with the ``drop`` NaN policy used to enter the frontier with the curve of its scored
queries only: on the default grid's StrategyQA, verbal_2s ended the frontier at accuracy 1.0 from
one scored query of 50. Now every method's frontier curve covers all of the dataset's queries: an
unscored query is answered by the SLM (never routed) and costs what the method spent on it.
Hand-made records: 10 queries, the SLM right on the first 5, the LLM on all.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from jobs import cost as C
from jobs.analysis.cost_report import all_queries_row, frontier_group

N = 10
SLM_OK = np.arange(N) < 5
LLM_OK = np.ones(N, bool)
SLM_RATE = C.Rate("tokens", input_per_1k=1000.0, output_per_1k=0.0)  # $1 per 1 prompt token
LLM_RATE = C.Rate("tokens", input_per_1k=4000.0, output_per_1k=0.0)  # $4 per query


def usage(overhead_tokens: float) -> C.QueryUsage:
    one = np.ones(N)
    z = np.zeros(N)
    est = np.zeros(N, dtype=np.int64)
    return C.QueryUsage(
        C.Usage(one, z, z, one, est),  # SLM answer: $1
        C.Usage(one * overhead_tokens, z, z, one if overhead_tokens else z, est),  # overhead
        C.Usage(one, z, z, one, est),  # LLM: $4 when routed
    )


def setting(uq: str, u, overhead: float, policy: str) -> tuple[dict, C.SettingCost]:
    sc = C.setting_cost(
        usage(overhead), u, SLM_OK, LLM_OK, slm_rate=SLM_RATE, llm_rate=LLM_RATE, nan_policy=policy, ties="expected"
    )
    return all_queries_row({"uq": uq, **sc.metrics}, sc, u, LLM_OK), sc


def group() -> dict:
    # "full": scores every query, perfectly (the SLM's wrong answers most uncertain), $5 overhead
    full_u = np.where(SLM_OK, 0.1, 0.9)
    # "one": a verbal-style method that scored one query (an SLM mistake) and drops the rest
    one_u = np.full(N, np.nan)
    one_u[9] = 0.9
    g = {"slm": "s", "dataset": "d", "llm": "l", "rows": [], "curves": {}, "random": None}
    for uq, u, overhead, policy in (("full", full_u, 5.0, "most_uncertain"), ("one", one_u, 0.0, "drop")):
        row, sc = setting(uq, u, overhead, policy)
        g["rows"].append(row)
        g["curves"][uq] = sc.all_queries
        g["random"] = g["random"] or sc.all_queries_random
    return frontier_group(g)


def test_a_method_that_scored_one_query_does_not_end_the_frontier():
    g = group()
    f = g["frontier"]
    best = max(f, key=lambda p: p["accuracy"])
    # the most accurate point is the method that can route every SLM mistake: 1.0 at $1 + $5 + 5 x $4 / 10
    assert (best["label"], best["accuracy"], best["cost"]) == ("full", 1.0, pytest.approx(8.0))
    # "one" routes its one query: 6 of 10 right, at $1 + $4 / 10 -- not 1.0 from its 1 query
    one = [p for p in f if p["label"] == "one"]
    assert max(p["accuracy"] for p in one) == pytest.approx(0.6)
    assert one[-1]["cost"] == pytest.approx(1.4)
    shares = {r["uq"]: r["frontier_share"] for r in g["rows"]}
    assert shares["one"] == pytest.approx(len(one) / len(f)) and shares["full"] == pytest.approx(1 - shares["one"])


def test_the_old_subset_curve_was_the_defect():
    """The setting's own curve (its NaN policy's queries) still is one query: it reaches 1.0 at
    $5, cheaper than "full" -- the frontier must not be built from it."""
    _, sc = setting("one", np.r_[np.full(9, np.nan), 0.9], 0.0, "drop")
    assert sc.curve.accuracy.tolist() == [0.0, 1.0] and sc.curve.cost[-1] == pytest.approx(5.0)
    assert C.pareto_frontier({"one": sc.curve, "full": group()["curves"]["full"]})[-1]["label"] == "one"


def test_gap_costs_and_scored_share_are_on_all_queries():
    rows = {r["uq"]: r for r in group()["rows"]}
    assert rows["one"]["scored_share"] == pytest.approx(0.1) and rows["full"]["scored_share"] == 1.0
    # the gap is 0.5 -> 1.0 on all queries; "one" reaches at most 0.6: never 80% (inf), and 50%
    # of the gap (0.75) neither; its own-query numbers stay beside them
    assert math.isinf(rows["one"]["cost_to_80_gap"]) and math.isinf(rows["one"]["cost_to_50_gap"])
    assert rows["one"]["cost_to_80_gap_own_queries"] == pytest.approx(5.0)
    # "full" routes 4 of its 5 mistakes to reach 0.9 (80% of the gap): $6 + 4 x $0.4
    assert rows["full"]["cost_to_80_gap"] == pytest.approx(7.6)
    assert rows["full"]["cost_to_80_gap"] == rows["full"]["cost_to_80_gap_own_queries"]
    # the verdict reads these: "one" is not the method worth its cost
    assert group()["verdict"].startswith("full ")
