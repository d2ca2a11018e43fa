"""Issue 8, item 10: in the leave-one-dataset-out transfer, the calibration set for held-out T is
scored only by models that never saw T. For the OOD probe (trained on other datasets) that means
each other dataset's calibration rows scored by a probe trained without T (``Plan.leave_out``);
the ordinary OOD scores of those rows, whose probe saw T's fit rows, must not be used."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from jobs.analysis import calibration as C
from jobs.analysis import findings as A
from jobs.analysis.inputs import LeaveOutScore
from jobs.records import finish_unit, unit_dir, write_table

REPO_CONF = Path(__file__).resolve().parents[2] / "conf"
RNG = np.random.default_rng(3)
N = 200


def _pool(u, slm, prefix):
    u = np.asarray(u, float)
    return C.Pool(
        sample_id=[f"{prefix}{i}" for i in range(len(u))],
        uncertainty=u,
        slm_correct=np.asarray(slm, bool),
        llm_correct=np.ones(len(u), bool),
    )


def _pools(shift: float) -> dict:
    """Pools of datasets a, b, t: uncertainty aligned with SLM errors, offset by ``shift``."""
    out = {}
    for d in ("a", "b", "t"):
        slm = RNG.random(N) < 0.6
        out[d] = _pool(np.where(slm, 0.3, 0.7) + RNG.normal(0, 0.2, N) + shift, slm, d)
    return out


EVAL = _pools(0.0)
LEAKY = _pools(0.0)  # fit-role scores by models that saw every other dataset, t included
CLEAN = {d: replace(p, uncertainty=p.uncertainty + 0.5) for d, p in LEAKY.items() if d != "t"}  # trained without t
KW = {"params": C.CalibrationParams(targets=[0.1, 0.3, 0.5], n_bins=10, frac=0.5, seed=7), "methods": ["calibration"]}


def _thresholds(rows):
    return [(r["target_call_rate"], r["threshold"], r["realized_call_rate"]) for r in rows]


def test_transfer_table_draws_a_heldouts_calibration_set_from_its_own_pools():
    got = C.transfer_table(EVAL, calibration_pools=LEAKY, heldouts=["t"], heldout_calibration_pools={"t": CLEAN}, **KW)
    clean = C.transfer_table(EVAL, calibration_pools=CLEAN | {"t": LEAKY["t"]}, heldouts=["t"], **KW)
    leaky = C.transfer_table(EVAL, calibration_pools=LEAKY, heldouts=["t"], **KW)
    assert _thresholds(got) == _thresholds(clean)
    assert _thresholds(got) != _thresholds(leaky)
    # other held-out datasets keep the default pools
    assert _thresholds(
        C.transfer_table(EVAL, calibration_pools=LEAKY, heldouts=["a"], heldout_calibration_pools={"t": CLEAN}, **KW)
    ) == _thresholds(C.transfer_table(EVAL, calibration_pools=LEAKY, heldouts=["a"], **KW))
    with pytest.raises(ValueError, match="needs another dataset to calibrate on"):
        C.transfer_table(EVAL, calibration_pools=LEAKY, heldouts=["t"], heldout_calibration_pools={"t": {}}, **KW)


CONF = {
    "n_bins": 10,
    "frac": 0.5,
    "seed": 7,
    "binning": "equal_width",
    "scale": "uncertainty",
    "n_draws": 1,
    "targets": [0.1, 0.3, 0.5],
    "fixed_threshold": {},
}


def test_transfer_analysis_uses_only_leave_out_scores_for_methods_trained_on_other_datasets():
    key = ("s", "ood_probe", "l")
    plain = ("s", "perplexity", "l")
    ev, fp = {key: EVAL, plain: EVAL}, {key: LEAKY, plain: LEAKY}
    lo = {key: {"t": CLEAN}}  # no leave-out pools for held-out a or b: they must be skipped, not leak
    t = A.transfer_analysis(ev, fp, CONF, "most_uncertain", leave_out=lo, needs_leave_out={"ood_probe"})
    cal = [r for r in t["call_rate"] if r["method"] == "calibration"]
    ood_t = [r for r in cal if r["uq"] == "ood_probe" and r["heldout"] == "t"]
    want = C.transfer_table(EVAL, calibration_pools=CLEAN | {"t": LEAKY["t"]}, heldouts=["t"], **KW)
    assert _thresholds(ood_t) == _thresholds(want) and all(r["leave_out"] for r in ood_t)
    assert {r["heldout"] for r in cal if r["uq"] == "ood_probe"} == {"t"}
    skipped = {(s["uq"], s["heldout"]): s["reason"] for s in t["skipped"]}
    assert set(skipped) == {("ood_probe", "a"), ("ood_probe", "b")}
    assert "scored by a model that did not see a" in skipped[("ood_probe", "a")]
    # a method that does not train on other datasets keeps its pools, every held-out is evaluated
    assert {r["heldout"] for r in cal if r["uq"] == "perplexity"} == {"a", "b", "t"}
    assert not any(r["leave_out"] for r in cal if r["uq"] == "perplexity")
    # curves and accuracy targets follow the same pools
    assert {c["heldout"] for c in t["curves"] if c["uq"] == "ood_probe"} == {"t"}
    assert {r["heldout"] for r in t["accuracy"] if r["uq"] == "ood_probe"} <= {"t"}
    curve_t = next(c for c in t["curves"] if c["uq"] == "ood_probe")
    assert curve_t["n_calibration"] == len(
        C.build_calibration_set(CLEAN, params=C.CalibrationParams(n_bins=10, frac=0.5, seed=7))
    )


def test_leave_out_pools_replace_scores_by_sample_id(tmp_path):
    store = tmp_path / "store"
    rows = [{"sample_id": f"a{i}", "uncertainty": float(100 + i)} for i in reversed(range(N)) if i != 5]
    write_table(unit_dir(store, "score", "LO") / "part-00000.parquet", rows)
    finish_unit(unit_dir(store, "score", "LO"), {"key": "LO"})
    sources = (
        LeaveOutScore("s", "ood_probe", "a", "t", score_key="LO", role="fit"),
        LeaveOutScore("s", "ood_probe", "b", "t", score_key="MISSING", role="fit"),
    )
    fp = {("s", "ood_probe", "l"): LEAKY}
    lo = A.leave_out_pools(store, sources, {}, fp)
    pool = lo[("s", "ood_probe", "l")]["t"]["a"]
    assert set(lo[("s", "ood_probe", "l")]["t"]) == {"a"}  # an unfinished unit gives no pool
    assert pool.sample_id == [f"a{i}" for i in range(N) if i != 5]
    assert pool.uncertainty.tolist() == [float(100 + i) for i in range(N) if i != 5]
    keep = [i for i in range(N) if i != 5]
    assert pool.slm_correct.tolist() == LEAKY["a"].slm_correct[keep].tolist()


def test_calibrate_build_for_an_excluded_dataset_takes_the_ood_probes_leave_out_scores(tmp_path):
    """``uqroute calibrate build --exclude T`` (and ``calibrate apply <grid> T``): the OOD probe's set
    for T is drawn from rows scored by probes that never saw T. A store is written by hand."""
    import json

    from jobs.datasets.roles import load_role
    from orchestrator.calibrate import build
    from orchestrator.config import ConfigError, load_grid
    from orchestrator.plan import make_plan
    from orchestrator.runner import bind_output

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "name: t\noutput_dir: " + str(tmp_path / "out") + "\nslms: [smollm2-135m]\nllms: [smollm2-135m]\n"
        "uq: [ood_probe]\ndatasets: [addsub, strategyqa, arc_easy]\n"
    )
    r = load_grid(
        grid,
        [
            "calibration.enabled=true",
            "calibration.pool=fit",
            "calibration.n_bins=1",
            "calibration.frac=1",
            "dataset.fit_limit=6",
            "dataset.limit=4",
        ],
        conf_dir=REPO_CONF,
    )
    bind_output(r)
    plan = make_plan(r)
    store = r.store_dir

    def gen(key, samples):
        rows = [
            {
                "sample_id": s.id,
                "raw_output": f"The answer is {s.gold}.",
                "gold": s.gold,
                "task": s.task,
                "choices": list(s.choices),
                "aliases": list(s.aliases),
                "error": None,
            }
            for s in samples
        ]
        write_table(unit_dir(store, "gen", key) / "part-00000.parquet", rows)
        finish_unit(unit_dir(store, "gen", key), {"key": key})

    def score(key, samples, value):
        write_table(
            unit_dir(store, "score", key) / "part-00000.parquet",
            [{"sample_id": s.id, "uncertainty": value} for s in samples],
        )
        finish_unit(unit_dir(store, "score", key), {"key": key})

    fit = {d: load_role(r.datasets[d], r.grid.dataset, "fit")[0] for d in r.datasets}
    for (_slm, _uq, d), fs in plan.fit_scores.items():
        gen(fs.slm_greedy, fit[d])
        score(fs.score, fit[d], 0.25)  # the ordinary OOD scores: their probes saw every other dataset
    for (_llm, d), key in plan.fit_llm.items():
        gen(key, fit[d])
    for (_slm, _uq, d, t), lo in plan.leave_out.items():
        score(lo.score, fit[d], 0.75 if t == "arc_easy" else 0.5)
    res = build(r.output_dir, exclude=["arc_easy"])
    assert res["record"]["scored_without"] == "arc_easy"
    rows = [json.loads(x) for x in (res["folder"] / "calibration.jsonl").read_text().splitlines()]
    assert {x["source_dataset"] for x in rows} == {"addsub", "strategyqa"}
    assert {x["uncertainty"] for x in rows} == {0.75}  # only scores of probes trained without arc_easy
    plain = build(r.output_dir, name="all")  # nothing excluded: the ordinary scores
    assert plain["record"]["scored_without"] is None
    assert {json.loads(x)["uncertainty"] for x in (plain["folder"] / "calibration.jsonl").read_text().splitlines()} == {
        0.25
    }
    with pytest.raises(ConfigError, match="exclude one"):
        build(r.output_dir, exclude=["arc_easy", "addsub"])
