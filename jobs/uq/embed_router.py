"""Text-embedding router (RouteLLM style, a learned-router baseline): a classifier on an embedding
of the query text predicts P(SLM correct); uncertainty = 1 - P(correct).

RouteLLM (lm-sys/RouteLLM, ``routellm/routers/routers.py``) routes on a text embedding of the
query: ``BERTRouter`` classifies the text and returns ``calculate_strong_win_rate`` = 1 - P(weak
model fine); ``SWRankingRouter`` weighs training queries by embedding similarity. Offline here:
``embedding: tfidf`` (default) is a TF-IDF embedding of the prompt text (word uni- and bigrams,
fitted on the training prompts) with L2 logistic regression (``C``); ``embedding: <model id>``
uses that sentence-transformers model instead (checked at config time: a clear error when the
package is missing). Input: the rendered prompt (``prompt``, in every greedy record), so it works
for HTTP SLMs too. Trained on the other datasets of the grid (fit="other_datasets"). See
``jobs/uq/routers.py``.

Two fits of one function (as ``jobs/uq/probe.py`` declares ``probe`` and ``ood_probe``):
``embed_router`` (fit="other_datasets") and ``embed_router_id`` (fit="in_domain": the evaluated
dataset's own fit rows, never its evaluated rows; its fit rows' own scores cross-fitted): RouteLLM
trains its routers on preference data and evaluates them on benchmarks of the same kind (its
MMLU / GSM8K / MT-Bench evaluations, ``routellm/evals/evaluate.py``), and RouterBench's routers are
trained on a split of the benchmark they route.
"""

from __future__ import annotations

import numpy as np

from jobs.uq.base import UQMethod
from jobs.uq.routers import check_embedding, logreg_p_correct, text_features


def embed_router(
    stats, fit_stats, *, embedding: str = "tfidf", C: float = 1.0, max_features: int = 20000, max_iter: int = 1000
) -> np.ndarray:
    check({"embedding": embedding, "C": C, "max_features": max_features})
    Xf, Xe, _ = text_features(fit_stats["prompt"], stats["prompt"], embedding=embedding, max_features=max_features)
    return 1.0 - logreg_p_correct(Xf, fit_stats["correct"], Xe, C=C, max_iter=max_iter, standardize=False)


def checker(name: str):
    """The params check of the method ``name`` (its errors name it)."""

    def check(params: dict) -> None:
        check_embedding(params.get("embedding", "tfidf"))
        C = params.get("C", 1.0)
        if isinstance(C, bool) or not isinstance(C, (int, float)) or not C > 0:
            raise ValueError(f"{name}: C={C!r} must be a number > 0")
        mf = params.get("max_features", 20000)
        if isinstance(mf, bool) or not isinstance(mf, int) or mf < 1:
            raise ValueError(f"{name}: max_features={mf!r} must be an integer >= 1")

    return check


check = checker("embed_router")


def embed_method(name: str, fit: str, trained_on: str) -> UQMethod:
    return UQMethod(
        name=name,
        requires=("prompt",),
        fn=embed_router,
        fit=fit,
        description=f"1 - P(correct) from logistic regression on a TF-IDF (or sentence) embedding of the query "
        f"(RouteLLM style), trained {trained_on}",
        extra_check=checker(name),
        # reads the question text (a constrained prompt adds the same answer prefix to every row) and
        # predicts P(correct): no hidden-state position that moves with the mode
        definition_depends_on=(),
    )


METHOD = embed_method("embed_router", "other_datasets", "on the other datasets")
ID_METHOD = embed_method("embed_router_id", "in_domain", "on the evaluated dataset's fit rows")
