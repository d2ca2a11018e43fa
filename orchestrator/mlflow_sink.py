"""MLflow, in one module: start/reuse a tracking server, and log settings as runs.

MLflow is a view of the Parquet store, never the source of truth: every run can be
rebuilt from the store with ``uqroute sync``. One parent run per grid (tag
``uqroute.grid_hash``), one child run per setting (tag ``uqroute.setting_hash``); runs
are found again by these tags, so a retry, a resume or a sync never creates a duplicate.
A setting's run also carries the key of the setting unit it shows (tag ``uqroute.unit_key``):
when a setting's result changes (a new prompt, extractor or metric version gives its unit a new
key), its run is *replaced* -- the old one deleted, a new one logged under the same setting hash
-- so the grid keeps exactly one run per setting, showing the current result.
The routing curve is the metric ``routing_accuracy`` whose step is the percent of queries
routed to the LLM (0..100), so MLflow's chart view overlays curves across runs; the same curve on
a cost axis is ``cost_curve_accuracy``, step = micro-dollars per query (``jobs/cost.py``).

Logging happens off the scheduler loop, in ``orchestrator.mlflow_writer``; this module has the
calls themselves. ``write_setting`` is one setting in six HTTP calls: create the run with its
tags, one ``log_batch`` (params, scalar metrics and the three curves' 101 steps each), one
upload per artifact, and the status update.

What a new user sees: MLflow 3 opens an experiment on its GenAI overview, and its runs table
nests child runs (``mlflow.parentRunId``) under a collapsed parent whenever the table is
sorted by date, so neither the settings nor their curves are visible. Left to itself, its chart
view draws one chart per metric, alphabetically (``apgr``, ``apgr_hi``, ``apgr_lo``, ...), over the
first 10 runs. ``ui_links`` gives the links to print instead:

* **one view per (SLM, dataset, LLM) group**, one of them the landing (``landing_group``: the group
  with the most settings whose AUROC is defined, the first in grid order among equals). MLflow 3.17 restores a
  whole runs-page state from an experiment tag ``mlflow.sharedViewState.<key>`` when the URL
  carries ``viewStateShareKey=<key>`` and no search facet (its "Share" button writes the same tag;
  ``useSharedExperimentViewState`` in ``mlflow/server/js``): the search facets (``searchFilter``,
  ``orderByKey``, ...) and the UI state, whose ``compareRunCharts`` / ``compareRunSections`` are
  the chart configuration -- charts in array order, sections in array order as long as
  ``isAccordionReordered`` is true (otherwise sections are sorted by name). ``group_view_state``
  writes one: the group's runs, sorted by AUROC, all shown (``runsHiddenMode``), in a first
  section the routing curves overlaid (one line per run: per UQ method or learned router) and
  bars of the metrics ``jobs.metrics.METRICS`` shows in "mlflow" (AUROC, unscored share, area,
  APGR: ``landing_metrics``); the curves against random and oracle and the cost
  curve in a collapsed second section; every other metric (interval bounds, costs, token counts)
  in the collapsed "Model metrics" section, where MLflow also puts any metric the view does not
  name. Another group is one edit of the search filter away.
* **the grid's parent run** (``parent_url``), on its settings table (``settings.json``, the
  format ``mlflow.log_table`` writes and the ``mlflow.loggedArtifacts`` tag that makes MLflow
  render it as a table), beside the per-group overlays, ``summary.csv`` and the report.

Run names put what differs first: ``<uq> | <dataset> | <slm> -> <llm>`` (``run_name``), and each
UQ method keeps one colour across groups (tag ``mlflow.runColor``).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from jobs import metrics as M
from jobs.store import CURVE, SETTING_ARTIFACTS

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


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on ``port`` (Linux ``/proc/net/tcp*``); None where /proc has no such file."""
    found, seen = set(), False
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        seen = True
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                found.add(f[9])
    return found if seen else None


def _serves(pgid: int, port: int) -> bool:
    """Whether a process of group ``pgid`` (the server ``start_server`` started) is the one listening
    on ``port``. Another server that took the port first (two test sessions starting servers at once)
    also answers ``/health``; where /proc cannot tell, True."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for fd in (stat.parent / "fd").iterdir():
                if os.readlink(fd) in {f"socket:[{i}]" for i in inodes}:
                    return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def start_server(folder: Path, port: int = 5000, wait_s: float = 90.0, _tries: int = 5) -> str:
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
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "mlartifacts"),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
    )
    info_path.write_text(json.dumps({"uri": uri, "pid": proc.pid, "pgid": proc.pid}))
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if proc.poll() is not None:
            if not _port_free(port) and _tries > 1:  # another server took the port between our look and our bind
                info_path.unlink(missing_ok=True)
                return start_server(folder, port + 1, wait_s, _tries - 1)
            raise RuntimeError(f"mlflow server exited with {proc.returncode}; see {folder / 'mlflow-server.log'}")
        if healthy(uri) and _serves(proc.pid, port):
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


# ------------------------------------------------------------ the UI views


def landing_metrics() -> tuple[str, ...]:
    """What a reader looks at first, after the routing curves (bar charts on the landing): the
    metrics ``jobs.metrics.METRICS`` shows in "mlflow", in its order; the first orders the runs."""
    return tuple(m.name for m in M.shown("mlflow"))


def other_metrics() -> tuple[str, ...]:
    """The other metrics a setting logs (``jobs.metrics.summary_keys``), placed in the collapsed
    "Model metrics" section; a metric no chart names (the cost and token metrics of ``jobs/cost.py``)
    goes there too: MLflow adds it to the section its name's prefix gives ("Model metrics" for none),
    at its end."""
    first = set(landing_metrics())
    return tuple(k for k in M.summary_keys() if k not in first)


def run_order() -> tuple[str, bool]:
    """How the runs are sorted: the first landing metric, best first by its declared direction
    (``orderByKey``, ``orderByAsc``)."""
    m = M.metric(landing_metrics()[0])
    return f"metrics.`{m.name}`", m.higher_is_better is False


#: the settings table's leading columns: what tells settings apart; the landing metrics follow
TABLE_AXES = ("uq", "dataset", "slm", "llm")


def table_columns() -> tuple[str, ...]:
    """The settings table's columns (``log_settings_table``): what tells settings apart, the landing
    metrics, the two accuracies and the first metric's interval; every other number is in
    ``summary.csv`` beside it and in the setting's run. Few on purpose: MLflow's table view spends
    about half a millisecond of browser time per cell (measured: 1,792 rows of 55 columns took
    51-63 s to show, of 15 columns 20 s; benchmarks/mlflow_landing.py)."""
    landing = landing_metrics()
    return (*TABLE_AXES, *landing, "slm_acc", "llm_acc", *M.metric(landing[0]).interval_keys)


SETTINGS_TABLE = "settings.json"
SHARE_TAG = "mlflow.sharedViewState."  # MLflow's EXPERIMENT_PAGE_VIEW_STATE_SHARE_TAG_PREFIX
LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"  # mlflow.utils.mlflow_tags.MLFLOW_LOGGED_ARTIFACTS
# Tableau 10: a UQ method keeps its colour in every group (tag ``mlflow.runColor``)
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip


def run_name(m: dict) -> str:
    """A setting run's name, what differs first so a cut name still tells runs apart."""
    return f"{m['uq']} | {m['dataset']} | {m['slm']} -> {m['llm']}"


def group_label(slm: str, dataset: str, llm: str) -> str:
    return f"{slm} -> {llm} on {dataset}"


def _q(v: str) -> str:
    return str(v).replace("'", "\\'")


def group_filter(grid_hash: str, slm: str, dataset: str, llm: str) -> str:
    """MLflow's search filter for one group's setting runs."""
    return (
        f"tags.`uqroute.grid_hash` = '{_q(grid_hash)}' and tags.slm = '{_q(slm)}' and "
        f"tags.dataset = '{_q(dataset)}' and tags.llm = '{_q(llm)}'"
    )


def share_key(grid_hash: str, slm: str, dataset: str, llm: str) -> str:
    return "uqroute-" + hashlib.sha256(f"{grid_hash}|{slm}|{dataset}|{llm}".encode()).hexdigest()[:24]


def _line(uuid: str, section: str, metric: str, title: str) -> dict:
    return {
        "uuid": uuid,
        "type": "LINE",
        "metricSectionId": section,
        "metricKey": metric,
        "selectedMetricKeys": [metric],
        "displayName": title,
        "xAxisKey": "step",
        "selectedXAxisMetricKey": "",
        "xAxisScaleType": "linear",
        "scaleType": "linear",
        "lineSmoothness": 0,
        "useGlobalXaxisKey": False,
        "useGlobalLineSmoothing": False,
        "ignoreOutliers": False,
        "yAxisKey": "metric",
        "yAxisExpressions": [],
        "range": {},
        "runsCountToCompare": 100,
        "deleted": False,
        "isGenerated": False,
    }


def _bar(uuid: str, section: str, metric: str) -> dict:
    return {
        "uuid": uuid,
        "type": "BAR",
        "metricSectionId": section,
        "metricKey": metric,
        "runsCountToCompare": 100,
        "deleted": False,
        "isGenerated": False,
    }


def group_view_state(grid_hash: str, slm: str, dataset: str, llm: str) -> dict:
    """The runs-page state of one group (see the module docstring): search facets and UI state
    as MLflow 3.17's ``ExperimentPageSearchFacetsState`` and ``ExperimentPageUIState`` name them."""
    first, curves, rest = "uq-first", "uq-curves", "uq-rest"
    charts = [
        _line(
            "uq-routing",
            first,
            "routing_accuracy",
            f"Routing curve: accuracy (y) vs % of queries routed to the LLM (x), {group_label(slm, dataset, llm)}",
        )
    ]
    charts += [_bar(f"uq-{m}", first, m) for m in landing_metrics()]
    charts += [
        _line("uq-random", curves, "routing_accuracy_random", "Routing curve of random routing"),
        _line("uq-oracle", curves, "routing_accuracy_oracle", "Routing curve of the oracle"),
        _line("uq-cost", curves, "cost_curve_accuracy", "Accuracy vs cost (x: micro-dollars per query)"),
    ]
    charts += [_bar(f"uq-{m}", rest, m) for m in other_metrics()]
    section = {"isReordered": True, "deleted": False, "isGenerated": False, "columns": 3, "cardHeight": 320}
    sections = [
        section
        | {
            "uuid": first,
            "name": f"{group_label(slm, dataset, llm)}: routing curves (x: % routed to the LLM) and first metrics",
            "display": True,
        },
        section | {"uuid": curves, "name": "Routing vs random and oracle; cost", "display": False},
        section | {"uuid": rest, "name": "Model metrics", "display": False},  # MLflow's name for unprefixed
    ]
    cols = [f"tags.`{t}`" for t in ("uq", "dataset")] + [f"metrics.`{m}`" for m in landing_metrics()]
    order_key, order_asc = run_order()
    return {
        # search facets
        "searchFilter": group_filter(grid_hash, slm, dataset, llm),
        "orderByKey": order_key,
        "orderByAsc": order_asc,
        # UI state
        "selectedColumns": cols,
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": charts,
        "compareRunSections": sections,
        "isAccordionReordered": True,
        "hideEmptyCharts": False,  # the same five charts in every group (an undefined AUROC: an empty chart)
        "useGroupedValuesInCharts": True,
        "viewMaximized": False,
        "runListHidden": True,  # the charts' legends name the runs; the charts get the width
        "groupBy": None,
        "groupsExpanded": {},
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
        "chartsSearchFilter": "",
    }


def _share_value(state: dict) -> str:
    """The tag value: MLflow reads plain JSON, or ``deflate;`` + base64 of zlib (its
    ``textCompressDeflate``, pako), which keeps it under the 20,000-character tag limit."""
    import base64
    import zlib

    raw = json.dumps(state, separators=(",", ":"))
    return "deflate;" + base64.b64encode(zlib.compress(raw.encode(), 9)).decode()


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
    """(percent routed 0..100, accuracy) by interpolating the exact curve; none for an empty curve
    (a setting whose method scored no query)."""
    if not curve:
        return []
    r = np.array([p["ratio"] for p in curve])
    a = np.array([p["accuracy"] for p in curve])
    steps = np.arange(101)
    return list(zip(steps.tolist(), np.interp(steps / 100.0, r, a).tolist()))


def cost_metrics(curve: dict) -> list[tuple[str, float, int]]:
    """The routing curve on the cost axis (``jobs/cost.py``), when the setting has one, as (key,
    value, step): metric ``cost_curve_accuracy`` with step = cost in micro-dollars per query
    (``cost_curve_metric``), so MLflow's chart of it is accuracy against cost; the priced table is
    in curve.json."""
    from jobs.cost import cost_curve_metric

    block = curve.get("cost")
    if not block or not block.get("curve"):
        return []
    return [("cost_curve_accuracy", acc, step) for step, acc in cost_curve_metric(block["curve"])]


def setting_metrics(manifest: dict, curve: dict) -> list[tuple[str, float, int]]:
    """What a setting's run logs as metrics, (key, value, step): every finite number of the
    manifest's ``metrics`` at step 0 (``jobs.metrics.summarize``'s, one per ``METRICS`` entry and
    interval bound, and those merged beside them: cost, answer agreement), the routing curve and
    random and oracle routing's over the percent routed (``curve_metric``), and the cost curve."""
    out = [
        (k, float(v), 0)
        for k, v in manifest["metrics"].items()
        if isinstance(v, (int, float)) and v is not None and np.isfinite(v)
    ]
    for name in ("curve", "random", "oracle"):
        metric = "routing_accuracy" if name == "curve" else f"routing_accuracy_{name}"
        out += [(metric, acc, step) for step, acc in curve_metric(curve[name])]
    return out + cost_metrics(curve)


ARTIFACTS = SETTING_ARTIFACTS
# MLflow's log_batch limits (mlflow.utils.validation): params+tags 100, metrics 1000, all 1000
MAX_PARAMS, MAX_METRICS, MAX_ENTITIES = 100, 1000, 1000
GRID_STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class SettingSource:
    """Where one setting's MLflow run comes from: its manifest (``jobs.scoring`` writes it:
    key, name, slm/uq/dataset/llm, metrics), its folder in the store (``curve.json`` and the
    artifacts), and its resolved config (logged as params)."""

    manifest: dict
    setting_dir: Path
    params: dict


def batches(metrics: list, params: list, tags: list = ()) -> list[tuple[list, list, list]]:
    """Split into as few ``log_batch`` calls as MLflow's limits allow (one for a usual setting)."""
    out, metrics, params, tags = [], list(metrics), list(params), list(tags)
    while metrics or params or tags or not out:
        pt = (params + tags)[:MAX_PARAMS]
        p, t = pt[: len(params)][:MAX_PARAMS], pt[len(params) :]
        m = metrics[: MAX_ENTITIES - len(pt)][:MAX_METRICS]
        out.append((m, p, t))
        metrics, params, tags = metrics[len(m) :], params[len(p) :], tags[len(t) :]
        if not (m or p or t):
            break
    return out


class MlflowSink:
    def __init__(
        self, uri: str, experiment: str, grid_name: str, grid_hash: str, resolved_params: dict, running: bool = False
    ):
        """``running``: this sink logs a grid run now (a resume marks a closed parent RUNNING again);
        ``sync`` and ``report`` leave the parent's status alone."""
        import mlflow
        from mlflow.tracking import MlflowClient

        self.mlflow = mlflow
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.grid_hash = grid_hash
        self.parent_id = self._parent(grid_name, grid_hash, resolved_params, running)
        self.stats: dict = {}  # the background writer's counts, once it has closed
        self._runs_of_hash: dict[str, list[tuple[str, str | None]]] = {}  # filled by setting_runs()
        # the grid's axes in grid order (``config_identity``: slms / uq / datasets / llms by name)
        axis = {k: list(resolved_params.get(k) or ()) for k in ("slms", "uq", "datasets", "llms")}
        self.groups = [(s, d, m) for s in axis["slms"] for d in axis["datasets"] for m in axis["llms"]]
        self.colors = {u: PALETTE[i % len(PALETTE)] for i, u in enumerate(axis["uq"])}
        self._table_tagged = False
        self._scored: dict[tuple, int] = {}  # group -> settings logged here with a finite AUROC
        self._write_views()

    # ------------------------------------------------------------------ links
    def _base(self) -> str:
        return f"{self.uri.rstrip('/')}/#/experiments/{self.experiment_id}"

    def group_url(self, slm: str, dataset: str, llm: str) -> str:
        """The group's view (``group_view_state``): its routing curves and first metrics."""
        return f"{self._base()}/runs?viewStateShareKey={share_key(self.grid_hash, slm, dataset, llm)}&compareRunsMode=CHART"

    def parent_url(self) -> str:
        """The grid's parent run, opened on its settings table."""
        return f"{self._base()}/runs/{self.parent_id}/artifacts/{SETTINGS_TABLE}"

    def landing_group(self, rows: list[dict] | None = None) -> tuple[str, str, str] | None:
        """The group the landing shows: the one with the most settings whose AUROC is defined (a
        group where the SLM got every query right or wrong has flat curves and no AUROC), the first
        in grid order among equals. ``rows``: the settings table (``runner.settings_table``);
        without it, what this sink logged; with neither, the grid's first group."""
        if not self.groups:
            return None
        scored = dict(self._scored)
        if rows is not None:
            scored = {}
            for row in rows:
                v = row.get("auroc")
                if isinstance(v, (int, float)) and np.isfinite(v):
                    g = (row.get("slm"), row.get("dataset"), row.get("llm"))
                    scored[g] = scored.get(g, 0) + 1
        return max(self.groups, key=lambda g: (scored.get(g, 0), -self.groups.index(g)))

    def ui_links(self, rows: list[dict] | None = None) -> list[tuple[str, str]]:
        """(label, url) to print: the landing (the view of ``landing_group``; all the grid's runs
        when the sink does not know the grid's axes), then one per (SLM, dataset, LLM) group in
        grid order, then the grid's parent run."""
        first = self.landing_group(rows)
        links = [("landing", self.group_url(*first) if first else self.runs_url())]
        links += [(f"group {group_label(*g)}", self.group_url(*g)) for g in self.groups]
        links.append(("grid run (settings table, overlays, report)", self.parent_url()))
        return links

    def _write_views(self) -> None:
        """One shared view per group as an experiment tag; only those missing or changed are written
        (one call each), so a resume or a sync writes none."""
        if not self.groups:
            return
        tags = dict(self.client.get_experiment(self.experiment_id).tags)
        for g in self.groups:
            key, value = SHARE_TAG + share_key(self.grid_hash, *g), _share_value(group_view_state(self.grid_hash, *g))
            if tags.get(key) != value:
                self.client.set_experiment_tag(self.experiment_id, key, value)

    def runs_url(self) -> str:
        """The grid's runs, flat, with their routing curves drawn (see the module docstring)."""
        order_key, order_asc = run_order()
        q = urllib.parse.urlencode(
            {
                "searchFilter": f"tags.`uqroute.grid_hash` = '{self.grid_hash}'",
                "orderByKey": order_key,
                "orderByAsc": str(order_asc).lower(),
                "compareRunsMode": "CHART",
            },
            quote_via=urllib.parse.quote,
        )
        return f"{self.uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs?{q}"

    def ping(self) -> bool:
        return healthy(self.uri)

    def _find(self, **tags: str):
        """Runs whose tags equal all of ``tags`` (keys with dots given as ``uqroute__kind``)."""
        flt = " and ".join(f"tags.`{k.replace('__', '.')}` = '{v}'" for k, v in tags.items())
        return list(self.client.search_runs([self.experiment_id], filter_string=flt, max_results=100))

    def _parent(self, name: str, grid_hash: str, params: dict, running: bool) -> str:
        runs = self._find(uqroute__kind="grid", uqroute__grid_hash=grid_hash)
        if runs:
            run = runs[0]
            if running and run.info.status != "RUNNING":  # a resume: the grid runs again
                self._set_status(run.info.run_id, "RUNNING", end_time=None)
            return run.info.run_id
        run = self.client.create_run(
            self.experiment_id, run_name=f"grid:{name}", tags={"uqroute.kind": "grid", "uqroute.grid_hash": grid_hash}
        )
        from mlflow.entities import Param

        flat = _flatten(params)
        items = [Param(k[:250], v) for k, v in sorted(flat.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(run.info.run_id, params=items[i : i + 100])
        return run.info.run_id

    def _set_status(self, run_id: str, status: str, end_time: int | None) -> None:
        """One HTTP call. ``MlflowClient.set_terminated`` makes two more (it fetches the run to
        print a link to stdout), which at 10,000 settings is 20,000 lines and calls."""
        from mlflow.entities import RunStatus

        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        if store is None or not hasattr(store, "update_run_info"):
            self.client.set_terminated(run_id, status, end_time)
            return
        store.update_run_info(run_id, run_status=RunStatus.from_string(status), end_time=end_time, run_name=None)

    def setting_runs(self) -> dict[str, list[str]]:
        """setting unit key -> statuses of its runs in this grid (normally one, FINISHED). A run
        logged before runs carried their unit key counts under its setting hash (which is no unit
        key: such a setting is logged again, replacing it). Also remembers every run of each
        setting hash, so ``write_setting(check=False)`` can replace a stale one without a look-up."""
        out: dict[str, list[str]] = {}
        by_hash: dict[str, list[tuple[str, str | None]]] = {}
        for r in self._setting_run_list():
            h, key = r.data.tags.get("uqroute.setting_hash"), r.data.tags.get("uqroute.unit_key")
            out.setdefault(key or h, []).append(r.info.status)
            by_hash.setdefault(h, []).append((r.info.run_id, key))
        self._runs_of_hash = by_hash
        return out

    def _setting_run_list(self):
        """Every setting run of this grid, page by page."""
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`uqroute.grid_hash` = '{self.grid_hash}' and tags.`uqroute.kind` = 'setting'",
                max_results=1000,
                page_token=token,
            )
            yield from page
            token = page.token
            if not token:
                return

    def remove_duplicates(self, current: dict[str, str]) -> int:
        """One run per setting hash in this grid: where a hash has several (a create the client gave
        up on while the server completed it, then logged again), keep the run of the setting's
        current unit key (``current``: setting hash -> unit key), finished, newest; delete the
        others. Returns how many were deleted (``uqroute sync`` runs it)."""
        groups: dict[str, list] = {}
        for r in self._setting_run_list():
            groups.setdefault(r.data.tags.get("uqroute.setting_hash"), []).append(r)
        n = 0
        for h, runs in groups.items():
            if len(runs) < 2:
                continue
            runs.sort(
                key=lambda r: (
                    r.data.tags.get("uqroute.unit_key", h) == current.get(h),
                    r.info.status == "FINISHED",
                    r.info.start_time or 0,
                ),
                reverse=True,
            )
            for r in runs[1:]:
                self.client.delete_run(r.info.run_id)
                n += 1
        return n

    def finished_settings(self) -> set[str]:
        """Unit keys of the settings whose current result is logged and finished."""
        return {h for h, st in self.setting_runs().items() if "FINISHED" in st}

    def log_setting(self, manifest: dict, setting_dir: Path, params: dict, replace: bool = False) -> str:
        """Log one setting unless its current result is there already (found by its setting hash
        and unit key; ``replace``: log it anew all the same); synchronous."""
        return self.write_setting(SettingSource(manifest, Path(setting_dir), params), check=True, replace=replace)

    def _setting_tags(self, m: dict, setting_hash: str, key: str) -> dict[str, str]:
        """A setting run's tags: its parent, setting hash and unit key, axes and its method's colour."""
        tags = {
            "mlflow.parentRunId": self.parent_id,
            "uqroute.kind": "setting",
            "uqroute.setting_hash": setting_hash,
            "uqroute.unit_key": key,
            "uqroute.grid_hash": self.grid_hash,
            "slm": m["slm"],
            "uq": m["uq"],
            "dataset": m["dataset"],
            "llm": m["llm"],
        }
        if m["uq"] in self.colors:
            tags["mlflow.runColor"] = self.colors[m["uq"]]
        return tags

    def write_setting(self, src: SettingSource, *, check: bool = True, replace: bool = False) -> str | None:
        """Create, fill and finish the setting's run; the setting's other runs (an older result of
        the same setting hash, half-logged ones from a crash) are deleted: one run per setting.
        ``check`` first looks for the setting's runs: a finished one of the same unit key is kept
        (nothing logged) unless ``replace`` (``uqroute rescore --all``: same key, new numbers). The
        background writer skips the look-up for settings it knows MLflow lacks, and deletes the
        stale runs ``setting_runs`` saw."""
        from mlflow.entities import Metric, Param, RunStatus

        m = src.manifest
        key = m["key"]
        h = m.get("setting_hash", key)  # manifests written before unit keys: key was the setting hash
        if check:
            existing = self._find(uqroute__setting_hash=h, uqroute__grid_hash=self.grid_hash)
            current = [
                r
                for r in existing
                if r.info.status == "FINISHED" and not replace and r.data.tags.get("uqroute.unit_key", h) == key
            ]
            if current:
                for r in existing:
                    if r.info.run_id != current[0].info.run_id:
                        self.client.delete_run(r.info.run_id)
                return current[0].info.run_id
            stale = [r.info.run_id for r in existing]
        else:
            stale = [rid for rid, k in self._runs_of_hash.get(h, ()) if k != key or replace]
        for rid in stale:
            self.client.delete_run(rid)
        tags = self._setting_tags(m, h, key)
        auroc = m["metrics"].get("auroc")
        if isinstance(auroc, (int, float)) and np.isfinite(auroc):
            g = (m["slm"], m["dataset"], m["llm"])
            self._scored[g] = self._scored.get(g, 0) + 1
        now = int(time.time() * 1000)
        curve = json.loads((src.setting_dir / CURVE).read_text())
        metrics = [Metric(k, v, now, step) for k, v, step in setting_metrics(m, curve)]
        params = [Param(k[:250], v) for k, v in sorted(_flatten(src.params).items())]
        run = self.client.create_run(self.experiment_id, run_name=run_name(m), tags=tags)
        rid = run.info.run_id
        for mb, pb, tb in batches(metrics, params):
            self.client.log_batch(rid, metrics=mb, params=pb, tags=tb)
        files = [src.setting_dir / f for f in ARTIFACTS if (src.setting_dir / f).is_file()]
        if files:
            # the repository from the run we hold: the client's log_artifact would fetch the run again
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            repo = get_artifact_repository(run.info.artifact_uri, tracking_uri=self.uri)
            for f in files:
                repo.log_artifact(str(f))
        self._set_status(rid, RunStatus.to_string(RunStatus.FINISHED), int(time.time() * 1000))
        return rid

    def log_settings_table(self, rows: list[dict]) -> int:
        """The grid's settings table on the parent run, replaced whole (``mlflow.log_table`` would
        append to it): ``settings.json`` in the format ``log_table`` writes (pandas' ``split``
        orient) and the ``mlflow.loggedArtifacts`` tag that makes MLflow render it as a table.
        Columns: ``table_columns()``, those the rows have. Returns the rows logged.

        Numbers are written as text with four decimals: MLflow's table view
        (``ShowArtifactLoggedTableView``) turns every cell into a string and sorts it with TanStack's
        "alphanumeric" order, which compares the digits after the point as one integer (0.75 after
        0.6107); with as many decimals everywhere that order is the numeric one (negative values
        excepted: they come first, largest magnitude last). A missing value is an empty cell."""
        import tempfile

        from mlflow.entities import RunTag

        keys = {k for row in rows for k in row}
        cols = [c for c in table_columns() if c in keys]

        def cell(v) -> str:
            if v is None or (isinstance(v, float) and not np.isfinite(v)):
                return ""
            if isinstance(v, float):
                return f"{v:.4f}"
            return str(v)

        table = {"columns": cols, "data": [[cell(row.get(c)) for c in cols] for row in rows]}
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / SETTINGS_TABLE
            f.write_text(json.dumps(table, separators=(",", ":")))
            self.log_grid_artifact(f)
        if not self._table_tagged:
            value = json.dumps([{"path": SETTINGS_TABLE, "type": "table"}])
            self.client.log_batch(self.parent_id, tags=[RunTag(LOGGED_ARTIFACTS, value)])
            self._table_tagged = True
        return len(rows)

    def log_grid_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.parent_id, str(path), artifact_path)

    def log_report(self, report: dict) -> None:
        """The grid report on the parent run: HTML + PNGs under ``report/``, each finding's verdict
        as a tag, and headline transfer numbers as metrics."""
        from mlflow.entities import Metric, RunTag

        self.log_grid_artifact(report["html"], "report")
        self.log_grid_artifact(report["analysis"], "report")
        for p in report["pngs"]:
            self.log_grid_artifact(p, "report")
        now = int(time.time() * 1000)
        tags = [RunTag(f"finding_{f['id']}", f["verdict"]) for f in report["findings"]]
        metrics = [
            Metric(n, float(v), now, 0) for n, v in report.get("metrics", {}).items() if v is not None and v == v
        ]
        for mb, _pb, tb in batches(metrics, [], tags):
            if mb or tb:
                self.client.log_batch(self.parent_id, metrics=mb, tags=tb)

    def finish_grid(self, status: str | bool = "FINISHED") -> None:
        """Close the parent run: FINISHED, FAILED (units failed) or KILLED (interrupted).
        ``True``/``False`` are read as FINISHED/FAILED."""
        if isinstance(status, bool):
            status = "FINISHED" if status else "FAILED"
        if status not in GRID_STATUSES[1:]:
            raise ValueError(f"grid status {status!r} is not one of {', '.join(GRID_STATUSES[1:])}")
        self._set_status(self.parent_id, status, int(time.time() * 1000))
