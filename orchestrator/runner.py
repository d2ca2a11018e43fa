"""Running a grid: the flow, one stage call per line.

config -> grid -> plan -> scheduler (Ray actors) -> records -> metrics -> MLflow / summary
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from jobs import metrics as M
from jobs.records import read_json, write_json
from jobs.store import Store
from orchestrator.config import ResolvedGrid, nan_policy_of, plain, resolved_from_yaml
from orchestrator.grid import stable_hash
from orchestrator.ledger import Ledger
from orchestrator.plan import Plan, make_plan

# fields that change how or where a grid runs, or what is added to it, not what its results are:
# an output folder accepts them changed (calibration only adds fit-role work units)
NON_IDENTITY = (
    "output_dir",
    "store_dir",
    "mlflow",
    "ray",
    "name",
    "calibration",
    "cost",
)  # prices are applied to the records (jobs/cost.py): they change no result
RESOLVED_FILE = "resolved_config.yaml"
RUN_STATE_FILE = "run_state.json"  # the last run of this folder: running / finished / failed / interrupted
PENDING_FILE = "mlflow_pending.json"  # settings done in the store but not in MLflow (`uqroute sync` logs them)
MLFLOW_WAIT_S = 30.0  # at the end of a grid, how long to wait for an MLflow server that does not answer
INTERRUPT_WAIT_S = 3.0  # after Ctrl-C, how long the writer and the parent run's status may take
GRID_VIEW_EVERY_S = 60.0  # during a grid: the parent run's settings table and overlays, at most this often
REPORT_EVERY_S = 600.0  # during a grid: the report and findings on the parent run, at most this often


class GridInterrupted(KeyboardInterrupt):
    """Ctrl-C during a grid: what was done is in the store, the parent MLflow run is KILLED."""

    def __init__(self, done: int, total: int, output_dir: Path):
        self.done, self.total, self.output_dir = done, total, Path(output_dir)
        super().__init__(f"interrupted: {done} of {total} settings done; resume with {self.resume_command}")

    @property
    def resume_command(self) -> str:
        return f"uqroute resume {self.output_dir}"


class ConfigMismatch(ValueError):
    pass


def _non_default(d: dict, defaults: dict) -> dict:
    """``d`` without the fields that equal their schema default (nested sections too)."""
    out = {}
    for k, v in d.items():
        if k in defaults and isinstance(v, dict) and isinstance(defaults[k], dict):
            v = _non_default(v, defaults[k])
            if v:
                out[k] = v
        elif k not in defaults or v != defaults[k]:
            out[k] = v
    return out


def config_identity(r: ResolvedGrid) -> dict:
    """What the grid's results depend on. Fields at their default are left out, so a field added
    to a schema later (whose default keeps the old behaviour) leaves the identity -- and with it
    the grid's MLflow parent run -- unchanged."""
    from orchestrator.config import DatasetConf, GridConf, ModelConf, UQConf, _defaults

    g = {k: v for k, v in r.grid_dict().items() if k not in NON_IDENTITY}
    # where the data files are read from is a location, not what the results are
    g["dataset"] = {k: v for k, v in g["dataset"].items() if k != "data_root"}
    axes = {
        "slms": (r.slms, ModelConf),
        "llms": (r.llms, ModelConf),
        "uq": (r.uq, UQConf),
        "datasets": (r.datasets, DatasetConf),
    }
    return {"grid": _non_default(g, _defaults(GridConf))} | {
        axis: {name: _non_default(conf.to_dict(), _defaults(cls)) for name, conf in confs.items()}
        for axis, (confs, cls) in axes.items()
    }


def config_hash(r: ResolvedGrid) -> str:
    return stable_hash(config_identity(r))


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: stored={a!r} new={b!r}"]


def bind_output(r: ResolvedGrid) -> None:
    """Write the resolved config into the output folder, or refuse a different one there."""
    out = r.output_dir
    path = out / RESOLVED_FILE
    if path.is_file():
        old = resolved_from_yaml(path.read_text())
        if config_hash(old) != config_hash(r):
            diffs = _diff(config_identity(old), config_identity(r))
            raise ConfigMismatch(
                f"{out} holds results of a different configuration (hash {config_hash(old)} != "
                f"{config_hash(r)}); differing fields:\n  "
                + "\n  ".join(diffs[:30])
                + "\nUse another output_dir, or `uqroute resume` to continue the stored one."
            )
        if old.grid.calibration != r.grid.calibration or old.grid.cost != r.grid.cost:
            path.write_text(r.to_yaml())  # e.g. calibration turned on, new prices: resume and report follow it
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(r.to_yaml())


def load_output(out: Path) -> ResolvedGrid:
    path = Path(out) / RESOLVED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not a uqroute output folder (no {RESOLVED_FILE})")
    r = resolved_from_yaml(path.read_text())
    # the folder may have moved since: paths come from where it is now
    return r.updated(output_dir=str(Path(out)))


def setting_params(r: ResolvedGrid, axes: dict) -> dict:
    return {
        "slm": r.slms[axes["slm"]],
        "uq": r.uq[axes["uq"]],
        "dataset": r.datasets[axes["dataset"]],
        "llm": r.llms[axes["llm"]],
        "decoding": r.grid.decoding,
        "metrics": plain(r.grid.metrics) | {"nan_policy": nan_policy_of(r, axes["uq"])},
        "sampling": r.grid.dataset,
        "seed": r.grid.seed,
    }


def _fail_fast() -> None:
    """Fail fast on a dead server instead of MLflow's default ~2 min of retries per call."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def _mlflow_uri(r: ResolvedGrid) -> str:
    from orchestrator import mlflow_sink

    mc = r.grid.mlflow
    _fail_fast()
    return mc.tracking_uri or mlflow_sink.start_server(r.output_dir / "mlflow", mc.port)


def _new_sink(r: ResolvedGrid, uri: str, running: bool = False):
    from orchestrator import mlflow_sink

    mc = r.grid.mlflow
    return mlflow_sink.MlflowSink(
        uri,
        mc.experiment,
        r.grid.name,
        config_hash(r),
        config_identity(r) | {"name": r.grid.name},
        running=running,
    )


#: group links printed by ``run`` / ``resume`` / ``status`` (``uqroute ui`` prints them all)
MAX_GROUP_LINKS = 12


def ui_links(sink, rows: list[dict] | None = None, max_groups: int | None = MAX_GROUP_LINKS) -> list[tuple[str, str]]:
    """What to open in MLflow for this grid, as (label, url) pairs, in the order printed: every command
    that prints MLflow links (``run``, ``resume``, ``ui``, ``status``) prints these: the landing (one
    group's routing curves overlaid), one link per (SLM, dataset, LLM) group, the grid's parent run
    (``MlflowSink.ui_links``). ``rows``: the settings table (``settings_table``), for the landing's
    choice. Beyond ``max_groups`` group links one line says how many more (at the paper's shape,
    224 groups) and that ``uqroute ui`` lists them all."""
    links = sink.ui_links(rows)
    groups = [x for x in links if x[0].startswith("group ")]
    if max_groups is None or len(groups) <= max_groups:
        return links
    shown = set(groups[:max_groups])
    rest = [x for x in links if not x[0].startswith("group ") or x in shown]
    more = (
        f"{len(groups) - max_groups} more groups",
        "one filter away on the landing; `uqroute ui <output folder>` lists every link",
    )
    return rest[:-1] + [more] + rest[-1:]


def serve_ui(
    out: Path, start: bool = True, console=None, max_groups: int | None = MAX_GROUP_LINKS
) -> tuple[str | None, list[tuple[str, str]]]:
    """The MLflow server of an output folder and its links (``ui_links``): ``start`` starts the
    folder's local server when it is not running (``mlflow_sink.start_server`` reuses a live one);
    otherwise only a server that answers is asked. Returns (uri or None, links); no links when
    MLflow is disabled for the folder or no server answers."""
    from orchestrator import mlflow_sink

    r = load_output(out)
    mc = r.grid.mlflow
    if not mc.enabled:
        return None, []
    if start:
        uri = _mlflow_uri(r)
    else:
        _fail_fast()
        uri = mc.tracking_uri or running_uri(r.output_dir / "mlflow")
        if not uri or not mlflow_sink.healthy(uri):
            return None, []
    try:
        sink = _new_sink(r, uri)
    except Exception as exc:  # noqa: BLE001 - a server that answers /health but not the API
        _say(console, f"MLflow at {uri} did not answer: {exc}")
        return uri, []
    return uri, ui_links(sink, settings_table(r, make_plan(r)), max_groups)


def running_uri(folder: Path) -> str | None:
    """The address of the server ``mlflow_sink.start_server`` started in ``folder`` (its
    ``PID_FILE``), when it still answers; else None."""
    from orchestrator.mlflow_sink import PID_FILE, healthy

    p = Path(folder) / PID_FILE
    uri = read_json(p).get("uri") if p.is_file() else None
    return uri if uri and healthy(uri) else None


def make_sink(r: ResolvedGrid, console=None):
    """A synchronous sink (``sync``, ``report``); ``None`` when MLflow is off or does not answer."""
    if not r.grid.mlflow.enabled:
        return None
    uri = _mlflow_uri(r)
    try:
        return _new_sink(r, uri)
    except Exception as exc:  # results still land in the store; `uqroute sync` repairs MLflow later
        if console:
            console.print(
                f"[yellow]MLflow unavailable at {uri}: {exc}; results go to the store only. "
                f"Run `uqroute sync {r.output_dir}` later.[/]"
            )
        return None


def settings_table(r: ResolvedGrid, plan: Plan) -> list[dict]:
    """One row per finished setting (``jobs.store.Store.setting_rows``): name, setting hash, unit key
    (where its results are), axes, metrics."""
    return Store(r.store_dir).setting_rows(plan)


def log_finished_settings(r: ResolvedGrid, plan: Plan, sink, *, skip=frozenset(), replace: bool = False) -> int:
    """Log every finished setting of the plan whose unit key is not in ``skip`` to MLflow (``replace``:
    a run showing another unit key is replaced). Returns how many were logged."""
    store = Store(r.store_dir)
    n = 0
    for s in plan.settings:
        key = plan.setting_keys[s.hash]
        d = store.setting(key)
        if key not in skip and d.done:
            sink.log_setting(d.manifest_json(), d.path, setting_params(r, s.axes()), replace=replace)
            n += 1
    return n


def write_summary(r: ResolvedGrid, plan: Plan) -> Path:
    rows = settings_table(r, plan)
    out = r.output_dir / "summary.json"
    write_json(out, rows)
    (r.output_dir / "summary.csv").write_text(summary_csv(rows))
    return out


def summary_csv(rows: list[dict]) -> str:
    """``summary.csv``: one line per setting, its name and the metrics ``jobs.metrics.METRICS`` shows
    in "summary" (in its order: unscored_share beside the AUROC, the share of queries the method
    could not score, which the AUROC leaves out under "drop" and routes first under most_uncertain)."""
    cols = ["setting", *(m.name for m in M.shown("summary"))]
    lines = [",".join(cols)] + [",".join(str(row.get(c, "")) for c in cols) for row in rows]
    return "\n".join(lines) + "\n"


def overview_plots(r: ResolvedGrid, plan: Plan) -> list[Path]:
    """One PNG per (SLM, dataset, LLM) in ``plots/``: every UQ method's routing curve overlaid."""
    from jobs.analysis.report import routing_figures
    from orchestrator.grid_view import grid_view

    return [p for _, p in routing_figures(grid_view(r, plan).settings, r.output_dir / "plots", prefix="")]


def _say(console, msg: str) -> None:
    if console:
        console.print(f"[yellow]{msg}[/]", highlight=False)
    else:
        import logging

        logging.getLogger("uqroute").warning(msg)


def start_writer(r: ResolvedGrid, plan: Plan, console=None):
    """The background MLflow writer of a grid run (``None`` when MLflow is off or its local
    server cannot start). It connects, and reconnects, on its own thread."""
    from orchestrator.mlflow_sink import SettingSource
    from orchestrator.mlflow_writer import MlflowWriter

    if not r.grid.mlflow.enabled:
        return None
    try:
        uri = _mlflow_uri(r)
    except (RuntimeError, TimeoutError, OSError) as exc:  # results still land in the store
        _say(
            console,
            f"MLflow server did not start: {exc}; results go to the store only. "
            f"Run `uqroute sync {r.output_dir}` later.",
        )
        return None
    axes = {plan.setting_keys[s.hash]: s.axes() for s in plan.settings}  # by setting unit key

    def prepare(key: str, manifest: dict | None) -> SettingSource:
        d = Store(r.store_dir).setting(key)
        m = manifest if manifest is not None else d.manifest_json()
        return SettingSource(
            m, d.path, setting_params(r, axes.get(key) or {k: m[k] for k in ("slm", "uq", "dataset", "llm")})
        )

    return MlflowWriter(
        lambda: _new_sink(r, uri, running=True),
        prepare,
        notify=lambda msg: _say(console, msg),
        grid_update=grid_refresher(r, plan),
        grid_every_s=GRID_VIEW_EVERY_S,
    )


def grid_refresher(r: ResolvedGrid, plan: Plan):
    """What the background writer calls (on its thread, throttled: ``MlflowWriter.grid_update``) to
    keep the grid's parent run current while settings finish: the settings table every time, the
    overlay of each (SLM, dataset, LLM) group that has new settings, and the report with its
    findings at most every ``REPORT_EVERY_S`` (and never more often than ten times its last
    duration: at 1,792 settings it is the slow part)."""
    from jobs.analysis.report import routing_figures
    from orchestrator.grid_view import grid_view

    state: dict = {"seen": {}, "report_at": time.monotonic() + REPORT_EVERY_S}

    def refresh(sink) -> None:
        rows = settings_table(r, plan)
        sink.log_settings_table(rows)
        groups: dict[tuple, set] = {}
        for row in rows:
            groups.setdefault((row["slm"], row["dataset"], row["llm"]), set()).add(row["key"])
        changed = {g for g, keys in groups.items() if state["seen"].get(g) != keys}
        if changed:
            settings = [s for s in grid_view(r, plan).settings if (s.slm, s.dataset, s.llm) in changed]
            for _, png in routing_figures(settings, r.output_dir / "plots", prefix=""):
                sink.log_grid_artifact(png)
            state["seen"].update({g: groups[g] for g in changed})
        if time.monotonic() >= state["report_at"]:
            t0 = time.monotonic()
            rep = make_report(r, plan)
            if rep is not None:
                sink.log_report(rep)
            took = time.monotonic() - t0
            state["report_at"] = time.monotonic() + max(REPORT_EVERY_S, 10 * took)

    return refresh


def _store_settings_done(r: ResolvedGrid, plan: Plan) -> list[str]:
    """Unit keys of the settings whose results are in the store."""
    return [row["key"] for row in Store(r.store_dir).setting_rows(plan)]


def _write_state(r: ResolvedGrid, state: str, **extra) -> None:
    write_json(r.output_dir / RUN_STATE_FILE, {"state": state, "pid": os.getpid(), "ts": time.time(), **extra})


def run_state(out: Path) -> dict | None:
    """The last run of an output folder (``RUN_STATE_FILE``); ``state`` is ``killed`` when it
    says running but its driver is gone."""
    p = Path(out) / RUN_STATE_FILE
    if not p.is_file():
        return None
    st = read_json(p)
    if st.get("state") == "running":
        try:
            os.kill(int(st.get("pid", -1)), 0)
        except (OSError, ValueError):
            st["state"] = "killed"
    return st


def _record_pending(r: ResolvedGrid, stats, uri: str | None) -> None:
    p = r.output_dir / PENDING_FILE
    if stats.pending:
        write_json(p, {"n": len(stats.pending), "keys": stats.pending, "uri": uri, "ts": time.time()})
    else:
        p.unlink(missing_ok=True)


def mlflow_pending(out: Path) -> list[str]:
    """Settings of an output folder that its last run could not log to MLflow."""
    p = Path(out) / PENDING_FILE
    return read_json(p).get("keys", []) if p.is_file() else []


def _with_deadline(fn, seconds: float) -> bool:
    """Run ``fn`` on a daemon thread for at most ``seconds``; True when it returned in time."""
    box = {}
    th = threading.Thread(target=lambda: box.update(ok=fn() or True), daemon=True)
    th.start()
    th.join(seconds)
    return bool(box.get("ok"))


def _finish_mlflow(r: ResolvedGrid, plan: Plan, writer, ok: bool, plots: list[Path], rep: dict | None, console):
    """Catch MLflow up with the store, log the grid's own artifacts, close the parent run, and
    say exactly what MLflow still lacks."""
    writer.add_missing(_store_settings_done(r, plan))
    stats = writer.close(wait_s=MLFLOW_WAIT_S)
    sink = writer.sink
    if sink is not None and writer.up:
        try:
            for p in plots:
                sink.log_grid_artifact(p)
            sink.log_grid_artifact(r.output_dir / "summary.csv")
            sink.log_settings_table(settings_table(r, plan))
            if rep is not None:
                sink.log_report(rep)
            sink.finish_grid("FINISHED" if ok and not stats.pending else "FAILED")
        except Exception as exc:  # noqa: BLE001 - MLflow is a view; the store has everything
            _say(console, f"MLflow update of the grid run failed: {exc}; run `uqroute sync {r.output_dir}`")
    if sink is not None:
        sink.stats = stats.as_dict()
    _record_pending(r, stats, sink.uri if sink else None)
    if stats.pending:
        _say(
            console,
            f"{len(stats.pending)} of {len(plan.settings)} settings are not in MLflow; "
            f"`uqroute sync {r.output_dir}` logs them",
        )
    return sink


def run_grid(r: ResolvedGrid, *, keys: set[str] | None = None, console=None, progress=None):
    """Plan, run what the store lacks on Ray, stream settings to MLflow, write the summary.

    MLflow is written by a background writer (``orchestrator.mlflow_writer``): the scheduler
    loop never waits for it. Ctrl-C raises ``GridInterrupted`` after marking the parent run
    KILLED and recording the interruption (``run_state``), within a few seconds."""
    from orchestrator.lock import OutputLock

    with OutputLock(r.output_dir):  # one driver per output folder (FolderLocked names the holder)
        return _run_grid(r, keys=keys, console=console, progress=progress)


def _run_grid(r: ResolvedGrid, *, keys: set[str] | None, console, progress):
    from cluster.connect import connect
    from orchestrator.scheduler import Scheduler

    bind_output(r)
    plan = make_plan(r)
    repaired, before = heal(r, plan, console)  # the one check of the store this run makes
    if keys is not None:
        keys = set(keys) | set(repaired)
    rc = r.grid.ray
    _write_state(r, "running", total=len(plan.settings))
    writer = None
    try:
        connect(rc.address, rc.num_cpus, rc.num_gpus)
        writer = start_writer(r, plan, console)
        ledger = Ledger(r.output_dir / "ledger.jsonl")
        sched = Scheduler(
            plan, r, r.store_dir, ledger, on_setting=writer.submit if writer else None, on_progress=progress
        )
        report = sched.run(keys, done=before)
        if writer is not None:
            writer.stop_grid_updates()  # the final view below, built once
        write_summary(r, plan)
        if report.done == before and (r.output_dir / "report" / "index.html").is_file():
            plots, rep = [], None  # nothing new: plots, report and their MLflow copies are as the store is
        else:
            plots = overview_plots(r, plan)
            rep = make_report(r, plan, console)
        sink = _finish_mlflow(r, plan, writer, report.ok, plots, rep, console) if writer else None
    except KeyboardInterrupt:
        raise _interrupted(r, plan, writer) from None
    except BaseException as exc:
        try:
            _write_state(
                r,
                "failed",
                total=len(plan.settings),
                done=len(_store_settings_done(r, plan)),
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
        except OSError:  # e.g. the disk that stopped the run is full: the original error is what matters
            pass
        if writer is not None:
            writer.abort(INTERRUPT_WAIT_S)
            if writer.sink is not None:
                _with_deadline(lambda: writer.sink.finish_grid("FAILED"), INTERRUPT_WAIT_S)
        raise
    _write_state(
        r, "finished" if report.ok else "failed", total=len(plan.settings), done=len(_store_settings_done(r, plan))
    )
    return plan, report, sink


def heal(r: ResolvedGrid, plan: Plan, console=None) -> tuple[list[str], set[str]]:
    """Before a run: verify the store (shallow) and invalidate every damaged unit and what depends on
    it (``orchestrator.verify``), so the run recomputes exactly those. Returns their keys and the
    units that are done (verified, not invalidated)."""
    from orchestrator.verify import check_plan, describe, invalidate, plan_repair

    health = check_plan(plan, r.store_dir)
    repair = plan_repair(plan, health)
    done = health.done() - set(repair.units)
    if not repair.units:
        return [], done
    for line in describe(plan, health, repair, r.output_dir):
        if console:
            console.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)
        else:
            _say(None, line)
    invalidate(plan, r.store_dir, repair)
    ledger = Ledger(r.output_dir / "ledger.jsonl")
    for k in repair.units:
        ledger.write("invalidated", plan.units[k], damaged=k in repair.damaged)
    return repair.units, done


def _interrupted(r: ResolvedGrid, plan: Plan, writer) -> GridInterrupted:
    """Ctrl-C: stop the writer and mark the parent run KILLED, each within a few seconds."""
    total = len(plan.settings)
    done = len(_store_settings_done(r, plan))
    try:
        _write_state(r, "interrupted", total=total, done=done)
        if writer is not None:
            stats = writer.abort(INTERRUPT_WAIT_S)
            sink = writer.sink
            if sink is not None:
                _with_deadline(lambda: sink.finish_grid("KILLED"), INTERRUPT_WAIT_S)
            _record_pending(r, stats, sink.uri if sink else None)
    except KeyboardInterrupt:  # a second Ctrl-C: stop cleaning up, the store has everything
        pass
    return GridInterrupted(done, total, r.output_dir)


def make_report(r: ResolvedGrid, plan: Plan, console=None) -> dict | None:
    """The grid report (``jobs/analysis/report.py``); a failure here never fails the run."""
    from jobs.analysis.report import build_report
    from orchestrator.grid_view import grid_view

    try:
        return build_report(grid_view(r, plan))
    except Exception as exc:  # noqa: BLE001 - the results are in the store; `uqroute report` retries
        msg = f"report failed: {type(exc).__name__}: {exc}; retry with `uqroute report {r.output_dir}`"
        if console:
            console.print(f"[yellow]{msg}[/]")
        else:
            import logging

            logging.getLogger("uqroute").warning(msg, exc_info=True)
        return None


def report(out: Path, *, mlflow: bool = True, console=None) -> dict:
    """Rebuild the report of an output folder from the store and log it on the parent MLflow run."""
    from jobs.analysis.report import build_report
    from orchestrator.grid_view import grid_view
    from orchestrator.verify import require_healthy

    r = load_output(out)
    plan = make_plan(r)
    require_healthy(plan, r.store_dir, out)  # never a report from a damaged unit
    rep = build_report(grid_view(r, plan))
    rep["mlflow"] = None
    if mlflow and r.grid.mlflow.enabled:
        sink = make_sink(r, console)
        if sink is not None:
            sink.log_report(rep)
            sink.log_settings_table(settings_table(r, plan))
            rep["mlflow"] = {"uri": sink.uri, "run_id": sink.parent_id}
    return rep


def _sync_missing(r: ResolvedGrid, plan: Plan, sink) -> int:
    return log_finished_settings(r, plan, sink, skip=set(sink.finished_settings()))  # unit keys of finished runs


def sync(out: Path, console=None) -> int:
    """Rebuild MLflow from the store: log every finished setting that MLflow lacks, and leave one
    run per setting (duplicates of a setting hash are deleted)."""
    from orchestrator.verify import require_healthy

    r = load_output(out)
    plan = make_plan(r)
    require_healthy(plan, r.store_dir, out, kinds=("setting",))  # MLflow gets no damaged setting
    sink = make_sink(r, console)
    if sink is None:
        raise RuntimeError("MLflow is disabled or unreachable for this output folder")
    n = _sync_missing(r, plan, sink)
    sink.log_settings_table(settings_table(r, plan))  # the grid run's table of every setting
    dup = sink.remove_duplicates(dict(plan.setting_keys))
    if dup:
        _say(console, f"removed {dup} duplicate setting run(s) from MLflow (one run per setting)")
    (Path(out) / PENDING_FILE).unlink(missing_ok=True)
    return n
