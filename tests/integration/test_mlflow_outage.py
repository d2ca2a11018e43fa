"""The background writer against a real MLflow server that is stopped mid-run and started
again: the producer never waits, every setting ends up as exactly one finished run, and a
server that stays down leaves an exact list of what MLflow lacks."""

from __future__ import annotations

import json
import time

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.mlflow_sink import MlflowSink, SettingSource, start_server, stop_server
from orchestrator.mlflow_writer import MlflowWriter

pytestmark = pytest.mark.integration


def _setting_dir(folder):
    folder.mkdir(parents=True, exist_ok=True)
    pts = [{"ratio": i / 10, "accuracy": 0.3 + 0.02 * i} for i in range(11)]
    (folder / "curve.json").write_text(json.dumps({"curve": pts, "random": pts, "oracle": pts}))
    (folder / "curve.png").write_bytes(b"\x89PNG fake")
    return folder


def _manifest(i):
    return {
        "key": f"h{i:04d}",
        "name": f"slm__uq{i}__ds__llm",
        "slm": "slm",
        "uq": f"uq{i}",
        "dataset": "ds",
        "llm": "llm",
        "metrics": {"auroc": 0.5 + i / 100, "slm_acc": 0.3, "llm_acc": 0.5, "n": 10},
    }


def _runs(uri, exp):
    c = MlflowClient(uri)
    e = c.get_experiment_by_name(exp)
    return [
        r for r in c.search_runs([e.experiment_id], max_results=1000) if r.data.tags.get("uqroute.kind") == "setting"
    ]


def _wait(pred, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


def test_server_stopped_mid_run_and_started_again(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    folder, d = tmp_path / "mlf", _setting_dir(tmp_path / "setting")
    uri = start_server(folder, port=5262)
    notes = []
    by_key = {m["key"]: m for m in map(_manifest, range(24))}
    w = MlflowWriter(
        lambda: MlflowSink(uri, "outage", "g", "gh-outage", {"a": 1}),
        lambda k, m: SettingSource(m or by_key[k], d, {"p": 1}),
        maxsize=4,
        lanes=2,
        backoff_s=0.2,
        max_backoff_s=1.0,
        notify=notes.append,
    )
    try:
        blocked = 0.0
        for i in range(8):
            t = time.perf_counter()
            w.submit(by_key[f"h{i:04d}"])
            blocked += time.perf_counter() - t
        _wait(lambda: w.stats.logged == 8, 60, "the first 8 settings were not logged")
        stop_server(folder)
        for i in range(8, 24):  # the server is down: these wait, and the queue (4) overflows
            t = time.perf_counter()
            w.submit(by_key[f"h{i:04d}"])
            blocked += time.perf_counter() - t
        _wait(lambda: not w.up, 30, "the writer did not notice the outage")
        time.sleep(1.0)  # a few backoff rounds against a dead server
        assert blocked < 0.05 and w.stats.spilled > 0
        assert start_server(folder, port=5262) == uri  # same SQLite database, same address
        stats = w.close(wait_s=60)
        assert stats.pending == [] and stats.logged == 24 and stats.outages == 1
        runs = _runs(uri, "outage")
        assert sorted(r.data.tags["uqroute.setting_hash"] for r in runs) == sorted(by_key)  # each exactly once
        assert {r.info.status for r in runs} == {"FINISHED"}
        assert any("does not answer" in n for n in notes) and any("answers again" in n for n in notes)
        c = MlflowClient(uri)
        hist = c.get_metric_history(runs[0].info.run_id, "routing_accuracy")
        assert sorted(m.step for m in hist) == list(range(101))
        assert {a.path for a in c.list_artifacts(runs[0].info.run_id)} == {"curve.json", "curve.png"}
    finally:
        stop_server(folder)


def test_server_that_stays_down_names_what_mlflow_lacks(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    d = _setting_dir(tmp_path / "setting")
    by_key = {m["key"]: m for m in map(_manifest, range(5))}
    # nothing listens here: the sink can never connect
    w = MlflowWriter(
        lambda: MlflowSink("http://127.0.0.1:9", "never", "g", "gh", {}),
        lambda k, m: SettingSource(m or by_key[k], d, {}),
        backoff_s=0.1,
        max_backoff_s=0.2,
    )
    for m in by_key.values():
        w.submit(m)
    t0 = time.time()
    stats = w.close(wait_s=1.0)
    assert time.time() - t0 < 10
    assert sorted(stats.pending) == sorted(by_key) and w.sink is None
