"""MLflow logging on and off the scheduler loop: the old synchronous path vs the background writer.

    .venv/bin/python benchmarks/mlflow_logging.py                 # N = 1,792 and 10,000, both paths
    .venv/bin/python benchmarks/mlflow_logging.py --n 500 --paths writer

Against a real local ``mlflow server`` (SQLite, one worker, started with the project's own
``start_server`` in a fresh folder), N synthetic settings shaped like real ones are logged:
a manifest as ``jobs.scoring.run_setting_unit`` writes it (17 metrics from
``jobs.metrics.summarize`` on 100 questions), the resolved config of a default-grid setting as
params (84), the three routing curves (101 steps each) and the three artifacts
(``curve.png``, ``records.parquet``, ``curve.json``, the sizes of a real 100-question setting).

* ``sync``: the code ``on_setting`` ran before the writer (kept below as ``legacy_log_setting``,
  unchanged): search for the run, create it, log_batch, three ``log_artifact`` (the first
  fetches the run), ``set_terminated`` (fetches the run again to print its link).
* ``writer``: ``MlflowWriter.submit`` from the producer, ``close()`` at the end.

The producer is the scheduler loop reduced to handing over settings as fast as they come:
"blocked" is the total time spent inside ``on_setting``; "wall" is the time until every
setting is in MLflow. HTTP calls are counted at ``requests.Session.request``, the one door
MLflow's REST and artifact clients share.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------- HTTP calls
class CallCounter:
    def __init__(self):
        import requests

        self.n = 0
        self.by_kind: dict[str, int] = {}
        orig = requests.Session.request
        counter = self

        def request(session, method, url, *a, **kw):
            counter.n += 1
            path = str(url).split("/api/", 1)[-1].split("?")[0]
            kind = "artifact upload" if "mlflow-artifacts/artifacts" in path else path.rsplit("/", 1)[-1] or path
            counter.by_kind[f"{method} {kind}"] = counter.by_kind.get(f"{method} {kind}", 0) + 1
            return orig(session, method, url, *a, **kw)

        requests.Session.request = request

    def reset(self):
        self.n, self.by_kind = 0, {}


# ----------------------------------------------------------- synthetic store
def synthetic_settings(folder: Path, n: int, seed: int = 0):
    """(manifests, setting_dir, params): N manifests with distinct hashes and metric values; one
    folder with a real-sized curve.json, curve.png and records.parquet that every setting uploads."""
    import numpy as np

    import jobs.metrics as M
    from jobs.figures import plot_routing
    from jobs.records import write_json, write_table
    from jobs.scoring import curve_points
    from orchestrator.config import load_grid
    from orchestrator.plan import make_plan
    from orchestrator.runner import setting_params

    rng = np.random.default_rng(seed)
    u, a, b = rng.random(100), rng.random(100) < 0.45, rng.random(100) < 0.6
    summary = M.summarize(u, a, b, nan_policy="most_uncertain", ties="expected", n_boot=200, seed=0)
    curve = M.routing_curve(u, a, b, ties="expected")
    rnd, orc = M.random_curve(a, b), M.oracle_curve(a, b)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        folder / "curve.json", {"curve": curve_points(curve), "random": curve_points(rnd), "oracle": curve_points(orc)}
    )
    write_table(
        folder / "records.parquet",
        [
            {
                "sample_id": f"q{i}",
                "setting": "s",
                "setting_hash": "h",
                "slm_answer": "x" * 20,
                "slm_correct": bool(a[i]),
                "llm_answer": "y" * 20,
                "llm_correct": bool(b[i]),
                "uncertainty": float(u[i]),
                "route_rank": i,
            }
            for i in range(100)
        ],
        meta={"setting": "s"},
    )
    plot_routing({"perplexity (AUROC 0.64)": curve}, folder / "curve.png", random=rnd, oracle=orc, title="s")
    r = load_grid(str(REPO / "conf" / "grid" / "default.yaml"), [])
    s0 = make_plan(r).settings[0]
    params = setting_params(r, s0.axes())
    manifests = []
    for i in range(n):
        m = {k: (float(v) + 1e-4 * i if isinstance(v, float) else v) for k, v in summary.items()}
        manifests.append(
            {
                "key": f"{i:06d}{rng.integers(1 << 40):010x}",
                "name": f"slm{i % 16}__uq{i % 8}__ds{i % 14}__llm",
                "slm": f"slm{i % 16}",
                "uq": f"uq{i % 8}",
                "dataset": f"ds{i % 14}",
                "llm": "llm",
                "metrics": m,
            }
        )
    return manifests, folder, params


# ------------------------------------------------------ the pre-writer path
def legacy_log_setting(sink, manifest: dict, setting_dir: Path, params: dict) -> str:
    """``MlflowSink.log_setting`` as it was before the background writer (git f3c8219)."""
    import numpy as np
    from mlflow.entities import Metric, Param

    from orchestrator.mlflow_sink import _flatten, curve_metric

    h = manifest["key"]
    existing = sink._find(uqroute__setting_hash=h, mlflow__parentRunId=sink.parent_id)
    if any(r.info.status == "FINISHED" for r in existing):
        return next(r.info.run_id for r in existing if r.info.status == "FINISHED")
    for r in existing:
        sink.client.delete_run(r.info.run_id)
    tags = {
        "mlflow.parentRunId": sink.parent_id,
        "uqroute.kind": "setting",
        "uqroute.setting_hash": h,
        "uqroute.grid_hash": sink.grid_hash,
        "slm": manifest["slm"],
        "uq": manifest["uq"],
        "dataset": manifest["dataset"],
        "llm": manifest["llm"],
    }
    run = sink.client.create_run(sink.experiment_id, run_name=manifest["name"], tags=tags)
    rid = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), now, 0)
        for k, v in manifest["metrics"].items()
        if isinstance(v, (int, float)) and v is not None and np.isfinite(v)
    ]
    curve = json.loads((Path(setting_dir) / "curve.json").read_text())
    for name in ("curve", "random", "oracle"):
        metric = "routing_accuracy" if name == "curve" else f"routing_accuracy_{name}"
        metrics += [Metric(metric, acc, now, step) for step, acc in curve_metric(curve[name])]
    flat = [Param(k[:250], v) for k, v in sorted(_flatten(params).items())]
    for i in range(0, max(len(metrics), len(flat)), 500):
        sink.client.log_batch(rid, metrics=metrics[i : i + 500], params=flat[i : i + 100] if i == 0 else [], tags=[])
    for i in range(100, len(flat), 100):
        sink.client.log_batch(rid, params=flat[i : i + 100])
    for f in ("curve.png", "records.parquet", "curve.json"):
        p = Path(setting_dir) / f
        if p.is_file():
            sink.client.log_artifact(rid, str(p))
    sink.client.set_terminated(rid, "FINISHED")
    return rid


# ----------------------------------------------------------------- measures
def new_sink(uri: str, experiment: str):
    from orchestrator.mlflow_sink import MlflowSink

    return MlflowSink(uri, experiment, "bench", f"bench-{experiment}", {"bench": experiment})


def count_runs(sink) -> int:
    return sum(len(v) for v in sink.setting_runs().values())


def measured(path: str, manifests, sink, calls: CallCounter, **times: float) -> dict:
    """One path's result: its times, then the MLflow calls it made (counted before ``count_runs``
    makes its own) and the setting runs MLflow holds."""
    n_calls, kinds = calls.n, dict(calls.by_kind)
    return {
        "path": path,
        "n": len(manifests),
        **times,
        "calls": n_calls,
        "calls_per_setting": n_calls / len(manifests),
        "kinds": kinds,
        "runs": count_runs(sink),
    }


def run_sync(uri, manifests, folder, params, calls: CallCounter) -> dict:
    sink = new_sink(uri, f"sync-{len(manifests)}-{time.time():.0f}")
    calls.reset()
    blocked = 0.0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # set_terminated prints two lines per run
        for m in manifests:
            t = time.perf_counter()
            legacy_log_setting(sink, m, folder, params)
            blocked += time.perf_counter() - t
    return measured("sync", manifests, sink, calls, blocked_s=blocked, wall_s=time.perf_counter() - t0)


def run_writer(uri, manifests, folder, params, calls: CallCounter, lanes: int, maxsize: int) -> dict:
    from orchestrator.mlflow_sink import SettingSource
    from orchestrator.mlflow_writer import MlflowWriter

    sink = new_sink(uri, f"writer-{len(manifests)}-{time.time():.0f}")
    by_key = {m["key"]: m for m in manifests}
    # the writer's first search (what MLflow has) is part of its cost
    calls.reset()
    t0 = time.perf_counter()
    w = MlflowWriter(
        lambda: sink, lambda k, m: SettingSource(m or by_key[k], folder, params), lanes=lanes, maxsize=maxsize
    )
    blocked = 0.0
    for m in manifests:
        t = time.perf_counter()
        w.submit(m)
        blocked += time.perf_counter() - t
    produced = time.perf_counter() - t0
    stats = w.close(wait_s=60)
    times = {"blocked_s": blocked, "produced_s": produced, "wall_s": time.perf_counter() - t0}
    return measured("writer", manifests, sink, calls, **times) | {
        "spilled": stats.spilled,
        "pending": len(stats.pending),
        "lanes": lanes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1792, 10000])
    ap.add_argument("--paths", nargs="+", default=["sync", "writer"], choices=["sync", "writer"])
    ap.add_argument(
        "--sync-max", type=int, default=None, help="run the sync path only for N <= this (it is the slow one)"
    )
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--maxsize", type=int, default=1000)
    ap.add_argument("--port", type=int, default=5088)
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()

    from orchestrator.mlflow_sink import start_server, stop_server

    work = Path(tempfile.mkdtemp(prefix="uqroute-mlflow-bench-"))
    manifests, folder, params = synthetic_settings(work / "setting", max(a.n))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    calls = CallCounter()
    results = []
    try:
        for n in a.n:
            for path in a.paths:
                if path == "sync" and a.sync_max is not None and n > a.sync_max:
                    print(f"N={n}: sync path skipped (--sync-max {a.sync_max})", flush=True)
                    continue
                srv = work / f"server-{path}-{n}"  # a fresh database per measure
                uri = start_server(srv, a.port)
                try:
                    res = (
                        run_sync(uri, manifests[:n], folder, params, calls)
                        if path == "sync"
                        else run_writer(uri, manifests[:n], folder, params, calls, a.lanes, a.maxsize)
                    )
                finally:
                    stop_server(srv)
                results.append(res)
                print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))
    print(f"\n{'N':>6} {'path':>7} {'blocked s':>10} {'wall s':>8} {'calls/setting':>14} {'runs':>6}")
    for res in results:
        print(
            f"{res['n']:>6} {res['path']:>7} {res['blocked_s']:>10.3f} {res['wall_s']:>8.1f} "
            f"{res['calls_per_setting']:>14.2f} {res['runs']:>6}"
        )
    print(f"\n{'N':>6} {'blocked sync/writer':>20} {'wall sync/writer':>17} {'calls sync/writer':>18}")
    for n in a.n:
        s = next((x for x in results if x["n"] == n and x["path"] == "sync"), None)
        w = next((x for x in results if x["n"] == n and x["path"] == "writer"), None)
        if s and w:
            print(
                f"{n:>6} {s['blocked_s'] / max(w['blocked_s'], 1e-9):>20.0f} {s['wall_s'] / w['wall_s']:>17.2f} "
                f"{s['calls_per_setting'] / w['calls_per_setting']:>18.2f}"
            )


if __name__ == "__main__":
    main()
