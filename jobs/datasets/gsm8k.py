"""GSM8K (openai/grade-school-math): grade-school math word problems, numeric answer.

Gold: the text after ``####`` on the last line of ``answer`` ("#### 1,450,000" -> "1450000").
"""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import DatasetAdapter, RowError, build_samples, canonical_number, make_sample, read_jsonl
from jobs.types import LoadResult

FILES = {"test": "gsm8k/test.jsonl", "train": "gsm8k/train.jsonl"}


def gsm8k_gold(answer: str) -> str:
    """The final answer after ``####`` in a GSM8K solution, as a canonical number string."""
    if not isinstance(answer, str) or "####" not in answer:
        raise RowError("answer has no '####' final-answer marker")
    return canonical_number(answer.rsplit("####", 1)[1].strip())


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]

    def make(index: int, row: dict):
        return make_sample(
            id=f"{split}-{index}", question=row["question"], task="numeric", gold=gsm8k_gold(row["answer"])
        )

    return build_samples(read_jsonl(path), str(path), make)


ADAPTER = DatasetAdapter(
    name="gsm8k",
    task="numeric",
    splits={"test": f"{FILES['test']} (1319)", "train": f"{FILES['train']} (7473)"},
    eval_split="test",
    train_split="train",
    parse=parse,
    description="GSM8K grade-school math word problems (numeric answer)",
    group="math",
)
