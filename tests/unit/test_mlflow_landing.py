"""What the printed MLflow links open on (issue 19): one shared view per (SLM, dataset, LLM) group,
stored as MLflow 3.17 stores the view its "Share" button makes (an experiment tag
``mlflow.sharedViewState.<key>``, read by ``useSharedExperimentViewState``), run names that put the
method first, and the settings table on the grid's parent run, read back with MLflow's own
``load_table``. MLflow in-process on SQLite: no server (the browser test is
tests/integration/test_mlflow_ui.py)."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

import jobs.metrics as M
from orchestrator.mlflow_sink import (
    SHARE_TAG,
    MlflowSink,
    group_view_state,
    landing_metrics,
    run_name,
    share_key,
)

AXES = {
    "slms": {"smol-a": {}, "smol-b": {}},
    "uq": {"perplexity": {}, "ptrue": {}, "knn_router": {}},
    "datasets": {"gsm8k": {}, "arc_easy": {}},
    "llms": {"gemma": {}},
}


def _decode(value: str) -> dict:
    """As MLflow's UI does (``textDecompressDeflate``: pako.inflate of the base64 after ``deflate;``)."""
    assert value.startswith("deflate;")
    return json.loads(zlib.decompress(base64.b64decode(value[len("deflate;") :])))


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One SQLite database for the module (creating one takes seconds); the default artifact root
    (./mlruns) goes under the same folder."""
    folder = tmp_path_factory.mktemp("landing")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        yield f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def sink(db):
    return MlflowSink(db, "landing", "g", "GRIDHASH", AXES | {"name": "g"})


def test_the_group_view_opens_on_the_routing_curves_then_the_first_metrics():
    st = group_view_state("GH", "smol-a", "gsm8k", "gemma")
    charts, sections = st["compareRunCharts"], st["compareRunSections"]
    first = [c for c in charts if c["metricSectionId"] == sections[0]["uuid"]]
    # the first section, open: the routing curve overlaid (a line chart over the percent routed) ...
    assert sections[0]["display"] is True and "smol-a -> gemma on gsm8k" in sections[0]["name"]
    assert first[0]["type"] == "LINE" and first[0]["selectedMetricKeys"] == ["routing_accuracy"]
    assert first[0]["xAxisKey"] == "step"
    # ... then AUROC, unscored share, area and APGR, as bars; nothing else on the first screen
    assert [(c["type"], c["metricKey"]) for c in first[1:]] == [("BAR", m) for m in landing_metrics()]
    assert landing_metrics() == ("auroc", "unscored_share", "area", "apgr")
    # every other section collapsed, and kept in this order (MLflow sorts sections by name otherwise)
    assert all(s["display"] is False for s in sections[1:]) and st["isAccordionReordered"] is True
    assert sections[-1]["name"] == "Model metrics"  # where MLflow puts a metric the view does not name
    # interval bounds, counts and the rest of what a setting logs are there, out of the first screen
    # (a metric no chart names, a cost or token count, MLflow adds at the end of "Model metrics")
    rng = np.random.default_rng(0)
    u, a, b = rng.random(50), rng.random(50) < 0.5, rng.random(50) < 0.6
    logged = set(M.summarize(u, a, b, nan_policy="most_uncertain", ties="expected", n_boot=10, seed=0))
    placed = {c["metricKey"] for c in charts}
    assert logged - placed == set(), "a logged metric without a chart would be added by MLflow in alphabetical order"
    assert {"auroc_lo", "auroc_hi", "n"} <= {c["metricKey"] for c in charts if c not in first}
    # the group's runs only, best AUROC first, all shown (MLflow shows the first 10 by default)
    assert "tags.slm = 'smol-a'" in st["searchFilter"] and "tags.dataset = 'gsm8k'" in st["searchFilter"]
    assert "tags.`uqroute.grid_hash` = 'GH'" in st["searchFilter"]
    assert st["orderByKey"] == "metrics.`auroc`" and st["orderByAsc"] is False and st["runsHiddenMode"] == "SHOW_ALL"


def test_run_names_put_what_differs_first():
    m = {"slm": "smollm2-135m", "uq": "knn_router", "dataset": "gsm8k", "llm": "gemma3-270m"}
    name = run_name(m)
    assert name.startswith("knn_router | gsm8k | ")
    names = {run_name(m | {"uq": u}) for u in ("perplexity", "ptrue", "probe")}
    assert len({n[:12] for n in names}) == 3  # cut to 12 characters, still apart


def test_every_group_gets_a_stored_view_and_the_links_lead_to_them(sink, monkeypatch):
    tags = sink.client.get_experiment(sink.experiment_id).tags
    groups = [(s, d, m) for s in AXES["slms"] for d in AXES["datasets"] for m in AXES["llms"]]
    assert sink.groups == groups  # grid order: the landing is the grid's first group
    for g in groups:
        value = tags[SHARE_TAG + share_key("GRIDHASH", *g)]
        assert len(value) < 20_000  # MLflow's limit on an experiment tag's value
        assert _decode(value) == json.loads(json.dumps(group_view_state("GRIDHASH", *g)))
    links = sink.ui_links()
    assert [label for label, _ in links][0] == "landing" and len(links) == 1 + len(groups) + 1
    assert links[0][1] == links[1][1] == sink.group_url(*groups[0])
    assert links[1][1].endswith(f"runs?viewStateShareKey={share_key('GRIDHASH', *groups[0])}&compareRunsMode=CHART")
    assert "smol-b -> gemma on arc_easy" in links[-2][0]
    assert links[-1][1].endswith(f"/runs/{sink.parent_id}/artifacts/settings.json")
    # the landing is the group with the most settings whose AUROC is defined (first in grid order
    # among equals): not a group whose curves are flat because the SLM got everything right or wrong
    nan = float("nan")
    rows = [{"slm": s, "dataset": d, "llm": m, "auroc": nan} for s, d, m in groups]
    rows += [{"slm": "smol-b", "dataset": "gsm8k", "llm": "gemma", "auroc": 0.7}] * 2
    rows += [{"slm": "smol-a", "dataset": "arc_easy", "llm": "gemma", "auroc": 0.6}] * 2
    assert sink.landing_group(rows) == ("smol-a", "arc_easy", "gemma")
    assert sink.ui_links(rows)[0][1] == sink.group_url("smol-a", "arc_easy", "gemma")
    assert [u for _, u in sink.ui_links(rows)[1:-1]] == [u for _, u in links[1:-1]]  # groups: grid order
    # a second sink of the same grid (a resume, a sync) writes no view again
    calls = []
    monkeypatch.setattr(
        "mlflow.tracking.MlflowClient.set_experiment_tag", lambda self, *a, **k: calls.append(a), raising=True
    )
    again = MlflowSink(sink.uri, "landing", "g", "GRIDHASH", AXES | {"name": "g"})
    assert calls == [] and again.parent_id == sink.parent_id


def test_a_sink_that_does_not_know_the_axes_lands_on_all_the_grids_runs(db):
    s = MlflowSink(db, "bare", "g", "GH2", {"x": 1})
    assert s.ui_links()[0] == ("landing", s.runs_url()) and len(s.ui_links()) == 2


def test_setting_runs_are_named_method_first_and_coloured_by_method(sink, tmp_path):
    d = tmp_path / "setting"
    d.mkdir()
    pts = [{"ratio": 0.0, "accuracy": 0.5}, {"ratio": 1.0, "accuracy": 0.9}]
    (d / "curve.json").write_text(json.dumps({"curve": pts, "random": pts, "oracle": pts}))
    colors = {}
    for uq in AXES["uq"]:
        for ds in AXES["datasets"]:
            m = {
                "key": f"{uq}{ds}",
                "slm": "smol-a",
                "uq": uq,
                "dataset": ds,
                "llm": "gemma",
                "metrics": {"auroc": 0.6},
            }
            rid = sink.log_setting(m | {"name": f"smol-a__{uq}__{ds}__gemma"}, d, {"p": 1})
            run = sink.client.get_run(rid)
            assert run.info.run_name == f"{uq} | {ds} | smol-a -> gemma"
            colors.setdefault(uq, set()).add(run.data.tags["mlflow.runColor"])
    assert all(len(c) == 1 for c in colors.values())  # one colour per method, in every group
    assert len({next(iter(c)) for c in colors.values()}) == len(AXES["uq"])  # and apart from the others


def test_the_settings_table_is_replaced_whole_and_mlflow_reads_it_as_its_own(sink, tmp_path):
    rows = [
        {"setting": f"s{i}", "uq": "ptrue", "dataset": "gsm8k", "slm": "a", "llm": "b", "auroc": 0.5 + i / 100, "n": 10}
        for i in range(30)
    ]
    rows[3]["auroc"] = float("nan")  # a method that scored nothing: an empty cell, not invalid JSON
    sink.log_settings_table(rows[:10])
    sink.log_settings_table(rows)  # mlflow.log_table would append: 40 rows
    df = sink.client.load_table(sink.experiment_id, "settings.json", run_ids=[sink.parent_id])
    assert len(df) == 30
    assert list(df.columns) == ["uq", "dataset", "slm", "llm", "auroc"]  # what tells rows apart, then AUROC
    # (a row's other fields, "setting" and "n" here, are in summary.csv: MLflow's table is slow per cell)
    # numbers as text with four decimals, so MLflow's table (it sorts text "alphanumerically", the
    # digits after the point as one integer) sorts them as numbers; a missing value is an empty cell
    import pandas as pd

    raw = json.loads(Path(sink.client.download_artifacts(sink.parent_id, "settings.json", str(tmp_path))).read_text())
    auroc = [row[raw["columns"].index("auroc")] for row in raw["data"]]
    assert auroc[0] == "0.5000" and auroc[29] == "0.7900" and auroc[3] == ""
    assert float(df["auroc"][29]) == 0.79 and pd.isna(pd.to_numeric(df["auroc"], errors="coerce")[3])
    tag = json.loads(sink.client.get_run(sink.parent_id).data.tags["mlflow.loggedArtifacts"])
    assert tag == [{"path": "settings.json", "type": "table"}]


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads Linux /proc")
def test_a_server_answering_on_the_port_is_taken_for_ours_only_if_it_is_ours():
    """Two test sessions starting servers at once can pick the same free port; the one that loses
    the bind must not take the other's ``/health`` for its own (``start_server`` then moves on)."""
    import os
    import socket
    import subprocess

    from orchestrator.mlflow_sink import _serves

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        other = subprocess.Popen(["sleep", "30"], start_new_session=True)  # a process group without the socket
        try:
            assert _serves(os.getpgid(0), port)
            assert not _serves(other.pid, port)
        finally:
            other.kill()
            other.wait()
    assert not _serves(os.getpgid(0), port)  # nothing listens there any more
