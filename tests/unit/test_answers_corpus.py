"""Extractor accuracy on the hand-labelled corpus of real SmolLM2 / Gemma outputs and of
hand-written adversarial outputs (tests/fixtures/extraction_corpus, README there): a floor per task
type and policy on each, and >= 97% strict and flexible on the whole extended corpus (issue 17).

The floors are the accuracy measured when the extractor was last changed (benchmarks/extraction_accuracy.py
prints the table) minus about 3 points, so a rule change that loses a few outputs of one task type
fails here; raise them when the extractor improves."""

from __future__ import annotations

import pytest

from jobs.answers import extract, extract_detail, is_correct, normalize_freeform
from jobs.types import Sample
from tests.helpers import extraction_corpus

CORPUS = extraction_corpus(adversarial=True)
REAL = [r for r in CORPUS if r["model"] != "hand-written"]
HAND = [r for r in CORPUS if r["model"] == "hand-written"]
# measured at v3 on the real outputs (405): strict 100 / 100 / 98.9 / 100, flexible 92.2 / 97.8 / 96.7 / 97.8 (%)
# (v2: strict 97.8 / 100 / 94.4 / 100, flexible 85.6 / 97.2 / 88.9 / 97.8)
FLOORS = {
    ("numeric", "strict"): 0.95,
    ("numeric", "flexible"): 0.89,
    ("mc", "strict"): 0.97,
    ("mc", "flexible"): 0.94,
    ("yesno", "strict"): 0.96,
    ("yesno", "flexible"): 0.93,
    ("freeform", "strict"): 0.97,
    ("freeform", "flexible"): 0.93,
}
# on the hand-written adversarial outputs (95): v3 100% everywhere (v2: strict 42.9 / 60.6 / 88.9, flexible 31.4 / 57.6 / 70.4)
HAND_FLOORS = {(t, p): 0.94 for t in ("numeric", "mc", "yesno") for p in ("strict", "flexible")}


def _sample(row: dict) -> Sample:
    return Sample(
        row["sample_id"],
        row["question"],
        row["task"],
        row["gold_answer"],
        choices=tuple(row.get("options") or ()),
        aliases=tuple(row.get("aliases") or ()),
    )


def test_corpus_covers_both_models_and_all_task_types():
    assert len(REAL) >= 300 and len({r["id"] for r in CORPUS}) == len(CORPUS)
    assert {r["task"] for r in REAL} == {"numeric", "mc", "yesno", "freeform"}
    assert {r["model"] for r in REAL} == {"smollm2-135m", "gemma3-270m"}
    for task in ("numeric", "mc", "yesno", "freeform"):
        assert sum(r["task"] == task for r in REAL) >= 40


def test_adversarial_outputs_cover_hedges_echoes_corrections_and_number_forms():
    assert len(HAND) >= 80 and {r["task"] for r in HAND} == {"numeric", "mc", "yesno"}
    cats = {r["category"] for r in HAND}
    assert {"hedge", "echo", "self_correction", "mixed_number", "spaced_thousands", "scientific", "time_ratio"} <= cats


@pytest.mark.parametrize("row", CORPUS, ids=[r["id"] for r in CORPUS])
def test_labels_are_normalized_answers(row):
    """Labels are in the extractor's output space, and an explicit answer is also the flexible one."""
    s = _sample(row)
    strict, flexible = row["gold_extracted_strict"], row["gold_extracted_flexible"]
    assert strict is None or strict == flexible
    if flexible is None:
        return
    if row["task"] == "mc":
        assert flexible in s.choice_labels()
    elif row["task"] == "yesno":
        assert flexible in ("yes", "no")
    elif row["task"] == "numeric":
        is_correct(flexible, s)  # a number math-verify / the fast path can compare
        assert float(flexible) == float(flexible)
    else:
        assert flexible == flexible.lower().strip()


def _accuracy(rows: list[dict], policy: str) -> tuple[float, list[str]]:
    hits = [extract(r["raw_output"], _sample(r), policy) == r[f"gold_extracted_{policy}"] for r in rows]
    return sum(hits) / len(rows), [r["id"] for r, h in zip(rows, hits) if not h]


@pytest.mark.parametrize("task,policy", sorted(FLOORS))
def test_accuracy_floor_per_task_type(task, policy):
    accuracy, missed = _accuracy([r for r in REAL if r["task"] == task], policy)
    assert accuracy >= FLOORS[(task, policy)], (
        f"{task}/{policy}: {accuracy:.3f} < {FLOORS[(task, policy)]}; missed {missed}"
    )


@pytest.mark.parametrize("task,policy", sorted(HAND_FLOORS))
def test_accuracy_floor_on_adversarial_outputs(task, policy):
    accuracy, missed = _accuracy([r for r in HAND if r["task"] == task], policy)
    assert accuracy >= HAND_FLOORS[(task, policy)], (
        f"{task}/{policy}: {accuracy:.3f} < {HAND_FLOORS[(task, policy)]}; missed {missed}"
    )


@pytest.mark.parametrize("policy", ["strict", "flexible"])
def test_at_least_97_percent_on_the_whole_extended_corpus(policy):
    accuracy, missed = _accuracy(CORPUS, policy)
    assert accuracy >= 0.97, f"{policy}: {accuracy:.3f}; missed {missed}"


@pytest.mark.parametrize("policy", ["strict", "flexible"])
def test_detail_spans_point_into_the_output(policy):
    """On every real output: an answer has a span inside the text, no answer has none; an mc letter's
    span is that letter, an option matched by text spans that option's text."""
    for row in CORPUS:
        s = _sample(row)
        d = extract_detail(row["raw_output"], s, policy)
        assert (d.answer is None) == (d.span is None) == (d.rule == "none"), (row["id"], d)
        if d.span is None:
            continue
        start, end = d.span
        assert 0 <= start < end <= len(row["raw_output"]), (row["id"], d)
        matched = row["raw_output"][start:end]
        if row["task"] == "mc":
            option = normalize_freeform(s.choices[s.choice_labels().index(d.answer)])
            assert matched.upper() == d.answer or normalize_freeform(matched) == option, (row["id"], d, matched)
