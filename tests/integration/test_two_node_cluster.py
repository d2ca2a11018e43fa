"""A cluster made of `ray start --head` plus a second node joined with `ray start --address`,
both on this machine, with distinct custom resources so work provably lands on both nodes.
The driver joins it with `uqroute run --address`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.helpers import offline_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_matching(text: str) -> None:
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text in (d / "cmdline").read_bytes().decode(errors="ignore"):
                    os.kill(int(d.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


@contextmanager
def ray_head(prefix: str, env: dict, *args: str, timeout: float):
    """``ray start --head`` on a free port with its temp dir ``/tmp/<prefix><pid>`` (short: Ray's
    socket paths have a length limit) and ``args``; yields (port, temp dir); then kills every process
    that names the temp dir (the head and whatever joined it)."""
    tmp = Path("/tmp") / f"{prefix}{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    port = _free_port()
    subprocess.run(
        [RAY, "start", "--head", "--port", str(port), "--temp-dir", str(tmp), *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=timeout,
    )
    try:
        yield port, tmp
    finally:
        _kill_matching(str(tmp))


@pytest.fixture
def two_node_cluster(tmp_path_factory):
    env = offline_env()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats"]
    head = ("--include-dashboard", "false", "--resources", json.dumps({"node_a": 1}), *common)
    with ray_head("uqr2n", env, *head, timeout=120) as (port, tmp):
        subprocess.run(
            [RAY, "start", "--address", f"127.0.0.1:{port}", "--resources", json.dumps({"node_b": 1}), *common],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield f"127.0.0.1:{port}", env, tmp


def test_grid_runs_on_both_nodes(two_node_cluster, tmp_path):
    address, env, tmp = two_node_cluster
    slm = yaml.safe_load((REPO / "tests" / "conf" / "slm" / "smollm2-test.yaml").read_text()) | {
        "resources": {"node_a": 1},
        "num_cpus": 0.5,
        "num_gpus": 0,
    }
    llm = yaml.safe_load((REPO / "tests" / "conf" / "llm" / "smollm2-test.yaml").read_text()) | {
        "resources": {"node_b": 1},
        "num_cpus": 0.5,
        "num_gpus": 0,
    }
    grid = yaml.safe_load((REPO / "tests" / "conf" / "grid" / "micro.yaml").read_text())
    grid.update(slms=[slm], llms=[llm], output_dir=str(tmp_path / "out"), uq=["perplexity"])
    grid["ray"]["num_cpus"] = None
    gpath = tmp_path / "conf" / "grid" / "two_node.yaml"
    gpath.parent.mkdir(parents=True)
    gpath.write_text(yaml.safe_dump(grid))
    # node ids of the two nodes, by their custom resource
    probe = (
        f"import ray, json; ray.init(address='{address}'); "
        "print(json.dumps({k: n['NodeID'] for n in ray.nodes() if n['Alive'] for k in n['Resources'] "
        "if k.startswith('node_')}))"
    )
    nodes = json.loads(
        subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    assert set(nodes) == {"node_a", "node_b"} and nodes["node_a"] != nodes["node_b"]
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(gpath), "--address", address],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    events = [json.loads(x) for x in (tmp_path / "out" / "ledger.jsonl").read_text().splitlines()]
    placed = {(e["label"].split()[0], e["node"]) for e in events if e["event"] == "done" and e["kind"] == "gen"}
    slm_nodes = {n for stage, n in placed if stage != "llm"}
    llm_nodes = {n for stage, n in placed if stage == "llm"}
    assert slm_nodes == {nodes["node_a"]} and llm_nodes == {nodes["node_b"]}
