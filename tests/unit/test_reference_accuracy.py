"""benchmarks/reference_accuracy.py: its interval, its seeded subsets, and one small real run."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from jobs.datasets import load_samples

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reference_accuracy.py"


@pytest.fixture(scope="module")
def ra():
    return runpy.run_path(str(SCRIPT), run_name="reference_accuracy")


@pytest.mark.parametrize(("k", "n"), [(81, 263), (0, 10), (250, 500), (499, 500)])
def test_wilson_is_scipys_wilson_interval(ra, k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    np.testing.assert_allclose(ra["wilson"](k, n), (ci.low, ci.high), atol=1e-9)


def test_mean_interval_of_two_proportions(ra):
    lo, hi = ra["mean_interval"]([(200, 500), (150, 500)])
    se = np.sqrt(0.4 * 0.6 / 500 + 0.3 * 0.7 / 500) / 2
    np.testing.assert_allclose((lo, hi), (0.35 - 1.959964 * se, 0.35 + 1.959964 * se), atol=1e-6)


@pytest.mark.parametrize("dataset", ["piqa", "boolq"])
def test_the_first_k_questions_scored_are_load_samples_seeded_subset(ra, dataset):
    perm = ra["permuted_samples"](dataset, 0)
    for k in (1, 37, 500):
        assert {s.id for s in perm[:k]} == {s.id for s in load_samples(dataset, limit=k, seed=0).samples}


def test_bad_options_name_the_valid_choices(ra, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["x", "--models", "smollm3", "--out", str(tmp_path / "r.json")])
    with pytest.raises(SystemExit, match="smollm3.*valid choices: smollm2, gemma3"):
        ra["main"]()


@pytest.mark.model  # loads SmolLM2
def test_a_small_run_writes_rows_that_rerun_alone(ra, monkeypatch, tmp_path):
    import torch

    threads = torch.get_num_threads()
    out = tmp_path / "r.json"
    argv = ["x", "--models", "smollm2", "--benchmarks", "piqa", "--chunk", "2", "--threads", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, "--limit", "3"])
    try:
        ra["main"]()
    finally:
        torch.set_num_threads(threads)
    store = json.loads(out.read_text())
    rows = {r["prompt"]: r for r in store["rows"]}
    assert set(rows) == {"raw", "chat"}
    for r in rows.values():
        assert r["n"] == 3 and r["metric"] == "acc_norm" and r["published"] == 66.3
        lo, hi = r["interval"]
        assert lo <= r["ours"] <= hi and r["within"] == (lo <= 0.663 <= hi)
    raw = store["questions"]["smollm2/piqa/raw"]
    assert set(raw) == {s.id for s in load_samples("piqa", limit=3, seed=0).samples}
    assert all(len(q["logprobs"]) == 2 and q["acc_norm"] in ("A", "B") for q in raw.values())
    # the chat rows score other contexts (the chat template) for the same questions
    chat = store["questions"]["smollm2/piqa/chat"]
    assert set(chat) == set(raw) and all(chat[i]["logprobs"] != raw[i]["logprobs"] for i in raw)
    # a second run with a larger limit scores only the new questions and keeps the rest
    monkeypatch.setattr(sys, "argv", [*argv, "--limit", "4", "--prompts", "raw"])
    try:
        ra["main"]()
    finally:
        torch.set_num_threads(threads)
    again = json.loads(out.read_text())
    assert len(again["questions"]["smollm2/piqa/raw"]) == 4 and len(again["questions"]["smollm2/piqa/chat"]) == 3
    assert all(again["questions"]["smollm2/piqa/raw"][i] == raw[i] for i in raw)
