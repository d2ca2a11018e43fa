"""Raw-to-decision audit: a setting's routing decision (``route_rank``) comes from the uncertainty
alone, fixed before any answer is judged (RouterArena's lesson: submissions changed their choices
after seeing answers). Shuffling the correctness labels must leave every route unchanged."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs import metrics as M
from jobs import scoring
from jobs.records import unit_dir
from jobs.scoring import run_setting_unit
from tests.helpers import gen_row, setting_unit, store_scores, store_unit

N = 40


def _store(root, golds, slm_out, llm_out, unc, nan_policy, ties):
    for key, outs in (("G", slm_out), ("L", llm_out)):
        store_unit(root, key, [gen_row(f"s{i:02d}", gold=g, raw_output=o) for i, (g, o) in enumerate(zip(golds, outs))])
    store_scores(root, [f"s{i:02d}" for i in range(len(unc))], unc)
    run_setting_unit(setting_unit("u", nan_policy=nan_policy, ties=ties), root, plot=False)
    return pq.read_table(unit_dir(root, "settings", "H") / "records.parquet").to_pydict()


@pytest.mark.parametrize("nan_policy", ["most_uncertain", "drop"])
@pytest.mark.parametrize("ties", ["expected", "stable"])
def test_route_is_unchanged_when_correctness_labels_are_shuffled(tmp_path, nan_policy, ties):
    rng = np.random.default_rng(0)
    unc = np.round(rng.random(N), 1)  # coarse: many ties
    unc[[3, 17, 29]] = np.nan
    slm_out = rng.choice(["yes", "no"], N)
    llm_out = rng.choice(["yes", "no"], N)
    golds = rng.choice(["yes", "no"], N)
    a = _store(tmp_path / "a", golds, slm_out, llm_out, unc, nan_policy, ties)
    b = _store(tmp_path / "b", rng.permutation(golds), slm_out, llm_out, unc, nan_policy, ties)
    assert a["slm_correct"] != b["slm_correct"] and a["llm_correct"] != b["llm_correct"]  # labels did change
    assert a["sample_id"] == b["sample_id"] and a["route_rank"] == b["route_rank"]
    assert a["route_rank"] == M.route_ranks(unc, nan_policy).tolist()
    if nan_policy == "drop":
        assert [a["route_rank"][i] for i in (3, 17, 29)] == [-1, -1, -1]
    else:  # NaN = most uncertain: offloaded first, in sample order
        assert [a["route_rank"][i] for i in (3, 17, 29)] == [0, 1, 2]


def test_route_is_fixed_before_any_answer_is_judged(tmp_path, monkeypatch):
    """The setting unit computes the route first, then judges answers: a judge that sees the route
    already fixed is the only order allowed."""
    events = []
    real_judge, real_route = scoring.judge_detail, M.route_ranks
    monkeypatch.setattr(scoring, "judge_detail", lambda *a, **kw: (events.append("judge"), real_judge(*a, **kw))[1])
    monkeypatch.setattr(M, "route_ranks", lambda *a, **kw: (events.append("route"), real_route(*a, **kw))[1])
    golds = ["yes"] * 6
    _store(tmp_path, golds, ["yes", "no"] * 3, ["no", "yes"] * 3, np.arange(6) / 6, "most_uncertain", "expected")
    assert events[0] == "route" and events.count("route") == 1 and "judge" in events


def test_route_ranks_reads_uncertainty_only():
    u = np.array([0.2, np.nan, 0.9, 0.2, 0.5])
    # descending uncertainty, NaN first under most_uncertain, ties in sample order
    assert M.route_ranks(u, "most_uncertain").tolist() == [3, 0, 1, 4, 2]
    assert M.route_ranks(u, "drop").tolist() == [2, -1, 0, 3, 1]
    with pytest.raises(ValueError, match="unknown nan policy 'keep'; valid: most_uncertain, drop"):
        M.route_ranks(u, "keep")
