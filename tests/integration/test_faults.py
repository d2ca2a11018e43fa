"""Fault tests with real processes: a model actor SIGKILLed mid-grid, the driver SIGKILLed
mid-grid then resumed, the MLflow server stopped mid-grid then synced. In every case each
setting ends with exactly one finished MLflow run and the Parquet results equal those of an
uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO
from tests.helpers import offline_env, start_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MICRO = REPO / "tests" / "conf" / "grid" / "micro.yaml"


def _pids(pattern: str) -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and pattern in _cmdline(int(d.name))]


def _ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        try:
            stat = (Path("/proc") / str(pid) / "stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: ppid (after the parenthesised name)
        out.append(pid)
    return out


def _own_pids(pattern: str) -> list[int]:
    """``_pids(pattern)`` of this test run's own Ray only (a process whose ancestors include a
    process started with this session's folder): another Ray on the machine is never touched."""
    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    mine = {int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and session in _cmdline(int(d.name))}
    return [p for p in _pids(pattern) if mine & set(_ancestors(p))]


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="ignore")
    except OSError:
        return ""


def _wait_for(pred, timeout: float, what: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise TimeoutError(what)


def _results(r, plan) -> dict:
    """setting hash -> per-sample (id, slm answer, slm correct, llm correct, uncertainty, rank)."""
    out = {}
    for s in plan.settings:
        t = pq.read_table(plan.setting_dir(r.store_dir, s) / "records.parquet").to_pylist()
        out[s.hash] = [
            (
                x["sample_id"],
                x["slm_answer"],
                x["slm_correct"],
                x["llm_correct"],
                round(x["uncertainty"], 5),
                x["route_rank"],
            )
            for x in t
        ]
    return out


def _runs_per_setting(uri: str, experiment: str) -> dict:
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name(experiment)
    counts: dict = {}
    for run in c.search_runs([exp.experiment_id], max_results=1000):
        if run.data.tags.get("uqroute.kind") == "setting":
            assert run.info.status == "FINISHED"
            h = run.data.tags["uqroute.setting_hash"]
            counts[h] = counts.get(h, 0) + 1
    return counts


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ray_local):
    """The micro grid run without faults: the results every faulty run must reproduce."""
    from orchestrator.config import load_grid
    from orchestrator.runner import run_grid

    out = tmp_path_factory.mktemp("micro-ref")
    r = load_grid(MICRO, [f"output_dir={out}"])
    plan, report, _ = run_grid(r)
    assert report.ok
    return _results(r, plan)


def _grid(tmp_path, uri, name):
    from orchestrator.config import load_grid

    return load_grid(
        MICRO,
        [
            f"output_dir={tmp_path / name}",
            "mlflow.enabled=true",
            f"mlflow.tracking_uri={uri}",
            f"mlflow.experiment={name}-{tmp_path.name}",
        ],
    )


def test_killed_model_actor_is_replaced_and_grid_completes(tmp_path, ray_local, mlflow_server, reference):
    from orchestrator.ledger import Ledger
    from orchestrator.runner import run_grid

    r = _grid(tmp_path, mlflow_server, "actorkill")
    box = {}
    th = threading.Thread(target=lambda: box.update(res=run_grid(r)))
    th.start()
    # wait until a model actor is busy generating, then SIGKILL it
    pid = _wait_for(lambda: _own_pids("ray::ModelWorker.run_gen"), 300, "no model actor started generating")[0]
    os.kill(pid, signal.SIGKILL)
    th.join(600)
    plan, report, _ = box["res"]
    assert report.ok, (report.failed, report.blocked)
    retries = [e for e in Ledger(r.output_dir / "ledger.jsonl").events() if e["event"] == "retry"]
    assert any(e["reason"] == "actor_died" for e in retries)
    assert _results(r, plan) == reference
    assert _runs_per_setting(mlflow_server, r.grid.mlflow.experiment) == {s.hash: 1 for s in plan.settings}


def test_killed_driver_then_resume_completes(tmp_path, ray_local, mlflow_server, reference):
    from orchestrator.cli import main
    from orchestrator.plan import make_plan
    from orchestrator.runner import load_output

    out = tmp_path / "driverkill"
    exp = f"driverkill-{tmp_path.name}"
    proc = start_run(
        MICRO, out, exp, mlflow_server, offline_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # let it finish at least one unit and log at least one setting... or at least one model pass
        _wait_for(
            lambda: list((out / "store" / "gen").glob("*/manifest.json")) if (out / "store").exists() else [],
            300,
            "driver never finished a unit",
        )
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    r = load_output(out)
    plan = make_plan(r)
    assert len(plan.done(r.store_dir)) < len(plan.units)  # it really was interrupted
    assert main(["resume", str(out)]) == 0
    assert len(plan.done(r.store_dir)) == len(plan.units)
    assert _results(r, plan) == reference
    assert _runs_per_setting(mlflow_server, exp) == {s.hash: 1 for s in plan.settings}


def test_mlflow_down_mid_grid_loses_nothing_and_sync_catches_up(tmp_path, ray_local, reference):
    from orchestrator.mlflow_sink import start_server, stop_server
    from orchestrator.runner import run_grid, sync

    folder = tmp_path / "mlf"
    uri = start_server(folder, port=5252)
    try:
        r = _grid(tmp_path, uri, "mlfdown")
        box = {}
        th = threading.Thread(target=lambda: box.update(res=run_grid(r)))
        th.start()
        # stop MLflow as soon as the first model pass is on disk (before any setting is logged)
        _wait_for(
            lambda: list(r.store_dir.glob("gen/*/manifest.json")) if r.store_dir.exists() else [],
            300,
            "no unit finished",
        )
        stop_server(folder)
        th.join(600)
        plan, report, _ = box["res"]
        assert report.ok
        assert _results(r, plan) == reference  # nothing lost
        uri2 = start_server(folder, port=5252)  # same SQLite database
        assert uri2 == uri
        n = sync(r.output_dir)
        assert n >= 1
        assert _runs_per_setting(uri, r.grid.mlflow.experiment) == {s.hash: 1 for s in plan.settings}
        assert sync(r.output_dir) == 0  # idempotent
    finally:
        stop_server(folder)


def test_unusable_dataset_fails_alone_and_status_says_why(tmp_path, ray_local, capsys):
    """A dataset whose rows are all malformed: its units fail as data errors (no retry), the
    other dataset's settings complete, and `uqroute status` names the reason."""
    import yaml

    from orchestrator.cli import main
    from orchestrator.config import load_grid
    from orchestrator.ledger import Ledger
    from orchestrator.runner import run_grid

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "no answer field"}\n{"q": "still none"}\n')
    grid = yaml.safe_load(MICRO.read_text())
    grid.update(
        output_dir=str(tmp_path / "out"),
        uq=["perplexity"],
        datasets=[
            "strategyqa",
            {
                "name": "mine",
                "adapter": "local",
                "task": "yesno",
                "local_path": str(bad),
                "mapping": {"question": "q", "gold": "a"},
            },
        ],
    )
    gp = tmp_path / "g.yaml"
    gp.write_text(yaml.safe_dump(grid))
    r = load_grid(gp, conf_dir=REPO / "tests" / "conf")
    plan, report, _ = run_grid(r)
    ok = {s.name for s in plan.settings if s.dataset == "strategyqa"}
    assert ok and all(
        (plan.setting_dir(r.store_dir, s) / "manifest.json").is_file() for s in plan.settings if s.name in ok
    )
    failed = [e for e in Ledger(r.output_dir / "ledger.jsonl").events() if e["event"] == "failed"]
    assert any(e["reason"] == "data_error" and "no usable samples" in e["detail"] for e in failed)
    assert not any(
        e["event"] == "retry" and e["reason"] == "data_error" for e in Ledger(r.output_dir / "ledger.jsonl").events()
    )
    capsys.readouterr()
    assert main(["status", str(r.output_dir)]) == 0
    out = capsys.readouterr().out
    assert "data_error" in out and "no usable samples" in out
