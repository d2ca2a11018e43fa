"""A typed error raised in a real Ray task reaches the driver's classifier with its kind."""

from __future__ import annotations

import pytest

from cluster.executor import classify
from jobs.errors import DataError, ScoringError, classified

pytestmark = pytest.mark.integration


def _fail(what: str):
    with classified(ScoringError):
        if what == "data":
            raise DataError("dataset 'boolq' (eval role) has no usable samples")
        if what == "missing":
            open("/nonexistent/uqroute/records.parquet")
        raise KeyError("uncertainty")


@pytest.mark.parametrize("what,kind", [("data", "data_error"), ("missing", "data_error"), ("key", "scoring_error")])
def test_kind_survives_the_trip_through_ray(ray_local, what, kind):
    ray = ray_local
    task = ray.remote(num_cpus=0.25, max_retries=0)(_fail)
    with pytest.raises(Exception) as info:
        ray.get(task.remote(what))
    assert classify(info.value) == kind
