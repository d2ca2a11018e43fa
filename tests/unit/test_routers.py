"""Learned routers (jobs/uq/routers.py; knn_router, logreg_router, embed_router and their in-distribution
variants knn_router_id, logreg_router_id, embed_router_id) on synthetic stats: where the query
predicts the SLM's correctness they rank errors first (AUROC clearly above 0.5), where it does not
they are at chance; the in-distribution variants train on the evaluated dataset's own fit rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jobs import metrics as M
from jobs.uq import PAPER_METHODS, UQ_METHODS, compute
from jobs.uq.routers import knn_p_correct, query_matrix

ROUTERS = ("knn_router", "logreg_router", "embed_router")
ID_ROUTERS = ("knn_router_id", "logreg_router_id", "embed_router_id")

# the letter-scored default: every router, both training sources, both calibration splits
DEFAULT_GRID = Path(__file__).resolve().parents[2] / "conf" / "grid" / "default-constrained.yaml"


def hidden_stats(n: int, seed: int, predictive: bool, dim: int = 16) -> dict:
    """Prompt representations; correct = the query lies on the positive side of a fixed direction
    (10% of labels flipped) when ``predictive``, else a coin flip."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim)).astype(np.float32)
    w = np.linspace(1.0, -1.0, dim)
    y = (X @ w > 0) ^ (rng.random(n) < 0.1) if predictive else rng.random(n) < 0.5
    return {"prompt_hidden_state": list(X), "correct": y}


WORDS = [
    "the",
    "a",
    "of",
    "to",
    "which",
    "what",
    "is",
    "are",
    "many",
    "how",
    "does",
    "can",
    "river",
    "city",
    "number",
    "year",
    "people",
]


def text_stats(n: int, seed: int, predictive: bool) -> dict:
    """Prompts of filler words plus one topic word; the SLM is right on "colour"-topic prompts and wrong
    on "integral"-topic ones (10% flipped) when ``predictive``, else a coin flip."""
    rng = np.random.default_rng(seed)
    topic = rng.random(n) < 0.5
    prompts = [" ".join(list(rng.choice(WORDS, 8)) + ["colour" if t else "integral"]) for t in topic]
    y = topic ^ (rng.random(n) < 0.1) if predictive else rng.random(n) < 0.5
    return {"prompt": prompts, "correct": y}


def stats_for(name: str, n: int, seed: int, predictive: bool) -> dict:
    return (text_stats if name.startswith("embed_router") else hidden_stats)(n, seed, predictive)


@pytest.mark.parametrize("name", ROUTERS + ID_ROUTERS)
def test_router_ranks_errors_first_when_the_query_predicts_correctness(name):
    fit, ev = stats_for(name, 300, 0, True), stats_for(name, 300, 1, True)
    u = compute(UQ_METHODS.get(name), {k: v for k, v in ev.items() if k != "correct"}, fit)
    assert u.shape == (300,) and np.isfinite(u).all() and ((0 <= u) & (u <= 1)).all()
    assert M.auroc(u, ev["correct"]) > 0.8


@pytest.mark.parametrize("name", ROUTERS + ID_ROUTERS)
def test_router_is_at_chance_when_the_query_says_nothing(name):
    fit, ev = stats_for(name, 300, 2, False), stats_for(name, 400, 3, False)
    u = compute(UQ_METHODS.get(name), {k: v for k, v in ev.items() if k != "correct"}, fit)
    assert abs(M.auroc(u, ev["correct"]) - 0.5) < 0.1


def test_routers_are_trained_on_other_datasets_and_not_paper_methods():
    for name in ROUTERS:
        m = UQ_METHODS.get(name)
        assert m.fit == "other_datasets" and name not in PAPER_METHODS and m.confidence == "complement"


def test_each_router_has_an_in_distribution_variant_with_the_same_function():
    for name, id_name in zip(ROUTERS, ID_ROUTERS):
        m, mid = UQ_METHODS.get(name), UQ_METHODS.get(id_name)
        assert mid.fit == "in_domain" and id_name not in PAPER_METHODS
        assert mid.fn is m.fn and mid.requires == m.requires and mid.confidence == m.confidence


def flipped(stats: dict) -> dict:
    return stats | {"correct": ~np.asarray(stats["correct"], bool)}


@pytest.mark.parametrize("name, id_name", list(zip(ROUTERS, ID_ROUTERS)))
def test_the_in_distribution_router_learns_a_signal_the_other_datasets_reverse(name, id_name):
    """Dataset a: the SLM is right on one side of the query space; datasets b and c: on the other
    side (the same queries would be answered the other way). Trained on b and c, the cross-dataset
    router ranks a's errors last; trained on a's own fit rows, the in-distribution one ranks them
    first."""
    a_fit, a_eval = stats_for(name, 300, 10, True), stats_for(name, 300, 11, True)
    others = [flipped(stats_for(name, 150, seed, True)) for seed in (12, 13)]
    other_fit = {k: [x for o in others for x in o[k]] for k in a_fit}
    other_fit["correct"] = np.concatenate([o["correct"] for o in others])
    query = {k: v for k, v in a_eval.items() if k != "correct"}
    cross = M.auroc(compute(UQ_METHODS.get(name), query, other_fit), a_eval["correct"])
    in_dist = M.auroc(compute(UQ_METHODS.get(id_name), query, a_fit), a_eval["correct"])
    assert in_dist > 0.7 and cross < 0.3


def test_out_of_fold_scores_of_the_fit_rows_never_come_from_a_model_that_saw_them():
    """kNN with k=1 on random labels: a row in its own training set is its own nearest neighbour
    and gets its own label back (AUROC 1); cross-fitted (how the plan scores an in_domain method's
    fit rows, ``crossfit_folds``) it is at chance."""
    from jobs.scoring import crossfit_scores

    rng = np.random.default_rng(5)
    stats = {"prompt_hidden_state": list(rng.normal(size=(300, 8))), "correct": rng.random(300) < 0.5}
    m = UQ_METHODS.get("knn_router_id")
    seen = compute(m, {"prompt_hidden_state": stats["prompt_hidden_state"]}, stats, k=1)
    assert M.auroc(seen, stats["correct"]) == 1.0  # the leak this guards against
    oof = crossfit_scores(m, stats, folds=5, seed=0, params={"k": 1})
    assert abs(M.auroc(oof, stats["correct"]) - 0.5) < 0.1


def test_the_plan_trains_in_distribution_routers_on_the_evaluated_datasets_fit_rows_only():
    """Through the default grid's plan: the evaluated rows' score of an _id router fits on its own
    dataset's fit-role passes (never an evaluated-role pass, never another dataset); its fit rows'
    score is cross-fitted and reads no other rows; the cross-dataset router fits on the others."""
    from orchestrator.config import load_grid
    from orchestrator.plan import make_plan

    r = load_grid(DEFAULT_GRID, [])
    plan = make_plan(r)
    evals = {k: u for k, u in plan.units.items() if u.kind == "score" and u.spec.role == "eval"}
    folds = int(r.grid.calibration.crossfit_folds)
    assert folds >= 2
    seen = set()
    for u in evals.values():
        spec = u.spec
        if spec.uq not in ROUTERS + ID_ROUTERS:
            continue
        seen.add((spec.uq, spec.dataset))
        eval_gen = set(spec.stages.values())
        assert all(plan.units[k].spec.role == "eval" and plan.units[k].spec.dataset == spec.dataset for k in eval_gen)
        fit_gen = {k for f in spec.fit for k in f.stages.values()}
        assert not (fit_gen & eval_gen)
        assert all(plan.units[k].spec.role == "fit" for k in fit_gen)
        if spec.uq in ID_ROUTERS:
            assert [f.dataset for f in spec.fit] == [spec.dataset] and spec.crossfit == 0
            fu = plan.units[plan.fit_scores[(spec.slm, spec.uq, spec.dataset)].score].spec
            assert fu.role == "fit" and fu.fit == () and fu.crossfit == folds
            assert all(plan.units[k].spec.role == "fit" for k in fu.stages.values())
        else:
            assert spec.dataset not in [f.dataset for f in spec.fit] and spec.fit
    datasets = {d for _, d in seen}
    assert seen == {(uq, d) for uq in ROUTERS + ID_ROUTERS for d in datasets} and len(datasets) == 3
    # only the cross-dataset routers need scores trained without a held-out dataset
    assert {k[1] for k in plan.leave_out} & set(ID_ROUTERS) == set()


def test_knn_is_the_neighbours_mean_correctness():
    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    y = np.array([True, True, False, True])
    # cosine: [1, 0.05] is nearest to rows 0, 1; [0.05, 1] to rows 2, 3
    p = knn_p_correct(X, y, np.array([[1.0, 0.05], [0.05, 1.0]]), k=2)
    assert p.tolist() == [1.0, 0.5]
    assert knn_p_correct(X, y, np.array([[1.0, 0.0]]), k=99).tolist() == [0.75]  # k capped at the training size
    with pytest.raises(ValueError, match="knn metric 'manhattan'; valid: cosine, euclidean"):
        knn_p_correct(X, y, X, k=1, metric="manhattan")


def test_queries_without_a_prompt_representation_get_nan():
    fit = hidden_stats(50, 0, True)
    ev = hidden_stats(4, 1, True)
    ev["prompt_hidden_state"][1] = None
    for name in ("knn_router", "logreg_router"):
        u = compute(UQ_METHODS.get(name), ev, fit)
        assert np.isnan(u[1]) and np.isfinite(u[[0, 2, 3]]).all()
        # an HTTP SLM: no row has one, on either side
        http = {"prompt_hidden_state": [None] * 4}
        assert np.isnan(
            compute(UQ_METHODS.get(name), http, {"prompt_hidden_state": [None] * 50, "correct": fit["correct"]})
        ).all()
    X, ok = query_matrix([None, [1.0, 2.0]])
    assert X.shape == (2, 2) and ok.tolist() == [False, True]
    with pytest.raises(ValueError, match=r"different lengths \[2, 3\]"):
        query_matrix([[1.0, 2.0], [1.0, 2.0, 3.0]])


def test_a_single_class_fit_set_predicts_that_class():
    fit = hidden_stats(20, 0, True)
    fit["correct"] = np.ones(20, dtype=bool)
    u = compute(UQ_METHODS.get("logreg_router"), hidden_stats(5, 1, True), fit)
    assert u.tolist() == [0.0] * 5


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("knn_router", {"k": 0}, r"knn_router: k=0 must be an integer >= 1"),
        ("knn_router_id", {"k": 0}, r"knn_router_id: k=0 must be an integer >= 1"),
        ("logreg_router_id", {"max_iter": 0}, r"logreg_router_id: max_iter=0 must be an integer >= 1"),
        ("embed_router_id", {"C": 0}, r"embed_router_id: C=0 must be a number > 0"),
        ("knn_router", {"metric": "l1"}, r"knn_router: metric='l1'; valid: cosine, euclidean"),
        ("logreg_router", {"C": -1.0}, r"logreg_router: C=-1.0 must be a number > 0"),
        ("embed_router", {"embedding": ""}, r"embedding=''; valid: tfidf or a sentence-transformers model id"),
    ],
)
def test_bad_router_params_are_refused(name, params, message):
    with pytest.raises(ValueError, match=message):
        UQ_METHODS.get(name).check_params(params)


def test_a_sentence_transformers_embedding_needs_the_package(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_st(name, *a, **kw):
        if name.startswith("sentence_transformers"):
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_st)
    with pytest.raises(
        ImportError,
        match=r"embedding='sentence-transformers/all-MiniLM-L6-v2' is read as a "
        r"sentence-transformers model id, but the sentence-transformers package "
        r"is not installed .* offline, use embedding: tfidf",
    ):
        UQ_METHODS.get("embed_router").check_params({"embedding": "sentence-transformers/all-MiniLM-L6-v2"})


def test_the_config_refuses_bad_router_params_before_any_model_runs():
    from orchestrator.config import ConfigError, load_grid

    with pytest.raises(ConfigError, match=r"uq 'knn_router': params: knn_router: k=0 must be an integer >= 1"):
        load_grid(DEFAULT_GRID, ["uq=[{name: knn_router, params: {k: 0}}]"])
    r = load_grid(DEFAULT_GRID, ["uq=[knn_router, logreg_router, embed_router]"])
    assert r.uq["embed_router"].params == {"embedding": "tfidf", "C": 1.0}
    r = load_grid(DEFAULT_GRID, [])
    assert {*ROUTERS, *ID_ROUTERS} <= set(r.uq)
    assert r.uq["embed_router_id"].params == r.uq["embed_router"].params
    assert r.uq["knn_router_id"].params == r.uq["knn_router"].params == {"k": 10, "metric": "cosine"}


def test_load_stats_gives_the_routers_their_query_stats(tmp_path):
    from jobs.scoring import load_stats
    from tests.helpers import gen_row, store_unit

    rows = [
        gen_row(
            f"s{i}",
            prompt=f"question {i}",
            raw_output="yes",
            token_logprobs=[-0.1],
            token_entropy=[0.5],
            token_texts=["yes"],
            hidden_state=[0.0, 1.0],
            prompt_hidden_state=None if i == 1 else [float(i), 1.0],
        )
        for i in range(3)
    ]
    store_unit(tmp_path, "G", rows)
    _, stats = load_stats(tmp_path, {"greedy": "G"}, "flexible")
    assert stats["prompt"] == ["question 0", "question 1", "question 2"]
    assert stats["prompt_hidden_state"][1] is None and stats["prompt_hidden_state"][2].tolist() == [2.0, 1.0]
