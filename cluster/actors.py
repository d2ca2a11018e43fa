"""Ray actors and tasks: the only place that wraps ``jobs/`` code for Ray.

``ModelWorker`` is a plain class (testable without Ray) that loads one backend once and
serves every generation unit for that model; ``remote_worker`` wraps it with
``ray.remote`` and the model's resource request. Score and setting units are small Ray
tasks. Workers write Parquet into the shared store and return small summaries.
"""

from __future__ import annotations

import os

import ray

from jobs.units import GenSpec, ScoreSpec, SettingSpec


class ModelWorker:
    """Hosts one SLM or LLM backend; keeps it loaded across units."""

    def __init__(self, model_conf: dict, store: str, secrets: dict | None = None):
        self.conf = model_conf
        self.store = store
        os.environ.update(secrets or {})  # e.g. the API key named by api_key_env
        from jobs.backends import make_backend
        from jobs.backends import model_conf as typed

        self.conf = typed(model_conf)
        self.backend = make_backend(self.conf)
        self.batch_size = self.conf.batch_size

    def run_gen(self, unit: GenSpec, batch_size: int | None = None, shard: tuple[int, int] | None = None) -> dict:
        from jobs.engine import run_gen_unit
        from jobs.errors import classified

        with classified():
            summary = run_gen_unit(
                self.backend,
                unit,
                self.store,
                batch_size=batch_size or self.batch_size,
                shard=tuple(shard) if shard else None,
                batch_by_length=self.conf.batch_by_length,
                max_prompt_tokens=self.conf.max_prompt_tokens,
                max_batch_tokens=self.conf.max_batch_tokens,
            )
        summary["node_id"] = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        summary["gpu_ids"] = [str(g) for g in ray.get_gpu_ids()] if ray.is_initialized() else []
        summary["pid"] = os.getpid()
        return summary


def remote_worker(model_conf, store: str, name: str | None = None, node_id: str | None = None):
    """Start a ModelWorker actor with the model's resource request (pinned to ``node_id`` if given:
    the scheduler packs replicas onto nodes itself, so Ray's placement must follow its choice)."""
    opts = dict(
        num_cpus=model_conf.num_cpus,
        num_gpus=model_conf.num_gpus,
        max_concurrency=1,
        max_restarts=0,
    )
    if node_id:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
    if model_conf.resources:
        opts["resources"] = dict(model_conf.resources)
    env = {}
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "UQROUTE_CACHE", "XDG_CACHE_HOME"):
        if k in os.environ:
            env[k] = os.environ[k]
    # the model's API key goes from the driver's environment (the variable named by api_key_env) to
    # the actor as a constructor argument, never through runtime_env (Ray's runtime-env agent logs
    # its env_vars), the config, the store, MLflow or the ledger
    secrets = {}
    key_env = getattr(model_conf, "api_key_env", None)  # a field of the backends that call an API (OpenAIConf)
    if key_env and key_env in os.environ:
        secrets[key_env] = os.environ[key_env]
    opts["runtime_env"] = {"env_vars": env}
    if name:
        opts["name"] = name
    return ray.remote(ModelWorker).options(**opts).remote(model_conf, store, secrets)


LIGHT_TASK_CPUS = 0.25  # what a score or setting task asks of Ray


@ray.remote(num_cpus=LIGHT_TASK_CPUS, max_retries=0)
def score_task(unit: ScoreSpec, store: str) -> dict:
    from jobs.errors import ScoringError, classified
    from jobs.scoring import run_score_unit

    with classified(ScoringError):
        return run_score_unit(unit, store)


@ray.remote(num_cpus=LIGHT_TASK_CPUS, max_retries=0)
def setting_task(unit: SettingSpec, store: str) -> dict:
    from jobs.errors import ScoringError, classified
    from jobs.scoring import run_setting_unit

    with classified(ScoringError):
        return run_setting_unit(unit, store)
