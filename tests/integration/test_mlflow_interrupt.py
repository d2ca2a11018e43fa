"""Ctrl-C on `uqroute run`: one line (what finished, the resume command), exit code 130, the
grid's MLflow run KILLED, `uqroute status` says so; `uqroute resume` then finishes the grid with
each setting logged once and the grid run FINISHED."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import REPO
from tests.helpers import offline_env, start_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MICRO = REPO / "tests" / "conf" / "grid" / "micro.yaml"


def _grid_run(uri, exp):
    c = MlflowClient(uri)
    e = c.get_experiment_by_name(exp)
    runs = c.search_runs([e.experiment_id], max_results=1000)
    grids = [r for r in runs if r.data.tags.get("uqroute.kind") == "grid"]
    settings = [r for r in runs if r.data.tags.get("uqroute.kind") == "setting"]
    assert len(grids) == 1
    return grids[0], settings


def test_ctrl_c_prints_one_line_marks_the_grid_killed_and_resume_finishes(tmp_path, ray_local, mlflow_server, capsys):
    from orchestrator.cli import main
    from orchestrator.plan import make_plan
    from orchestrator.runner import load_output

    out, exp = tmp_path / "ctrlc", f"ctrlc-{tmp_path.name}"
    proc = start_run(
        MICRO,
        out,
        exp,
        mlflow_server,
        offline_env(COLUMNS="200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        t0 = time.time()
        while not list((out / "store" / "settings").glob("*/manifest.json")) if (out / "store").exists() else True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() - t0 < 400, "no setting finished"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)  # the driver only, as a terminal's Ctrl-C reaches it
        t_int = time.time()
        output, _ = proc.communicate(timeout=60)
        stopped_in = time.time() - t_int
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    r = load_output(out)
    plan = make_plan(r)
    n_done = sum(1 for s in plan.settings if plan.setting_keys[s.hash] in plan.done(r.store_dir))
    assert proc.returncode == 130, output
    assert stopped_in < 30, stopped_in
    assert "Traceback" not in output, output
    line = [x for x in output.splitlines() if x.startswith("interrupted:")]
    assert line == [
        f"interrupted: {n_done} of {len(plan.settings)} settings done (kept in "
        f"{r.store_dir.resolve()}); resume with: uqroute resume {out}"
    ], output
    assert 0 < n_done < len(plan.settings)
    grid, _ = _grid_run(mlflow_server, exp)
    assert grid.info.status == "KILLED"

    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    status = capsys.readouterr().out
    assert "last run interrupted (Ctrl-C)" in status and f"uqroute resume {out}" in status

    assert main(["resume", str(out)]) == 0
    grid, settings = _grid_run(mlflow_server, exp)
    assert grid.info.status == "FINISHED"
    assert sorted(x.data.tags["uqroute.setting_hash"] for x in settings) == sorted(s.hash for s in plan.settings)
    assert {x.info.status for x in settings} == {"FINISHED"}
    capsys.readouterr()
    main(["status", str(out)])
    assert "last run finished" in capsys.readouterr().out
