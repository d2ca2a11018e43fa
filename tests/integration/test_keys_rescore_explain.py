"""Issue 8 on the tiny grid run (real SmolLM2, real data, Ray, MLflow): a prompt bump reruns exactly
what depends on it and replaces those settings' MLflow runs; ``uqroute rescore`` recomputes from
the stored generations without loading a model; ``uqroute explain`` prints one query's trail.

The tests that change a folder work on a copy of the tiny run's output, with its own MLflow
experiment (a copy has the grid hash of the original)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

import jobs.judge
from jobs import answers, prompts
from jobs.records import read_json, read_unit, unit_dir
from orchestrator.config import ConfigError
from orchestrator.lock import LOCK_FILE
from orchestrator.plan import make_plan
from orchestrator.runner import RESOLVED_FILE, load_output

pytestmark = pytest.mark.integration


def _copy(tiny_run, tmp_path, name: str):
    dst = tmp_path / name
    shutil.copytree(tiny_run["out"], dst, ignore=shutil.ignore_patterns(LOCK_FILE))
    r = load_output(dst).updated(mlflow={"experiment": f"{name}-{tmp_path.name}"})
    (dst / RESOLVED_FILE).write_text(r.to_yaml())
    return dst


def _setting_runs(uri: str, experiment: str) -> dict[str, list[tuple[str, str]]]:
    """setting hash -> [(run id, unit key)] of the experiment's active setting runs."""
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    out: dict = {}
    for run in c.search_runs([exp.experiment_id], "tags.`uqroute.kind` = 'setting'", max_results=1000):
        out.setdefault(run.data.tags["uqroute.setting_hash"], []).append(
            (run.info.run_id, run.data.tags.get("uqroute.unit_key"))
        )
    return out


def _metrics(r, plan) -> dict[str, dict]:
    return {s.hash: read_json(plan.setting_dir(r.store_dir, s) / "manifest.json")["metrics"] for s in plan.settings}


def _records(r, plan, s) -> list[dict]:
    return pq.read_table(plan.setting_dir(r.store_dir, s) / "records.parquet").to_pylist()


def _same(a: dict, b: dict) -> bool:
    """Equal metric dicts, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (isinstance(a[k], float) and isinstance(b[k], float) and math.isnan(a[k]) and math.isnan(b[k]))
        for k in a
    )


def test_a_ptrue_prompt_bump_reruns_only_its_dependents_and_replaces_their_mlflow_runs(tiny_run, tmp_path, monkeypatch):
    from orchestrator.runner import run_grid, sync

    out = _copy(tiny_run, tmp_path, "bump")
    uri = tiny_run["uri"]
    assert sync(out) == 14  # the copy's own experiment gets every setting
    r = load_output(out)
    exp = r.grid.mlflow.experiment
    before = _setting_runs(uri, exp)
    monkeypatch.setattr(prompts, "STAGE_PROMPT_VERSIONS", prompts.STAGE_PROMPT_VERSIONS | {"ptrue": "bumped"})
    plan = make_plan(r)
    stale = set(plan.units) - plan.done(r.store_dir)
    assert stale == {
        k
        for k, u in plan.units.items()
        if (u.kind == "gen" and u.stage == "ptrue")
        or (u.kind == "score" and u.spec.uq == "ptrue")
        or (u.kind == "setting" and u.spec.axes["uq"] == "ptrue")
    }
    n_events = len((out / "ledger.jsonl").read_text().splitlines())
    plan, report, _ = run_grid(r)
    assert report.ok, (report.failed, report.blocked)
    events = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()[n_events:]]
    assert {e["key"] for e in events if e["event"] == "done"} == stale  # exactly these ran
    assert sum(report.loads.values()) == 1  # one model load, for the p(True) passes
    after = _setting_runs(uri, exp)
    assert {h: len(v) for h, v in after.items()} == {s.hash: 1 for s in plan.settings}  # one run per setting
    for s in plan.settings:
        ((rid, key),) = after[s.hash]
        assert key == plan.setting_keys[s.hash]
        if s.uq == "ptrue":
            assert rid != before[s.hash][0][0]  # replaced: a new result of the same setting
        else:
            assert rid == before[s.hash][0][0]


def _fresh_scores(plan, gen_store, tmp_path):
    """Every score and setting unit computed from scratch in a store holding only the generations."""
    from jobs.scoring import run_score_unit, run_setting_unit

    fresh = tmp_path / "fresh"
    shutil.copytree(gen_store / "gen", fresh / "gen")
    for u in plan.units.values():  # topological order
        if u.kind == "score":
            run_score_unit(u.spec, fresh)
        elif u.kind == "setting":
            run_setting_unit(u.spec, fresh, plot=False)
    return {s.hash: read_json(plan.setting_dir(fresh, s) / "manifest.json")["metrics"] for s in plan.settings}


def test_rescore_after_an_extraction_change_loads_no_model_and_equals_a_fresh_scoring(tiny_run, tmp_path, monkeypatch):
    from orchestrator.rescore import rescore

    out = _copy(tiny_run, tmp_path, "rescore")
    r = load_output(out)
    plan0 = make_plan(r)
    original = _metrics(r, plan0)
    # a changed extractor (yes/no read the other way round), with its version bumped
    extract = jobs.judge.extract_detail

    def flipped(text, sample, policy="flexible"):
        d = extract(text, sample, policy)
        if sample.task != "yesno" or d.answer not in ("yes", "no"):
            return d
        return dataclasses.replace(d, answer={"yes": "no", "no": "yes"}[d.answer])

    monkeypatch.setattr(jobs.judge, "extract_detail", flipped)
    monkeypatch.setattr(answers, "EXTRACTION_VERSION", answers.EXTRACTION_VERSION + "-flipped")
    res = rescore(out, local=True)  # in this process: the patched extractor is the one that runs
    plan, rep = res["plan"], res["report"]
    assert rep.ok and res["model_starts"] == 0 and rep.loads == {}
    # scores of methods that read answers (the letter's probability, correctness labels of probes), x 2 roles
    assert res["recomputed"] == {"score": 3 * 2 * 2, "setting": 14}
    new = _metrics(r, plan)
    fresh = _fresh_scores(plan, r.store_dir, tmp_path)
    assert all(_same(new[h], fresh[h]) for h in new)
    by = {s.hash: s for s in plan.settings}
    # the change took effect: every extracted StrategyQA answer is the other word now, and judged so
    for h in new:
        if by[h].dataset == "strategyqa":
            old_recs, new_recs = _records(r, plan0, by[h]), _records(r, plan, by[h])
            for o, n in zip(old_recs, new_recs):
                assert n["slm_answer"] == {"yes": "no", "no": "yes"}.get(o["slm_answer"], o["slm_answer"])
                assert n["slm_correct"] == (o["slm_correct"] if o["slm_answer"] is None else not o["slm_correct"])
    # AddSub answers are numbers: its settings keep their numbers (the trained probes, recomputed here
    # in this process rather than on a Ray worker, aside: torch's float sums may differ in the last bit)
    assert all(
        _same(new[h], original[h]) for h in new if by[h].dataset == "addsub" and by[h].uq not in ("probe", "ood_probe")
    )
    for row in res["changes"]:
        assert row["auroc_old"] == pytest.approx(original[row["hash"]]["auroc"], nan_ok=True)
        assert row["auroc_new"] == pytest.approx(new[row["hash"]]["auroc"], nan_ok=True)
        half = (original[row["hash"]]["auroc_hi"] - original[row["hash"]]["auroc_lo"]) / 2
        if row["moved"] is not None:
            assert row["moved"] == (abs(row["auroc_new"] - row["auroc_old"]) > half)
    assert json.loads((out / "rescore.json").read_text())["recomputed"] == res["recomputed"]
    exp = r.grid.mlflow.experiment
    runs = _setting_runs(tiny_run["uri"], exp)
    assert {h: [k for _, k in v] for h, v in runs.items()} == {h: [plan.setting_keys[h]] for h in new}

    # the extractor back as it was (an unversioned code change): --all on Ray recomputes everything,
    # no model actor starts, the numbers are the original run's, and each MLflow run is replaced
    monkeypatch.setattr(jobs.judge, "extract_detail", extract)
    res2 = rescore(out, all_units=True)
    assert res2["report"].ok and res2["model_starts"] == 0 and res2["report"].loads == {}
    assert res2["recomputed"] == {"score": len(plan.by_kind("score")), "setting": 14}
    again = _metrics(r, res2["plan"])
    assert all(_same(again[h], original[h]) for h in again)
    runs2 = _setting_runs(tiny_run["uri"], exp)
    assert {h: len(v) for h, v in runs2.items()} == {h: 1 for h in new}
    assert all(runs2[h][0][0] != runs[h][0][0] for h in new)


def test_rescore_refuses_a_folder_whose_generations_are_missing(tiny_run, tmp_path):
    from orchestrator.rescore import RescoreError, rescore

    out = _copy(tiny_run, tmp_path, "missing")
    r = load_output(out)
    plan = make_plan(r)
    gone = next(u for u in plan.by_kind("gen") if u.stage == "samples")
    shutil.rmtree(unit_dir(r.store_dir, "gen", gone.key))
    with pytest.raises(
        RescoreError, match=r"1 of \d+ generation units are not in the store \(samples .*uqroute resume"
    ):
        rescore(out, local=True)


def test_explain_prints_one_querys_full_trail(tiny_run, capsys):
    from orchestrator.cli import main
    from orchestrator.explain import explain

    r, plan, out = tiny_run["resolved"], tiny_run["plan"], tiny_run["out"]
    s = next(s for s in plan.settings if s.uq == "ptrue" and s.dataset == "strategyqa")
    recs = pq.read_table(plan.setting_dir(r.store_dir, s) / "records.parquet").to_pylist()
    rec = recs[0]
    sid = rec["sample_id"]
    e = explain(out, s.name, sid, rate=0.5)
    su = plan.setting_unit(s)
    score = plan.units[su.spec.score]
    greedy = next(
        x
        for x in read_unit(unit_dir(r.store_dir, "gen", score.spec.stages["greedy"])).to_pylist()
        if x["sample_id"] == sid
    )
    ptrue = next(
        x
        for x in read_unit(unit_dir(r.store_dir, "gen", score.spec.stages["ptrue"])).to_pylist()
        if x["sample_id"] == sid
    )
    # the prompt rendered from the dataset sample is the one the model was sent (in its chat template)
    assert e["sample"]["prompt"][0]["content"] in greedy["prompt"]
    assert set(e["outputs"]) == {"greedy", "ptrue", "llm"}
    assert e["outputs"]["greedy"]["raw_output"] == greedy["raw_output"]
    assert e["outputs"]["ptrue"]["ptrue_prob"] == ptrue["ptrue_prob"]
    assert e["outputs"]["greedy"]["hidden_state"] == "<576 floats>"
    assert e["answers"] == {k: rec[k] for k in ("slm_answer", "slm_correct", "llm_answer", "llm_correct")}
    assert set(e["scores"]) == set(r.uq) and e["scores"]["ptrue"]["uncertainty"] == rec["uncertainty"]
    # the routing decisions of all rows at 50 %: exactly half the rows are sent, in route_rank order
    probs = {
        x["sample_id"]: explain(out, s.hash[:8], x["sample_id"], rate=0.5)["routing"]["route_probability"] for x in recs
    }
    assert sum(probs.values()) == pytest.approx(len(recs) / 2)
    by_rank = [probs[x["sample_id"]] for x in sorted(recs, key=lambda x: x["route_rank"])]
    assert by_rank == sorted(by_rank, reverse=True)
    with pytest.raises(ConfigError, match=f"Did you mean: {s.name}"):
        explain(out, s.name.replace("ptrue", "ptru"), sid)
    with pytest.raises(ConfigError, match="not among the 6 evaluated rows"):
        explain(out, s.name, "no-such-id")
    assert main(["explain", str(out), s.name, sid, "--rate", "0.5"]) == 0
    text = capsys.readouterr().out
    for needle in (
        "stage ptrue:",
        "ptrue_prob",
        "prompt sent:",
        "SLM answer",
        "routing at call rate 50%",
        f"* ptrue: {e['uncertainty']:.6g}",
    ):
        assert needle in text, needle
    assert main(["explain", str(out), "nope", sid]) == 2
    assert "unknown setting 'nope'" in capsys.readouterr().out
