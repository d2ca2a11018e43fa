"""Verbal methods in a setting (issue 8, items 7 and 8), on hand-made records in a tmp store.

Item 7: verbal_1s's confidence is about the answer written beside it; the setting extracts that
answer, records it with whether it agrees with the greedy one, reports the agreement rate, and
judges the answer its ``route`` names (default own_answer).
Item 8: the NaN policy is per UQ method (verbal: drop), a UQ entry may override it, and the
unscored share is reported beside the AUROC; records say whether each confidence parsed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import metrics as M
from jobs import records
from jobs.scoring import run_score_unit, run_setting_unit, without_confidence
from orchestrator.config import ConfigError, load_grid, nan_policy_of
from orchestrator.plan import make_plan

CONF = Path(__file__).resolve().parents[2] / "conf"
METRICS = {"ties": "expected", "bootstrap": 0, "seed": 0}


def _verbal_2s_setting(key: str, name: str, nan_policy: str) -> dict:
    """A verbal_2s setting unit over score "S", greedy "G", verbal pass "V2" and LLM pass "L"."""
    return {
        "key": key,
        "setting_hash": key,
        "name": name,
        "axes": {"slm": "m", "uq": "verbal_2s", "dataset": "d", "llm": "l"},
        "score": "S",
        "slm_greedy": "G",
        "slm_stages": {"greedy": "G", "verbal_2s": "V2"},
        "method": "verbal_2s",
        "uq_params": {},
        "llm": "L",
        "policy": "flexible",
        "metrics": METRICS | {"nan_policy": nan_policy},
    }


def _row(sid: str, gold: str = "7", **kw) -> dict:
    return {
        "sample_id": sid,
        "dataset": "d",
        "role": "eval",
        "gold": gold,
        "task": "numeric",
        "choices": [],
        "aliases": [],
        "error": None,
        "prompt": "p",
        "n_prompt_tokens": 3,
        "n_new_tokens": 2,
        "latency_s": 0.1,
    } | kw


def _store(store: Path, key: str, rows: list[dict]) -> None:
    d = records.unit_dir(store, "gen", key)
    records.write_table(records.part_path(d, 0), rows)
    records.finish_unit(d, {})


def _score(tmp_path, method: str, stage_key: str) -> None:
    """Run the score unit "S" of ``method`` over the greedy pass "G" and its stage's pass."""
    run_score_unit(
        {
            "key": "S",
            "method": method,
            "uq": method,
            "params": {},
            "slm": "m",
            "dataset": "d",
            "stages": {"greedy": "G", method: stage_key},
            "fit": [],
            "policy": "flexible",
        },
        tmp_path,
    )


# (greedy output, verbal_1s output, LLM output); gold is 7 everywhere
CASES = [
    ("The answer is 7.", "The answer is 7. Confidence: 90%", "7"),  # agree, both right
    ("The answer is 7.", "The answer is 5. Confidence: 80%", "7"),  # 1s wrong, greedy right
    ("The answer is 3.", "The answer is 7. Confidence: 60%", "7"),  # 1s right, greedy wrong
    ("The answer is 3.", "So 7 apples. Confidence: 30%", "7"),  # flexible: 7, not the 30
    ("The answer is 3.", "The answer is 3. Confidence: high", "7"),  # agree (wrong); unparsed
    ("The answer is 7.", "The answer is 7. Confidence: 100%", "3"),  # agree, both right
]


def _setting_store(tmp_path: Path) -> Path:
    from jobs.stages.base import stated_confidence as _conf

    _store(
        tmp_path,
        "G",
        [
            _row(
                f"s{i}",
                raw_output=g,
                token_logprobs=[-0.1, -0.2],
                token_entropy=[0.1, 0.1],
                token_texts=["a", "b"],
                hidden_state=None,
            )
            for i, (g, _, _) in enumerate(CASES)
        ],
    )
    _store(
        tmp_path, "V1", [_row(f"s{i}", verbal_1s_raw=v, verbal_1s_conf=_conf(v)) for i, (_, v, _) in enumerate(CASES)]
    )
    _store(tmp_path, "L", [_row(f"s{i}", raw_output=o) for i, (_, _, o) in enumerate(CASES)])
    _score(tmp_path, "verbal_1s", "V1")
    return tmp_path


def _setting(store: Path, key: str, route: str | None, nan_policy: str = "drop") -> tuple[dict, list[dict]]:
    unit = {
        "key": key,
        "setting_hash": key,
        "name": f"m__verbal_1s__d__l__{key}",
        "axes": {"slm": "m", "uq": "verbal_1s", "dataset": "d", "llm": "l"},
        "score": "S",
        "slm_greedy": "G",
        "slm_stages": {"greedy": "G", "verbal_1s": "V1"},
        "method": "verbal_1s",
        "uq_params": {} if route is None else {"route": route},
        "llm": "L",
        "policy": "flexible",
        "metrics": METRICS | {"nan_policy": nan_policy},
    }
    manifest = run_setting_unit(unit, store, plot=False)
    recs = pq.read_table(records.unit_dir(store, "settings", key) / "records.parquet").to_pylist()
    return manifest, recs


def test_without_confidence_cuts_the_stated_confidence_only():
    assert without_confidence("So 7 apples. Confidence: 30%") == "So 7 apples"
    assert without_confidence("The answer is 8. Confidence level: 0.9") == "The answer is 8"
    assert without_confidence("With confidence, the answer is 8.") == "With confidence, the answer is 8."
    assert without_confidence("Confidence: 90%") == "Confidence: 90%"  # nothing before it: left as is
    assert without_confidence(None) is None


def test_verbal_1s_setting_records_its_own_answer_and_the_agreement(tmp_path):
    store = _setting_store(tmp_path)
    m, recs = _setting(store, "H", route=None)  # default route: own_answer
    assert m["answer_route"] == "own_answer"
    assert [r["verbal_1s_answer"] for r in recs] == ["7", "5", "7", "7", "3", "7"]
    assert [r["greedy_answer"] for r in recs] == ["7", "7", "3", "3", "3", "7"]
    assert [r["verbal_1s_agrees"] for r in recs] == [True, False, False, False, True, True]
    assert m["metrics"]["answer_agreement"] == pytest.approx(3 / 6)
    # own_answer: correctness is the 1s answer's ...
    assert [r["slm_correct"] for r in recs] == [True, False, True, True, False, True]
    assert [r["slm_answer"] for r in recs] == [r["verbal_1s_answer"] for r in recs]
    assert m["metrics"]["greedy_slm_acc"] == pytest.approx(3 / 6)
    # ... on the scored rows (the unparsed s4 is dropped by the verbal default policy)
    assert m["metrics"]["slm_acc"] == pytest.approx(4 / 5)


def test_greedy_answer_route_judges_the_greedy_answer(tmp_path):
    store = _setting_store(tmp_path)
    m, recs = _setting(store, "H2", route="greedy_answer")
    assert m["answer_route"] == "greedy_answer"
    assert [r["slm_correct"] for r in recs] == [True, True, False, False, False, True]
    assert [r["greedy_correct"] for r in recs] == [r["slm_correct"] for r in recs]
    assert m["metrics"]["answer_agreement"] == pytest.approx(3 / 6)  # the same records either way


def test_setting_reports_the_unscored_share_and_parse_status(tmp_path):
    store = _setting_store(tmp_path)
    m, recs = _setting(store, "H3", route=None)
    assert [r["confidence_parse"] for r in recs] == ["ok", "ok", "ok", "ok", "unparsed", "ok"]
    assert m["nan_policy"] == "drop"
    assert m["metrics"]["n_nan"] == 1 and m["metrics"]["unscored_share"] == pytest.approx(1 / 6)
    assert m["metrics"]["n_used"] == 5
    assert np.isnan(recs[4]["uncertainty"]) and recs[4]["route_rank"] == -1


# ---- item 8: failures commoner on wrong answers ----------------------------------------------


def _skewed_failures():
    """200 queries, half right. The confidence is uninformative: among parsed ones, right and
    wrong answers have the same five values in equal shares. It fails to parse on 40 of the 100
    wrong answers but only 5 of the 100 right ones."""
    slm = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    levels = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    conf = np.r_[np.tile(levels, 19), [np.nan] * 5, np.tile(levels, 12), [np.nan] * 40]
    return 1.0 - conf, slm, np.ones(200, bool)


def test_parse_failures_drive_the_auroc_under_most_uncertain_but_not_under_drop():
    u, slm, llm = _skewed_failures()
    mu = M.summarize(u, slm, llm, nan_policy="most_uncertain", n_boot=0)
    dr = M.summarize(u, slm, llm, nan_policy="drop", n_boot=0)
    # most_uncertain: 40 of the wrong and 5 of the right answers rank first -> looks informative
    assert mu["auroc"] == pytest.approx((40 * 95 + 40 * 5 * 0.5 + 60 * 95 * 0.5) / 100**2)  # 0.675
    assert dr["auroc"] == pytest.approx(0.5)
    assert mu["unscored_share"] == dr["unscored_share"] == pytest.approx(45 / 200)
    assert (mu["n_used"], dr["n_used"]) == (200, 155)


def test_a_verbal_setting_drops_parse_failures_by_default(tmp_path):
    u, slm, _ = _skewed_failures()
    conf = 1.0 - u
    ids = [f"s{i}" for i in range(len(u))]
    _store(
        tmp_path,
        "G",
        [
            _row(
                i,
                raw_output="The answer is 7." if ok else "The answer is 3.",
                token_logprobs=[-0.1],
                token_entropy=[0.1],
                token_texts=["7"],
                hidden_state=None,
            )
            for i, ok in zip(ids, slm)
        ],
    )
    _store(
        tmp_path,
        "V2",
        [
            _row(i, verbal_2s_raw="..." if np.isnan(c) else f"{c * 100:.0f}", verbal_2s_conf=c)
            for i, c in zip(ids, conf)
        ],
    )
    _store(tmp_path, "L", [_row(i, raw_output="7") for i in ids])
    _score(tmp_path, "verbal_2s", "V2")
    policy = nan_policy_of(_grid(tmp_path), "verbal_2s")  # what the plan gives a verbal_2s setting
    out = {}
    for key, pol in (("D", policy), ("MU", "most_uncertain")):
        out[key] = run_setting_unit(_verbal_2s_setting(key, key, pol), tmp_path, plot=False)
    assert out["D"]["nan_policy"] == "drop" and out["D"]["metrics"]["auroc"] == pytest.approx(0.5)
    assert out["MU"]["metrics"]["auroc"] == pytest.approx(0.675)
    assert out["D"]["metrics"]["unscored_share"] == pytest.approx(0.225)
    recs = pq.read_table(records.unit_dir(tmp_path, "settings", "D") / "records.parquet").to_pylist()
    assert sum(r["confidence_parse"] == "unparsed" for r in recs) == 45


GRID = """name: t
output_dir: {out}
slms: [smollm2-135m]
llms: [smollm2-135m]
uq: [verbal_1s, verbal_2s, perplexity, {name: v2_mu, method: verbal_2s, nan_policy: most_uncertain}]
datasets: [addsub]
"""


def _grid(tmp_path, body=GRID, overrides=()):
    p = tmp_path / "grid.yaml"
    p.write_text(body.replace("{out}", str(tmp_path / "out")))
    return load_grid(p, list(overrides), conf_dir=CONF)


def test_nan_policy_is_per_method_with_entry_override(tmp_path):
    r = _grid(tmp_path)
    assert {uq: nan_policy_of(r, uq) for uq in r.uq} == {
        "verbal_1s": "drop",
        "verbal_2s": "drop",
        "perplexity": "most_uncertain",
        "v2_mu": "most_uncertain",
    }
    # the grid-wide value is for methods that declare none; a verbal method keeps its own
    r2 = _grid(tmp_path, overrides=["metrics.nan_policy=drop"])
    assert nan_policy_of(r2, "perplexity") == "drop" and nan_policy_of(r2, "v2_mu") == "most_uncertain"
    plan = make_plan(r)
    by_uq = {u.spec.axes["uq"]: u.spec for u in plan.by_kind("setting")}
    assert {k: p.metrics.nan_policy for k, p in by_uq.items()} == {
        "verbal_1s": "drop",
        "verbal_2s": "drop",
        "perplexity": "most_uncertain",
        "v2_mu": "most_uncertain",
    }
    # the policy is part of the setting's identity: the same method with another policy is another setting
    assert by_uq["verbal_2s"].key != by_uq["v2_mu"].key
    # what the setting needs to find verbal_1s's own answer and route
    v1 = by_uq["verbal_1s"]
    assert v1.method == "verbal_1s" and v1.uq_params == {"route": "own_answer"}
    assert set(v1.slm_stages) == {"greedy", "verbal_1s"}


def test_bad_nan_policy_and_route_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"uq 'v2_mu'.*nan_policy='sometimes'.*most_uncertain, drop"):
        _grid(tmp_path, GRID.replace("nan_policy: most_uncertain", "nan_policy: sometimes"))
    bad = GRID.replace("uq: [verbal_1s,", "uq: [{name: verbal_1s, params: {route: llm_answer}},")
    with pytest.raises(ConfigError, match=r"uq 'verbal_1s'.*route='llm_answer'.*own_answer, greedy_answer"):
        _grid(tmp_path, bad)
    typo = GRID.replace("uq: [verbal_1s,", "uq: [{name: verbal_1s, params: {rout: own_answer}},")
    with pytest.raises(ConfigError, match=r"uq 'verbal_1s'.*rout.*valid: route"):
        _grid(tmp_path, typo)


# ---- the report side: per-method policies, the unscored share, fit pools judge the same answer ---


def test_paired_table_applies_each_methods_own_policy():
    from jobs.analysis.calibration import Pool
    from jobs.analysis.findings import paired_table

    u_v, slm, llm = _skewed_failures()
    u_p = np.linspace(0, 1, len(u_v))  # a method that scores every query
    pools = {
        ("m", "verbal_2s", "l"): {"d": Pool(list(range(200)), u_v, slm, llm)},
        ("m", "perplexity", "l"): {"d": Pool(list(range(200)), u_p, slm, llm)},
    }
    (drop,) = paired_table(pools, nan_policy={"verbal_2s": "drop", "perplexity": "most_uncertain"}, n_boot=20)
    (mu,) = paired_table(pools, nan_policy="most_uncertain", n_boot=20)
    keep = ~np.isnan(u_v)  # the pair is compared on the queries both methods score
    assert drop["auroc_a"] == pytest.approx(M.auroc(u_p[keep], slm[keep]))
    assert drop["auroc_b"] == pytest.approx(0.5)
    assert mu["auroc_b"] == pytest.approx(0.675)


def test_ranking_reports_the_mean_unscored_share():
    from jobs.analysis.findings import method_ranking

    table = [
        {"uq": "verbal_1s", "auroc": 0.6, "n": 10, "n_nan": 4, "unscored_share": 0.4},
        {"uq": "verbal_1s", "auroc": 0.5, "n": 10, "n_nan": 2},  # a manifest from before the field
        {"uq": "perplexity", "auroc": 0.7, "n": 10, "n_nan": 0, "unscored_share": 0.0},
    ]
    by = {r["uq"]: r for r in method_ranking(table)}
    assert by["verbal_1s"]["mean_unscored_share"] == pytest.approx(0.3)
    assert by["perplexity"]["mean_unscored_share"] == 0.0


def test_fit_pools_judge_the_answer_the_setting_judges(tmp_path):
    from jobs.analysis.findings import fit_pools
    from jobs.analysis.inputs import CalibrationUnits, SettingView

    store = _setting_store(tmp_path)
    stages = {"greedy": "G", "verbal_1s": "V1"}
    for route, expected in (
        ("own_answer", [True, False, True, True, False, True]),
        ("greedy_answer", [True, True, False, False, False, True]),
    ):
        fit = CalibrationUnits("S", "G", "L", stages, method="verbal_1s", params={"route": route})
        setting = SettingView("m", "verbal_1s", "d", "l", results=tmp_path / "H", hash="H", fit=fit)
        pool = fit_pools(store, [setting], "flexible")[("m", "verbal_1s", "l")]["d"]
        assert pool.slm_correct.tolist() == expected


def test_a_method_that_scores_nothing_is_reported_not_fatal(tmp_path):
    """Under "drop" a verbal method whose confidences never parse has no scored query: the setting
    still finishes (metrics NaN, unscored_share 1, no curve) and the analysis skips it."""
    from jobs.analysis.calibration import Pool
    from jobs.analysis.findings import paired_table, transfer_analysis
    from orchestrator.mlflow_sink import curve_metric

    ids = [f"s{i}" for i in range(6)]
    _store(
        tmp_path,
        "G",
        [
            _row(
                i,
                raw_output="The answer is 7.",
                token_logprobs=[-0.1],
                token_entropy=[0.1],
                token_texts=["7"],
                hidden_state=None,
            )
            for i in ids
        ],
    )
    _store(tmp_path, "V2", [_row(i, verbal_2s_raw="I cannot say.", verbal_2s_conf=float("nan")) for i in ids])
    _store(tmp_path, "L", [_row(i, raw_output="7") for i in ids])
    _score(tmp_path, "verbal_2s", "V2")
    m = run_setting_unit(_verbal_2s_setting("Z", "z", "drop"), tmp_path, plot=True)
    assert m["metrics"]["unscored_share"] == 1.0 and np.isnan(m["metrics"]["auroc"])
    curve = __import__("json").loads((records.unit_dir(tmp_path, "settings", "Z") / "curve.json").read_text())
    assert curve["curve"] == [] and curve_metric(curve["curve"]) == []
    # the analysis: an all-unscored pool next to a method that scores everything
    nan6, ok = np.full(6, np.nan), np.array([True, False] * 3)
    ev = {
        ("m", "verbal_2s", "l"): {d: Pool(ids, nan6, ok, np.ones(6, bool)) for d in ("a", "b")},
        ("m", "perplexity", "l"): {d: Pool(ids, np.arange(6.0), ok, np.ones(6, bool)) for d in ("a", "b")},
    }
    policies = {"verbal_2s": "drop", "perplexity": "most_uncertain"}
    assert paired_table(ev, nan_policy=policies, n_boot=10) == []
    cal = {
        "n_bins": 2,
        "frac": 1.0,
        "seed": 0,
        "binning": "equal_width",
        "targets": [0.5],
        "n_draws": 1,
        "scale": "uncertainty",
    }
    t = transfer_analysis(ev, {}, cal, policies)
    assert {r["uq"] for r in t["call_rate"]} == {"perplexity"}
    assert {s["uq"] for s in t["skipped"]} == {"verbal_2s"}


@pytest.mark.parametrize(
    "text,one_stage,expected",
    [
        ("The answer is 7. Confidence: 80%", True, 0.8),
        ("The answer is 7. I am 90% confident.", True, 0.9),
        ("The answer to this question is 1.", True, None),  # SmolLM2's 1s output: the 1 is the answer
        ("Miki's height is 0.5 feet taller.", True, None),
        ("85", False, 0.85),  # a bare two-stage reply is its confidence
    ],
)
def test_a_one_stage_output_must_state_its_confidence(text, one_stage, expected):
    from jobs.stages.base import stated_confidence as _conf

    got = _conf(text, one_stage=one_stage)
    assert np.isnan(got) if expected is None else got == pytest.approx(expected)


def test_an_auroc_over_a_few_scored_queries_is_no_ranking_evidence():
    """Seen on the default grid: verbal_2s parsed 6 of 50 confidences on ARC-Easy, AUROC 0.75 over
    those 6, and finding 1 ranked it first. A setting where the method scored under half of the
    queries stays out of its method's mean (and is counted)."""
    from jobs.analysis.findings import MIN_SCORED_FOR_RANKING, method_ranking

    table = [
        {"uq": "verbal_2s", "auroc": 0.75, "n": 50, "unscored_share": 0.88},
        {"uq": "verbal_2s", "auroc": 0.55, "n": 50, "unscored_share": 0.2},
        {"uq": "perplexity", "auroc": 0.6, "n": 50, "unscored_share": 0.0},
        {"uq": "ptrue", "auroc": 0.9, "n": 50, "unscored_share": 1 - MIN_SCORED_FOR_RANKING},  # exactly half: kept
    ]
    by = {r["uq"]: r for r in method_ranking(table)}
    assert by["verbal_2s"]["mean_auroc"] == pytest.approx(0.55) and by["verbal_2s"]["n"] == 1
    assert by["verbal_2s"]["n_mostly_unscored"] == 1 and by["perplexity"]["n_mostly_unscored"] == 0
    assert by["ptrue"]["n"] == 1 and by["ptrue"]["rank"] == 1
    assert by["perplexity"]["rank"] < by["verbal_2s"]["rank"]
