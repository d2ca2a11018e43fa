"""Logistic-regression router (a learned-router baseline): P(SLM correct) from a logistic regression
on the SLM's prompt representation; uncertainty = 1 - P(correct).

The linear counterpart of ``knn_router`` (RouterBench's routers predict each model's correctness
from a query embedding; RouteLLM's classifier routers route on 1 - P(the weak model is fine),
lm-sys/RouteLLM ``routellm/routers/routers.py``). Features: the probe-layer hidden state at the
last prompt token (``prompt_hidden_state``), standardized on the training rows; L2 penalty with
inverse strength ``C``. Trained on the other datasets of the grid (fit="other_datasets"); it reads
the query only. NaN for queries without a prompt representation (an HTTP SLM). See
``jobs/uq/routers.py``.

Two fits of one function (as ``jobs/uq/probe.py`` declares ``probe`` and ``ood_probe``):
``logreg_router`` (fit="other_datasets", the grid's other datasets) and ``logreg_router_id``
(fit="in_domain": the evaluated dataset's own fit rows, never its evaluated rows; its fit rows'
own scores cross-fitted), the in-distribution training of RouteLLM's routers (trained and
evaluated on queries of the same benchmark distribution) and of RouterBench's routers.
"""

from __future__ import annotations

import numpy as np

from jobs.uq.base import UQMethod
from jobs.uq.routers import hidden_router, logreg_p_correct


def logreg_router(stats, fit_stats, *, C: float = 1.0, max_iter: int = 1000) -> np.ndarray:
    check({"C": C, "max_iter": max_iter})
    return hidden_router(stats, fit_stats, lambda X, y, Xe: logreg_p_correct(X, y, Xe, C=C, max_iter=max_iter))


def checker(name: str):
    """The params check of the method ``name`` (its errors name it)."""

    def check(params: dict) -> None:
        C = params.get("C", 1.0)
        if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
            raise ValueError(f"{name}: C={C!r} must be a number > 0")
        it = params.get("max_iter", 1000)
        if isinstance(it, bool) or not isinstance(it, int) or it < 1:
            raise ValueError(f"{name}: max_iter={it!r} must be an integer >= 1")

    return check


check = checker("logreg_router")


def logreg_method(name: str, fit: str, trained_on: str) -> UQMethod:
    return UQMethod(
        name=name,
        requires=("prompt_hidden_state",),
        fn=logreg_router,
        fit=fit,
        description=f"1 - P(correct) from a logistic regression on the prompt's hidden state (a learned "
        f"router), trained {trained_on}",
        extra_check=checker(name),
    )


METHOD = logreg_method("logreg_router", "other_datasets", "on the other datasets")
ID_METHOD = logreg_method("logreg_router_id", "in_domain", "on the evaluated dataset's fit rows")
