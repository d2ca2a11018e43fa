"""Running a grid: the flow, one stage call per line.

config -> grid -> plan -> scheduler (Ray actors) -> records -> metrics -> MLflow / summary
"""
from __future__ import annotations

from pathlib import Path

from jobs.records import read_json, unit_dir, write_json
from orchestrator.config import ResolvedGrid, resolved_from_yaml
from orchestrator.grid import stable_hash
from orchestrator.ledger import Ledger
from orchestrator.plan import Plan, make_plan

# fields that change how or where a grid runs, or what is added to it, not what its results are:
# an output folder accepts them changed (calibration only adds fit-role work units)
NON_IDENTITY = ("output_dir", "store_dir", "mlflow", "ray", "name", "calibration")
RESOLVED_FILE = "resolved_config.yaml"


class ConfigMismatch(ValueError):
    pass


def config_identity(r: ResolvedGrid) -> dict:
    g = {k: v for k, v in r.grid.items() if k not in NON_IDENTITY}
    # where the data files are read from is a location, not what the results are
    g["dataset"] = {k: v for k, v in g["dataset"].items() if k != "data_root"}
    return {"grid": g, "slms": r.slms, "llms": r.llms, "uq": r.uq, "datasets": r.datasets}


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
            raise ConfigMismatch(f"{out} holds results of a different configuration (hash {config_hash(old)} != "
                                 f"{config_hash(r)}); differing fields:\n  " + "\n  ".join(diffs[:30]) +
                                 "\nUse another output_dir, or `uqroute resume` to continue the stored one.")
        if old.grid.get("calibration") != r.grid.get("calibration"):
            path.write_text(r.to_yaml())  # e.g. calibration turned on: resume and report follow it
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(r.to_yaml())


def load_output(out: Path) -> ResolvedGrid:
    path = Path(out) / RESOLVED_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not a uqroute output folder (no {RESOLVED_FILE})")
    r = resolved_from_yaml(path.read_text())
    # the folder may have moved since: paths come from where it is now
    r.grid["output_dir"] = str(Path(out))
    return r


def setting_params(r: ResolvedGrid, axes: dict) -> dict:
    return {"slm": r.slms[axes["slm"]], "uq": r.uq[axes["uq"]], "dataset": r.datasets[axes["dataset"]],
            "llm": r.llms[axes["llm"]], "decoding": r.grid["decoding"], "metrics": r.grid["metrics"],
            "sampling": r.grid["dataset"], "seed": r.grid["seed"]}


def make_sink(r: ResolvedGrid, console=None):
    from orchestrator import mlflow_sink

    import os

    mc = r.grid["mlflow"]
    if not mc["enabled"]:
        return None
    # fail fast on a dead server instead of MLflow's default ~2 min of retries per call
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    uri = mc["tracking_uri"] or mlflow_sink.start_server(r.output_dir / "mlflow", mc["port"])
    try:
        return mlflow_sink.MlflowSink(uri, mc["experiment"], r.grid["name"], config_hash(r),
                                      config_identity(r) | {"name": r.grid["name"]})
    except Exception as exc:  # results still land in the store; `uqroute sync` repairs MLflow later
        if console:
            console.print(f"[yellow]MLflow unavailable at {uri}: {exc}; results go to the store only. "
                          f"Run `uqroute sync {r.output_dir}` later.[/]")
        return None


def settings_table(r: ResolvedGrid, plan: Plan) -> list[dict]:
    rows = []
    store = r.store_dir
    for s in plan.settings:
        p = unit_dir(store, "settings", s.hash) / "manifest.json"
        if p.is_file():
            m = read_json(p)["metrics"]
            rows.append({"setting": s.name, "hash": s.hash, **s.axes(), **m})
    return rows


def write_summary(r: ResolvedGrid, plan: Plan) -> Path:
    rows = settings_table(r, plan)
    out = r.output_dir / "summary.json"
    write_json(out, rows)
    cols = ["setting", "slm_acc", "llm_acc", "auroc", "area", "apgr", "call_rate_50", "call_rate_80"]
    lines = [",".join(cols)] + [",".join(str(row.get(c, "")) for c in cols) for row in rows]
    (r.output_dir / "summary.csv").write_text("\n".join(lines) + "\n")
    return out


def overview_plots(r: ResolvedGrid, plan: Plan) -> list[Path]:
    """One PNG per (SLM, dataset, LLM) in ``plots/``: every UQ method's routing curve overlaid."""
    from jobs.report import routing_figures

    return [p for _, p in routing_figures(r, plan, r.output_dir / "plots", prefix="")]


def run_grid(r: ResolvedGrid, *, keys: set[str] | None = None, console=None, progress=None):
    """Plan, run what the store lacks on Ray, stream settings to MLflow, write the summary."""
    from cluster.connect import connect
    from orchestrator.scheduler import Scheduler

    bind_output(r)
    plan = make_plan(r)
    rc = r.grid["ray"]
    connect(rc["address"], rc["num_cpus"], rc["num_gpus"])
    sink = make_sink(r, console)
    ledger = Ledger(r.output_dir / "ledger.jsonl")

    sink_state = {"broken": sink is None}

    def on_setting(manifest: dict) -> None:
        # MLflow is a view: when it fails, stop writing to it (no stalls on a dead server);
        # the store keeps everything and `uqroute sync` catches MLflow up.
        if sink_state["broken"]:
            return
        try:
            sink.log_setting(manifest, unit_dir(r.store_dir, "settings", manifest["key"]),
                             setting_params(r, {k: manifest[k] for k in ("slm", "uq", "dataset", "llm")}))
        except Exception:
            sink_state["broken"] = True
            if console:
                console.print(f"[yellow]MLflow stopped answering; results go on into the store. "
                              f"Run `uqroute sync {r.output_dir}` once it is back.[/]")
            raise

    sched = Scheduler(plan, r, r.store_dir, ledger, on_setting=on_setting, on_progress=progress)
    report = sched.run(keys)
    write_summary(r, plan)
    plots = overview_plots(r, plan)
    rep = make_report(r, plan, console)
    if sink is not None and not sink_state["broken"]:
        try:
            _sync_missing(r, plan, sink)
            for p in plots:
                sink.log_grid_artifact(p)
            sink.log_grid_artifact(r.output_dir / "summary.csv")
            if rep is not None:
                sink.log_report(rep)
            sink.finish_grid(report.ok)
        except Exception as exc:
            if console:
                console.print(f"[yellow]MLflow update failed: {exc}; run `uqroute sync {r.output_dir}`[/]")
    return plan, report, sink


def make_report(r: ResolvedGrid, plan: Plan, console=None) -> dict | None:
    """The grid report (``jobs/report.py``); a failure here never fails the run."""
    from jobs.report import build_report

    try:
        return build_report(r, plan)
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
    from jobs.report import build_report

    r = load_output(out)
    plan = make_plan(r)
    rep = build_report(r, plan)
    rep["mlflow"] = None
    if mlflow and r.grid["mlflow"]["enabled"]:
        sink = make_sink(r, console)
        if sink is not None:
            sink.log_report(rep)
            rep["mlflow"] = {"uri": sink.uri, "run_id": sink.parent_id}
    return rep


def _sync_missing(r: ResolvedGrid, plan: Plan, sink) -> int:
    have = sink.finished_settings()
    n = 0
    for s in plan.settings:
        d = unit_dir(r.store_dir, "settings", s.hash)
        if s.hash not in have and (d / "manifest.json").is_file():
            sink.log_setting(read_json(d / "manifest.json"), d, setting_params(r, s.axes()))
            n += 1
    return n


def sync(out: Path, console=None) -> int:
    """Rebuild MLflow from the store: log every finished setting that MLflow lacks."""
    r = load_output(out)
    plan = make_plan(r)
    sink = make_sink(r, console)
    if sink is None:
        raise RuntimeError("MLflow is disabled or unreachable for this output folder")
    n = _sync_missing(r, plan, sink)
    return n
