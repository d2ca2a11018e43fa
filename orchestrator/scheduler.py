"""The scheduler: model work ordered so that it cannot deadlock and loads each model once.

Rules (each has a test with an in-process executor in ``tests/unit/test_scheduler.py``):

* **Models are residents, packed onto nodes.** Generation units are grouped by model (two
  grid entries with the same config share one group). A model's replicas are started only
  where they fit: the scheduler packs each replica's request (CPU, GPU, custom resources)
  onto a node's capacity itself and pins the actor there, so a started actor is a placed
  actor. A model stays resident until every one of its passes (all datasets, roles,
  stages) is done, then it is released and the next model is loaded: each model is loaded
  once per grid. Idle extra replicas are released as soon as another model waits for room.
* **Only placeable work is in flight.** Generation work is handed to a live, idle replica of
  its model only; it never waits in Ray's queue for an actor that cannot be placed. The
  in-flight cap (``ray.max_in_flight``) counts the light score/setting tasks alone, and
  ``ray.reserve_cpus`` of the cluster are never given to models so those tasks always run.
* **Data parallelism.** A unit with several chunks is split into shards (chunk ``ci`` goes to
  shard ``ci % n``) across the model's replicas; the manifest is written once every chunk is
  on disk, so chunk-level resume holds as before.
* **No silent hang.** A model that cannot fit on any node fails before any work starts, naming
  its request and the nodes. If nothing finishes for ``ray.watchdog_s`` seconds, the run stops
  with ``SchedulerStalled`` saying what runs, since when, and what waits on what.
* **Ctrl-C** cancels what is in flight, releases every actor, records the interruption in the
  ledger and re-raises ``KeyboardInterrupt`` for the caller to report.

Failures are classified by the executor (actor died, out of memory -> retry with half the
batch, data error, scoring error), retried up to ``ray.max_retries``, recorded in the ledger;
a unit that keeps failing is marked failed and its dependents blocked while the rest of the
grid goes on. A full disk (``disk_full``: ``jobs.errors.StoreFull``, naming the folder and its free
space) stops the run at once: every other unit would fail the same way. Nothing half-written is
counted done (writes are atomic, the manifest last); ``resume`` after freeing space completes it. A model whose actor dies before finishing anything more than ``max_retries``
times fails all its units at once (it cannot be loaded), instead of once per unit.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.backends.base import ModelConf
from jobs.conf import plain
from jobs.errors import StoreFull
from jobs.units import GenSpec
from orchestrator.grid import stable_hash
from orchestrator.ledger import Ledger
from orchestrator.plan import Plan, Unit

NON_RETRYABLE = ("data_error", "disk_full")
EPS = 1e-9


class SchedulingError(RuntimeError):
    """The grid cannot be scheduled on this cluster (raised before any work starts)."""


class SchedulerStalled(RuntimeError):
    """Nothing finished for ``ray.watchdog_s`` seconds; the message says what waits on what."""


@dataclass
class RunReport:
    done: set = field(default_factory=set)
    failed: dict = field(default_factory=dict)  # key -> reason
    blocked: dict = field(default_factory=dict)  # key -> failed dep key
    placements: dict = field(default_factory=dict)  # gen unit key -> node id (of its first shard)
    loads: dict = field(default_factory=dict)  # model group -> number of actors started
    idle_s: dict = field(default_factory=dict)  # model group -> replica-seconds resident but idle
    busy_s: dict = field(default_factory=dict)  # model group -> replica-seconds running work
    max_live_replicas: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


@dataclass
class Replica:
    group: str
    node: str
    handle: Any
    busy: tuple | None = None  # (unit key, shard index) while running
    changed: float = 0.0  # when it last became busy or idle
    finished_any: bool = False


@dataclass
class Group:
    """The units of one model config and the resources one replica of it asks for."""

    name: str  # readable: the first grid entry that uses it ("slm:smollm2-135m")
    conf: dict
    request: dict[str, float]
    replicas_wanted: int
    order: int  # first appearance in the plan: earlier models load first
    units: set = field(default_factory=set)  # gen unit keys not yet done / failed
    queue: list = field(default_factory=list)  # [(unit key, shard j, n)] ready to hand to a replica
    init_failures: int = 0


def model_request(conf) -> dict[str, float]:
    """The Ray resources one replica of a model asks for (``ModelConf`` num_cpus / num_gpus / resources)."""
    req = {"CPU": float(conf.num_cpus or 0), "GPU": float(conf.num_gpus or 0)}
    req |= {k: float(v) for k, v in (conf.resources or {}).items()}
    return {k: v for k, v in req.items() if v > 0}


def _fits(req: dict, free: dict) -> bool:
    return all(free.get(k, 0.0) + EPS >= v for k, v in req.items())


def _fmt_res(res: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(res.items())) + "}"


class Scheduler:
    def __init__(
        self,
        plan: Plan,
        resolved,
        store: Path,
        ledger: Ledger,
        on_setting: Callable[[dict], None] | None = None,
        on_progress: Callable[[str, Unit, dict], None] | None = None,
        executor=None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.plan, self.r, self.store, self.ledger = plan, resolved, Path(store), ledger
        self.on_setting = on_setting or (lambda m: None)
        self.on_progress = on_progress or (lambda ev, u, info: None)
        rc = resolved.grid.ray
        self.max_in_flight = int(rc.max_in_flight)
        self.max_retries = int(rc.max_retries)
        self.reserve_cpus = float(rc.reserve_cpus)
        self.watchdog_s = float(rc.watchdog_s)
        self.poll_s = float(rc.poll_s)
        if executor is None:
            from cluster.executor import RayExecutor

            executor = RayExecutor(self.store)
        self.ex = executor
        self.light_cpus = float(getattr(executor, "light_task_cpus", 0.25))
        self.light_inflight = 0
        self.reserve_host: str | None = None
        self.clock = clock
        self.replicas: list[Replica] = []

    def actor_view(self) -> list[dict]:
        """The live model actors, in start order: ``model`` (its group's readable name), ``node`` and
        ``unit`` (the label of the unit it runs, None when idle)."""
        groups = getattr(self, "groups", {})
        pending = getattr(self, "pending", {})
        out = []
        for rep in self.replicas:
            g = groups.get(rep.group)
            busy = pending.get(rep.busy[0]) if rep.busy else None
            out.append({"model": g.name if g else rep.group, "node": rep.node, "unit": busy.label if busy else None})
        return out

    def _emit(self, event: str, u: Unit, info: dict) -> None:
        """One progress event; its info carries the live actors (``actor_view``) as ``actors``."""
        self.on_progress(event, u, dict(info, actors=self.actor_view()))

    # ----------------------------------------------------------------- models
    def _model_conf(self, model: str) -> ModelConf:
        kind, name = model.split(":", 1)
        return (self.r.slms if kind == "slm" else self.r.llms)[name]

    def _groups(self, units: dict[str, Unit]) -> tuple[dict[str, Group], dict[str, str]]:
        """Model groups (one per distinct model config) and unit key -> group."""
        groups: dict[str, Group] = {}
        of: dict[str, str] = {}
        for u in units.values():
            if u.kind != "gen":
                continue
            conf = self._model_conf(u.model)
            gid = stable_hash({k: v for k, v in plain(conf).items() if k != "name"})
            if gid not in groups:
                groups[gid] = Group(u.model, conf, model_request(conf), max(1, int(conf.replicas)), len(groups))
            groups[gid].units.add(u.key)
            of[u.key] = gid
        return groups, of

    def _capacity(self) -> dict[str, dict[str, float]]:
        """Per node: what models may use (the first node with the most CPUs keeps ``reserve_cpus``)."""
        nodes = {n: dict(res) for n, res in self.ex.nodes().items()}
        if nodes:
            self.reserve_host = max(nodes, key=lambda n: nodes[n].get("CPU", 0.0))
            nodes[self.reserve_host]["CPU"] = nodes[self.reserve_host].get("CPU", 0.0) - self.reserve_cpus
        return nodes

    def _free(self, capacity: dict) -> dict[str, dict[str, float]]:
        free = {n: dict(res) for n, res in capacity.items()}
        for rep in self.replicas:
            if rep.node in free:
                for k, v in self.groups[rep.group].request.items():
                    free[rep.node][k] = free[rep.node].get(k, 0.0) - v
        # light tasks beyond the reserve occupy room a model could use (counted on the reserve's node)
        over = self.light_inflight * self.light_cpus - self.reserve_cpus
        if over > 0 and self.reserve_host in free:
            free[self.reserve_host]["CPU"] = free[self.reserve_host].get("CPU", 0.0) - over
        return free

    def _check_placeable(self, groups: dict[str, Group]) -> None:
        """Every model must fit on some node of an empty cluster, or the grid fails before any work."""
        nodes = self.ex.nodes()
        if not nodes:
            raise SchedulingError("the Ray cluster has no alive node")
        bad = []
        for g in groups.values():
            if not any(_fits(g.request, res) for res in nodes.values()):
                bad.append(f"{g.name} asks {_fmt_res(g.request)} per replica")
        if bad:
            have = "; ".join(f"node {n[:8]}: {_fmt_res(res)}" for n, res in nodes.items())
            raise SchedulingError(
                "these models fit on no node of the cluster: "
                + "; ".join(bad)
                + f". Nodes: {have}. Lower num_cpus/num_gpus/resources in the model config, "
                "or add nodes that have them."
            )

    def _start_replica(self, gid: str, node: str) -> Replica:
        g = self.groups[gid]
        now = self.clock()
        rep = Replica(gid, node, self.ex.start_model(g.conf, node), changed=now)
        self.replicas.append(rep)
        self.report.loads[g.name] = self.report.loads.get(g.name, 0) + 1
        self.report.max_live_replicas = max(self.report.max_live_replicas, len(self.replicas))
        return rep

    def _account(self, rep: Replica, now: float) -> None:
        bucket = self.report.busy_s if rep.busy else self.report.idle_s
        name = self.groups[rep.group].name
        bucket[name] = bucket.get(name, 0.0) + max(0.0, now - rep.changed)
        rep.changed = now

    def _release(self, rep: Replica) -> None:
        self._account(rep, self.clock())
        self.replicas.remove(rep)
        self.ex.stop_model(rep.handle)

    def _place_models(self) -> list[str]:
        """Start replicas for models with queued work, where they fit. Returns groups left waiting."""
        capacity = self._capacity()
        waiting = []
        for gid in sorted(self.groups, key=lambda x: self.groups[x].order):
            g = self.groups[gid]
            if not g.queue:
                continue
            live = [r for r in self.replicas if r.group == gid]
            running = sum(1 for r in live if r.busy)
            want = min(g.replicas_wanted, running + len(g.queue))
            while len(live) < want:
                free = self._free(capacity)
                node = next(
                    (n for n in sorted(free, key=lambda n: -free[n].get("CPU", 0.0)) if _fits(g.request, free[n])), None
                )
                if node is None and not self.replicas:
                    # fits only in the reserved share: with nothing else resident, let it use that too
                    free = self._free(self.ex.nodes())
                    node = next((n for n in free if _fits(g.request, free[n])), None)
                if node is None:
                    break
                live.append(self._start_replica(gid, node))
            if not live:
                waiting.append(gid)
        return waiting

    def _release_idle(self, waiting: list[str]) -> None:
        """Release idle replicas: all of a model with no work left; extra ones when others wait."""
        for rep in list(self.replicas):
            if rep.busy:
                continue
            g = self.groups[rep.group]
            if g.queue:
                continue
            if not g.units:
                self._release(rep)
            elif waiting and sum(1 for r in self.replicas if r.group == rep.group) > 1:
                self._release(rep)  # its model keeps one replica for the passes still to come

    # ---------------------------------------------------------------- shards
    def _n_shards(self, u: Unit, g: Group) -> int:
        """Shards of a gen unit: one per replica, at most one per (estimated) chunk."""
        if g.replicas_wanted <= 1:
            return 1
        sp = u.spec
        assert isinstance(sp, GenSpec)
        limit = sp.row_limit
        if limit is None or sp.dataset_conf.adapter == "questions":
            return g.replicas_wanted
        return max(1, min(g.replicas_wanted, math.ceil(limit / sp.chunk_size)))

    # ------------------------------------------------------------------ loop
    def run(self, keys: set[str] | None = None, done: set[str] | None = None) -> RunReport:
        """Run the plan's units that are not done (only ``keys`` when given). ``done``: the units the
        caller just verified as done (``orchestrator.verify``), else the store is checked here."""
        self.report = report = RunReport()
        done = set(self.plan.done(self.store) if done is None else done)
        report.done |= done
        self.pending = pending = {
            k: u for k, u in self.plan.units.items() if k not in done and (keys is None or k in keys)
        }
        self.groups, self.group_of = self._groups(pending)
        self._check_placeable(self.groups)
        self.attempts: dict[tuple, int] = defaultdict(int)
        self.batch_override: dict[str, int] = {}
        self.shard_results: dict[str, dict[int, dict]] = {}
        self.inflight: dict[Any, tuple[Unit, Replica | None, int, int]] = {}  # ref -> (unit, replica, shard, n)
        self.light_inflight = 0
        # dependency index: what each pending unit still waits for, and who waits for each unit
        self.waits = {k: {d for d in u.deps if d not in report.done} for k, u in pending.items()}
        self.dependents: dict[str, list[str]] = defaultdict(list)
        for k, ds in self.waits.items():
            for d in ds:
                self.dependents[d].append(k)
        self.ready_light: dict[str, list[Unit]] = {"setting": [], "score": []}
        for k in list(pending):
            missing = next((d for d in self.waits.get(k, ()) if d not in pending), None)
            if missing:  # its dependency is neither done nor part of this run
                self._block(pending[k], missing, "dependency is neither done nor part of this run")
        for k in list(pending):
            if k in pending and not self.waits[k]:
                self._became_ready(pending[k])
        last_progress = self.clock()
        try:
            while pending or self.inflight:
                now = self.clock()
                waiting = self._place_models()
                self._release_idle(waiting)
                self._hand_out_shards(now)
                self._submit_light(waiting)
                if not self.inflight:
                    if pending:
                        self._stuck(waiting)
                    break
                finished = self.ex.wait(list(self.inflight), timeout=self.poll_s)
                now = self.clock()
                if not finished:
                    if now - last_progress > self.watchdog_s:
                        raise SchedulerStalled(self._describe_stall(now, last_progress))
                    continue
                last_progress = now
                for ref in finished:
                    self._finished(ref, now)
        except KeyboardInterrupt:
            for ref, (u, _, j, _) in self.inflight.items():
                self.ex.cancel(ref)
                self.ledger.write("interrupted", u, shard=j)
            raise
        finally:
            for rep in list(self.replicas):
                self._release(rep)
        return report

    def _became_ready(self, u: Unit) -> None:
        if u.kind != "gen":
            self.ready_light[u.kind].append(u)
            return
        g = self.groups[self.group_of[u.key]]
        n = self._n_shards(u, g)
        g.queue += [(u.key, j, n) for j in range(n)]
        self.shard_results[u.key] = {}
        self.ledger.write("started", u, attempt=1, shards=n)
        self._emit("started", u, {"shards": n})

    def _hand_out_shards(self, now: float) -> None:
        for rep in self.replicas:
            g = self.groups[rep.group]
            if rep.busy or not g.queue:
                continue
            k, j, n = g.queue.pop(0)
            u = self.pending[k]
            self.attempts[(k, j)] += 1
            ref = self.ex.run_gen(rep.handle, u.spec, self.batch_override.get(k), (j, n))
            self._account(rep, now)
            rep.busy = (k, j)
            self.inflight[ref] = (u, rep, j, n)
            self._emit("shard_started", u, {"shard": j, "shards": n})

    def _submit_light(self, waiting: list[str]) -> None:
        """Settings first (they are results), then scores, up to the cap; while a model waits for
        room, only as many as the reserved CPUs hold (the rest would take the model's room)."""
        cap = self.max_in_flight
        if waiting:
            cap = min(cap, max(1, int(self.reserve_cpus / self.light_cpus + EPS)))
        for kind in ("setting", "score"):
            q = self.ready_light[kind]
            while q and self.light_inflight < cap:
                u = q.pop(0)
                self.attempts[(u.key, 0)] += 1
                ref = self.ex.run_light(u.kind, u.spec)
                self.inflight[ref] = (u, None, 0, 1)
                self.light_inflight += 1
                self.ledger.write("started", u, attempt=self.attempts[(u.key, 0)])
                self._emit("started", u, {})

    def _finished(self, ref, now: float) -> None:
        u, rep, j, n = self.inflight.pop(ref)
        if rep is not None:
            self._account(rep, now)
            rep.busy = None
        else:
            self.light_inflight -= 1
        try:
            result = self.ex.get(ref)
        except Exception as exc:  # noqa: BLE001 - classified by the executor
            self._on_failure(u, rep, j, n, exc)
            return
        if rep is not None:
            rep.finished_any = True
            self.groups[rep.group].init_failures = 0
            if u.key not in self.pending:
                return  # failed meanwhile through another shard
            self.shard_results[u.key][j] = result
            self.report.placements.setdefault(u.key, result.get("node_id") if isinstance(result, dict) else None)
            self._emit("shard_done", u, result if isinstance(result, dict) else {})
            if len(self.shard_results[u.key]) < n:
                return
            if n > 1:
                shards = [self.shard_results[u.key][i] for i in range(n)]
                try:
                    result = self.ex.finish_gen(u.spec, shards)
                    result = dict(
                        result,
                        node_id=shards[0].get("node_id"),
                        gpu_ids=sorted({g for s in shards for g in s.get("gpu_ids") or []}),
                    )
                except StoreFull:
                    raise
                except Exception as exc:  # noqa: BLE001 - a gap: rerun the unit (done chunks are skipped)
                    self._requeue_whole(u, n, str(exc))
                    return
            self.groups[self.group_of[u.key]].units.discard(u.key)
        self._done(u, result)

    def _done(self, u: Unit, result) -> None:
        info = result if isinstance(result, dict) else {}
        self.report.done.add(u.key)
        self.pending.pop(u.key, None)
        self.ledger.write("done", u, node=info.get("node_id"), gpus=info.get("gpu_ids"))
        self._emit("done", u, info)
        if u.kind == "setting":
            try:
                self.on_setting(result)
            except Exception as exc:  # noqa: BLE001 - the store stays the source of truth; `uqroute sync` repairs
                self.ledger.write("sink_error", u, detail=str(exc)[:500])
        for k in self.dependents.get(u.key, ()):
            w = self.waits.get(k)
            if w is not None and k in self.pending:
                w.discard(u.key)
                if not w:
                    self._became_ready(self.pending[k])

    def _drop(self, u: Unit) -> None:
        self.pending.pop(u.key, None)
        gid = self.group_of.get(u.key)
        if gid:
            g = self.groups[gid]
            g.units.discard(u.key)
            g.queue = [q for q in g.queue if q[0] != u.key]

    def _fail(self, u: Unit, reason: str, detail: str, attempt: int | None = None) -> None:
        self.report.failed[u.key] = f"{reason}: {detail}"
        self.ledger.write("failed", u, reason=reason, detail=detail, attempt=attempt)
        self._emit("failed", u, {"reason": reason})
        self._drop(u)
        self._block_dependents(u.key)

    def _block(self, u: Unit, dep: str, detail: str) -> None:
        self.report.blocked[u.key] = dep
        self.ledger.write("failed", u, reason="blocked", detail=detail)
        self._emit("blocked", u, {})
        self._drop(u)
        self._block_dependents(u.key)

    def _block_dependents(self, key: str) -> None:
        for k in self.dependents.get(key, ()):
            if k in self.pending:
                self._block(self.pending[k], key, f"dependency {key} failed")

    def _on_failure(self, u: Unit, rep: Replica | None, j: int, n: int, exc: BaseException) -> None:
        reason = getattr(exc, "reason", "error")
        detail = getattr(exc, "detail", None) or str(exc)[:500] or type(exc).__name__
        attempt = self.attempts[(u.key, j)]
        if reason == "disk_full":  # every unit would fail the same way: stop, keep what is finished
            self._fail(u, reason, detail, attempt)
            raise StoreFull(f"the run stopped: {detail.split('StoreFull: ', 1)[-1]}")
        if rep is not None and reason == "actor_died":
            g = self.groups[rep.group]
            if rep in self.replicas:
                self.replicas.remove(rep)  # dead: its resources are free again
            if not rep.finished_any:
                g.init_failures += 1
                if g.init_failures > self.max_retries:  # the model cannot be loaded: fail its units at once
                    for k in sorted(g.units):
                        if k in self.pending:
                            self._fail(
                                self.pending[k],
                                "actor_died",
                                f"model {g.name} died {g.init_failures} "
                                f"times before finishing any work (last: {detail})",
                                attempt,
                            )
                    return
        if u.key not in self.pending:
            return  # another shard of it already failed it
        if reason == "oom" and rep is not None:
            cur = self.batch_override.get(u.key) or int(self.groups[rep.group].conf.batch_size)
            self.batch_override[u.key] = max(1, cur // 2)
        if reason not in NON_RETRYABLE and attempt <= self.max_retries:
            self.ledger.write("retry", u, reason=reason, detail=detail, attempt=attempt, shard=j)
            self._emit("retry", u, {"reason": reason})
            if rep is not None:
                self.groups[rep.group].queue.insert(0, (u.key, j, n))
            else:
                self.ready_light[u.kind].insert(0, u)
        else:
            self._fail(u, reason, detail, attempt)

    def _requeue_whole(self, u: Unit, n: int, detail: str) -> None:
        if max(self.attempts[(u.key, j)] for j in range(n)) > self.max_retries:
            self._fail(u, "error", detail)
            return
        self.shard_results[u.key] = {}
        self.groups[self.group_of[u.key]].queue += [(u.key, j, n) for j in range(n)]
        self.ledger.write("retry", u, reason="error", detail=detail)

    # ------------------------------------------------------------ diagnosis
    def _describe_waiting(self, waiting: list[str]) -> list[str]:
        free = self._free(self._capacity())
        out = []
        for gid in waiting:
            g = self.groups[gid]
            out.append(
                f"{g.name} ({len(g.queue)} shards queued) needs {_fmt_res(g.request)} per replica; free per "
                f"node: " + "; ".join(f"{n[:8]} {_fmt_res(r)}" for n, r in free.items())
            )
        return out

    def _stuck(self, waiting: list[str]) -> None:
        """Nothing runs, work remains: say why, instead of returning as if finished."""
        lines = self._describe_waiting(waiting)
        rest = [u.label for u in self.pending.values() if u.key not in self.group_of][:5]
        raise SchedulerStalled(
            "nothing is running and nothing can start: "
            + "; ".join(lines or ["?"])
            + (f"; light units waiting: {rest}" if rest else "")
        )

    def _describe_stall(self, now: float, last: float) -> str:
        pending = self.pending
        running = []
        for u, rep, j, n in self.inflight.values():
            where = f" on {self.groups[rep.group].name} replica@{rep.node[:8]}" if rep else ""
            running.append(f"{u.label}{f' shard {j + 1}/{n}' if n > 1 else ''}{where}")
        waiting = [gid for gid, g in self.groups.items() if g.queue]
        waits = self._describe_waiting(waiting)
        blocked_on = defaultdict(int)
        for u in pending.values():
            for d in u.deps:
                if d in pending:
                    blocked_on[pending[d].label] += 1
        top = sorted(blocked_on.items(), key=lambda kv: -kv[1])[:5]
        return (
            f"no unit finished for {now - last:.0f} s (ray.watchdog_s={self.watchdog_s:g}). Running: "
            f"{running[:8]}{' ...' if len(running) > 8 else ''}. Models waiting for room: {waits or 'none'}. "
            f"Units waiting on others: "
            + ", ".join(f"{n} on '{lbl}'" for lbl, n in top)
            + ". The store keeps everything finished; fix the cause and `uqroute resume` the output folder."
        )
