"""MLflow, in one module: start/reuse a tracking server, and log settings as runs.

MLflow is a view of the Parquet store, never the source of truth: every run can be
rebuilt from the store with ``uqroute sync``. One parent run per grid (tag
``uqroute.grid_hash``), one child run per setting (tag ``uqroute.setting_hash``); runs
are found again by these tags, so a retry, a resume or a sync never creates a duplicate.
The routing curve is the metric ``routing_accuracy`` whose step is the percent of queries
routed to the LLM (0..100), so MLflow's chart view overlays curves across runs.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests

PID_FILE = "mlflow-server.json"


# ------------------------------------------------------------------ server
def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is free
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def healthy(uri: str, timeout: float = 2.0) -> bool:
    try:
        return requests.get(uri.rstrip("/") + "/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def start_server(folder: Path, port: int = 5000, wait_s: float = 90.0) -> str:
    """Start (or reuse) ``mlflow server`` with a SQLite backend under ``folder``.

    The server runs in its own process group (setsid) so ``stop_server`` can stop it and
    its workers together; its address and pid are kept in ``folder/mlflow-server.json``.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    info_path = folder / PID_FILE
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if healthy(info["uri"]):
            return info["uri"]
    while not _port_free(port):
        port += 1
    uri = f"http://127.0.0.1:{port}"
    log = open(folder / "mlflow-server.log", "ab")
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
           "--artifacts-destination", str(folder / "mlartifacts"), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    info_path.write_text(json.dumps({"uri": uri, "pid": proc.pid, "pgid": proc.pid}))
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}; see {folder / 'mlflow-server.log'}")
        if healthy(uri):
            return uri
        time.sleep(0.5)
    stop_server(folder)
    raise TimeoutError(f"mlflow server did not answer on {uri} within {wait_s}s; see {folder / 'mlflow-server.log'}")


def stop_server(folder: Path) -> bool:
    info_path = Path(folder) / PID_FILE
    if not info_path.is_file():
        return False
    info = json.loads(info_path.read_text())
    try:
        os.killpg(info["pgid"], signal.SIGTERM)
        for _ in range(50):
            os.killpg(info["pgid"], 0)
            time.sleep(0.1)
        os.killpg(info["pgid"], signal.SIGKILL)
    except ProcessLookupError:
        pass
    info_path.unlink(missing_ok=True)
    return True


# -------------------------------------------------------------------- sink
def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = "" if v is None else str(v)[:500]
    return out


def curve_metric(curve: list[dict]) -> list[tuple[int, float]]:
    """(percent routed 0..100, accuracy) by interpolating the exact curve."""
    r = np.array([p["ratio"] for p in curve])
    a = np.array([p["accuracy"] for p in curve])
    steps = np.arange(101)
    return list(zip(steps.tolist(), np.interp(steps / 100.0, r, a).tolist()))


class MlflowSink:
    def __init__(self, uri: str, experiment: str, grid_name: str, grid_hash: str, resolved_params: dict):
        import mlflow
        from mlflow.tracking import MlflowClient

        self.mlflow = mlflow
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.grid_hash = grid_hash
        self.parent_id = self._parent(grid_name, grid_hash, resolved_params)

    def _find(self, **tags: str):
        """Runs whose tags equal all of ``tags`` (keys with dots given as ``uqroute__kind``)."""
        flt = " and ".join(f"tags.`{k.replace('__', '.')}` = '{v}'" for k, v in tags.items())
        return list(self.client.search_runs([self.experiment_id], filter_string=flt, max_results=100))

    def _parent(self, name: str, grid_hash: str, params: dict) -> str:
        runs = self._find(uqroute__kind="grid", uqroute__grid_hash=grid_hash)
        if runs:
            return runs[0].info.run_id
        run = self.client.create_run(self.experiment_id, run_name=f"grid:{name}",
                                     tags={"uqroute.kind": "grid", "uqroute.grid_hash": grid_hash})
        from mlflow.entities import Param

        flat = _flatten(params)
        items = [Param(k[:250], v) for k, v in sorted(flat.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run.info.run_id, params=items[i:i + 100])
        return run.info.run_id

    def finished_settings(self) -> set[str]:
        out, token = set(), None
        while True:
            page = self.client.search_runs([self.experiment_id],
                                           filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
                                           max_results=1000, page_token=token)
            out |= {r.data.tags.get("uqroute.setting_hash") for r in page if r.info.status == "FINISHED"}
            token = page.token
            if not token:
                return out

    def log_setting(self, manifest: dict, setting_dir: Path, params: dict) -> str:
        from mlflow.entities import Metric, Param, RunTag

        h = manifest["key"]
        existing = self._find(uqroute__setting_hash=h, mlflow__parentRunId=self.parent_id)
        if any(r.info.status == "FINISHED" for r in existing):
            return next(r.info.run_id for r in existing if r.info.status == "FINISHED")
        for r in existing:  # a half-logged run from a crash: replace it
            self.client.delete_run(r.info.run_id)
        tags = {"mlflow.parentRunId": self.parent_id, "uqroute.kind": "setting", "uqroute.setting_hash": h,
                "uqroute.grid_hash": self.grid_hash, "slm": manifest["slm"], "uq": manifest["uq"],
                "dataset": manifest["dataset"], "llm": manifest["llm"]}
        run = self.client.create_run(self.experiment_id, run_name=manifest["name"], tags=tags)
        rid = run.info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in manifest["metrics"].items()
                   if isinstance(v, (int, float)) and v is not None and np.isfinite(v)]
        curve = json.loads((Path(setting_dir) / "curve.json").read_text())
        for name in ("curve", "random", "oracle"):
            metric = "routing_accuracy" if name == "curve" else f"routing_accuracy_{name}"
            metrics += [Metric(metric, acc, now, step) for step, acc in curve_metric(curve[name])]
        flat = [Param(k[:250], v) for k, v in sorted(_flatten(params).items())]
        for i in range(0, max(len(metrics), len(flat)), 500):
            self.client.log_batch(rid, metrics=metrics[i:i + 500], params=flat[i:i + 100] if i == 0 else [],
                                  tags=[])
        for i in range(100, len(flat), 100):
            self.client.log_batch(rid, params=flat[i:i + 100])
        for f in ("curve.png", "records.parquet", "curve.json"):
            p = Path(setting_dir) / f
            if p.is_file():
                self.client.log_artifact(rid, str(p))
        self.client.set_terminated(rid, "FINISHED")
        return rid

    def log_grid_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.parent_id, str(path), artifact_path)

    def log_report(self, report: dict) -> None:
        """The grid report on the parent run: HTML + PNGs under ``report/``, each finding's verdict
        as a tag, and headline transfer numbers as metrics."""
        self.log_grid_artifact(report["html"], "report")
        self.log_grid_artifact(report["analysis"], "report")
        for p in report["pngs"]:
            self.log_grid_artifact(p, "report")
        for f in report["findings"]:
            self.client.set_tag(self.parent_id, f"finding_{f['id']}", f["verdict"])
        for name, value in report.get("metrics", {}).items():
            if value is not None and value == value:
                self.client.log_metric(self.parent_id, name, float(value))

    def finish_grid(self, ok: bool) -> None:
        self.client.set_terminated(self.parent_id, "FINISHED" if ok else "FAILED")
