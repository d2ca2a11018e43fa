"""AQuA-RAT (deepmind/AQuA): algebra word problems, 5 options "A)32400" .. "E)...".

The files are JSON Lines although named ``.json``. Gold: ``correct`` (A-E). No ids in the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from jobs.datasets.base import DatasetAdapter, RowError, build_samples, make_sample, read_jsonl
from jobs.types import CHOICE_LABELS, LoadResult

FILES = {"test": "aqua/test.json", "dev": "aqua/dev.json"}
_OPTION = re.compile(r"^\s*([A-Z])\s*\)\s*(.*)$", re.S)


def split_options(options: list) -> list[str]:
    """["A)32400", "B)...", ...] -> option texts, checking the letters run A, B, C... in order."""
    if not isinstance(options, list):
        raise RowError(f"options is {type(options).__name__}, expected a list")
    texts = []
    for i, option in enumerate(options):
        match = _OPTION.match(option) if isinstance(option, str) else None
        if not match or match.group(1) != CHOICE_LABELS[i]:
            raise RowError(f"option {i + 1} {option!r} does not start with '{CHOICE_LABELS[i]})'")
        texts.append(match.group(2))
    return texts


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]

    def make(index: int, row: dict):
        gold = row["correct"]
        return make_sample(
            id=f"{split}-{index}",
            question=row["question"],
            task="mc",
            gold=gold.strip().upper() if isinstance(gold, str) else gold,
            choices=split_options(row["options"]),
            n_choices=5,
        )

    return build_samples(read_jsonl(path), str(path), make)


ADAPTER = DatasetAdapter(
    name="aqua",
    task="mc",
    splits={"test": f"{FILES['test']} (254)", "dev": f"{FILES['dev']} (254)"},
    eval_split="test",
    train_split="dev",
    parse=parse,
    description="AQuA-RAT algebra word problems, 5 options",
    group="math",
)
