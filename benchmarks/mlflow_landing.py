"""What a user gets from the printed MLflow links at the paper's shape (issue 19): 1,792 setting runs.

    nice -n 10 .venv/bin/python benchmarks/mlflow_landing.py             # 8 SLM x 8 UQ x 14 datasets x 2 LLMs
    .venv/bin/python benchmarks/mlflow_landing.py --slms 1 --datasets 2  # a quick look (32 runs)

Against a real local ``mlflow server`` (SQLite, one worker, the project's ``start_server`` in a
fresh folder), the paper grid's 1,792 settings are logged as a grid run logs them: the background
writer (``MlflowWriter``) with the real ``MlflowSink`` (manifests shaped as ``jobs.scoring`` writes
them, one curve per UQ method so each group's lines differ, three artifacts each, as
``benchmarks/mlflow_logging.py`` builds them), then the settings table on the parent run. The
grid's axes are the paper's: the SLM, dataset and LLM names of ``benchmarks/paper_scale.py``
(``PAPER_DATASETS_OFFLINE``, ``PAPER_METHODS``).

Then, in a headless Chromium with a fresh profile (1600x1000, ``tests/browser.py``), for the
landing link and the parent run's link that ``MlflowSink.ui_links`` gives, it times the load: from
navigation until the page shows what it is for (the landing: the routing-curve chart drawn with one
line per method of the group, and the four bar charts; the parent run: the settings table's rows),
and checks that the parent run's table holds every setting (the artifact, read back over the REST
API, and the row count the UI reports). Prints the load average before and after: on a shared
machine the times are only as good as the load is low. Screenshots go to ``--shots``.
"""

from __future__ import annotations

import argparse
import asyncio
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


def paper_axes(n_slms: int, n_datasets: int, n_llms: int) -> dict:
    from jobs.datasets import PAPER_DATASETS_OFFLINE
    from jobs.uq import PAPER_METHODS

    return {
        "slms": {f"smollm2-l{-2 - i}": {} for i in range(n_slms)},
        "uq": {u: {} for u in PAPER_METHODS},
        "datasets": {d: {} for d in list(PAPER_DATASETS_OFFLINE)[:n_datasets]},
        "llms": {k: {} for k in ["gemma3-270m", "smollm2-fp32-llm"][:n_llms]},
    }


def method_folders(work: Path, methods: list[str], n_q: int = 100) -> dict[str, tuple[dict, Path]]:
    """Per UQ method: its summary metrics and a folder with curve.json, curve.png and records.parquet
    (the method's uncertainty is the truth plus noise of its own size, so the curves differ)."""
    import numpy as np

    import jobs.metrics as M
    from jobs.figures import plot_routing
    from jobs.records import write_json, write_table
    from jobs.scoring import curve_points

    rng = np.random.default_rng(0)
    a, b = rng.random(n_q) < 0.45, rng.random(n_q) < 0.6
    out = {}
    for j, uq in enumerate(methods):
        u = (~a).astype(float) + rng.normal(0, 0.3 + 0.25 * j, n_q)
        summary = M.summarize(u, a, b, nan_policy="most_uncertain", ties="expected", n_boot=100, seed=0)
        curve = M.routing_curve(u, a, b, ties="expected")
        rnd, orc = M.random_curve(a, b), M.oracle_curve(a, b)
        folder = work / uq
        folder.mkdir(parents=True, exist_ok=True)
        write_json(
            folder / "curve.json",
            {"curve": curve_points(curve), "random": curve_points(rnd), "oracle": curve_points(orc)},
        )
        write_table(
            folder / "records.parquet",
            [{"sample_id": f"q{i}", "uncertainty": float(u[i]), "slm_correct": bool(a[i])} for i in range(n_q)],
            meta={"setting": uq},
        )
        plot_routing({uq: curve}, folder / "curve.png", random=rnd, oracle=orc, title=uq)
        out[uq] = ({k: v for k, v in summary.items()}, folder)
    return out


def manifests(axes: dict, per_method: dict) -> list[dict]:
    import hashlib

    out = []
    for slm in axes["slms"]:
        for uq in axes["uq"]:
            for ds in axes["datasets"]:
                for llm in axes["llms"]:
                    name = f"{slm}__{uq}__{ds}__{llm}"
                    metrics, _ = per_method[uq]
                    h = hashlib.sha256(name.encode()).hexdigest()[:16]
                    # a little per-setting spread, so the bars of a group are not all alike
                    jitter = (int(h[:4], 16) / 65535 - 0.5) * 0.02
                    m = {
                        k: (v + jitter if isinstance(v, float) and k in ("auroc", "area", "apgr") else v)
                        for k, v in metrics.items()
                    }
                    out.append(
                        {
                            "key": h,
                            "setting_hash": h,
                            "name": name,
                            "slm": slm,
                            "uq": uq,
                            "dataset": ds,
                            "llm": llm,
                            "metrics": m,
                        }
                    )
    return out


def log_grid(uri: str, axes: dict, mans: list[dict], per_method: dict, lanes: int):
    from orchestrator.mlflow_sink import MlflowSink, SettingSource
    from orchestrator.mlflow_writer import MlflowWriter

    sink = MlflowSink(uri, "paper-landing", "paper-scale", "bench-paper-landing", axes | {"name": "paper-scale"})
    by_key = {m["key"]: m for m in mans}
    params = {"decoding": {"max_new_tokens": 16}, "seed": 0}
    t0 = time.perf_counter()
    w = MlflowWriter(
        lambda: sink,
        lambda k, m: SettingSource(m or by_key[k], per_method[(m or by_key[k])["uq"]][1], params),
        lanes=lanes,
    )
    for m in mans:
        w.submit(m)
    stats = w.close(wait_s=120)
    log_s = time.perf_counter() - t0
    rows = [
        {"setting": m["name"], "key": m["key"], **{k: m[k] for k in ("slm", "uq", "dataset", "llm")}, **m["metrics"]}
        for m in mans
    ]
    t1 = time.perf_counter()
    sink.log_settings_table(rows)
    return sink, {
        "log_s": log_s,
        "table_s": time.perf_counter() - t1,
        "pending": len(stats.pending),
        "logged": stats.logged,
    }


# what the landing is for: the routing-curve chart drawn with a line per run of the group and its
# legend naming every one, and the first bar chart drawn beside it
LANDING_READY = """(() => {
  const t = document.body.innerText;
  const legend = t.split('\\n').filter(l => l.endsWith('(routing_accuracy)')).length;
  return t.includes('routing curves') && legend >= N
    && document.querySelectorAll('.scatterlayer .trace path.js-line').length >= N
    && document.querySelectorAll('.barlayer .trace').length > 0;
})()"""

TABLE_READY = """(() => document.body.innerText.includes('View as table') &&
  document.querySelectorAll('[role=row]').length > 3)()"""
# the settings table's pages (MLflow's logged-table view shows 20 rows a page): the last page number
TABLE_PAGES = """Math.max(...Array.from(document.querySelectorAll('li[title]')).map(e => parseInt(e.getAttribute('title'))).filter(n => n > 0))"""
ROWS_ON_PAGE = "document.querySelectorAll('[role=row]').length - 1"


async def _timed(port: int, url: str, until: str, shot: Path, exprs: dict, timeout: float) -> dict:
    import base64

    from tests.browser import devtools

    async with devtools(port, timeout) as call:

        async def value(expr: str):
            r = await call("Runtime.evaluate", expression=expr, returnByValue=True)
            return r["result"].get("value")

        await call("Page.enable")
        await call("Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False)
        t0 = time.perf_counter()
        await call("Page.navigate", url=url)
        while not await value(until):
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(
                    f"{url}: not ready in {timeout}s; page: {await value('document.body.innerText')!r:.1500}"
                )
            await asyncio.sleep(0.1)
        ready = time.perf_counter() - t0
        await asyncio.sleep(3.0)
        out = {name: await value(e) for name, e in exprs.items()}
        shot.write_bytes(base64.b64decode((await call("Page.captureScreenshot", format="png"))["data"]))
        return {"ready_s": ready, **out}


def timed_load(url: str, until: str, shot: Path, exprs: dict, timeout: float = 180.0) -> dict:
    from tests.browser import _free_port, chromium

    port = _free_port()
    with chromium(port):
        return asyncio.run(_timed(port, url, until, shot, exprs, timeout))


def time_links(sink, rows: list[dict], shots: Path, repeat: int) -> None:
    """Check the parent run's table against ``rows`` (the settings table) and time the landing and the
    parent run's page, each ``repeat`` times in a fresh browser profile."""
    from mlflow.tracking import MlflowClient

    from orchestrator.mlflow_sink import group_filter

    links = sink.ui_links(rows)
    print(f"{len(links)} links; landing: {links[0][1]}\nparent: {links[-1][1]}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        p = MlflowClient(sink.uri).download_artifacts(sink.parent_id, "settings.json", tmp)
        table = json.loads(Path(p).read_text())
    axes = ("uq", "dataset", "slm", "llm")
    in_table = {tuple(row[table["columns"].index(k)] for k in axes) for row in table["data"]}
    every = in_table == {tuple(row[k] for k in axes) for row in rows} and len(table["data"]) == len(rows)
    print(f"parent table: {len(table['data'])} rows for {len(rows)} settings, every setting listed: {every}")
    g = sink.landing_group(rows)
    runs = MlflowClient(sink.uri).search_runs([sink.experiment_id], group_filter(sink.grid_hash, *g))
    n_group = sum(1 for r in runs if "routing_accuracy" in r.data.metrics)
    n = len(rows)
    for k in range(repeat):
        land = timed_load(
            links[0][1],
            LANDING_READY.replace("N", str(n_group)),
            shots / f"landing-{k}.png",
            {"text": "document.body.innerText.slice(0, 3000)"},
        )
        print(
            f"landing ready in {land['ready_s']:.1f} s (group {g}: {n_group} curves, a line and a name each)",
            flush=True,
        )
        par = timed_load(
            links[-1][1],
            TABLE_READY,
            shots / f"parent-{k}.png",
            {"text": "document.body.innerText.slice(0, 3000)", "pages": TABLE_PAGES, "rows": ROWS_ON_PAGE},
        )
        fits = par["pages"] * par["rows"] >= n > (par["pages"] - 1) * par["rows"]
        print(
            f"parent table ready in {par['ready_s']:.1f} s: {par['pages']} pages of {par['rows']} rows "
            f"(as many pages as {n} settings need: {fits})",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()}; screenshots in {shots}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slms", type=int, default=8)
    ap.add_argument("--datasets", type=int, default=14)
    ap.add_argument("--llms", type=int, default=2)
    ap.add_argument("--lanes", type=int, default=4)
    ap.add_argument("--port", type=int, default=5099)
    ap.add_argument("--repeat", type=int, default=2, help="time each page this many times")
    ap.add_argument("--shots", default="/tmp/uqroute-landing-shots")
    ap.add_argument("--keep", help="keep the MLflow server and its folder here (default: a temporary one)")
    ap.add_argument("--reuse", help="a folder an earlier --keep run logged: only time the links again")
    ap.add_argument(
        "--links-of",
        help="the output folder of a grid run (benchmarks/paper_scale.py leaves /tmp/uqroute-paper-scale): "
        "start its MLflow server and time the links `uqroute run` printed",
    )
    a = ap.parse_args()

    from orchestrator.mlflow_sink import start_server, stop_server

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    shots = Path(a.shots)
    shots.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()}", flush=True)
    if a.links_of:
        from orchestrator.plan import make_plan
        from orchestrator.runner import _new_sink, load_output, settings_table

        out = Path(a.links_of)
        r = load_output(out)
        rows = settings_table(r, make_plan(r))
        uri = start_server(out / "mlflow", a.port)
        try:
            time_links(_new_sink(r, uri), rows, shots, a.repeat)
        finally:
            stop_server(out / "mlflow")
        return
    work = Path(a.reuse or a.keep or tempfile.mkdtemp(prefix="uqroute-landing-"))
    axes = paper_axes(a.slms, a.datasets, a.llms)
    per_method = method_folders(work / "methods", list(axes["uq"]))
    mans = manifests(axes, per_method)
    rows = [{"setting": m["name"], **{k: m[k] for k in ("slm", "uq", "dataset", "llm")}, **m["metrics"]} for m in mans]
    print(f"{len(mans)} settings", flush=True)
    uri = start_server(work / "mlflow", a.port)
    try:
        if a.reuse:
            from orchestrator.mlflow_sink import MlflowSink

            sink = MlflowSink(
                uri, "paper-landing", "paper-scale", "bench-paper-landing", axes | {"name": "paper-scale"}
            )
            print(f"{sum(len(v) for v in sink.setting_runs().values())} setting runs in {work}", flush=True)
            sink.log_settings_table(rows)  # as this version writes it
        else:
            sink, logged = log_grid(uri, axes, mans, per_method, a.lanes)
            print(json.dumps(logged), flush=True)
        time_links(sink, rows, shots, a.repeat)
    finally:
        if not (a.keep or a.reuse):
            stop_server(work / "mlflow")
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
