"""Trained probes (paper methods 7 and 8): an MLP on SLM hidden states predicting SLM correctness.

One method, two ways of fitting it (``METHOD`` and ``OOD_METHOD``, built by ``probe_method``):

  probe      fit="in_domain": trained on ``fit_stats`` from a training subsample of the evaluated
             dataset; 20 epochs, lr 5e-4.
  ood_probe  fit="other_datasets": the caller pools the fit stats of every dataset except the
             evaluated one; 20 epochs, lr 1e-4.

Both: hidden state of the 8th-to-last layer at the last generated token -> ``correct``; hidden
widths (256, 128, 64), mini-batch 32 (see ``jobs/uq/probe_mlp.py``). uncertainty = 1 - predicted
P(correct). Training rows with non-finite hidden states are skipped; evaluation rows with
non-finite hidden states get NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jobs.uq import probe_mlp
from jobs.uq.base import UQMethod


def probe_uncertainty(
    stats, fit_stats, *, epochs: int, lr: float, hidden: tuple[int, ...], batch_size: int, seed: int
) -> np.ndarray:
    """Fit the MLP on fit_stats, score stats (the one body of both probes)."""
    X = np.asarray(fit_stats["hidden_state"], dtype=np.float64)
    y = np.asarray(fit_stats["correct"], dtype=bool)
    ok = np.isfinite(X).all(axis=1) if X.ndim == 2 else slice(None)
    model = probe_mlp.fit(X[ok], y[ok], hidden=tuple(hidden), lr=lr, epochs=epochs, batch_size=batch_size, seed=seed)
    return 1.0 - model.predict_proba(stats["hidden_state"])


def _probe_fn(name: str, default_lr: float) -> Callable[..., np.ndarray]:
    """The method's fn: ``probe_uncertainty`` with the method's defaults (its signature is what
    ``UQMethod.check_params`` validates a UQ entry's params against)."""

    def fn(
        stats,
        fit_stats,
        *,
        epochs: int = 20,
        lr: float = default_lr,
        hidden: tuple[int, ...] = (256, 128, 64),
        batch_size: int = 32,
        seed: int = 0,
    ) -> np.ndarray:
        return probe_uncertainty(
            stats, fit_stats, epochs=epochs, lr=lr, hidden=hidden, batch_size=batch_size, seed=seed
        )

    fn.__name__ = fn.__qualname__ = name
    return fn


def probe_method(name: str, fit: str, default_lr: float, trained_on: str) -> UQMethod:
    """A probe method: ``name``, fitted on ``fit`` data, ``lr`` defaulting to ``default_lr``."""
    return UQMethod(
        name=name,
        requires=("hidden_state",),
        fn=_probe_fn(name, default_lr),
        fit=fit,
        description=f"1 - P(correct) from an MLP probe on hidden states, trained {trained_on}",
    )


METHOD = probe_method("probe", "in_domain", 5e-4, "in-domain")
OOD_METHOD = probe_method("ood_probe", "other_datasets", 1e-4, "on other datasets")
#: the function names the two methods had as modules of their own
probe = METHOD.fn
ood_probe = OOD_METHOD.fn
