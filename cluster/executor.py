"""The scheduler's hands on Ray: the one place the driver starts actors, submits and waits.

``orchestrator/scheduler.py`` decides *what* runs *where*; this module does it with Ray and
translates Ray's failures into the scheduler's failure classes. A test can hand the
scheduler an in-process executor with the same methods instead (``tests/unit/test_scheduler.py``).
"""

from __future__ import annotations

from pathlib import Path

import ray
from ray.exceptions import RayActorError

from cluster.actors import LIGHT_TASK_CPUS, remote_worker, score_task, setting_task
from jobs.errors import failure_kind
from jobs.units import GenSpec, ScoreSpec, SettingSpec

# Ray's bookkeeping resources, never asked for by a model
_NOT_REQUESTED = ("memory", "object_store_memory")


class UnitFailure(Exception):
    """A unit (or shard) failed; ``reason`` is one of ``orchestrator.ledger.FAILURE_CLASSES``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def classify(exc: BaseException) -> str:
    """Failure class of an exception raised by a Ray task or actor call: the actor died, or the
    ``kind`` of the typed error (jobs/errors.py) the worker raised."""
    if isinstance(exc, RayActorError):
        return "actor_died"
    return failure_kind(exc)


def _detail(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1][:500] if text else type(exc).__name__


class RayExecutor:
    """Starts model actors pinned to nodes, runs light tasks, waits, and finishes sharded units."""

    light_task_cpus = LIGHT_TASK_CPUS

    def __init__(self, store: Path | str):
        self.store = str(store)

    def nodes(self) -> dict[str, dict[str, float]]:
        """node id -> the node's total resources (alive nodes; Ray's own bookkeeping left out)."""
        out = {}
        for n in ray.nodes():
            if n.get("Alive"):
                out[n["NodeID"]] = {
                    k: float(v)
                    for k, v in n["Resources"].items()
                    if not k.startswith("node:") and k not in _NOT_REQUESTED
                }
        return out

    def start_model(self, conf: dict, node: str):
        return remote_worker(conf, self.store, node_id=node)

    def run_gen(self, actor, spec: GenSpec, batch_size: int | None, shard: tuple[int, int]):
        return actor.run_gen.remote(spec, batch_size, shard)

    def run_light(self, kind: str, spec: ScoreSpec | SettingSpec):
        task = score_task if kind == "score" else setting_task
        return task.remote(spec, self.store)

    def wait(self, refs: list, timeout: float) -> list:
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # take every other finished ref too, without waiting
            more, _ = ray.wait([r for r in refs if r not in ready], num_returns=len(refs) - len(ready), timeout=0)
            ready += more
        return ready

    def get(self, ref) -> dict:
        try:
            return ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - every failure is classified
            raise UnitFailure(classify(exc), _detail(exc)) from exc

    def stop_model(self, actor) -> None:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead
            pass

    def cancel(self, ref) -> None:
        """Nothing is cancelled through Ray. An actor call ends with its actor (``stop_model``, which
        the scheduler calls for every replica on the way out); a score or setting task is short,
        writes its results atomically and is dropped with the driver's Ray session. ``ray.cancel``
        on a task whose reply is arriving races Ray's own bookkeeping and aborts the driver with a
        RAY_CHECK ("Tried to complete task that was not pending", the family of ray-project/ray
        #54798), seen here on Ctrl-C: the interrupted run then exited 1 instead of 130."""

    def finish_gen(self, spec: GenSpec, summaries: list[dict]) -> dict:
        from jobs.engine import finish_gen_shards

        return finish_gen_shards(spec, self.store, summaries)
