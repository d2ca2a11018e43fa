"""Trained probe (paper method 7): an MLP on SLM hidden states predicting SLM correctness.

Trained on ``fit_stats`` from a training subsample of the same dataset (fit="in_domain"): hidden
state of the 8th-to-last layer at the last generated token -> ``correct``. 20 epochs, lr 5e-4,
hidden widths (256, 128, 64), mini-batch 32 (see ``jobs/probe_mlp.py``).
uncertainty = 1 - predicted P(correct). Training rows with non-finite hidden states are skipped;
evaluation rows with non-finite hidden states get NaN.
"""
from __future__ import annotations

import numpy as np

from jobs import probe_mlp
from jobs.uq.base import UQMethod


def probe_uncertainty(
    stats, fit_stats, *, epochs: int, lr: float, hidden: tuple[int, ...], batch_size: int, seed: int
) -> np.ndarray:
    """Shared by ``probe`` and ``ood_probe``: fit on fit_stats, score stats."""
    X = np.asarray(fit_stats["hidden_state"], dtype=np.float64)
    y = np.asarray(fit_stats["correct"], dtype=bool)
    ok = np.isfinite(X).all(axis=1) if X.ndim == 2 else slice(None)
    model = probe_mlp.fit(
        X[ok], y[ok], hidden=tuple(hidden), lr=lr, epochs=epochs, batch_size=batch_size, seed=seed
    )
    return 1.0 - model.predict_proba(stats["hidden_state"])


def probe(
    stats,
    fit_stats,
    *,
    epochs: int = 20,
    lr: float = 5e-4,
    hidden: tuple[int, ...] = (256, 128, 64),
    batch_size: int = 32,
    seed: int = 0,
) -> np.ndarray:
    return probe_uncertainty(
        stats, fit_stats, epochs=epochs, lr=lr, hidden=hidden, batch_size=batch_size, seed=seed
    )


METHOD = UQMethod(
    name="probe",
    requires=("hidden_state",),
    fn=probe,
    fit="in_domain",
    description="1 - P(correct) from an MLP probe on hidden states, trained in-domain",
)
