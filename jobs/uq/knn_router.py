"""kNN router (a learned-router baseline): P(SLM correct) = mean correctness of the query's k nearest
training queries, on the SLM's prompt representation; uncertainty = 1 - P(correct).

RouterBench's ``KNNRouter`` (withmartian/routerbench, ``routers/knn_router.py``: cosine
``NearestNeighbors``, predicted performance = neighbours' mean correctness), with the SLM's own
probe-layer hidden state at the last prompt token (``prompt_hidden_state``) as the query
embedding. Trained on the other datasets of the grid (fit="other_datasets", as ``ood_probe``); it
reads the query only, never the SLM's answer. NaN for queries without a prompt representation (an
HTTP SLM). See ``jobs/routers.py``.
"""

from __future__ import annotations

import numpy as np

from jobs.routers import KNN_METRICS, hidden_router, knn_p_correct
from jobs.uq.base import UQMethod


def knn_router(stats, fit_stats, *, k: int = 10, metric: str = "cosine") -> np.ndarray:
    check({"k": k, "metric": metric})
    return hidden_router(stats, fit_stats, lambda X, y, Xe: knn_p_correct(X, y, Xe, k=k, metric=metric))


def check(params: dict) -> None:
    k = params.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"knn_router: k={k!r} must be an integer >= 1")
    if params.get("metric", "cosine") not in KNN_METRICS:
        raise ValueError(f"knn_router: metric={params['metric']!r}; valid: {', '.join(KNN_METRICS)}")


METHOD = UQMethod(
    name="knn_router",
    requires=("prompt_hidden_state",),
    fn=knn_router,
    fit="other_datasets",
    description="1 - P(correct) from the k nearest training queries (RouterBench kNN) on the prompt's hidden state",
    extra_check=check,
)
