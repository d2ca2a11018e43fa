"""Connecting to a Ray cluster, or starting a local one."""

from __future__ import annotations

import os

import ray


def connect(
    address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None, working_dir: str | None = None
) -> dict:
    """Join ``address`` ("auto", "host:port" or "ray://...") or start a local Ray.

    Returns the cluster's total resources. Ray >= 2.5x enables token auth; a local
    cluster started here uses ``RAY_AUTH_MODE`` from the environment (``disabled`` unless set).
    """
    if ray.is_initialized():
        return ray.cluster_resources()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kw: dict = {"ignore_reinit_error": True, "log_to_driver": False}
    if address:
        kw["address"] = address
        if working_dir and address.startswith("ray://"):
            kw["runtime_env"] = {"working_dir": working_dir}
    else:
        kw["include_dashboard"] = False
        if num_cpus is not None:
            kw["num_cpus"] = num_cpus
        if num_gpus is not None:
            kw["num_gpus"] = num_gpus
    ray.init(**kw)
    return ray.cluster_resources()


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()
