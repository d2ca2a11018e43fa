"""MultiArith (Kojima et al.'s zero_shot_cot copy): MultiArith arithmetic word problems (Roy & Roth 2015), numeric answer.

The whole file is the evaluation set (no train split here). Gold: ``lSolutions[0]``; id: ``iIndex``.
"""
from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import DatasetAdapter, build_samples, mawps_sample, read_json_list
from jobs.types import LoadResult

FILES = {"test": "multiarith/MultiArith.json"}


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]
    return build_samples(read_json_list(path), str(path), mawps_sample)


ADAPTER = DatasetAdapter(
    name="multiarith",
    task="numeric",
    splits={"test": f"{FILES['test']} (600, the whole set)"},
    eval_split="test",
    train_split=None,
    parse=parse,
    description="MultiArith arithmetic word problems (Roy & Roth 2015), numeric answer",
)
