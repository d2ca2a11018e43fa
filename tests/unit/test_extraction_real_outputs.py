"""Answer extraction on real SmolLM2-135M-Instruct outputs (saved from a default-grid run),
labelled by hand under both policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.answers import extract, is_correct
from jobs.types import Sample

FIXTURES = [
    json.loads(x)
    for x in (Path(__file__).resolve().parents[1] / "fixtures" / "smollm2_outputs.jsonl").read_text().splitlines()
    if x.strip()
]


@pytest.mark.parametrize("case", FIXTURES, ids=[f"{c['dataset']}-{c['sample_id']}" for c in FIXTURES])
def test_extraction_matches_hand_labels(case):
    s = Sample(
        id=case["sample_id"], question="", task=case["task"], gold=case["gold"], choices=tuple(case["choices"] or ())
    )
    assert extract(case["raw_output"], s, "strict") == case["strict"]
    assert extract(case["raw_output"], s, "flexible") == case["flexible"]
    assert is_correct(case["flexible"], s) == (
        case["flexible"] is not None and float(case["flexible"]) == float(case["gold"])
        if case["task"] == "numeric"
        else case["flexible"] == case["gold"]
    )


def test_fixtures_cover_several_answer_types():
    assert {c["task"] for c in FIXTURES} == {"numeric", "mc", "yesno"} and len(FIXTURES) >= 25
