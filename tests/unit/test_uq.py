"""UQ methods on hand-made stats; expected values are worked out by hand in the comments."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jobs.uq import PAPER_METHODS, UQ_METHODS, UQMethod, compute
from jobs.uq.jaccard import jaccard_degree, word_set

LN2 = math.log(2.0)
KNOWN_STATS = {
    "token_logprobs",
    "option_logprobs",
    "token_entropy",
    "answer_logprob",
    "ptrue_prob",
    "verbal_1s_conf",
    "verbal_2s_conf",
    "sampled_texts",
    "hidden_state",
    "correct",
    "prompt",
    "prompt_hidden_state",
}


def run(name, stats, fit_stats=None, **params):
    return compute(UQ_METHODS.get(name), stats, fit_stats, **params)


def assert_same(got, expected):
    np.testing.assert_allclose(got, np.asarray(expected, dtype=float), rtol=0, atol=1e-12, equal_nan=True)


# ---- registry ---------------------------------------------------------------------------------


def test_registry_holds_paper_methods_and_extras():
    assert set(PAPER_METHODS) <= set(UQ_METHODS.names())
    assert {"mean_token_entropy", "max_token_nll"} <= set(UQ_METHODS.names())


@pytest.mark.parametrize("name", UQ_METHODS.names())
def test_every_method_loads_and_is_consistent(name):
    m = UQ_METHODS.get(name)
    assert isinstance(m, UQMethod)
    assert m.name == name  # one key everywhere
    assert set(m.requires) <= KNOWN_STATS - {"correct"}
    assert m.fit in (None, "in_domain", "other_datasets")
    assert m.description


def test_fit_kinds():
    assert UQ_METHODS.get("probe").fit == "in_domain"
    assert UQ_METHODS.get("ood_probe").fit == "other_datasets"
    assert all(UQ_METHODS.get(n).fit is None for n in PAPER_METHODS[:6])


def test_unknown_method_suggests():
    with pytest.raises(KeyError, match="Did you mean 'perplexity'"):
        UQ_METHODS.get("perplexty")


def test_scoring_code_does_not_import_torch():
    code = (
        "import sys\n"
        "from jobs.uq import UQ_METHODS\n"
        "[UQ_METHODS.get(n) for n in UQ_METHODS.names()]\n"
        "import jobs.metrics, jobs.uq.probe_mlp\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# ---- token-probability methods ----------------------------------------------------------------

TOKEN_STATS = {
    "token_logprobs": [
        np.log([0.5, 0.25]),  # mean p = 0.375
        np.log([0.5, 0.125]),  # NLL = ln2, 3 ln2
        np.log([1.0]),  # certain
        np.array([]),  # empty generation
        np.log([0.5, 0.5]),  # mc row below
    ],
    "answer_logprob": np.array([np.nan, np.nan, np.nan, np.nan, math.log(0.8)]),
    "token_entropy": [np.array([1.0, 2.0, 3.0]), np.array([0.5]), np.array([0.0]), np.array([]), np.array([2.0, 4.0])],
}


@pytest.mark.parametrize(
    "name, expected",
    [
        # 1 - mean p: 1-0.375; 1-(0.5+0.125)/2 = 0.6875; 1-1; NaN; mc: 1 - 0.8 (letter prob wins)
        ("avg_token_prob", [0.625, 0.6875, 0.0, np.nan, 0.2]),
        # exp(mean NLL): exp(1.5 ln2)=2^1.5; exp((ln2+3ln2)/2)=4; exp(0)=1; NaN; exp(ln2)=2
        ("perplexity", [2**1.5, 4.0, 1.0, np.nan, 2.0]),
        # max(-lp): 2 ln2 (p=.25); 3 ln2 (p=.125); 0; NaN; ln2
        ("max_token_nll", [2 * LN2, 3 * LN2, 0.0, np.nan, LN2]),
        # mean entropy: 2; 0.5; 0; NaN; 3
        ("mean_token_entropy", [2.0, 0.5, 0.0, np.nan, 3.0]),
    ],
)
def test_token_methods(name, expected):
    out = run(name, TOKEN_STATS)
    assert out.dtype == np.float64
    assert_same(out, expected)


def test_avg_token_prob_accepts_plain_lists():
    stats = {"token_logprobs": [[math.log(0.5)], []], "answer_logprob": [float("nan"), float("nan")]}
    assert_same(run("avg_token_prob", stats), [0.5, np.nan])


# ---- probability / verbalized methods ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, key",
    [("ptrue", "ptrue_prob"), ("verbal_1s", "verbal_1s_conf"), ("verbal_2s", "verbal_2s_conf")],
)
def test_complement_methods(name, key):
    stats = {key: np.array([0.9, 0.25, 1.0, 0.0, np.nan])}
    assert_same(run(name, stats), [0.1, 0.75, 0.0, 1.0, np.nan])


@pytest.mark.parametrize("bad", [1.5, -0.2, np.inf])
def test_complement_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match=r"'verbal_1s_conf' must lie in \[0, 1\].*sample 1"):
        run("verbal_1s", {"verbal_1s_conf": np.array([0.5, bad])})


# ---- jaccard ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "texts, expected",
    [
        # identical word sets ({the, cat}) -> W all ones -> U = 1 - 9/9 = 0
        (["The cat", "the CAT!", "cat, the"], 0.0),
        # pairwise disjoint, m=3: W = I, trace(3I - I)/9 = 6/9 = (m-1)/m
        (["a", "b", "c"], 2 / 3),
        # disjoint, m=4: trace(4I - I)/16 = 12/16
        (["one", "two", "three", "four"], 3 / 4),
        # {a,b} vs {b,c}: W12 = 1/3, D = 4/3 each, trace(2I - D)/4 = (2/3 + 2/3)/4 = 1/3
        (["a b", "b c"], 1 / 3),
        # {a,b},{a,b},{c}: row sums 2,2,1 -> trace(3I - D) = 1 + 1 + 2 = 4 -> 4/9
        (["a b", "b a", "c"], 4 / 9),
        # two empty word sets count as identical -> 0
        (["", "?!"], 0.0),
        # empty vs {a}: W12 = 0 -> (1 + 1)/4
        (["", "a"], 0.5),
        # None samples are skipped: m = 2, {x} vs {y} -> 1/2
        (["x", None, "y"], 0.5),
        # m < 2 -> NaN
        (["only one"], np.nan),
        ([], np.nan),
        ([None, "a"], np.nan),
    ],
)
def test_jaccard_degree(texts, expected):
    assert_same([jaccard_degree(texts)], [expected])


def test_word_set_splits_on_non_alphanumeric():
    assert word_set("Don't stop_now: 42x, ÉTÉ") == {"don", "t", "stop", "now", "42x", "été"}


def test_jaccard_method_per_sample():
    stats = {"sampled_texts": [["a", "a"], ["a", "b"], ["a"]]}
    # identical -> 0; disjoint m=2 -> 1/2; m=1 -> NaN
    assert_same(run("jaccard", stats), [0.0, 0.5, np.nan])


# ---- compute(): contract checks ---------------------------------------------------------------


def test_missing_stat_error_names_method_stat_and_available():
    with pytest.raises(KeyError) as err:
        run("perplexity", {"ptrue_prob": np.zeros(2), "sampled_texts": [[], []]})
    msg = str(err.value)
    assert "'perplexity'" in msg and "'token_logprobs'" in msg
    assert "ptrue_prob, sampled_texts" in msg


def test_mismatched_stat_lengths():
    stats = {"token_logprobs": [np.zeros(1)] * 3, "answer_logprob": np.zeros(2)}
    with pytest.raises(ValueError, match="different lengths"):
        run("avg_token_prob", stats)


def test_output_shape_checked():
    bad = UQMethod(name="bad", requires=("ptrue_prob",), fn=lambda s: np.zeros(3), description="x")
    with pytest.raises(ValueError, match=r"'bad' returned shape \(3,\); expected \(2,\)"):
        compute(bad, {"ptrue_prob": np.zeros(2)})


def test_unknown_param_names_valid_ones():
    stats = {"hidden_state": np.zeros((2, 3))}
    fit = {"hidden_state": np.zeros((2, 3)), "correct": np.array([True, False])}
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) lrate; valid: epochs, lr"):
        run("probe", stats, fit, lrate=0.1)


def test_trained_method_needs_fit_stats():
    with pytest.raises(ValueError, match="'probe' is trained .* needs fit_stats with hidden_state, correct"):
        run("probe", {"hidden_state": np.zeros((2, 3))})
    with pytest.raises(KeyError, match="'correct'"):
        run("probe", {"hidden_state": np.zeros((2, 3))}, {"hidden_state": np.zeros((2, 3))})


def test_bad_fit_kind_rejected():
    with pytest.raises(ValueError, match="fit='sometimes'"):
        UQMethod(name="x", requires=("a",), fn=lambda s: s, fit="sometimes")


# ---- probes -----------------------------------------------------------------------------------


def _toy_hidden(n, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    return X, X[:, 0] + 0.5 * X[:, 1] > 0  # linearly separable "correct"


@pytest.mark.parametrize("name", ["probe", "ood_probe"])
def test_probe_methods_rank_errors_as_uncertain(name):
    Xf, yf = _toy_hidden(300, 0)
    Xe, ye = _toy_hidden(200, 1)
    lr = {"probe": 5e-4, "ood_probe": 1e-3}[name]  # ood default 1e-4 is slow on 300 rows
    u = run(name, {"hidden_state": Xe}, {"hidden_state": Xf, "correct": yf}, lr=lr)
    assert u.shape == (200,) and np.all((u >= 0) & (u <= 1))
    assert np.mean((u < 0.5) == ye) > 0.9  # confident where correct
    again = run(name, {"hidden_state": Xe}, {"hidden_state": Xf, "correct": yf}, lr=lr)
    np.testing.assert_array_equal(u, again)  # deterministic for a seed


def test_probe_nan_hidden_state():
    Xf, yf = _toy_hidden(64, 0)
    Xf[3] = np.nan  # skipped in training
    Xe = np.ones((2, 6), dtype=np.float32)
    Xe[1, 2] = np.nan  # NaN uncertainty
    u = run("probe", {"hidden_state": Xe}, {"hidden_state": Xf, "correct": yf}, epochs=1)
    assert np.isfinite(u[0]) and np.isnan(u[1])


def test_probe_single_class_fit_gives_base_rate():
    X = np.zeros((5, 3))
    u = run("probe", {"hidden_state": np.ones((2, 3))}, {"hidden_state": X, "correct": np.ones(5, bool)})
    assert_same(u, [0.0, 0.0])  # always correct -> P(correct) = 1 -> uncertainty 0


# ---- option_max_prob ----------------------------------------------------------------------------


def test_option_max_prob_is_one_minus_the_largest_option_probability():
    stats = {
        "option_logprobs": [
            np.log([0.7, 0.2, 0.1]),  # a cloze mc row
            np.log([0.5, 0.5]),  # yes / no, a tie
            np.asarray([]),  # a generated answer: no options scored
            None,
        ]
    }
    assert_same(run("option_max_prob", stats), [0.3, 0.5, np.nan, np.nan])
