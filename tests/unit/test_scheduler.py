"""Scheduling rules, with an in-process executor that behaves like Ray (no Ray, milliseconds).

The fake places an actor only where its node has room (otherwise the actor stays pending and
its calls never run, as in Ray), queues light tasks until a CPU share is free, refuses to run
a unit before its dependencies are done, and counts model loads, live actors and
oversubscription. Time is virtual: every call takes a fixed number of ticks.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from cluster.executor import UnitFailure
from jobs.datasets import PAPER_DATASETS_OFFLINE
from jobs.uq import PAPER_METHODS
from orchestrator.config import load_grid
from orchestrator.ledger import Ledger
from orchestrator.plan import make_plan
from orchestrator.scheduler import Scheduler, SchedulerStalled, SchedulingError
from tests.helpers import SMOL as PACKAGED_SMOL

SMOL = {"backend": "hf", **PACKAGED_SMOL, "num_cpus": 0.5}
DATASETS = list(PAPER_DATASETS_OFFLINE)  # the paper's 14, hub-only ones replaced by built-in ones
UQ = list(PAPER_METHODS)


def grid(
    tmp_path: Path,
    *,
    n_slms=8,
    n_llms=2,
    uq=UQ,
    datasets=DATASETS,
    limit=3,
    slm=None,
    llm=None,
    ray=None,
    calibration=False,
):
    """A paper-shaped grid: n SLM variants (distinct probe layers, so distinct models) x ... ."""
    import yaml

    slms = [dict(SMOL, name=f"slm{i}", hidden_layer=-2 - i, **(slm or {})) for i in range(n_slms)]
    llms = [dict(SMOL, name=f"llm{i}", max_new_tokens=10 + i, **(llm or {})) for i in range(n_llms)]
    g = {
        "name": "shape",
        "output_dir": str(tmp_path / "out"),
        "slms": slms,
        "llms": llms,
        "uq": list(uq),
        "datasets": list(datasets),
        "dataset": {"limit": limit, "fit_limit": limit},
        "calibration": {"enabled": calibration},
        "mlflow": {"enabled": False},
        "ray": {"max_in_flight": 16, "watchdog_s": 600, **(ray or {})},
    }
    f = tmp_path / "grid" / "shape.yaml"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(yaml.safe_dump(g))
    return load_grid(f)


class Ref:
    _ids = itertools.count()

    def __init__(self, kind, payload, actor=None, shard=(0, 1), batch=None):
        self.id = next(self._ids)
        self.kind, self.spec, self.actor, self.shard, self.batch = kind, payload, actor, shard, batch
        self.started = None  # virtual time it got its resources / its actor
        self.result = None

    def __hash__(self):
        return self.id


class FakeActor:
    _ids = itertools.count()

    def __init__(self, conf, node):
        self.id = next(self._ids)
        self.conf, self.node = conf, node
        self.placed = False
        self.dead = False
        self.calls: list[Ref] = []  # FIFO, one at a time (max_concurrency=1)
        self.n_done = 0


class FakeExecutor:
    def __init__(self, plan, nodes, *, gen_ticks=10, light_ticks=1, faults=None, light_cpus=0.25):
        self.plan = plan
        self.node_res = nodes
        self.t = 0.0
        self.gen_ticks, self.light_ticks, self.light_cpus = gen_ticks, light_ticks, light_cpus
        self.light_task_cpus = light_cpus  # what the scheduler reads
        self.faults = faults or (lambda ref, ex: None)
        self.actors: list[FakeActor] = []
        self.light: list[Ref] = []
        self.finished: set[str] = set()
        self.loads: dict[str, int] = {}
        self.max_live = 0
        self.pending_actor_seen = False
        self.finish_calls: dict[str, int] = {}
        self.gen_calls: list[Ref] = []
        self.stopped = 0
        self.interrupt_after: int | None = None
        self.completions = 0

    # --- the executor interface
    def nodes(self):
        return {n: dict(r) for n, r in self.node_res.items()}

    def clock(self):
        return self.t

    def _used(self, node):
        used = {}
        for a in self.actors:
            if a.placed and not a.dead and a.node == node:
                for k, v in _req(a.conf).items():
                    used[k] = used.get(k, 0) + v
        for r in self.light:
            if r.started is not None and r.result is None and r.node == node:
                used["CPU"] = used.get("CPU", 0) + self.light_cpus
        return used

    def _fits(self, node, req):
        used = self._used(node)
        return all(used.get(k, 0) + v <= self.node_res[node].get(k, 0) + 1e-9 for k, v in req.items())

    def start_model(self, conf, node):
        a = FakeActor(conf, node)
        self.actors.append(a)
        self.loads[conf.name] = self.loads.get(conf.name, 0) + 1
        self._schedule()
        if not a.placed:
            self.pending_actor_seen = True
        self.max_live = max(self.max_live, sum(1 for x in self.actors if x.placed and not x.dead))
        return a

    def run_gen(self, actor, payload, batch, shard):
        assert all(d in self.finished for d in payload.deps.values()), "gen unit run before its deps"
        r = Ref("gen", payload, actor, tuple(shard), batch)
        actor.calls.append(r)
        self.gen_calls.append(r)
        self._schedule()
        return r

    def run_light(self, kind, payload):
        u = self.plan.units[payload.key]
        assert all(d in self.finished for d in u.deps), f"{kind} unit run before its deps"
        r = Ref(kind, payload)
        r.node = None
        self.light.append(r)
        self._schedule()
        return r

    def _schedule(self):
        for a in self.actors:
            if not a.placed and not a.dead and self._fits(a.node, _req(a.conf)):
                a.placed = True
        for a in self.actors:
            if a.placed and not a.dead and a.calls and a.calls[0].started is None:
                a.calls[0].started = self.t
        for r in self.light:
            if r.started is None:
                node = next((n for n in self.node_res if self._fits(n, {"CPU": self.light_cpus})), None)
                if node is not None:
                    r.started, r.node = self.t, node

    def _running(self):
        out = [
            a.calls[0] for a in self.actors if a.placed and not a.dead and a.calls and a.calls[0].started is not None
        ]
        return out + [r for r in self.light if r.started is not None and r.result is None]

    def wait(self, refs, timeout):
        if self.interrupt_after is not None and self.completions >= self.interrupt_after:
            raise KeyboardInterrupt
        refs = set(refs)
        running = [r for r in self._running() if r in refs]
        if not running:
            self.t += timeout
            return []
        end = lambda r: r.started + (self.gen_ticks if r.kind == "gen" else self.light_ticks)  # noqa: E731
        first = min(running, key=end)
        if end(first) - self.t > timeout:
            self.t += timeout
            return []
        self.t = max(self.t, end(first))
        first.result = "pending"
        if first.kind == "gen":
            first.actor.calls.pop(0)
        else:
            self.light.remove(first)
        self.completions += 1
        self._schedule()
        return [first]

    def get(self, ref):
        self.faults(ref, self)
        if ref.kind == "gen":
            if ref.actor.dead:
                raise UnitFailure("actor_died", "actor is dead")
            ref.actor.n_done += 1
            j, n = ref.shard
            if n == 1:
                self.finished.add(ref.spec.key)
            run, chunk = ref.spec.run, ref.spec.params["chunk_size"]
            size = run.limit if ref.spec.role == "eval" else run.fit_limit
            ran = sum(min(chunk, size - ci * chunk) for ci in range(-(-size // chunk)) if ci % n == j)
            return {
                "key": ref.spec.key,
                "node_id": ref.actor.node,
                "gpu_ids": [],
                "n_chunks": n,
                "n_samples": size,
                "samples_run": ran,
            }
        self.finished.add(ref.spec.key)
        return {"key": ref.spec.key, "kind": ref.kind}

    def stop_model(self, actor):
        actor.dead = True
        self.stopped += 1
        self._schedule()

    def cancel(self, ref):
        pass

    def finish_gen(self, payload, summaries):
        assert len(summaries) == summaries[0]["n_chunks"]
        self.finish_calls[payload.key] = self.finish_calls.get(payload.key, 0) + 1
        self.finished.add(payload.key)
        return {"key": payload.key}


def _req(conf):
    req = {"CPU": float(conf.num_cpus or 0), "GPU": float(conf.num_gpus or 0)}
    req |= dict(conf.resources or {})
    return {k: v for k, v in req.items() if v > 0}


def run(r, tmp_path, nodes, **kw):
    plan = make_plan(r)
    ex = FakeExecutor(plan, nodes, **{k: v for k, v in kw.items() if k != "keys"})
    sched = Scheduler(plan, r, tmp_path / "store", Ledger(tmp_path / "ledger.jsonl"), executor=ex, clock=ex.clock)
    return plan, ex, sched


# ------------------------------------------------------------------ rules
def test_paper_shape_on_two_cpus_completes_loading_each_model_once(tmp_path):
    """8 SLMs x 8 UQ x 14 datasets x 2 LLMs on 2 CPUs: the shape that deadlocked (10 models of
    0.5 CPU, CPU-hungry score work, a full in-flight cap)."""
    r = grid(tmp_path)
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}}, light_cpus=0.5)
    assert len(plan.settings) == 1792
    report = sched.run()
    assert report.ok and len(report.done) == len(plan.units)
    assert ex.finished == set(plan.units)
    assert sorted(ex.loads.values()) == [1] * 10  # each model loaded exactly once
    assert ex.max_live <= 3  # (2 - 0.5 reserved) / 0.5
    assert not ex.pending_actor_seen  # every actor started was placed at once
    assert ex.stopped == 10


def test_more_models_than_slots_no_idle_replica_while_another_waits(tmp_path):
    """One slot for models: each is released as soon as its passes are done, then the next loads."""
    r = grid(
        tmp_path,
        n_slms=4,
        n_llms=1,
        uq=["perplexity", "ptrue"],
        datasets=["gsm8k", "boolq"],
        slm={"num_cpus": 1.0},
        llm={"num_cpus": 1.0},
    )
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 1.5}})
    report = sched.run()
    assert report.ok
    assert ex.max_live == 1 and sorted(ex.loads.values()) == [1] * 5
    # idle time is only the gaps between a model's dependent passes (ptrue waits on greedy), never
    # a model waiting while another could have used the slot
    assert sum(report.idle_s.values()) == 0


def test_light_work_cannot_be_starved_by_models(tmp_path):
    """Models ask for all CPUs but the reserve: score and setting tasks still run meanwhile."""
    r = grid(
        tmp_path,
        n_slms=2,
        n_llms=1,
        uq=["perplexity"],
        datasets=["gsm8k", "boolq", "piqa"],
        slm={"num_cpus": 1.5},
        llm={"num_cpus": 1.5},
        ray={"max_in_flight": 1},
    )
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}}, light_cpus=0.5)
    seen = []
    sched.on_progress = lambda ev, u, info: seen.append((ev, u.kind, ex.t))
    report = sched.run()
    assert report.ok
    first_score_done = min(t for ev, k, t in seen if ev == "done" and k == "score")
    last_gen_done = max(t for ev, k, t in seen if ev == "done" and k == "gen")
    assert first_score_done < last_gen_done  # scoring ran while models were still generating


def test_shards_spread_a_unit_across_replicas(tmp_path):
    r = grid(
        tmp_path,
        n_slms=1,
        n_llms=1,
        uq=["perplexity"],
        datasets=["gsm8k"],
        limit=100,
        slm={"replicas": 2, "num_cpus": 0.5},
    )
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}})
    report = sched.run()
    assert report.ok
    slm_gen = [u for u in plan.by_kind("gen") if u.model.startswith("slm")]
    for u in slm_gen:
        calls = [c for c in ex.gen_calls if c.spec.key == u.key]
        assert sorted(c.shard for c in calls) == [(0, 2), (1, 2)]  # 100 rows = 4 chunks -> 2 shards
        assert len({c.actor.id for c in calls}) == 2  # on two replicas
        assert ex.finish_calls[u.key] == 1
    # the LLM has one replica: its unit runs whole
    llm = [c for c in ex.gen_calls if c.spec.model_kind == "llm"]
    assert [c.shard for c in llm] == [(0, 1)]


def test_small_units_are_not_sharded(tmp_path):
    r = grid(tmp_path, n_slms=1, n_llms=1, uq=["perplexity"], datasets=["gsm8k"], limit=20, slm={"replicas": 2})
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}})
    assert sched.run().ok
    assert all(c.shard == (0, 1) for c in ex.gen_calls) and not ex.finish_calls


def test_model_that_fits_no_node_fails_before_any_work(tmp_path):
    r = grid(tmp_path, n_slms=1, n_llms=1, uq=["perplexity"], datasets=["gsm8k"], llm={"num_gpus": 1})
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}})
    with pytest.raises(SchedulingError, match=r"llm:llm0 asks \{CPU: 0.5, GPU: 1\}.*node n1: \{CPU: 2\}"):
        sched.run()
    assert not ex.actors and not ex.light


def test_custom_resources_place_models_on_their_node(tmp_path):
    r = grid(
        tmp_path,
        n_slms=1,
        n_llms=1,
        uq=["perplexity"],
        datasets=["gsm8k"],
        slm={"resources": {"node_b": 1}},
        llm={"resources": {"node_a": 1}},
    )
    plan, ex, sched = run(r, tmp_path, {"a": {"CPU": 1.0, "node_a": 1}, "b": {"CPU": 1.0, "node_b": 1}})
    report = sched.run()
    assert report.ok
    for a in ex.actors:
        assert a.node == ("b" if a.conf.name.startswith("slm") else "a")


def test_watchdog_names_what_hangs(tmp_path):
    r = grid(tmp_path, n_slms=1, n_llms=1, uq=["perplexity"], datasets=["gsm8k"], ray={"watchdog_s": 50})
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}}, gen_ticks=10**9)
    with pytest.raises(SchedulerStalled, match=r"no unit finished for 5\d s .*Running: .*greedy slm0 gsm8k eval"):
        sched.run()
    assert all(a.dead for a in ex.actors)  # released on the way out


def test_model_that_cannot_load_fails_its_units_once(tmp_path):
    """An actor that dies before finishing anything: after max_retries+1 loads the model's units
    fail together (dependents blocked); the other models' settings complete."""
    r = grid(tmp_path, n_slms=2, n_llms=1, uq=["perplexity", "ptrue"], datasets=["gsm8k", "boolq"])

    def faults(ref, ex):
        if ref.kind == "gen" and ref.actor.conf.name == "slm1":
            ref.actor.dead = True
            raise UnitFailure("actor_died", "the actor died unexpectedly while loading")

    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}}, faults=faults)
    report = sched.run()
    assert ex.loads["slm1"] == 3  # max_retries = 2
    bad = {u.key for u in plan.units.values() if u.kind == "gen" and u.model == "slm:slm1"}
    # each fails with the model, or is blocked by one that did (which comes first follows the keys)
    failed = bad & set(report.failed)
    assert failed and all(report.blocked.get(k) in failed for k in bad - failed)
    assert all("died 3 times before finishing" in report.failed[k] for k in failed)
    ok_settings = [s for s in plan.settings if s.slm == "slm0"]
    assert all(plan.setting_keys[s.hash] in report.done for s in ok_settings)
    assert all(plan.setting_keys[s.hash] in report.blocked for s in plan.settings if s.slm == "slm1")


def test_oom_retries_with_half_the_batch(tmp_path):
    r = grid(tmp_path, n_slms=1, n_llms=1, uq=["perplexity"], datasets=["gsm8k"], slm={"batch_size": 16})
    seen = set()

    def faults(ref, ex):
        if ref.kind == "gen" and ref.spec.stage == "greedy" and ref.spec.key not in seen:
            seen.add(ref.spec.key)
            raise UnitFailure("oom", "CUDA out of memory")

    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}}, faults=faults)
    assert sched.run().ok
    greedy = [c for c in ex.gen_calls if c.spec.stage == "greedy" and c.spec.model_kind == "slm"]
    assert [c.batch for c in greedy] == [None, 8]


def test_data_error_is_not_retried_and_blocks_dependents(tmp_path):
    r = grid(tmp_path, n_slms=1, n_llms=1, uq=["perplexity"], datasets=["gsm8k", "boolq"])

    def faults(ref, ex):
        if ref.kind == "gen" and ref.spec.dataset == "boolq":
            raise UnitFailure("data_error", "dataset 'boolq' has no usable samples")

    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}}, faults=faults)
    report = sched.run()
    boolq_gen = [c for c in ex.gen_calls if c.spec.dataset == "boolq"]
    assert len(boolq_gen) == len({c.spec.key for c in boolq_gen})  # once each
    assert all(plan.setting_keys[s.hash] in report.done for s in plan.settings if s.dataset == "gsm8k")
    assert all(plan.setting_keys[s.hash] in report.blocked for s in plan.settings if s.dataset == "boolq")


def test_ctrl_c_releases_actors_and_records_the_interruption(tmp_path):
    r = grid(tmp_path, n_slms=2, n_llms=1, uq=["perplexity"], datasets=["gsm8k", "boolq"])
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}})
    ex.interrupt_after = 3
    with pytest.raises(KeyboardInterrupt):
        sched.run()
    assert ex.actors and all(a.dead for a in ex.actors)
    events = [e["event"] for e in Ledger(tmp_path / "ledger.jsonl").events()]
    assert "interrupted" in events and events.count("done") == 3


def test_resume_runs_only_what_the_store_lacks(tmp_path):
    """Units whose manifest exists are not run again (completion is a fact on disk)."""
    from jobs.records import finish_unit, unit_dir
    from orchestrator.plan import KIND_DIRS

    r = grid(tmp_path, n_slms=1, n_llms=1, uq=["perplexity"], datasets=["gsm8k"])
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}})
    llm = next(u for u in plan.by_kind("gen") if u.model.startswith("llm"))
    finish_unit(unit_dir(tmp_path / "store", KIND_DIRS["gen"], llm.key), {"key": llm.key})
    ex.finished.add(llm.key)  # what the fake's dependency check knows of the store
    assert sched.run().ok
    assert llm.key not in {c.spec.key for c in ex.gen_calls}
    assert "llm0" not in ex.loads  # a model with nothing to do is never loaded


def test_progress_counts_model_work_to_its_total(tmp_path):
    """The bar's total is samples x passes of the model work to do; it ends exactly there and only
    moves forward, shards included."""
    from orchestrator.progress import WorkMeter

    r = grid(
        tmp_path,
        n_slms=1,
        n_llms=1,
        uq=["perplexity", "jaccard"],
        datasets=["gsm8k", "boolq"],
        limit=70,
        slm={"replicas": 2},
    )
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}})
    meter = WorkMeter.of(plan, set(plan.units))
    # greedy + samples (5 answers each) for the SLM, the LLM's answers: 70 questions per dataset
    assert meter.total == 2 * 70 * (1 + 5 + 1)
    seen = []

    def on_progress(ev, u, info):
        meter.event(ev, u, info)
        seen.append(meter.done)

    sched.on_progress = on_progress
    assert sched.run().ok
    assert meter.done == meter.total and seen == sorted(seen)
    assert meter.settings == {"done": 4, "failed": 0}
    assert any(0 < d < meter.total / 4 for d in seen)  # it moves before the first unit is whole


def test_progress_events_name_the_model_on_each_actor(tmp_path):
    """Every progress event carries the live actors (what the plain progress line prints): an actor
    handed a shard shows its model and that unit, and a model's replicas show side by side."""
    r = grid(tmp_path, n_slms=1, n_llms=1, uq=["perplexity"], datasets=["gsm8k"], limit=70, slm={"replicas": 2})
    plan, ex, sched = run(r, tmp_path, {"n1": {"CPU": 2.0}})
    seen = []
    sched.on_progress = lambda ev, u, info: seen.append((ev, u, info["actors"]))
    assert sched.run().ok
    started = [(u, actors) for ev, u, actors in seen if ev == "shard_started"]
    gen = [u for u in plan.units.values() if u.kind == "gen"]
    assert {u.key for u, _ in started} == {u.key for u in gen}  # every model pass was handed out
    for u, actors in started:
        assert {"model": u.model, "node": "n1", "unit": u.label} in actors
        assert all(a["model"] in {g.model for g in gen} for a in actors)
    assert max(sum(a["model"] == "slm:slm0" for a in actors) for _, _, actors in seen) == 2  # both replicas
    assert seen[-1][2] == [] or all(a["unit"] is None for a in seen[-1][2])  # nothing runs at the end
