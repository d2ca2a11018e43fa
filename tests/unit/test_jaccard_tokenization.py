"""Jaccard degree: our word tokenization (default) and LM-Polygraph's (issue 8.10).

LM-Polygraph (IINemo/lm-polygraph, src/lm_polygraph/estimators/common.py, _compute_Jaccard_score;
estimators/deg_mat.py, DegMat with similarity_score="Jaccard_score"): word sets are
``text.lower().split()`` (whitespace; punctuation stays on the word), two empty sets have
similarity 0, and U = trace(m - D) / m^2.
"""

from __future__ import annotations

import numpy as np
import pytest

from jobs.uq import UQ_METHODS, compute
from jobs.uq.jaccard import TOKENIZATIONS, jaccard_degree


def lm_polygraph_degmat_jaccard(answers: list[str]) -> float:
    """LM-Polygraph's DegMat(similarity_score="Jaccard_score"), copied without the class."""
    w = np.eye(len(answers))
    for i in range(len(answers)):
        for j in range(i + 1, len(answers)):
            set1, set2 = set(answers[i].lower().split()), set(answers[j].lower().split())
            union = len(set1 | set2)
            w[i, j] = w[j, i] = 0 if union == 0 else len(set1 & set2) / union
    d = np.diag(w.sum(axis=1))
    return float(np.trace(len(answers) - d) / (len(answers) ** 2))


CASES = [
    ["The answer is 5.", "the answer is 5", "Answer: 5"],
    ["yes", "Yes.", "no, it is not", ""],
    ["", "", "x"],
    ["B) Paris", "b) paris!", "(B) Paris", "C) Rome", "B"],
]


@pytest.mark.parametrize("texts", CASES)
def test_lm_polygraph_tokenization_equals_lm_polygraph(texts):
    assert jaccard_degree(texts, tokenization="lm_polygraph") == pytest.approx(lm_polygraph_degmat_jaccard(texts))


def test_default_tokenization_is_unchanged_and_differs_from_lm_polygraph():
    texts = ["The answer is 5.", "the answer is 5"]
    assert jaccard_degree(texts) == 0.0  # same words once punctuation is ignored
    assert jaccard_degree(texts, tokenization="words") == 0.0
    # whitespace tokens {the, answer, is, 5.} vs {the, answer, is, 5}: W_01 = 3/5 -> U = 1 - (2 + 6/5) / 4
    assert jaccard_degree(texts, tokenization="lm_polygraph") == pytest.approx(1 - (2 + 1.2) / 4)
    assert TOKENIZATIONS == ("words", "lm_polygraph")


def test_tokenization_is_a_method_parameter():
    stats = {"sampled_texts": [["The answer is 5.", "the answer is 5"], ["a", None, "a"]]}
    m = UQ_METHODS.get("jaccard")
    np.testing.assert_allclose(compute(m, stats), [0.0, 0.0])
    np.testing.assert_allclose(compute(m, stats, tokenization="lm_polygraph"), [0.2, 0.0])
    with pytest.raises(ValueError, match="valid: words, lm_polygraph"):
        compute(m, stats, tokenization="bpe")


def test_lm_polygraph_conf_file_names_the_tokenization():
    import yaml

    conf = yaml.safe_load(open("conf/uq/jaccard_lmpolygraph.yaml"))
    assert conf["method"] == "jaccard" and conf["params"] == {"tokenization": "lm_polygraph"}
    assert yaml.safe_load(open("conf/uq/jaccard.yaml"))["params"] == {}  # the default's identity is unchanged
