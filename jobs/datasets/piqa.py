"""PIQA: physical commonsense, pick the better of two solutions for a goal.

Labels live in the line-aligned ``valid-labels.lst`` (0 -> sol1, 1 -> sol2); no ids in the file.
Test labels are hidden and train (>4 MiB) is absent, so there is no train split here.
"""

from __future__ import annotations

from jobs.datasets.base import DatasetAdapter, labelled_jsonl_parser, letter_from_index, make_sample, parse_int_label
from jobs.types import Sample

FILES = {"valid": ("piqa/valid.jsonl", "piqa/valid-labels.lst")}


def _sample(split: str, index: int, row: dict, label: str) -> Sample:
    return make_sample(
        id=f"{split}-{index}",
        question=f"Which solution achieves the goal better?\nGoal: {row['goal'].strip()}",
        task="mc",
        gold=letter_from_index(parse_int_label(label), 2),
        choices=[row["sol1"], row["sol2"]],
        n_choices=2,
    )


ADAPTER = DatasetAdapter(
    name="piqa",
    task="mc",
    splits={"valid": "piqa/valid.jsonl + piqa/valid-labels.lst (1838)"},
    eval_split="valid",
    train_split=None,
    parse=labelled_jsonl_parser(FILES, _sample),
    description="PIQA physical commonsense, 2 solutions per goal",
    group="commonsense",
)
