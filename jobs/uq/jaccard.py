"""Jaccard degree (paper method 6), over m answers sampled at temperature 1.0.

For one query with samples s_1..s_m (word sets w_i, see ``tokenization``):
    W_ij = |w_i & w_j| / |w_i | w_j|   (W_jj = 1)
    D    = diag(row sums of W)
    U    = trace(m I - D) / m^2 = 1 - sum(W) / m^2
U = 0 when all samples share one word set, (m - 1) / m when all are pairwise disjoint.
m is the number of samples present for that query (None entries are skipped); m < 2 -> NaN.
Whether the greedy answer is among the samples is decided by the generation stage.

tokenization (the ``params`` of ``conf/uq/<name>.yaml``):
  "words" (default, ours): lowercase, runs of unicode letters/digits (punctuation and "_" split
          words and are dropped: "5." and "5" are the same word); two empty sets -> W = 1.
  "lm_polygraph": LM-Polygraph's Jaccard degree (IINemo/lm-polygraph,
          ``src/lm_polygraph/estimators/common.py`` ``_compute_Jaccard_score``, used by
          ``estimators/deg_mat.py`` ``DegMat(similarity_score="Jaccard_score")``): word sets are
          ``text.lower().split()`` (whitespace only, punctuation stays on the word), two empty sets
          -> W = 0. Its U = trace(m - D) / m^2 is the same number as ours. Use
          ``conf/uq/jaccard_lmpolygraph.yaml`` to compare with numbers computed by LM-Polygraph.
The default stays "words" (the UQ conf identity and every stored score are unchanged): on short
answers such as "5." vs "5" or "B)" vs "B", whitespace tokens call equal answers different.
"""

from __future__ import annotations

import re

import numpy as np

from jobs.uq.base import UQMethod

_WORD = re.compile(r"[^\W_]+")  # runs of unicode letters/digits

TOKENIZATIONS: tuple[str, ...] = ("words", "lm_polygraph")


def word_set(text: str, tokenization: str = "words") -> frozenset[str]:
    if tokenization == "words":
        return frozenset(_WORD.findall(text.lower()))
    if tokenization == "lm_polygraph":
        return frozenset(text.lower().split())
    raise ValueError(f"jaccard: unknown tokenization {tokenization!r}; valid: {', '.join(TOKENIZATIONS)}")


def jaccard_similarity(a: frozenset[str], b: frozenset[str], empty: float = 1.0) -> float:
    """|a & b| / |a | b|; ``empty`` when both sets are empty."""
    union = len(a | b)
    return empty if union == 0 else len(a & b) / union


def jaccard_degree(texts, tokenization: str = "words") -> float:
    sets = [word_set(t, tokenization) for t in texts if t is not None]
    m = len(sets)
    if m < 2:
        return float("nan")
    empty = 1.0 if tokenization == "words" else 0.0
    w = np.eye(m)
    for i in range(m):
        for j in range(i + 1, m):
            w[i, j] = w[j, i] = jaccard_similarity(sets[i], sets[j], empty)
    degree = w.sum(axis=1)  # diagonal of D
    return float(np.trace(m * np.eye(m) - np.diag(degree)) / m**2)


def jaccard(stats, *, tokenization: str = "words") -> np.ndarray:
    if tokenization not in TOKENIZATIONS:
        raise ValueError(f"jaccard: unknown tokenization {tokenization!r}; valid: {', '.join(TOKENIZATIONS)}")
    return np.array([jaccard_degree(texts, tokenization) for texts in stats["sampled_texts"]], dtype=np.float64)


METHOD = UQMethod(
    name="jaccard",
    requires=("sampled_texts",),
    fn=jaccard,
    description="Jaccard degree uncertainty over sampled answers (temperature 1.0)",
    # constrained / cloze: draws among K options, so the degree is bounded by K; generated: free text
    definition_depends_on=("answer_mode", "option_count"),
)
