"""Social IQa: social commonsense; a context, a question and 3 answers.

Labels live in line-aligned ``*-labels.lst`` files (1/2/3 -> answerA/B/C); no ids in the file.
Test labels are hidden, so ``dev`` is the evaluation split.
"""

from __future__ import annotations

from jobs.datasets.base import DatasetAdapter, labelled_jsonl_parser, letter_from_index, make_sample, parse_int_label
from jobs.types import Sample

FILES = {
    "dev": ("social_iqa/dev.jsonl", "social_iqa/dev-labels.lst"),
    "train": ("social_iqa/train.jsonl", "social_iqa/train-labels.lst"),
}


def _sample(split: str, index: int, row: dict, label: str) -> Sample:
    return make_sample(
        id=f"{split}-{index}",
        question=row["question"],
        context=row["context"],
        task="mc",
        gold=letter_from_index(parse_int_label(label) - 1, 3),
        choices=[row["answerA"], row["answerB"], row["answerC"]],
        n_choices=3,
    )


ADAPTER = DatasetAdapter(
    name="social_iqa",
    task="mc",
    splits={
        "dev": "social_iqa/dev.jsonl + dev-labels.lst (1954)",
        "train": "social_iqa/train.jsonl + train-labels.lst (33410)",
    },
    eval_split="dev",
    train_split="train",
    parse=labelled_jsonl_parser(FILES, _sample),
    description="Social IQa social commonsense, 3 options with context",
    group="commonsense",
)
