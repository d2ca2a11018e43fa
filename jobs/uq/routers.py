"""Learned routers: predict whether the SLM will be right from the query alone, before it answers.

The baselines reviewers asked the paper for (RouterBench / RouteLLM style): a router trained on
queries, not on the SLM's answer, scored like any UQ method, uncertainty = 1 - P(SLM correct |
query). Each is fitted two ways, named apart: on the other datasets of the grid (``knn_router``,
``logreg_router``, ``embed_router``; fit="other_datasets", as the OOD probe is: a router that has
never seen the evaluated benchmark), and in-distribution (``knn_router_id``, ``logreg_router_id``,
``embed_router_id``; fit="in_domain", as the in-domain probe is: trained on the evaluated dataset's
own fit rows, never its evaluated rows, the fit rows' own scores cross-fitted). The second is how
RouterBench and RouteLLM train and evaluate their routers (on queries of the benchmark they
route); with few fit rows per dataset the first mostly learns which dataset a query resembles.
The UQ method files (``jobs/uq/knn_router.py``, ``logreg_router.py``, ``embed_router.py``, each
declaring ``METHOD`` and ``ID_METHOD``) are thin wrappers over the functions below.

Peer definitions followed:
- RouterBench (Hu et al., 2024; withmartian/routerbench, ``routers/knn_router.py``, ``KNNRouter``):
  sklearn ``NearestNeighbors`` over query embeddings (default ``n_neighbors=50``, cosine
  distance); a model's predicted performance on a query is the mean of its correctness over the
  query's k nearest training queries. ``knn_p_correct`` is that, for the one model that matters
  here (the SLM), on the SLM's own prompt representation. Our default k is 10: the default grid
  trains on ~60 rows, where 50 neighbours would average almost everything.
- RouteLLM (Ong et al., 2024; lm-sys/RouteLLM, ``routellm/routers/routers.py``): ``BERTRouter``
  classifies the query text and routes on ``calculate_strong_win_rate`` = 1 - P(the weak model's
  answer is as good); ``SWRankingRouter`` scores a text embedding of the query
  (``text-embedding-3-small``). ``embed_router`` keeps their shape (a text embedding of the query,
  a classifier, route on 1 - P(weak model fine)) with what runs offline: a TF-IDF embedding and
  logistic regression; a sentence-transformers model id may replace TF-IDF where one is available.

The SLM's prompt representation (``prompt_hidden_state``) is the probe layer's hidden state at the
last prompt token, from the greedy pass (``jobs/backends/hf.py``): what the SLM "knows" about the
query before generating. It is null for an HTTP SLM; queries without one get NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Values of embed_router's ``embedding`` that need no extra package; anything else is read as a
#: sentence-transformers model id.
OFFLINE_EMBEDDINGS: tuple[str, ...] = ("tfidf",)
KNN_METRICS: tuple[str, ...] = ("cosine", "euclidean")


def query_matrix(rows: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(X, ok): one row per query (NaN rows where a query has no vector) and which rows are usable.

    rows: per query an array-like vector or None (an HTTP SLM, an older store). Vectors must
    share one length; ValueError names the first that does not.
    """
    dims = {len(np.ravel(r)) for r in rows if r is not None}
    if len(dims) > 1:
        raise ValueError(
            f"prompt representations have different lengths {sorted(dims)}: were the fit "
            f"datasets run with another SLM or hidden_layer?"
        )
    h = dims.pop() if dims else 0
    X = np.full((len(rows), h), np.nan)
    for i, r in enumerate(rows):
        if r is not None:
            X[i] = np.ravel(np.asarray(r, dtype=np.float64))
    ok = np.isfinite(X).all(axis=1) & (h > 0)
    return X, ok


def _labels(y) -> np.ndarray:
    return np.asarray(y, dtype=bool).ravel()


def knn_p_correct(
    X_train: np.ndarray, y_train, X_eval: np.ndarray, *, k: int, metric: str = "cosine", chunk_elems: int = 20_000_000
) -> np.ndarray:
    """Mean correctness of each evaluation row's k nearest training rows (RouterBench's KNNRouter).

    Neighbours by cosine similarity (``metric="cosine"``) or Euclidean distance; ties broken by
    training-row order (stable), so the result is deterministic. k is capped at the training size.
    Memory is bounded by scoring ``chunk_elems`` (eval x train) similarities at a time.
    """
    if metric not in KNN_METRICS:
        raise ValueError(f"knn metric {metric!r}; valid: {', '.join(KNN_METRICS)}")
    y = _labels(y_train).astype(np.float64)
    A = np.asarray(X_train, dtype=np.float64)
    B = np.asarray(X_eval, dtype=np.float64)
    kk = max(1, min(int(k), len(A)))
    if metric == "cosine":
        A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
        B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
    out = np.empty(len(B))
    step = max(1, chunk_elems // max(1, len(A)))
    a2 = (A * A).sum(axis=1)
    for s in range(0, len(B), step):
        b = B[s : s + step]
        score = b @ A.T if metric == "cosine" else -(a2[None] - 2 * b @ A.T + (b * b).sum(axis=1)[:, None])
        idx = np.argsort(-score, axis=1, kind="stable")[:, :kk]
        out[s : s + step] = y[idx].mean(axis=1)
    return out


def logreg_p_correct(
    X_train: np.ndarray, y_train, X_eval, *, C: float, max_iter: int = 1000, standardize: bool = True
) -> np.ndarray:
    """P(correct) from an L2 logistic regression (scikit-learn, lbfgs) fitted on the training rows.

    X_eval may be a dense array or a scipy sparse matrix (TF-IDF). Features are standardized on
    the training rows when ``standardize`` (dense inputs only). With a single class in the
    training labels the prediction is that class's frequency (0 or 1) for every row.
    """
    y = _labels(y_train)
    if y.all() or not y.any():
        return np.full(X_eval.shape[0], float(y.mean()) if len(y) else np.nan)
    from sklearn.linear_model import LogisticRegression

    Xtr, Xev = X_train, X_eval
    if standardize:
        mu = np.asarray(Xtr).mean(axis=0)
        sd = np.asarray(Xtr).std(axis=0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        Xtr, Xev = (np.asarray(Xtr) - mu) / sd, (np.asarray(Xev) - mu) / sd
    model = LogisticRegression(C=float(C), max_iter=int(max_iter))
    model.fit(Xtr, y)
    return model.predict_proba(Xev)[:, list(model.classes_).index(True)]


def hidden_router(stats, fit_stats, predict) -> np.ndarray:
    """Shared by knn_router and logreg_router: fit on the fit rows' prompt representations, score
    the evaluated rows; NaN for rows without one (and everywhere when no fit row has one)."""
    X, ok = query_matrix(stats["prompt_hidden_state"])
    Xf, okf = query_matrix(fit_stats["prompt_hidden_state"])
    y = _labels(fit_stats["correct"])
    u = np.full(len(X), np.nan)
    if not ok.any() or not okf.any():
        return u
    if X.shape[1] != Xf.shape[1]:
        raise ValueError(
            f"prompt representations of the evaluated rows have {X.shape[1]} dims, the fit rows' "
            f"{Xf.shape[1]}: were they run with another SLM or hidden_layer?"
        )
    u[ok] = 1.0 - predict(Xf[okf], y[okf], X[ok])
    return u


# ---- text embeddings ------------------------------------------------------------------------------


def check_embedding(embedding: Any) -> None:
    """Raise ValueError / ImportError unless ``embedding`` can be used here: "tfidf", or a
    sentence-transformers model id with the package installed."""
    if not isinstance(embedding, str) or not embedding.strip():
        raise ValueError(
            f"embedding={embedding!r}; valid: {', '.join(OFFLINE_EMBEDDINGS)} or a "
            f"sentence-transformers model id (e.g. 'sentence-transformers/all-MiniLM-L6-v2')"
        )
    if embedding in OFFLINE_EMBEDDINGS:
        return
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise ImportError(
            f"embedding={embedding!r} is read as a sentence-transformers model id, but the "
            f"sentence-transformers package is not installed (pip install sentence-transformers, "
            f"and the model must be downloadable or cached); offline, use embedding: tfidf"
        ) from None


def text_features(
    train_texts: Sequence[str], eval_texts: Sequence[str], *, embedding: str, max_features: int
) -> tuple[Any, Any, bool]:
    """(train features, eval features, dense?) for the query texts.

    "tfidf": scikit-learn ``TfidfVectorizer`` (word uni- and bigrams, sublinear tf, at most
    ``max_features`` terms) fitted on the training texts only; sparse. Otherwise a
    sentence-transformers model id: normalized sentence embeddings (dense).
    """
    check_embedding(embedding)
    if embedding == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=int(max_features))
        return vec.fit_transform(list(train_texts)), vec.transform(list(eval_texts)), False
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(embedding)
    except (OSError, ValueError, RuntimeError) as e:  # a missing model offline, a bad id: say which
        raise ValueError(
            f"embedding={embedding!r}: cannot load this sentence-transformers model ({e}); "
            f"offline, use embedding: tfidf"
        ) from None

    def enc(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(
            model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False), dtype=np.float64
        )

    return enc(train_texts), enc(eval_texts), True
