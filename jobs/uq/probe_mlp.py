"""A small MLP binary classifier in numpy: the paper's trained probe on SLM hidden states.

Architecture: 4 linear layers, i.e. 3 hidden layers with LeakyReLU(0.01) and a sigmoid output
giving P(correct). Training: features standardized with the training mean/std (a constant feature
gets std 1), He-normal init from ``np.random.default_rng(seed)``, biases 0, Adam (0.9, 0.999, 1e-8),
binary cross-entropy (computed on logits for stability), mini-batches of ``batch_size`` reshuffled
every epoch, a fixed number of epochs, no early stopping. Parameters are float32 (as in a torch
probe). The same inputs and seed give the same probe.

Training runs BLAS single-threaded (via threadpoolctl when installed): the matrices of a 32-row
mini-batch are too small to gain from threads, threads thrash on busy or shared CPUs (20x slower
seen), and a fixed thread count keeps float summation order, hence results, the same across
machines.

When the labels contain one class only there is nothing to learn: ``fit`` returns a constant probe
that predicts that class's base rate (1.0 if every row is correct, 0.0 if none is).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

try:  # optional: pins BLAS to one thread during training (see _blas_one_thread)
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

LEAKY_SLOPE = 0.01
_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.9, 0.999, 1e-8


@dataclass(frozen=True, eq=False)
class MLPProbe:
    """A fitted probe. ``constant`` is set (and the layers empty) for single-class training data."""

    mean: np.ndarray
    std: np.ndarray
    weights: tuple[np.ndarray, ...] = ()
    biases: tuple[np.ndarray, ...] = ()
    constant: float | None = None

    def predict_proba(self, X) -> np.ndarray:
        """P(y = 1) for each row of X (N, H), float64 of shape (N,). Non-finite rows give NaN."""
        X = _as_2d(X, "X")
        if X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"X has {X.shape[1]} features; the probe was fit on {self.mean.shape[0]}")
        if self.constant is not None:
            out = np.full(X.shape[0], self.constant)
            out[~np.isfinite(X).all(axis=1)] = np.nan
            return out
        z = _forward(_standardize(X, self.mean, self.std), self.weights, self.biases)[0]
        return expit(z[:, 0].astype(np.float64))


def expit(z: np.ndarray) -> np.ndarray:
    """Logistic sigmoid without overflow (tanh form), dtype preserved."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _blas_one_thread():
    return threadpool_limits(limits=1, user_api="blas") if threadpool_limits else nullcontext()


def _as_2d(X, name: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, H); got shape {X.shape}")
    return X


def _standardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((X - mean) / std).astype(np.float32)


def _leaky(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, LEAKY_SLOPE * z)


def _forward(x, weights, biases):
    """Return (output logits (B, 1), pre-activations of hidden layers, inputs of every layer)."""
    inputs, pre = [x], []
    h = x
    for w, b in zip(weights[:-1], biases[:-1]):
        z = h @ w + b
        pre.append(z)
        h = _leaky(z)
        inputs.append(h)
    return h @ weights[-1] + biases[-1], pre, inputs


def _adam_step(params, grads, m1, m2, buf, lr: float, step: int) -> None:
    """One in-place Adam update (torch's formulation); ``buf`` is scratch space, no allocations."""
    c1, c2 = 1 - _ADAM_B1**step, 1 - _ADAM_B2**step
    step_size, sqrt_c2 = lr / c1, c2**0.5
    for p, g, a, v, tmp in zip(params, grads, m1, m2, buf):
        a *= _ADAM_B1
        np.multiply(g, 1 - _ADAM_B1, out=tmp)
        a += tmp
        v *= _ADAM_B2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - _ADAM_B2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp /= sqrt_c2
        tmp += _ADAM_EPS
        np.divide(a, tmp, out=tmp)
        tmp *= step_size
        p -= tmp


def fit(
    X,
    y,
    *,
    hidden: tuple[int, ...] = (256, 128, 64),
    lr: float = 5e-4,
    epochs: int = 20,
    batch_size: int = 32,
    seed: int = 0,
) -> MLPProbe:
    """Train the probe on features X (N, H) and binary labels y (N,); return an MLPProbe."""
    X, y = _check_training_data(X, y, lr=lr, epochs=epochs, batch_size=batch_size)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    if np.all(y == y[0]):
        return MLPProbe(mean=mean, std=std, constant=float(y[0]))

    Xs = _standardize(X, mean, std)
    rng = np.random.default_rng(seed)
    sizes = [X.shape[1], *hidden, 1]
    weights = [
        (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)  # He-normal
        for a, b in zip(sizes[:-1], sizes[1:])
    ]
    biases = [np.zeros(b, dtype=np.float32) for b in sizes[1:]]
    _train(Xs, y, weights, biases, rng, lr=lr, epochs=epochs, batch_size=batch_size)
    return MLPProbe(mean=mean, std=std, weights=tuple(weights), biases=tuple(biases))


def _check_training_data(X, y, *, lr: float, epochs: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(X as float64 (N, H), y as float32 (N,)); ValueError naming what is wrong with the inputs."""
    X = _as_2d(X, "X")
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X; got {y.shape}")
    if X.shape[0] == 0:
        raise ValueError("cannot fit a probe on 0 rows")
    if not np.isfinite(X).all():
        raise ValueError(f"X has {int((~np.isfinite(X)).any(axis=1).sum())} row(s) with non-finite values")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y must be binary (0/1 or bool); got values {np.unique(y)[:5].tolist()}")
    if epochs < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    return X, y.astype(np.float32)


def _train(Xs, y, weights: list, biases: list, rng, *, lr: float, epochs: int, batch_size: int) -> None:
    """Adam on the mean BCE over mini-batches reshuffled every epoch by ``rng``; updates ``weights``
    and ``biases`` in place (BLAS single-threaded)."""
    params = weights + biases
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    buf = [np.empty_like(p) for p in params]

    n, step = Xs.shape[0], 0
    with _blas_one_thread():
        for _ in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                step += 1
                _adam_step(params, _gradients(Xs[idx], y[idx], weights, biases), m1, m2, buf, lr, step)


def _gradients(x, y, weights, biases) -> list:
    """Gradients of the mean BCE of one mini-batch: every weight's, then every bias's."""
    logits, pre, inputs = _forward(x, weights, biases)
    # d(mean BCE)/d(logit) = (sigmoid(logit) - y) / batch
    dz = ((expit(logits[:, 0]) - y) / len(x))[:, None].astype(np.float32)
    grads_w, grads_b = [None] * len(weights), [None] * len(biases)
    for layer in range(len(weights) - 1, -1, -1):
        grads_w[layer] = inputs[layer].T @ dz
        grads_b[layer] = dz.sum(axis=0)
        if layer:
            dh = dz @ weights[layer].T
            dz = np.where(pre[layer - 1] > 0, dh, LEAKY_SLOPE * dh)
    return grads_w + grads_b
