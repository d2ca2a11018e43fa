"""A setting's MLflow run is found by its setting hash and replaced when its result changes (a new
unit key), never duplicated (issue 8, item 6). MLflow in-process on SQLite: no server."""

from __future__ import annotations

import json

import pytest

from orchestrator.mlflow_sink import MlflowSink, SettingSource

H = "a1b2c3d4e5f60718"  # the setting hash: the run's identity
AXES = {"slm": "s", "uq": "perplexity", "dataset": "d", "llm": "l"}


def _setting_dir(tmp_path, name: str, auroc: float):
    d = tmp_path / name
    d.mkdir()
    pts = [{"ratio": 0.0, "accuracy": 0.5}, {"ratio": 1.0, "accuracy": 0.9}]
    (d / "curve.json").write_text(json.dumps({"curve": pts, "random": pts, "oracle": pts}))
    return d


def _manifest(key: str, auroc: float, setting_hash: str | None = H) -> dict:
    m = {"key": key, "name": "s__perplexity__d__l", **AXES, "metrics": {"auroc": auroc, "n": 10}}
    if setting_hash is not None:
        m["setting_hash"] = setting_hash
    return m


@pytest.fixture
def sink(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default artifact root (./mlruns) goes under tmp_path
    return MlflowSink(f"sqlite:///{tmp_path / 'mlflow.db'}", "replace-test", "g", "GRIDHASH", {"x": 1})


def _runs(sink):
    return [r for r in sink.client.search_runs([sink.experiment_id], "tags.`uqroute.kind` = 'setting'")]


def test_a_changed_result_replaces_the_run_of_its_setting_hash(sink, tmp_path):
    d1, d2 = _setting_dir(tmp_path, "k1", 0.6), _setting_dir(tmp_path, "k2", 0.7)
    rid1 = sink.log_setting(_manifest("KEY1", 0.6), d1, {"p": 1})
    assert sink.log_setting(_manifest("KEY1", 0.6), d1, {"p": 1}) == rid1  # same result: kept
    rid2 = sink.log_setting(_manifest("KEY2", 0.7), d2, {"p": 1})  # new unit key, same setting
    runs = _runs(sink)
    assert [r.info.run_id for r in runs] == [rid2] and rid2 != rid1
    assert runs[0].data.tags["uqroute.setting_hash"] == H and runs[0].data.tags["uqroute.unit_key"] == "KEY2"
    assert runs[0].data.metrics["auroc"] == 0.7
    assert sink.finished_settings() == {"KEY2"}
    # the background writer's path: it knows MLflow lacks KEY3 and skips the look-up
    sink.setting_runs()
    rid3 = sink.write_setting(SettingSource(_manifest("KEY3", 0.8), d1, {"p": 1}), check=False)
    assert [r.info.run_id for r in _runs(sink)] == [rid3]
    # rescore --all: same key, new numbers -> replaced all the same
    rid4 = sink.log_setting(_manifest("KEY3", 0.8), d1, {"p": 1}, replace=True)
    assert [r.info.run_id for r in _runs(sink)] == [rid4] and rid4 != rid3


def test_a_run_logged_before_unit_keys_is_kept_until_its_result_changes(sink, tmp_path):
    d = _setting_dir(tmp_path, "old", 0.6)
    old = sink.log_setting(_manifest(H, 0.6, setting_hash=None), d, {"p": 1})  # an old manifest: key = hash
    assert sink.log_setting(_manifest(H, 0.6, setting_hash=None), d, {"p": 1}) == old
    new = sink.log_setting(_manifest("NEWKEY", 0.65), d, {"p": 1})
    assert [r.info.run_id for r in _runs(sink)] == [new]


def test_duplicate_runs_of_a_setting_are_removed_keeping_the_current_one(sink, tmp_path):
    """Two runs of one setting with the same unit key (seen at 10,000 settings: a create the client
    timed out on while the server completed it, logged again): sync keeps one, the newest finished
    run of the current key; a run of another setting is untouched."""
    d = _setting_dir(tmp_path, "dup", 0.6)
    sink.setting_runs()
    first = sink.write_setting(SettingSource(_manifest("KEY1", 0.6), d, {"p": 1}), check=False)
    second = sink.write_setting(SettingSource(_manifest("KEY1", 0.6), d, {"p": 1}), check=False)
    other = sink.log_setting(_manifest("OTHERKEY", 0.5, setting_hash="ffffffffffffffff"), d, {"p": 1})
    assert len(_runs(sink)) == 3 and first != second
    assert sink.remove_duplicates({H: "KEY1", "ffffffffffffffff": "OTHERKEY"}) == 1
    assert sorted(r.info.run_id for r in _runs(sink)) == sorted([second, other])
    assert sink.remove_duplicates({H: "KEY1", "ffffffffffffffff": "OTHERKEY"}) == 0
