"""OOD probe (paper method 8): the probe of ``probe.py`` trained on all *other* datasets.

fit="other_datasets": the caller pools the fit stats of every dataset except the evaluated one.
Same architecture; 20 epochs, lr 1e-4. uncertainty = 1 - predicted P(correct).
"""
from __future__ import annotations

import numpy as np

from jobs.uq.base import UQMethod
from jobs.uq.probe import probe_uncertainty


def ood_probe(
    stats,
    fit_stats,
    *,
    epochs: int = 20,
    lr: float = 1e-4,
    hidden: tuple[int, ...] = (256, 128, 64),
    batch_size: int = 32,
    seed: int = 0,
) -> np.ndarray:
    return probe_uncertainty(
        stats, fit_stats, epochs=epochs, lr=lr, hidden=hidden, batch_size=batch_size, seed=seed
    )


METHOD = UQMethod(
    name="ood_probe",
    requires=("hidden_state",),
    fn=ood_probe,
    fit="other_datasets",
    description="1 - P(correct) from an MLP probe on hidden states, trained on other datasets",
)
