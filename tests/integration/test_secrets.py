"""Secrets and exposure: an LLM behind an OpenAI-compatible endpoint that demands an API key, the
key given only through the environment variable the config names; after a real grid (Ray actors,
MLflow server) the key's value is nowhere: not in MLflow params, tags or artifacts, not in the
ledger, the store, the MLflow database, Ray's logs or the console. The servers listen on
127.0.0.1 only. trust_remote_code is off unless a config asks, and then the run warns."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.integration
KEY_ENV = "UQROUTE_TEST_LLM_KEY"


def listening_on(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    out = set()
    for f, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(f).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A = LISTEN
                if v6:
                    out.add("::1" if addr.endswith("01000000") and set(addr[:24]) == {"0"} else addr)
                else:
                    out.add(".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return out


def files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                hits.append(str(p))
        except OSError:
            pass
    return hits


def test_api_key_never_leaves_the_environment(tmp_path, tmp_path_factory, ray_local, mlflow_server, capfd):
    from mlflow.tracking import MlflowClient

    from jobs.backends import make_backend
    from orchestrator.config import load_grid
    from orchestrator.runner import run_grid
    from scripts.openai_server import serve

    key = f"sk-uqroute-{uuid.uuid4().hex}"
    hf = make_backend(yaml.safe_load((REPO / "tests" / "conf" / "llm" / "smollm2-test.yaml").read_text()))
    server, th, url = serve(hf, "smollm2", api_key=key)
    try:
        assert requests.get(url + "/models", timeout=10).status_code == 401  # the key is demanded
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert listening_on(port) == {"127.0.0.1"}
        mlflow_port = int(mlflow_server.rsplit(":", 1)[1])
        assert listening_on(mlflow_port) == {"127.0.0.1"}
        grid = {
            "name": "secret",
            "slms": ["smollm2-test"],
            "uq": ["perplexity"],
            "datasets": ["strategyqa"],
            "llms": [
                {
                    "name": "remote",
                    "backend": "openai",
                    "base_url": url,
                    "model_name": "smollm2",
                    "api_key_env": KEY_ENV,
                    "num_cpus": 0.25,
                    "max_new_tokens": 8,
                }
            ],
            "dataset": {"limit": 4, "fit_limit": 4},
            "metrics": {"bootstrap": 20},
            "decoding": {"max_new_tokens": {"yesno": 8}},
            "mlflow": {"enabled": True, "tracking_uri": mlflow_server, "experiment": f"secret-{tmp_path.name}"},
            "output_dir": str(tmp_path / "out"),
        }
        f = tmp_path / "conf" / "grid" / "secret.yaml"
        f.parent.mkdir(parents=True)
        f.write_text(yaml.safe_dump(grid))
        os.environ[KEY_ENV] = key
        try:
            r = load_grid(f, conf_dir=REPO / "tests" / "conf")
            plan, report, sink = run_grid(r)
        finally:
            del os.environ[KEY_ENV]
        assert report.ok, report.failed
    finally:
        server.should_exit = True
        th.join(10)
    import pyarrow.parquet as pq

    [s] = plan.settings
    rows = pq.read_table(plan.setting_dir(r.store_dir, s) / "records.parquet").to_pylist()
    assert len(rows) == 4 and all(x["llm_answer"] is not None or x["llm_correct"] is not None for x in rows)
    needle = key.encode()
    # everything this test run wrote: output folder, store, ledger, MLflow database and artifacts
    assert files_containing(tmp_path_factory.getbasetemp(), needle) == []
    ray_logs = Path("/tmp/ray/session_latest/logs")
    if ray_logs.is_dir():
        assert files_containing(ray_logs, needle) == []
    c = MlflowClient(mlflow_server)
    exp = c.get_experiment_by_name(f"secret-{tmp_path.name}")
    runs = c.search_runs([exp.experiment_id])
    assert runs
    for run in runs:
        assert key not in str(run.data.params) and key not in str(run.data.tags)
        assert "api_key_env" not in run.data.params or run.data.params.get("api_key_env") in (KEY_ENV, "None")
        local = Path(c.download_artifacts(run.info.run_id, "", str(tmp_path / "dl" / run.info.run_id)))
        assert files_containing(local, needle) == []
    out, err = capfd.readouterr()
    assert key not in out and key not in err


def test_trust_remote_code_is_off_unless_asked_and_then_warned(tmp_path):
    from orchestrator.config import load_grid, warnings_of

    r = load_grid(REPO / "conf" / "grid" / "default.yaml")
    assert all(not m.trust_remote_code for m in (*r.slms.values(), *r.llms.values()))
    # the default's models give no warning (its calibration may say which datasets it keeps apart)
    assert [w for w in warnings_of(r) if w.startswith(("slm ", "llm "))] == []
    f = tmp_path / "conf" / "grid" / "g.yaml"
    f.parent.mkdir(parents=True)
    f.write_text(
        yaml.safe_dump(
            {
                "name": "g",
                "slms": [
                    {
                        "name": "custom",
                        "backend": "hf",
                        "source": "hub",
                        "id": "someorg/custom-arch",
                        "trust_remote_code": True,
                    }
                ],
                "llms": ["gemma3-270m"],
                "uq": ["perplexity"],
                "datasets": ["gsm8k"],
            }
        )
    )
    [w] = warnings_of(load_grid(f))
    assert "slm 'custom'" in w and "trust_remote_code" in w and "someorg/custom-arch" in w
    from orchestrator.grid import model_identity

    assert "trust_remote_code" not in model_identity(r.slms["smollm2-135m"])  # existing keys unchanged
