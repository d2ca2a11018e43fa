"""Last Letter Concatenation (Kojima et al.): concatenate the last letters of 4 names.

Synthetic instance of 500 (all used for evaluation); no ids (id = ``test-<row>``), no train split.
Gold: ``answer`` (exact-match 4-letter string).
"""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import DatasetAdapter, build_samples, make_sample, read_json_list, require_text
from jobs.types import LoadResult

FILES = {"test": "last_letters/last_letters.json"}


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]

    def make(index: int, row: dict):
        return make_sample(
            id=f"{split}-{index}",
            question=row["question"],
            task="freeform",
            gold=require_text(row["answer"], "answer").lower(),
        )

    return build_samples(read_json_list(path, key="examples"), str(path), make)


ADAPTER = DatasetAdapter(
    name="last_letters",
    task="freeform",
    splits={"test": f"{FILES['test']} (500)"},
    eval_split="test",
    train_split=None,
    parse=parse,
    description="Last Letter Concatenation of 4 names, free text (Kojima et al. instance)",
    group="symbolic",
)
