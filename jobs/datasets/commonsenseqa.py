"""CommonsenseQA v1.11 (random split): 5-option commonsense questions.

Test labels are hidden, so ``dev`` is the evaluation split in the literature (Kojima et al.'s 1,221).
"""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import DatasetAdapter, ai2_mc_sample, build_samples, read_jsonl
from jobs.types import LoadResult

FILES = {"dev": "commonsenseqa/dev_rand_split.jsonl", "train": "commonsenseqa/train_rand_split.jsonl"}


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]

    def make(index: int, row: dict):
        return ai2_mc_sample(index, row, n_choices=5, meta={"concept": row["question"].get("question_concept")})

    return build_samples(read_jsonl(path), str(path), make)


ADAPTER = DatasetAdapter(
    name="commonsenseqa",
    task="mc",
    splits={"dev": f"{FILES['dev']} (1221)", "train": f"{FILES['train']} (9741)"},
    eval_split="dev",
    train_split="train",
    parse=parse,
    description="CommonsenseQA v1.11 commonsense questions, 5 options",
    group="commonsense",
)
