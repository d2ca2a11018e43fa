"""Shared fixtures: one real Ray session and one real MLflow server per test run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent

#: fixtures that load a real model or tokenizer (SmolLM2, a random tiny LM): a test using one is
#: marked ``model`` and stays out of the one-minute gate (``bash scripts/test.sh``)
MODEL_FIXTURES = {"smol", "smol_backends", "smol_tokenizer", "tiny_model", "tokenizer"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


TINY = REPO / "tests" / "conf" / "grid" / "tiny.yaml"


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with 2 CPUs and 2 logical GPUs, shared by the whole run."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend) on 127.0.0.1, stopped at the end of the run."""
    from orchestrator.mlflow_sink import start_server, stop_server

    folder = tmp_path_factory.mktemp("mlflow")
    uri = start_server(folder, port=5151)
    yield uri
    stop_server(folder)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, ray_local, mlflow_server):
    """The tiny grid (real SmolLM2 on real data) run once through Ray into MLflow; tests read it."""
    from orchestrator.config import load_grid
    from orchestrator.runner import run_grid

    out = tmp_path_factory.mktemp("tiny")
    r = load_grid(
        TINY,
        [
            f"output_dir={out}",
            "mlflow.enabled=true",
            f"mlflow.tracking_uri={mlflow_server}",
            f"mlflow.experiment=tiny-{out.name}",
        ],
    )
    plan, report, sink = run_grid(r)
    # the store as the run left it (later tests add units to ``out``'s: calibrate apply on new questions)
    snapshot = tmp_path_factory.mktemp("tiny-store") / "store"
    shutil.copytree(out / "store", snapshot)
    return {
        "resolved": r,
        "plan": plan,
        "report": report,
        "sink": sink,
        "out": out,
        "uri": mlflow_server,
        "store_after_run": snapshot,
    }
