"""``uqroute rescore <output folder>``: recompute everything downstream of the stored generations.

After a change to answer extraction, a UQ method or a metric, the model passes in the store are
still right; what reads them is not. ``rescore`` makes the folder's plan again (whose unit keys
now carry the new versions), checks that every generation unit is on disk, and runs only the
score and setting units -- those whose key changed, or all of them with ``--all`` -- with no
model and no GPU: no model actor can start (``NoModelExecutor``; ``--local`` runs the units in
this process, without Ray). Then it rewrites the summary, the plots, the report and each changed
setting's MLflow run (replaced under its setting hash, never duplicated), and says what moved:
per setting, the AUROC before and after, flagged when it moved by more than half its 95%
bootstrap CI (the CI stored with the earlier result).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from jobs.backends.base import ModelConf
from jobs.records import read_json, write_json
from jobs.store import Store
from orchestrator.plan import Plan, make_plan
from orchestrator.runner import (
    load_output,
    log_finished_settings,
    make_report,
    make_sink,
    overview_plots,
    write_summary,
)

RESCORE_FILE = "rescore.json"
LIGHT_KINDS = ("score", "setting")


class RescoreError(RuntimeError):
    """The folder cannot be rescored as it is (e.g. generations missing)."""


class ModelLoadRefused(RuntimeError):
    reason = "error"

    def __init__(self, conf: ModelConf):
        self.detail = (
            f"rescore recomputes from stored generations and never loads a model; asked to load "
            f"{conf.name or getattr(conf, 'id', None)!r}"
        )
        super().__init__(self.detail)


class NoModelExecutor:
    """A scheduler executor that runs light (score / setting) units through ``inner`` and refuses to
    start any model: ``model_starts`` counts the refusals (zero in a correct rescore)."""

    def __init__(self, inner):
        self.inner = inner
        self.light_task_cpus = getattr(inner, "light_task_cpus", 0.25)
        self.model_starts = 0

    def start_model(self, conf: ModelConf, node: str):
        self.model_starts += 1
        raise ModelLoadRefused(conf)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class LocalExecutor:
    """Light units in this process, one after the other (``rescore --local``): no Ray, no model."""

    light_task_cpus = 0.25

    def __init__(self, store: Path | str):
        self.store = str(store)
        self._results: dict[int, object] = {}
        self._next = 0

    def nodes(self) -> dict[str, dict[str, float]]:
        return {"local": {"CPU": 1.0}}

    def start_model(self, conf: ModelConf, node: str):
        raise ModelLoadRefused(conf)

    def run_light(self, kind: str, spec) -> int:
        from jobs.scoring import run_score_unit, run_setting_unit

        fn = run_score_unit if kind == "score" else run_setting_unit
        ref, self._next = self._next, self._next + 1
        try:
            self._results[ref] = fn(spec, self.store)
        except Exception as exc:  # noqa: BLE001 - handed to the scheduler, which records and classifies it
            exc.reason = "scoring_error"
            exc.detail = f"{type(exc).__name__}: {exc}"[:500]
            self._results[ref] = _Failed(exc)
        return ref

    def wait(self, refs: list, timeout: float) -> list:
        return list(refs)  # each ran when it was submitted

    def get(self, ref):
        res = self._results.pop(ref)
        if isinstance(res, _Failed):
            raise res.exc
        return res

    def stop_model(self, handle) -> None:
        pass

    def cancel(self, ref) -> None:
        pass

    def run_gen(self, *a, **k):
        raise RuntimeError("rescore runs no generation")

    def finish_gen(self, *a, **k):
        raise RuntimeError("rescore runs no generation")


# ---------------------------------------------------------------------------------------------


def _auroc_of(metrics: dict) -> dict:
    return {k: metrics.get(k) for k in ("auroc", "auroc_lo", "auroc_hi", "n", "n_nan")}


def previous_results(r, plan: Plan) -> dict[str, dict]:
    """setting hash -> the result the folder showed before (``key``, auroc and its CI): the last
    summary (``summary.json``), else the setting's current unit, else the newest manifest of that
    setting hash in the store (a result under an older unit key)."""
    out: dict[str, dict] = {}
    summary = r.output_dir / "summary.json"
    wanted = {s.hash for s in plan.settings}
    if summary.is_file():
        for row in read_json(summary):
            if row.get("hash") in wanted:
                out[row["hash"]] = {"key": row.get("key", row["hash"]), **_auroc_of(row)}
    for s in plan.settings:
        if s.hash in out:
            continue
        d = plan.setting_store(r.store_dir, s)
        if d.done:
            out[s.hash] = {"key": plan.setting_keys[s.hash], **_auroc_of(d.manifest_json()["metrics"])}
    lacking = wanted - set(out)
    if lacking:
        newest: dict[str, tuple[float, dict]] = {}
        store = Store(r.store_dir)
        for key in store.keys("setting"):
            p = store.setting(key).manifest_path
            try:
                m = read_json(p)
            except (OSError, json.JSONDecodeError):
                continue
            h = m.get("setting_hash", m.get("key"))
            if h in lacking and (h not in newest or p.stat().st_mtime > newest[h][0]):
                newest[h] = (p.stat().st_mtime, {"key": m.get("key"), **_auroc_of(m.get("metrics", {}))})
        out |= {h: v for h, (_, v) in newest.items()}
    return out


def _num(x) -> float:
    return math.nan if x is None else float(x)


def compare(plan: Plan, before: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    """One row per setting: AUROC before and after, the change, the earlier CI's half width, and
    ``moved``: |change| > that half width (None when either value or the CI is unknown)."""
    rows = []
    for s in plan.settings:
        b, a = before.get(s.hash, {}), after.get(s.hash, {})
        old, new = _num(b.get("auroc")), _num(a.get("auroc"))
        half = (_num(b.get("auroc_hi")) - _num(b.get("auroc_lo"))) / 2
        delta = new - old
        known = all(math.isfinite(x) for x in (old, new, half))
        rows.append(
            {
                "setting": s.name,
                "hash": s.hash,
                "old_key": b.get("key"),
                "new_key": a.get("key"),
                "auroc_old": old,
                "auroc_new": new,
                "delta": delta,
                "ci_half_width": half,
                "ci_old": [_num(b.get("auroc_lo")), _num(b.get("auroc_hi"))],
                "ci_new": [_num(a.get("auroc_lo")), _num(a.get("auroc_hi"))],
                "changed": not (old == new or (math.isnan(old) and math.isnan(new))),
                "moved": (abs(delta) > half) if known else None,
            }
        )
    return rows


def _log_mlflow(r, plan: Plan, replace: bool, plots: list[Path], rep: dict | None, console) -> dict | None:
    """Each setting's run: kept when it shows the current unit, else replaced; then the grid's
    summary, plots and report on the parent run."""
    sink = make_sink(r, console)
    if sink is None:
        return None
    n = log_finished_settings(r, plan, sink, replace=replace)
    for p in plots:
        sink.log_grid_artifact(p)
    sink.log_grid_artifact(r.output_dir / "summary.csv")
    if rep is not None:
        sink.log_report(rep)
    return {"uri": sink.uri, "parent_run_id": sink.parent_id, "settings": n}


def _require_generations(plan: Plan, store: Path, out: Path) -> set[str]:
    """The done unit keys, once every generation unit is on disk and whole (else RescoreError /
    the verify error): rescore never runs a model pass."""
    from orchestrator.verify import require_healthy

    require_healthy(plan, store, out)  # a damaged generation would be read as if whole
    done = plan.done(store)
    missing = [u for u in plan.by_kind("gen") if u.key not in done]
    if missing:
        labels = ", ".join(u.label for u in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise RescoreError(
            f"{out}: {len(missing)} of {len(plan.by_kind('gen'))} generation units are not in the "
            f"store ({labels}); rescore recomputes from stored generations only. Run `uqroute "
            f"resume {out}` first (it runs the missing model passes)."
        )
    return done


def _executor(r, store: Path, local: bool):
    """This process's executor (local), else Ray's behind a guard that refuses a model start."""
    if local:
        return LocalExecutor(store)
    from cluster.connect import connect
    from cluster.executor import RayExecutor

    rc = r.grid.ray
    connect(rc.address, rc.num_cpus, rc.num_gpus)
    return NoModelExecutor(RayExecutor(store))


def _update_mlflow(r, plan: Plan, replace: bool, plots: list[Path], rep: dict | None, console, out: Path):
    """``_log_mlflow`` when MLflow is enabled; a failure is only reported (the store has everything)."""
    if not r.grid.mlflow.enabled:
        return None
    try:
        return _log_mlflow(r, plan, replace, plots, rep, console)
    except Exception as exc:  # noqa: BLE001 - the store has everything; `uqroute sync` repairs
        if console:
            console.print(f"[yellow]MLflow update failed: {exc}; run `uqroute sync {out}`[/]")
    return None


def rescore(out: Path, *, all_units: bool = False, local: bool = False, console=None) -> dict:
    """Recompute the score and setting units of an output folder from its stored generations.

    all_units: recompute every score and setting unit (their stored results are removed first),
    not only those whose key changed. local: run them in this process instead of on Ray.
    Returns {"plan", "report" (the scheduler's RunReport), "recomputed" {kind: n}, "changes"
    (``compare`` rows), "mlflow", "model_starts", "seconds"}; writes ``<out>/rescore.json``."""
    from orchestrator.ledger import Ledger
    from orchestrator.lock import OutputLock
    from orchestrator.scheduler import Scheduler

    t0 = time.perf_counter()
    out = Path(out)
    r = load_output(out)
    with OutputLock(r.output_dir):
        plan = make_plan(r)
        store = r.store_dir
        done = _require_generations(plan, store, out)
        before = previous_results(r, plan)
        light = [u for u in plan.units.values() if u.kind in LIGHT_KINDS]
        if all_units:
            for u in light:
                shutil.rmtree(Store(store).unit(u.kind, u.key).path, ignore_errors=True)
        todo = {u.key for u in light if all_units or u.key not in done}
        executor = _executor(r, store, local)
        report = Scheduler(plan, r, store, Ledger(r.output_dir / "ledger.jsonl"), executor=executor).run(todo)
        write_summary(r, plan)
        plots = overview_plots(r, plan)
        rep = make_report(r, plan, console)
        after = {row["hash"]: {"key": row["key"], **_auroc_of(row)} for row in Store(store).setting_rows(plan)}
        changes = compare(plan, before, after)
        mlflow = _update_mlflow(r, plan, all_units, plots, rep, console, out)
        recomputed = {
            k: sum(1 for u in light if u.kind == k and u.key in report.done and u.key in todo) for k in LIGHT_KINDS
        }
        result = {
            "plan": plan,
            "report": report,
            "recomputed": recomputed,
            "changes": changes,
            "mlflow": mlflow,
            "model_starts": getattr(executor, "model_starts", 0),
            "seconds": time.perf_counter() - t0,
            "all": all_units,
        }
        write_json(
            r.output_dir / RESCORE_FILE,
            {k: v for k, v in result.items() if k not in ("plan", "report")}
            | {"failed": report.failed, "blocked": report.blocked, "ts": time.time()},
        )
        return result
