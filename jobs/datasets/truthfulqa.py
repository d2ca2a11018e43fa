"""TruthfulQA MC1 (single true answer, 2-13 options) from ``mc_task.json``.

The file lists the true option FIRST in every row (817/817 in v1). A letter-answer prompt would then
reward always saying "A", so options are reordered by a fixed per-sample permutation
(:func:`~jobs.datasets.base.stable_shuffle` keyed by the sample id); ``meta["original_gold_index"]``
keeps the file position. No ids in the file (id = ``<split>-<row>``); the file is not in CSV order.
``v1`` is the 817-question version the literature uses; ``jan2025`` is the authors' 790-question revision,
in which 17 rows carry an empty-string *false* option: those empty options are dropped (counted in
``meta["dropped_empty_options"]``); an empty *true* option would still make the row malformed. No train split.
"""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import DatasetAdapter, RowError, build_samples, read_json_list, shuffled_mc_sample
from jobs.types import LoadResult

FILES = {"v1": "truthfulqa/v1/mc_task.json", "jan2025": "truthfulqa/jan2025/mc_task.json"}


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]

    def make(index: int, row: dict):
        targets = row["mc1_targets"]
        if not isinstance(targets, dict):
            raise RowError("mc1_targets is not a dict")
        kept = {option: score for option, score in targets.items() if score == 1 or option.strip()}
        dropped = {"dropped_empty_options": len(targets) - len(kept)}
        return shuffled_mc_sample("truthfulqa", split, index, row, "question", kept, (2, 13), "mc1_targets", dropped)

    return build_samples(read_json_list(path), str(path), make)


ADAPTER = DatasetAdapter(
    name="truthfulqa",
    task="mc",
    splits={"v1": f"{FILES['v1']} (817, MC1)", "jan2025": f"{FILES['jan2025']} (790, MC1)"},
    eval_split="v1",
    train_split=None,
    parse=parse,
    description="TruthfulQA MC1: pick the single true answer among 2-13 options (options shuffled)",
    group="knowledge",
)
