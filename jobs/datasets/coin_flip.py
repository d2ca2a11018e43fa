"""Coin Flip (Kojima et al.): is the coin still heads up after people flip / do not flip it?

Synthetic instance of 500 (all used for evaluation); no ids (id = ``test-<row>``), no train split.
Gold: ``answer`` (yes/no).
"""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import DatasetAdapter, build_samples, make_sample, read_json_list, yes_no
from jobs.types import LoadResult

FILES = {"test": "coin_flip/coin_flip.json"}


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]

    def make(index: int, row: dict):
        return make_sample(id=f"{split}-{index}", question=row["question"], task="yesno", gold=yes_no(row["answer"]))

    return build_samples(read_json_list(path, key="examples"), str(path), make)


ADAPTER = DatasetAdapter(
    name="coin_flip",
    task="yesno",
    splits={"test": f"{FILES['test']} (500)"},
    eval_split="test",
    train_split=None,
    parse=parse,
    description="Coin Flip state tracking, yes/no (Kojima et al. instance)",
    group="symbolic",
)
