"""Logistic-regression router (a learned-router baseline): P(SLM correct) from a logistic regression
on the SLM's prompt representation; uncertainty = 1 - P(correct).

The linear counterpart of ``knn_router`` (RouterBench's routers predict each model's correctness
from a query embedding; RouteLLM's classifier routers route on 1 - P(the weak model is fine),
lm-sys/RouteLLM ``routellm/routers/routers.py``). Features: the probe-layer hidden state at the
last prompt token (``prompt_hidden_state``), standardized on the training rows; L2 penalty with
inverse strength ``C``. Trained on the other datasets of the grid (fit="other_datasets"); it reads
the query only. NaN for queries without a prompt representation (an HTTP SLM). See
``jobs/routers.py``.
"""

from __future__ import annotations

import numpy as np

from jobs.routers import hidden_router, logreg_p_correct
from jobs.uq.base import UQMethod


def logreg_router(stats, fit_stats, *, C: float = 1.0, max_iter: int = 1000) -> np.ndarray:
    check({"C": C, "max_iter": max_iter})
    return hidden_router(stats, fit_stats, lambda X, y, Xe: logreg_p_correct(X, y, Xe, C=C, max_iter=max_iter))


def check(params: dict) -> None:
    C = params.get("C", 1.0)
    if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
        raise ValueError(f"logreg_router: C={C!r} must be a number > 0")
    it = params.get("max_iter", 1000)
    if isinstance(it, bool) or not isinstance(it, int) or it < 1:
        raise ValueError(f"logreg_router: max_iter={it!r} must be an integer >= 1")


METHOD = UQMethod(
    name="logreg_router",
    requires=("prompt_hidden_state",),
    fn=logreg_router,
    fit="other_datasets",
    description="1 - P(correct) from a logistic regression on the prompt's hidden state (a learned router)",
    extra_check=check,
)
