"""Finding 2's distances are scale-free where they can be, and on a fixed scale where they cannot
(issue 8.10).

Min-max scaling each (SLM, UQ method) over its own scores made the distances depend on its extreme
values and on the method's arbitrary units. Now: between datasets (and SLMs), one method's scores are
compared on that method's pooled ranks (KS and Wasserstein unchanged by any increasing map of the
score); between UQ methods no scale-free comparison exists (any two continuous distributions are an
increasing map apart), so they are compared on the paper's confidence scale of each method
(``UQMethod.confidence``), a fixed map, not one fitted to the data.
"""

from __future__ import annotations

import numpy as np
import pytest

from jobs.analysis import findings as A
from jobs.analysis.calibration import Pool


def _pool(u):
    u = np.asarray(u, dtype=float)
    return Pool(
        sample_id=[f"q{i}" for i in range(len(u))],
        uncertainty=u,
        slm_correct=np.zeros(len(u), bool),
        llm_correct=np.ones(len(u), bool),
    )


def _pools(transform=lambda u: u, outlier=None):
    rng = np.random.default_rng(0)
    out = {}
    for uq, (a, b) in (("perplexity", (2, 5)), ("ptrue", (5, 2))):
        per = {}
        for d, shift in (("d1", 0.0), ("d2", 0.1), ("d3", 0.2)):
            x = np.clip(rng.beta(a, b, 400) + shift, 0, 0.999)
            u = 1.0 + 4.0 * x if uq == "perplexity" else x  # perplexity in [1, 5]
            if uq == "perplexity":
                u = transform(u)
                if outlier is not None and d == "d1":
                    u[0] = outlier
            per[d] = _pool(u)
        out[("s", uq, "l")] = per
    return out


def test_across_dataset_distances_do_not_depend_on_the_methods_units():
    base = A.distance_analysis(_pools())
    cubed = A.distance_analysis(_pools(lambda u: u**3))  # same ranking, other units
    for metric in ("ks", "wasserstein"):
        assert cubed[metric]["across_datasets"]["mean"] == pytest.approx(
            base[metric]["across_datasets"]["mean"], abs=1e-12
        )


def test_one_extreme_score_does_not_move_the_distances():
    base = A.distance_analysis(_pools())
    spiked = A.distance_analysis(_pools(outlier=1e6))  # one perplexity of a million among 1200
    for metric in ("ks", "wasserstein"):
        for fam in ("across_datasets", "across_uq"):
            assert spiked[metric][fam]["mean"] == pytest.approx(base[metric][fam]["mean"], abs=0.01), (metric, fam)


def test_scales_are_recorded_and_said():
    dist = A.distance_analysis(_pools())
    assert dist["scales"]["across_datasets"].startswith("rank")
    assert dist["scales"]["across_uq"].startswith("paper confidence")
    allv = np.concatenate([dist["scores"][f"s__perplexity__{d}"] for d in ("d1", "d2", "d3")])
    assert 0.0 < allv.min() and allv.max() <= 1.0  # histograms on the paper's confidence: 1 / perplexity
    ev = " ".join(A.findings([], [], dist, {})[1]["evidence"])
    assert "confidence scale" in ev and "min-max" not in ev
