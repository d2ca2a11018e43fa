"""`ray job submit` as the README writes it, against a head started with `ray start --head`:
the job ships the project as its working dir (cluster/runtime_env.yaml), runs `uqroute run ...
--address auto output_dir=...` with overrides after the option, reads the benchmark files from
an absolute data root and writes the store to an absolute folder every node sees (here: /tmp on
this one machine). Then the Parquet rows and the MLflow runs are checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from jobs.datasets import default_data_root
from tests.conftest import REPO
from tests.helpers import offline_env
from tests.integration.test_two_node_cluster import _free_port, ray_head

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent


@pytest.fixture
def head():
    dash = _free_port()
    env = offline_env(HF_DATASETS_OFFLINE="1", PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    args = (
        "--include-dashboard",
        "true",
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dash),
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "2",
        "--num-gpus",
        "2",
        *_agent_ports(),
        "--disable-usage-stats",
    )
    with ray_head("uqrjob", env, *args, timeout=180) as (_, tmp):
        yield f"http://127.0.0.1:{dash}", env, tmp


def _agent_ports() -> list[str]:
    """Free ports for the head's agents. Their defaults (dashboard agent 52365, ...) are shared by
    every Ray on the machine: when another Ray (this test run's own session, a leftover) holds
    one, the new head's agent cannot bind it and dies, and every `ray job submit` then answers
    "No available agent" (seen in CI)."""
    flags = (
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    )
    return [x for f in flags for x in (f, str(_free_port()))]


def _head_logs(tmp: Path) -> str:
    """The tail of the head's agent and raylet logs, for a failure message."""
    out = []
    for name in ("dashboard_agent.log", "raylet.out", "dashboard_JobHead.log"):
        for f in sorted(tmp.glob(f"session_*/logs/{name}"))[-1:]:
            out.append(f"--- {name}\n" + "\n".join(f.read_text(errors="ignore").splitlines()[-15:]))
    return "\n".join(out)


def test_ray_job_submit_runs_the_grid_as_documented(head, tmp_path, mlflow_server):
    address, env, tmp = head
    out = tmp_path / "shared-fs" / "micro"  # absolute, on a filesystem every node sees
    cmd = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        address,
        "--runtime-env",
        "cluster/runtime_env.yaml",
        "--",
        "uqroute",
        "run",
        "tests/conf/grid/micro.yaml",
        "--address",
        "auto",
        "--progress-every",
        "1",  # the job's stdout is no terminal: a plain progress line every second
        f"output_dir={out}",
        f"dataset.data_root={default_data_root()}",
        "mlflow.enabled=true",
        f"mlflow.tracking_uri={mlflow_server}",
        "mlflow.experiment=ray-job",
    ]
    for _ in range(20):  # right after `ray start` the dashboard may not have its job agent yet
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        if res.returncode == 0 or "No available agent to submit job" not in res.stdout + res.stderr:
            break
        time.sleep(3)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:] + _head_logs(tmp)
    assert "succeeded" in res.stdout
    from orchestrator.plan import make_plan
    from orchestrator.runner import load_output

    r = load_output(out)
    plan = make_plan(r)
    assert len(plan.settings) == 3
    for s in plan.settings:
        rows = pq.read_table(plan.setting_dir(r.store_dir, s) / "records.parquet").to_pylist()
        assert len(rows) == 8 and all(x["route_rank"] is not None for x in rows)
    c = MlflowClient(mlflow_server)
    exp = c.get_experiment_by_name("ray-job")
    runs = [x for x in c.search_runs([exp.experiment_id]) if x.data.tags.get("uqroute.kind") == "setting"]
    assert sorted(x.data.tags["uqroute.setting_hash"] for x in runs) == sorted(s.hash for s in plan.settings)
    assert all(x.info.status == "FINISHED" for x in runs)
    # the job's stdout is the CLI's: it says where the store went, on one line
    assert re.search(rf"^ *Parquet store +: {re.escape(str(out))}/store$", res.stdout, re.M), res.stdout[-3000:]
    # and how the run went meanwhile: plain progress lines (model work, settings, actors, ETA)
    progress = re.findall(
        r"progress \S+ \| model work \d+/\d+ \(\d+%\) \| settings \d/3 done, \d failed \| actors: (.+) \| ETA \S+$",
        res.stdout,
        re.M,
    )
    assert len(progress) >= 2, res.stdout[-3000:]  # at least one while it ran, and the last one
    assert any(a.startswith(("slm:", "llm:")) for a in progress), progress  # a model on an actor
    assert "settings 3/3 done, 0 failed" in res.stdout


def test_run_takes_overrides_after_options():
    res = subprocess.run(
        [str(BIN / "uqroute"), "run", "tests/conf/grid/micro.yaml", "--no-mlflow", "dataset.limit=abc"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert res.returncode == 2 and "dataset.limit='abc' is not a valid int" in res.stdout + res.stderr
    assert "unrecognized arguments" not in res.stderr
