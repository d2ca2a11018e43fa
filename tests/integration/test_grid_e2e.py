"""The tiny grid end to end: real SmolLM2, real data, real local Ray, real MLflow server over HTTP."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from jobs.records import read_json, read_unit, unit_dir

pytestmark = pytest.mark.integration


def test_every_setting_finishes_with_records_and_metrics(tiny_run):
    r, plan, report = tiny_run["resolved"], tiny_run["plan"], tiny_run["report"]
    assert report.ok, (report.failed, report.blocked)
    assert len(plan.settings) == 14
    for s in plan.settings:
        d = plan.setting_dir(r.store_dir, s)
        m = read_json(d / "manifest.json")
        assert m["name"] == s.name and m["metrics"]["n"] == 6
        recs = pq.read_table(d / "records.parquet").to_pylist()
        assert [x["sample_id"] for x in recs] == [x["sample_id"] for x in recs]  # stable order
        # every query is routed, but those a "drop" method (the verbal ones) could not score
        n_used = m["metrics"]["n_used"]
        assert n_used == (6 if m["nan_policy"] == "most_uncertain" else 6 - m["metrics"]["n_nan"])
        assert sorted(x["route_rank"] for x in recs if x["route_rank"] >= 0) == list(range(n_used))
        assert m["metrics"]["unscored_share"] == pytest.approx(m["metrics"]["n_nan"] / 6)
        if s.uq == "verbal_2s":
            assert m["nan_policy"] == "drop"
            assert [x["confidence_parse"] == "unparsed" for x in recs] == [x["route_rank"] < 0 for x in recs]
        # the curve starts at SLM accuracy and ends at LLM accuracy (none when nothing was scored)
        curve = json.loads((d / "curve.json").read_text())["curve"]
        if not n_used:
            assert curve == []
            continue
        assert curve[0]["accuracy"] == pytest.approx(m["metrics"]["slm_acc"])
        assert curve[-1]["accuracy"] == pytest.approx(m["metrics"]["llm_acc"])
        assert (d / "curve.png").stat().st_size > 1000


def test_generation_records_keep_raw_outputs_and_stats(tiny_run):
    r, plan = tiny_run["resolved"], tiny_run["plan"]
    greedy = [u for u in plan.by_kind("gen") if u.stage == "greedy" and u.spec.role == "eval"]
    t = read_unit(unit_dir(r.store_dir, "gen", greedy[0].key)).to_pylist()
    assert len(t) == 6
    for row in t:
        assert isinstance(row["raw_output"], str) and row["prompt"]
        assert len(row["token_logprobs"]) == row["n_new_tokens"] == len(row["token_entropy"])
        assert all(lp <= 0 for lp in row["token_logprobs"])
        assert len(row["hidden_state"]) == 576  # SmolLM2-135M hidden size


def test_uq_methods_disagree(tiny_run):
    """Different UQ methods give different rankings of the same samples."""
    r, plan = tiny_run["resolved"], tiny_run["plan"]
    by_ds: dict = {}
    for s in plan.settings:
        recs = pq.read_table(plan.setting_dir(r.store_dir, s) / "records.parquet").to_pylist()
        by_ds.setdefault(s.dataset, {})[s.uq] = tuple(x["uncertainty"] for x in recs)
    for ds, scores in by_ds.items():
        assert len(set(scores.values())) >= 5, ds


def test_mlflow_has_one_run_per_setting_with_curve(tiny_run):
    r, plan, uri = tiny_run["resolved"], tiny_run["plan"], tiny_run["uri"]
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(r.grid.mlflow.experiment)
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    parents = [x for x in runs if x.data.tags.get("uqroute.kind") == "grid"]
    children = [x for x in runs if x.data.tags.get("uqroute.kind") == "setting"]
    assert len(parents) == 1
    assert sorted(x.data.tags["uqroute.setting_hash"] for x in children) == sorted(s.hash for s in plan.settings)
    # the unscored share is logged beside the AUROC of every setting, the NaN policy as a param
    assert all("unscored_share" in x.data.metrics for x in children)
    assert {x.data.params["metrics.nan_policy"] for x in children if x.data.tags["uq"] == "verbal_2s"} == {"drop"}
    assert {x.data.params["metrics.nan_policy"] for x in children if x.data.tags["uq"] == "perplexity"} == {
        "most_uncertain"
    }
    # a setting with a curve: perplexity scores every answer (never NaN, whichever rows a CPU kind
    # parses), on a dataset where the SLM is right on some questions and wrong on others
    child = next(x for x in children if x.data.tags["uq"] == "perplexity" and 0 < x.data.metrics["slm_acc"] < 1)
    assert child.data.metrics["n_used"] == child.data.metrics["n"]
    assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert {"slm", "uq", "dataset", "llm"} <= set(child.data.tags)
    assert "auroc" in child.data.metrics and "slm_acc" in child.data.metrics
    hist = c.get_metric_history(child.info.run_id, "routing_accuracy")
    assert sorted(m.step for m in hist) == list(range(101))
    arts = {a.path for a in c.list_artifacts(child.info.run_id)}
    assert {"curve.png", "records.parquet"} <= arts


def test_rerun_computes_nothing_and_duplicates_nothing(tiny_run):
    from orchestrator.runner import run_grid

    r, uri = tiny_run["resolved"], tiny_run["uri"]
    before = {p: p.stat().st_mtime_ns for p in r.store_dir.rglob("*.parquet")}
    plan, report, sink = run_grid(r)
    assert report.ok and len(report.done) == len(plan.units)
    assert {p: p.stat().st_mtime_ns for p in r.store_dir.rglob("*.parquet")} == before
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(r.grid.mlflow.experiment)
    children = [
        x for x in c.search_runs([exp.experiment_id], max_results=1000) if x.data.tags.get("uqroute.kind") == "setting"
    ]
    assert len(children) == len(plan.settings)


def test_changed_config_is_refused_with_the_differing_field(tiny_run):
    from orchestrator.config import load_grid
    from orchestrator.runner import ConfigMismatch, bind_output
    from tests.conftest import TINY

    out = tiny_run["out"]
    r2 = load_grid(TINY, [f"output_dir={out}", "decoding.num_samples=3"])
    with pytest.raises(ConfigMismatch) as e:
        bind_output(r2)
    assert "decoding.num_samples" in str(e.value) and "stored=2" in str(e.value)


def test_model_actors_held_logical_gpus(tiny_run):
    """The test models request half a logical GPU each (Ray started with num_gpus=2)."""
    events = [json.loads(x) for x in (tiny_run["out"] / "ledger.jsonl").read_text().splitlines()]
    gen_done = [e for e in events if e["event"] == "done" and e["kind"] == "gen"]
    assert gen_done and all(e["gpus"] for e in gen_done)
