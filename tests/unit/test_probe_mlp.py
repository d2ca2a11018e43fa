"""The numpy MLP probe: learns a separable toy problem, deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.uq.probe_mlp import MLPProbe, fit


def toy(n, seed, dim=8):
    rng = np.random.default_rng(seed)
    w = np.linspace(1.0, -1.0, dim)
    # features on a large, shifted scale: standardization has to do its job
    X = 100.0 + 50.0 * rng.standard_normal((n, dim))
    y = (X - 100.0) @ w > 0
    return X, y


def test_learns_linearly_separable_problem():
    X, y = toy(400, 0)
    Xt, yt = toy(300, 1)
    model = fit(X, y, seed=0)  # paper defaults: lr 5e-4, 20 epochs, widths 256/128/64
    p = model.predict_proba(Xt)
    assert p.shape == (300,) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    assert np.mean((p > 0.5) == yt) > 0.9


def test_architecture_is_four_layers():
    X, y = toy(40, 0)
    model = fit(X, y, epochs=1)
    assert [w.shape for w in model.weights] == [(8, 256), (256, 128), (128, 64), (64, 1)]
    assert all(w.dtype == np.float32 for w in model.weights)


def test_deterministic_for_a_seed():
    X, y = toy(200, 0)
    a = fit(X, y, seed=3, epochs=3).predict_proba(X)
    b = fit(X, y, seed=3, epochs=3).predict_proba(X)
    c = fit(X, y, seed=4, epochs=3).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("label, expected", [(True, 1.0), (False, 0.0)])
def test_single_class_predicts_base_rate(label, expected):
    X, _ = toy(10, 0)
    model = fit(X, np.full(10, label))
    assert model.constant == expected and model.weights == ()
    np.testing.assert_array_equal(model.predict_proba(X[:3]), [expected] * 3)


def test_constant_feature_does_not_break_standardization():
    X, y = toy(100, 0)
    X[:, 2] = 7.0  # std 0 -> treated as std 1
    p = fit(X, y, epochs=2).predict_proba(X)
    assert np.all(np.isfinite(p))


def test_non_finite_rows_predict_nan():
    X, y = toy(50, 0)
    model = fit(X, y, epochs=1)
    Xt = X[:2].copy()
    Xt[1, 0] = np.nan
    p = model.predict_proba(Xt)
    assert np.isfinite(p[0]) and np.isnan(p[1])


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.zeros(5), np.zeros(5), "2-D"),
        (np.zeros((5, 2)), np.zeros(4), r"shape \(5,\)"),
        (np.zeros((0, 2)), np.zeros(0), "0 rows"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), np.array([0, 1]), r"1 row\(s\) with non-finite"),
        (np.zeros((2, 2)), np.array([0, 2]), "binary"),
    ],
)
def test_input_errors(X, y, match):
    with pytest.raises(ValueError, match=match):
        fit(X, y)


def test_predict_feature_mismatch():
    X, y = toy(20, 0)
    with pytest.raises(ValueError, match="3 features; the probe was fit on 8"):
        fit(X, y, epochs=1).predict_proba(np.zeros((1, 3)))


def test_probe_type():
    X, y = toy(20, 0)
    assert isinstance(fit(X, y, epochs=1), MLPProbe)
