"""The cost axis (jobs/cost.py) on hand-made records; expected values worked out in the comments."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import cost as C
from jobs.backends.base import Generation
from jobs.engine import run_gen_unit
from jobs.records import read_json, read_unit, unit_dir
from jobs.scoring import run_setting_unit
from tests.helpers import HashBackend, gen_row, setting_unit, store_scores, store_unit

# an SLM at $3600 per hour costs $1 per second of wall time; an API LLM at $1 / $2 per 1k tokens
TABLE = C.PriceTable.from_dict(
    {
        "name": "t",
        "currency": "USD",
        "local": {"per_hour": 3600.0},
        "api": {"input_per_1k": 1.0, "output_per_1k": 2.0},
        "models": [
            {"pattern": "gpt-4o-mini*", "input_per_1k": 0.15, "output_per_1k": 0.6},
            {"pattern": "rented-*", "per_hour": 7.2},
        ],
    }
)
SLM = {"name": "slm", "backend": "hf", "id": "x"}
LLM = {"name": "big", "backend": "openai", "model_name": "some-api-model"}

DEFAULT_GRID = Path(__file__).resolve().parents[2] / "conf" / "grid" / "default.yaml"


# ---- price tables -------------------------------------------------------------------------------


def test_rates_by_pattern_then_backend_default():
    assert TABLE.rate_for({"name": "mini", "backend": "openai", "model_name": "gpt-4o-mini-2024"}) == C.Rate(
        "tokens", input_per_1k=0.15, output_per_1k=0.6, matched="gpt-4o-mini*"
    )
    assert TABLE.rate_for({"name": "Rented-GPU", "backend": "openai"}).per_hour == 7.2  # case-insensitive
    assert TABLE.rate_for(SLM) == C.Rate("time", per_hour=3600.0, matched="local")
    assert TABLE.rate_for(LLM) == C.Rate("tokens", input_per_1k=1.0, output_per_1k=2.0, matched="api")
    # 1000 prompt + 500 new tokens at $1 / $2 per 1k = $2; 1.5 s at $3600/h = $1.5
    assert TABLE.rate_for(LLM).usd([1000], [500], [9.0]).tolist() == [2.0]
    assert TABLE.rate_for(SLM).usd([1000], [500], [1.5]).tolist() == [1.5]


def test_the_default_table_loads_and_prices_the_repo_models():
    from orchestrator.config import load_grid

    t = C.load_prices("default")
    assert t.name == "default" and t.source.endswith("conf/prices/default.yaml") and len(t.digest) == 12
    assert (
        t.rate_for({"name": "gpt-4o-mini", "backend": "openai", "model_name": "gpt-4o-mini"}).matched == "gpt-4o-mini*"
    )
    assert (
        t.rate_for(
            {"name": "llama-3.1-70b", "backend": "openai", "model_name": "meta-llama/Llama-3.1-70B-Instruct"}
        ).matched
        == "*llama-3.1-70b*"
    )
    r = load_grid(DEFAULT_GRID)
    assert r.grid.cost == {"prices": "default"}
    assert t.rate_for(r.slms["smollm2-135m"]).kind == "time"
    assert C.PriceTable.from_dict(t.to_dict(), t.source).digest == t.digest  # what a payload carries


@pytest.mark.parametrize(
    "table, message",
    [
        (
            {"name": "x", "local": {"per_hour": 1}, "api": {"input_per_1k": 1, "output_per_1k": 1}, "extra": 1},
            r"unknown key\(s\) extra; valid: api, currency, local, models, name",
        ),
        (
            {"name": "x", "local": {"per_hour": -1}, "api": {"input_per_1k": 1, "output_per_1k": 1}},
            r"local: per_hour=-1 must be a finite price >= 0",
        ),
        (
            {
                "name": "x",
                "local": {"input_per_1k": 1, "output_per_1k": 1},
                "api": {"input_per_1k": 1, "output_per_1k": 1},
            },
            r"local: must be priced by time",
        ),
        (
            {"name": "x", "local": {"per_hour": 1}, "api": {"input_per_1k": 1}},
            r"api: needs both input_per_1k and output_per_1k",
        ),
        (
            {
                "name": "x",
                "local": {"per_hour": 1},
                "api": {"input_per_1k": 1, "output_per_1k": 1},
                "models": [{"pattern": "a", "per_hour": 1, "input_per_1k": 2}],
            },
            r"models\[0\]: give either input_per_1k and output_per_1k, or per_hour",
        ),
        (
            {"name": "x", "local": {"per_hour": 1}, "api": {"input_per_1k": 1, "output_per_1k": "cheap"}},
            r"api: output_per_1k='cheap' is not a number",
        ),
    ],
)
def test_bad_price_tables_say_what_is_wrong(table, message):
    with pytest.raises(C.PriceError, match=message):
        C.PriceTable.from_dict(table, "prices/x.yaml")


def test_unknown_table_name_lists_the_tables(tmp_path):
    with pytest.raises(
        C.PriceError,
        match=r"unknown price table \(cost.prices\) 'defualt'\. Did you mean "
        r"'default'\?.*Available: default",
    ):
        C.load_prices("defualt")
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "mine.yaml").write_text(
        "name: mine\nlocal: {per_hour: 1}\napi: {input_per_1k: 1, output_per_1k: 2}\n"
    )
    assert C.load_prices("mine", [tmp_path]).api.output_per_1k == 2.0


def test_a_grid_with_an_unknown_price_table_is_refused():
    from orchestrator.config import ConfigError, load_grid

    with pytest.raises(ConfigError, match=r"unknown price table \(cost.prices\) 'nope'.*Available: default"):
        load_grid(DEFAULT_GRID, ["cost.prices=nope"])


# ---- usage: tokens per pass add up ---------------------------------------------------------------


def _row(sid, **kw):
    return {
        "sample_id": sid,
        "prompt": "p" * 10,
        "n_prompt_tokens": 7,
        "n_new_tokens": 3,
        "latency_s": 0.5,
        "error": None,
        **kw,
    }


def test_pass_usage_counts_prompts_once_and_every_sampled_answer():
    samples = [
        _row("a", sampled_n_tokens=[2, 3, 4], n_new_tokens=9),
        _row("b", sampled_n_tokens=[1, 1, 1], n_new_tokens=3),
    ]
    u = C.pass_usage(samples, "samples")
    assert u.prompt_tokens.tolist() == [7, 7] and u.new_tokens.tolist() == [9, 3] and u.passes.tolist() == [3, 3]
    # p(True) records no prompt count: ceil(10 chars / 4) = 3 tokens, flagged as estimated
    pt = C.pass_usage([_row("a", n_prompt_tokens=None, n_new_tokens=0)], "ptrue")
    assert pt.prompt_tokens.tolist() == [3] and pt.estimated.tolist() == [1] and pt.new_tokens.tolist() == [0]
    failed = C.pass_usage([_row("a", n_prompt_tokens=None, n_new_tokens=None, latency_s=None, prompt=None)], "greedy")
    got = [
        a.tolist() for a in (failed.prompt_tokens, failed.new_tokens, failed.seconds, failed.passes, failed.estimated)
    ]
    assert got == [[0.0], [0.0], [0.0], [1.0], [1]]


class TokenBackend(HashBackend):
    """Deterministic stand-in for a model: token counts from the prompt and seed, one answer word."""

    identity = "tokens"

    def answer(self, messages, digest, max_new_tokens):
        h = int(digest[:6], 16)
        return Generation(
            text="yes" if h % 2 else "no, confidence 0.7",
            n_prompt_tokens=len(self.render(messages)) // 9,
            n_new_tokens=1 + h % max_new_tokens,
            latency_s=0.01 * (1 + h % 3),
        )

    def true_false_prob(self, msgs):
        return np.full(len(msgs), 0.6)


def _gen(store, key, stage, deps=None, **params):
    unit = {
        "key": key,
        "stage": stage,
        "model": "tok",
        "dataset": "strategyqa",
        "dataset_conf": {"name": "strategyqa", "adapter": "strategyqa"},
        "run": {"limit": 7, "fit_limit": 4, "seed": 0, "data_root": None},
        "role": "eval",
        "params": {"seed": 1, "chunk_size": 4, "max_new_tokens": 5, **params},
        "deps": deps or {},
    }
    return run_gen_unit(TokenBackend(), unit, store, batch_size=3)


def test_usage_per_query_adds_up_to_the_units_totals(tmp_path):
    """Records written by the real stages: per-query tokens summed over queries are the units' totals."""
    man = {
        "greedy": _gen(tmp_path, "G", "greedy"),
        "samples": _gen(tmp_path, "S", "samples", num_samples=4, temperature=1.0),
        "ptrue": _gen(tmp_path, "P", "ptrue", deps={"greedy": "G"}),
        "verbal_1s": _gen(tmp_path, "V1", "verbal_1s"),
        "verbal_2s": _gen(tmp_path, "V2", "verbal_2s", deps={"greedy": "G"}),
        "llm": _gen(tmp_path, "L", "llm"),
    }
    rows = {
        st: read_unit(unit_dir(tmp_path, "gen", k)).to_pylist()
        for st, k in (
            ("greedy", "G"),
            ("samples", "S"),
            ("ptrue", "P"),
            ("verbal_1s", "V1"),
            ("verbal_2s", "V2"),
            ("llm", "L"),
        )
    }
    greedy = rows.pop("greedy")
    llm = list(reversed(rows.pop("llm")))  # aligned by sample id, not by position
    q = C.query_usage(greedy, rows, llm)
    assert q.n == 7 and q.overhead_stages == ("samples", "ptrue", "verbal_1s", "verbal_2s")
    assert q.slm.new_tokens.sum() == man["greedy"]["new_tokens"]
    assert q.llm.new_tokens.sum() == man["llm"]["new_tokens"]
    assert q.uq.new_tokens.sum() == sum(man[st]["new_tokens"] for st in ("samples", "ptrue", "verbal_1s", "verbal_2s"))
    # passes beyond greedy: 4 samples + p(True) + verbal 1s + verbal 2s = 7 per query
    assert q.uq.passes.tolist() == [7.0] * 7
    # prompt tokens: every stage's recorded count, p(True)'s estimated from its prompt's characters
    recorded = sum(r["n_prompt_tokens"] for st in ("samples", "verbal_1s", "verbal_2s") for r in rows[st])
    estimated = sum(math.ceil(len(r["prompt"]) / C.CHARS_PER_TOKEN) for r in rows["ptrue"])
    assert q.uq.prompt_tokens.sum() == recorded + estimated and q.uq.estimated.sum() == 7
    assert q.uq.seconds.sum() == pytest.approx(sum(r["latency_s"] for st in rows for r in rows[st]))
    with pytest.raises(KeyError, match=r"LLM records lack 1 of 7 samples"):
        C.query_usage(greedy, rows, llm[:-1])


# ---- the curve on a cost axis ----------------------------------------------------------------------

# 4 queries; SLM right on q0, q1; LLM right on q1..q3; uncertainty routes q3, q2, q1, q0 in that order.
# SLM answer $0.1 each, UQ overhead $0.2 each, LLM $0.2 each when routed.
U = np.array([0.1, 0.2, 0.3, 0.4])
SLM_OK = np.array([True, True, False, False])
LLM_OK = np.array([False, True, True, True])
COSTS = C.QueryCosts(np.full(4, 0.1), np.full(4, 0.2), np.full(4, 0.2))


def test_cost_curve_adds_overhead_for_every_query_and_the_llm_for_routed_ones():
    cv = C.cost_curve(U, SLM_OK, LLM_OK, COSTS)
    # cost(k) = (0.4 + 0.8 + 0.2 k) / 4 = 0.3 + 0.05 k; accuracy 0.5, 0.75, 1, 1, 0.75
    np.testing.assert_allclose(cv.cost, [0.3, 0.35, 0.4, 0.45, 0.5])
    np.testing.assert_allclose(cv.accuracy, [0.5, 0.75, 1.0, 1.0, 0.75])
    # gap 0.5 -> 0.75: 50% (0.625) and 80% (0.7) are both reached at k = 1
    assert C.cost_to_gap(cv, 0.5) == pytest.approx(0.35) and C.cost_to_gap(cv, 0.8) == pytest.approx(0.35)
    # random routing, no overhead: cost 0.1 + r * 0.2; 0.625 needs r = 0.5, 0.7 needs r = 0.8 -> k = 4
    rnd = C.random_cost_curve(SLM_OK, LLM_OK, COSTS)
    assert C.cost_to_gap(rnd, 0.5) == pytest.approx(0.2) and C.cost_to_gap(rnd, 0.8) == pytest.approx(0.3)
    flat = C.cost_curve(U, SLM_OK, SLM_OK, COSTS)
    assert math.isnan(C.cost_to_gap(flat, 0.5))  # the LLM is no better: no gap to buy


def test_expected_cost_inside_a_tie_group():
    # all four tied: offloading k of them in random order costs k/4 of the LLM total in expectation
    llm = C.QueryCosts(np.zeros(4), np.zeros(4), np.array([0.4, 0.0, 0.0, 0.0]))
    cv = C.cost_curve(np.zeros(4), SLM_OK, LLM_OK, llm, ties="expected")
    np.testing.assert_allclose(cv.cost, [0.0, 0.025, 0.05, 0.075, 0.1])
    stable = C.cost_curve(np.zeros(4), SLM_OK, LLM_OK, llm, ties="stable")  # q0 first
    np.testing.assert_allclose(stable.cost, [0.0, 0.1, 0.1, 0.1, 0.1])


def test_pareto_frontier_keeps_only_undominated_points():
    a = C.CostCurve(np.array([0, 0.5, 1]), np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.7, 0.8]))
    b = C.CostCurve(np.array([0, 0.5, 1]), np.array([0.5, 2.0, 4.0]), np.array([0.4, 0.75, 0.8]))
    f = C.pareto_frontier({"a": a, "b": b})
    # b@0.5 (0.4) is cheapest; a@1 (0.5); b@2 (0.75) beats a@2 (0.7); a@3 (0.8); b@4 (0.8) adds nothing
    assert [(p["label"], p["cost"], p["accuracy"]) for p in f] == [
        ("b", 0.5, 0.4),
        ("a", 1.0, 0.5),
        ("b", 2.0, 0.75),
        ("a", 3.0, 0.8),
    ]


def test_mlflow_cost_steps_are_micro_dollars():
    pts = [{"ratio": 0.0, "cost": 1e-4, "accuracy": 0.5}, {"ratio": 1.0, "cost": 2e-4, "accuracy": 0.7}]
    steps = C.cost_curve_metric(pts, n_steps=3)
    assert steps == [(100, 0.5), (150, pytest.approx(0.6)), (200, 0.7)]
    same = C.cost_curve_metric(
        [{"ratio": 0.0, "cost": 0.0, "accuracy": 0.5}, {"ratio": 1.0, "cost": 1e-7, "accuracy": 0.7}], n_steps=3
    )
    assert same == [(0, 0.7)]  # three rates round to one step: the best accuracy is kept


def test_setting_cost_metrics_and_records():
    q = C.QueryUsage(
        slm=C.Usage(np.full(4, 10.0), np.full(4, 2.0), np.full(4, 0.1), np.ones(4), np.zeros(4, dtype=int)),
        uq=C.Usage(np.full(4, 10.0), np.full(4, 8.0), np.full(4, 0.2), np.full(4, 5.0), np.zeros(4, dtype=int)),
        llm=C.Usage(np.full(4, 100.0), np.full(4, 50.0), np.full(4, 3.0), np.ones(4), np.zeros(4, dtype=int)),
        overhead_stages=("samples",),
    )
    slm_rate, llm_rate = TABLE.rate_for(SLM), TABLE.rate_for(LLM)
    sc = C.setting_cost(
        q,
        U,
        SLM_OK,
        LLM_OK,
        slm_rate=slm_rate,
        llm_rate=llm_rate,
        nan_policy="most_uncertain",
        ties="expected",
        sample_ids=list("abcd"),
    )
    m = sc.metrics
    # SLM $1/s: answer 0.1 s -> $0.1, overhead 0.2 s -> $0.2; LLM (100 + 2 x 50) / 1000 = $0.2
    assert m["cost_slm"] == pytest.approx(0.1) and m["cost_uq_overhead"] == pytest.approx(0.2)
    assert m["cost_llm_all"] == pytest.approx(0.2) and m["cost_slm_only"] == pytest.approx(0.3)
    assert m["cost_all_routed"] == pytest.approx(0.5) and m["cost_to_80_gap"] == pytest.approx(0.35)
    assert m["cost_to_80_gap_random"] == pytest.approx(0.3) and m["cost_ratio_80_vs_llm"] == pytest.approx(1.75)
    assert m["uq_passes"] == 5.0 and m["tokens_llm_new"] == 50.0 and m["seconds_uq"] == pytest.approx(0.2)
    assert [r["sample_id"] for r in sc.records] == list("abcd")
    assert sc.records[0]["uq_usd"] == pytest.approx(0.2) and sc.records[0]["uq_passes"] == 5.0
    # NaN uncertainty dropped: costs are means over the kept queries
    dropped = C.setting_cost(
        q,
        np.array([np.nan, 0.2, 0.3, 0.4]),
        SLM_OK,
        LLM_OK,
        slm_rate=slm_rate,
        llm_rate=llm_rate,
        nan_policy="drop",
        ties="expected",
    )
    assert len(dropped.curve.cost) == 4 and dropped.metrics["cost_slm_only"] == pytest.approx(0.3)


def test_worth_verdict_names_the_cheapest_and_those_beaten_by_random():
    rows = [
        {
            "uq": "jaccard",
            "cost_to_80_gap": 0.35,
            "cost_to_80_gap_random": 0.3,
            "cost_uq_overhead": 0.2,
            "cost_llm_all": 0.2,
        },
        {
            "uq": "perplexity",
            "cost_to_80_gap": 0.15,
            "cost_to_80_gap_random": 0.3,
            "cost_uq_overhead": 0.0,
            "cost_llm_all": 0.2,
        },
    ]
    s = C.worth_verdict(rows)
    assert s.startswith("perplexity is worth its cost most: it reaches 80% of the SLM-to-LLM gap at $150 per 1k")
    assert "(75% of sending every query to the LLM, $200" in s
    assert "jaccard cost more than random routing to get there (jaccard because of its extra passes)" in s
    assert "LLM alone is cheaper" not in s
    pricey = C.worth_verdict([dict(rows[1], cost_llm_all=0.01)])
    assert "(15 times the cost of sending every query to the LLM, $10" in pricey
    assert "Sending every query to the LLM alone is cheaper still ($10) with these prices" in pricey
    nan = [{"uq": "x", "cost_to_80_gap": float("nan"), "cost_llm_all": 0.2}]
    assert C.worth_verdict(nan).startswith("No UQ method is worth its cost here: the LLM is not more accurate")


# ---- wired into the setting unit -------------------------------------------------------------------


def test_setting_unit_writes_cost_metrics_curve_and_records(tmp_path):
    def row(i, out, **kw):
        return gen_row(f"s{i}", raw_output=out, n_prompt_tokens=100, n_new_tokens=50, **kw)

    store_unit(tmp_path, "G", [row(i, o) for i, o in enumerate(["yes", "yes", "no", "no"])])
    store_unit(
        tmp_path,
        "SM",
        [row(i, None, latency_s=0.2, sampled_texts=["a"] * 5, sampled_n_tokens=[1] * 5) for i in range(4)],
    )
    store_unit(tmp_path, "L", [row(i, o) for i, o in enumerate(["no", "yes", "yes", "yes"])])
    store_scores(tmp_path, [f"s{i}" for i in range(len(U))], U)
    unit = setting_unit("jaccard", cost=C.cost_payload(TABLE, SLM, LLM, {"greedy": "G", "samples": "SM"}))
    m = run_setting_unit(unit, tmp_path, plot=False)["metrics"]
    # the numbers of test_setting_cost_metrics_and_records: SLM $0.1, overhead $0.2, LLM $0.2 per query
    assert m["cost_slm_only"] == pytest.approx(0.3) and m["cost_to_80_gap"] == pytest.approx(0.35)
    assert m["uq_passes"] == 5.0 and m["tokens_uq_new"] == 5.0
    sdir = unit_dir(tmp_path, "settings", "H")
    block = read_json(sdir / "curve.json")["cost"]
    assert block["prices"] == "t" and block["prices_digest"] == TABLE.digest and block["overhead_stages"] == ["samples"]
    assert [p["cost"] for p in block["curve"]] == pytest.approx([0.3, 0.35, 0.4, 0.45, 0.5])
    recs = pq.read_table(sdir / "cost.parquet").to_pylist()
    assert sum(r["uq_new_tokens"] for r in recs) == 20 and sum(r["llm_usd"] for r in recs) == pytest.approx(0.8)

    from orchestrator.mlflow_sink import cost_metrics

    logged = cost_metrics(read_json(sdir / "curve.json"))  # (key, value, step)
    assert {k for k, _, _ in logged} == {"cost_curve_accuracy"} and logged[0][2] == 300_000  # $0.3 = 300,000 µ$


def test_plan_gives_every_setting_its_prices_and_its_methods_passes():
    from orchestrator.config import load_grid
    from orchestrator.plan import make_plan

    r = load_grid(DEFAULT_GRID, ["uq=[jaccard, verbal_2s, perplexity]"])
    plan = make_plan(r)
    by_uq = {u.spec.axes["uq"]: u.spec for u in plan.by_kind("setting")}
    assert set(by_uq["jaccard"].cost["uq_stages"]) == {"greedy", "samples"}
    assert set(by_uq["verbal_2s"].cost["uq_stages"]) == {"greedy", "verbal_2s"}
    assert set(by_uq["perplexity"].cost["uq_stages"]) == {"greedy"}
    assert by_uq["jaccard"].cost["slm_rate"]["kind"] == "time"
    assert by_uq["jaccard"].cost["prices"]["name"] == "default"
