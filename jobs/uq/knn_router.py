"""kNN router (a learned-router baseline): P(SLM correct) = mean correctness of the query's k nearest
training queries, on the SLM's prompt representation; uncertainty = 1 - P(correct).

RouterBench's ``KNNRouter`` (withmartian/routerbench, ``routers/knn_router.py``: cosine
``NearestNeighbors``, predicted performance = neighbours' mean correctness), with the SLM's own
probe-layer hidden state at the last prompt token (``prompt_hidden_state``) as the query
embedding. Trained on the other datasets of the grid (fit="other_datasets", as ``ood_probe``); it
reads the query only, never the SLM's answer. NaN for queries without a prompt representation (an
HTTP SLM). See ``jobs/uq/routers.py``.

Two fits of one function (as ``jobs/uq/probe.py`` declares ``probe`` and ``ood_probe``):

  knn_router     fit="other_datasets": the training queries are the fit rows of every *other*
                 dataset of the grid (a router that has never seen the evaluated benchmark).
  knn_router_id  fit="in_domain": the training queries are the evaluated dataset's own fit rows
                 (its train split or rows disjoint from the evaluated ones), never its evaluated
                 rows; scores of those fit rows themselves (calibration) are cross-fitted
                 (``calibration.crossfit_folds`` folds, ``jobs.scoring.crossfit_scores``). This is
                 how RouterBench's ``KNNRouter`` is trained (``train_file``: queries of the same
                 benchmark, ``n_neighbors``, cosine ``NearestNeighbors``) and the kNN baseline that
                 learned routers are compared with (arXiv 2505.12601, "When Simple kNN Beats
                 Complex Learned Routers"; the brief's "Routing Plateau", arXiv 2606.07587, could not
                 be read here: only its arXiv record was found).
"""

from __future__ import annotations

import numpy as np

from jobs.uq.base import UQMethod
from jobs.uq.routers import KNN_METRICS, hidden_router, knn_p_correct


def knn_router(stats, fit_stats, *, k: int = 10, metric: str = "cosine") -> np.ndarray:
    check({"k": k, "metric": metric})
    return hidden_router(stats, fit_stats, lambda X, y, Xe: knn_p_correct(X, y, Xe, k=k, metric=metric))


def checker(name: str):
    """The params check of the method ``name`` (its errors name it)."""

    def check(params: dict) -> None:
        k = params.get("k", 10)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"{name}: k={k!r} must be an integer >= 1")
        if params.get("metric", "cosine") not in KNN_METRICS:
            raise ValueError(f"{name}: metric={params['metric']!r}; valid: {', '.join(KNN_METRICS)}")

    return check


check = checker("knn_router")


def knn_method(name: str, fit: str, trained_on: str) -> UQMethod:
    return UQMethod(
        name=name,
        requires=("prompt_hidden_state",),
        fn=knn_router,
        fit=fit,
        description=f"1 - P(correct) from the k nearest training queries (RouterBench kNN) on the prompt's "
        f"hidden state, trained {trained_on}",
        extra_check=checker(name),
    )


METHOD = knn_method("knn_router", "other_datasets", "on the other datasets")
ID_METHOD = knn_method("knn_router_id", "in_domain", "on the evaluated dataset's fit rows")
