"""Extractor accuracy on the hand-labelled corpus of real SmolLM2 / Gemma outputs
(tests/fixtures/extraction_corpus, README there): a floor per task type and policy.

The floors are the accuracy measured when extraction v2 was written (benchmarks/extraction_accuracy.py
prints the table) minus about 3 points, so a rule change that loses a few outputs of one task type
fails here; raise them when the extractor improves."""

from __future__ import annotations

import pytest

from jobs.answers import extract, extract_detail, is_correct, normalize_freeform
from jobs.types import Sample
from tests.helpers import extraction_corpus

CORPUS = extraction_corpus()
# measured at v2 (405 outputs): strict 97.8 / 100 / 94.4 / 100, flexible 85.6 / 97.2 / 88.9 / 97.8 (%)
FLOORS = {
    ("numeric", "strict"): 0.95,
    ("numeric", "flexible"): 0.82,
    ("mc", "strict"): 0.97,
    ("mc", "flexible"): 0.94,
    ("yesno", "strict"): 0.91,
    ("yesno", "flexible"): 0.85,
    ("freeform", "strict"): 0.97,
    ("freeform", "flexible"): 0.93,
}


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
    assert len(CORPUS) >= 300 and len({r["id"] for r in CORPUS}) == len(CORPUS)
    assert {r["task"] for r in CORPUS} == {"numeric", "mc", "yesno", "freeform"}
    assert {r["model"] for r in CORPUS} == {"smollm2-135m", "gemma3-270m"}
    for task in ("numeric", "mc", "yesno", "freeform"):
        assert sum(r["task"] == task for r in CORPUS) >= 40


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


@pytest.mark.parametrize("task,policy", sorted(FLOORS))
def test_accuracy_floor_per_task_type(task, policy):
    rows = [r for r in CORPUS if r["task"] == task]
    hits = [extract(r["raw_output"], _sample(r), policy) == r[f"gold_extracted_{policy}"] for r in rows]
    accuracy = sum(hits) / len(rows)
    missed = [r["id"] for r, h in zip(rows, hits) if not h]
    assert accuracy >= FLOORS[(task, policy)], (
        f"{task}/{policy}: {accuracy:.3f} < {FLOORS[(task, policy)]}; missed {missed}"
    )


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
