"""The scheduler: one loop over completion order with a cap on work in flight.

Generation units go to the resident actor of their model (one unit at a time per actor,
so the model stays loaded and busy); score and setting units are small Ray tasks. Each
finished setting is handed to the sink (MLflow) as it completes. Failures are classified
(actor died, out of memory -> retry with half the batch, data error, scoring error),
retried up to ``max_retries``, recorded in the ledger, and a unit that keeps failing is
marked failed while the rest of the grid goes on (its dependents are marked blocked).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from cluster.actors import remote_worker, score_task, setting_task
from orchestrator.ledger import Ledger
from orchestrator.plan import Plan, Unit

NON_RETRYABLE = ("data_error",)


def classify(exc: BaseException) -> str:
    if isinstance(exc, RayActorError):
        return "actor_died"
    text = f"{type(exc).__name__}: {exc}"
    cause = getattr(exc, "cause", None)
    if cause is not None:
        text += f" {type(cause).__name__}"
    if "OutOfMemoryError" in text or "out of memory" in text.lower():
        return "oom"
    if any(n in text for n in ("FileNotFoundError", "UnknownNameError", "DataError")):
        return "data_error"
    if isinstance(exc, RayTaskError) and ("run_score_unit" in text or "run_setting_unit" in text):
        return "scoring_error"
    return "error"


@dataclass
class RunReport:
    done: set = field(default_factory=set)
    failed: dict = field(default_factory=dict)  # key -> reason
    blocked: dict = field(default_factory=dict)  # key -> failed dep key
    placements: dict = field(default_factory=dict)  # gen unit key -> node id

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


class Scheduler:
    def __init__(self, plan: Plan, resolved, store: Path, ledger: Ledger,
                 on_setting: Callable[[dict], None] | None = None,
                 on_progress: Callable[[str, Unit, dict], None] | None = None):
        self.plan, self.r, self.store, self.ledger = plan, resolved, Path(store), ledger
        self.on_setting = on_setting or (lambda m: None)
        self.on_progress = on_progress or (lambda ev, u, info: None)
        rc = resolved.grid["ray"]
        self.max_in_flight = int(rc["max_in_flight"])
        self.max_retries = int(rc["max_retries"])
        self.actors: dict[str, object] = {}

    # ------------------------------------------------------------------ actors
    def _model_conf(self, model: str) -> dict:
        kind, name = model.split(":", 1)
        return (self.r.slms if kind == "slm" else self.r.llms)[name]

    def _idle_replica(self, model: str, busy: set) -> tuple | None:
        """An idle actor of ``model`` (starting one if fewer than ``replicas`` exist), or None."""
        replicas = self.actors.setdefault(model, {})
        for idx, actor in replicas.items():
            if (model, idx) not in busy:
                return idx, actor
        want = max(1, int(self._model_conf(model).get("replicas") or 1))
        if len(replicas) < want:
            idx = next(i for i in range(want) if i not in replicas)
            replicas[idx] = remote_worker(self._model_conf(model), str(self.store))
            return idx, replicas[idx]
        return None

    def _drop_actor(self, model: str, idx: int) -> None:
        a = self.actors.get(model, {}).pop(idx, None)
        if a is not None:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # already dead
                pass

    def _release_idle_actors(self, pending: dict[str, Unit], busy: set) -> None:
        """Free a model's resources once no pending unit needs it (lets other models load)."""
        needed = {u.model for u in pending.values() if u.kind == "gen"}
        for model in list(self.actors):
            for idx in list(self.actors[model]):
                if model not in needed and (model, idx) not in busy:
                    self._drop_actor(model, idx)

    # -------------------------------------------------------------------- loop
    def run(self, keys: set[str] | None = None) -> RunReport:
        report = RunReport()
        done = self.plan.done(self.store)
        report.done |= done
        pending = {k: u for k, u in self.plan.units.items() if k not in done and (keys is None or k in keys)}
        attempts: dict[str, int] = {}
        batch_override: dict[str, int] = {}
        inflight: dict[object, tuple[Unit, tuple | None]] = {}
        busy: set[tuple] = set()  # (model, replica index) running a unit

        def ready(u: Unit) -> bool:
            return all(d in report.done for d in u.deps)

        while pending or inflight:
            # block units whose dependencies failed
            for k, u in list(pending.items()):
                bad = next((d for d in u.deps if d in report.failed or d in report.blocked), None)
                if bad:
                    report.blocked[k] = bad
                    self.ledger.write("failed", u, reason="blocked", detail=f"dependency {bad} failed")
                    self.on_progress("blocked", u, {})
                    del pending[k]
            # submit what is ready
            for k, u in list(pending.items()):
                if len(inflight) >= self.max_in_flight:
                    break
                if not ready(u):
                    continue
                slot = None
                if u.kind == "gen":
                    free = self._idle_replica(u.model, busy)
                    if free is None:
                        continue
                    slot = (u.model, free[0])
                    ref = free[1].run_gen.remote(u.payload, batch_override.get(k))
                    busy.add(slot)
                elif u.kind == "score":
                    ref = score_task.remote(u.payload, str(self.store))
                else:
                    ref = setting_task.remote(u.payload, str(self.store))
                inflight[ref] = (u, slot)
                attempts[k] = attempts.get(k, 0) + 1
                self.ledger.write("started", u, attempt=attempts[k])
                self.on_progress("started", u, {})
                del pending[k]
            self._release_idle_actors(pending, busy)
            if not inflight:
                if pending:  # nothing runnable and nothing running: a dependency is missing
                    for k, u in pending.items():
                        report.blocked[k] = "unsatisfiable"
                        self.ledger.write("failed", u, reason="blocked", detail="dependencies never completed")
                    pending.clear()
                break
            ready_refs, _ = ray.wait(list(inflight), num_returns=1, timeout=2.0)
            for ref in ready_refs:
                u, slot = inflight.pop(ref)
                model = slot[0] if slot else None
                if slot:
                    busy.discard(slot)
                try:
                    result = ray.get(ref)
                except (RayTaskError, RayActorError, GetTimeoutError, Exception) as exc:  # noqa: BLE001
                    reason = classify(exc)
                    detail = str(exc).strip().splitlines()[-1][:500] if str(exc).strip() else type(exc).__name__
                    if reason == "actor_died" and slot:
                        self._drop_actor(*slot)  # a fresh replica is started on the next submit
                    if reason == "oom":
                        cur = batch_override.get(u.key) or int(self._model_conf(model)["batch_size"]) if model else 1
                        batch_override[u.key] = max(1, cur // 2)
                    if reason not in NON_RETRYABLE and attempts[u.key] <= self.max_retries:
                        self.ledger.write("retry", u, reason=reason, detail=detail, attempt=attempts[u.key])
                        self.on_progress("retry", u, {"reason": reason})
                        pending[u.key] = u
                    else:
                        report.failed[u.key] = f"{reason}: {detail}"
                        self.ledger.write("failed", u, reason=reason, detail=detail, attempt=attempts[u.key])
                        self.on_progress("failed", u, {"reason": reason})
                    continue
                report.done.add(u.key)
                if u.kind == "gen" and isinstance(result, dict):
                    report.placements[u.key] = result.get("node_id")
                info = result if isinstance(result, dict) else {}
                self.ledger.write("done", u, node=info.get("node_id"), gpus=info.get("gpu_ids"))
                self.on_progress("done", u, result if isinstance(result, dict) else {})
                if u.kind == "setting":
                    try:
                        self.on_setting(result)
                    except Exception as exc:  # the store stays the source of truth; `uqroute sync` repairs
                        self.ledger.write("sink_error", u, detail=str(exc)[:500])
        for model in list(self.actors):
            for idx in list(self.actors[model]):
                self._drop_actor(model, idx)
        return report
