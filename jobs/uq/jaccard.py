"""Jaccard degree (paper method 6), over m answers sampled at temperature 1.0.

For one query with samples s_1..s_m (word sets w_i: lowercase, split on anything that is not a
letter or digit):
    W_ij = |w_i & w_j| / |w_i | w_j|   (two empty sets -> 1; W_jj = 1)
    D    = diag(row sums of W)
    U    = trace(m I - D) / m^2 = 1 - sum(W) / m^2
U = 0 when all samples share one word set, (m - 1) / m when all are pairwise disjoint.
m is the number of samples present for that query (None entries are skipped); m < 2 -> NaN.
Whether the greedy answer is among the samples is decided by the generation stage.
"""
from __future__ import annotations

import re

import numpy as np

from jobs.uq.base import UQMethod

_WORD = re.compile(r"[^\W_]+")  # runs of unicode letters/digits


def word_set(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def jaccard_similarity(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def jaccard_degree(texts) -> float:
    sets = [word_set(t) for t in texts if t is not None]
    m = len(sets)
    if m < 2:
        return float("nan")
    w = np.eye(m)
    for i in range(m):
        for j in range(i + 1, m):
            w[i, j] = w[j, i] = jaccard_similarity(sets[i], sets[j])
    degree = w.sum(axis=1)  # diagonal of D
    return float(np.trace(m * np.eye(m) - np.diag(degree)) / m**2)


def jaccard(stats) -> np.ndarray:
    return np.array([jaccard_degree(texts) for texts in stats["sampled_texts"]], dtype=np.float64)


METHOD = UQMethod(
    name="jaccard",
    requires=("sampled_texts",),
    fn=jaccard,
    description="Jaccard degree uncertainty over sampled answers (temperature 1.0)",
)
