"""StrategyQA: yes/no questions needing implicit multi-step reasoning.

``bigbench`` (task.json, 2,290) is the version the literature evaluates (it is the official *train*
question set; test labels are hidden). ``train``/``dev`` are the authors' original-format split of the
same questions (2,061 + 229), so they are NOT disjoint from ``bigbench`` and there is no train split.
Gold: the ``target_scores`` key scored 1 ("Yes"/"No"); authors' files: ``answer`` boolean, id ``qid``.
"""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import DatasetAdapter, build_samples, make_sample, read_json_list, the_one_true, yes_no
from jobs.types import LoadResult

FILES = {
    "bigbench": "strategyqa/task.json",
    "train": "strategyqa/eladsegal/train.json",
    "dev": "strategyqa/eladsegal/dev.json",
}


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]
    if split == "bigbench":

        def make(index: int, row: dict):
            (winner,) = the_one_true(row["target_scores"])
            return make_sample(id=f"{split}-{index}", question=row["input"], task="yesno", gold=yes_no(winner))

        return build_samples(read_json_list(path, key="examples"), str(path), make)

    def make_authors(index: int, row: dict):
        return make_sample(id=row["qid"], question=row["question"], task="yesno", gold=yes_no(row["answer"]))

    return build_samples(read_json_list(path), str(path), make_authors)


ADAPTER = DatasetAdapter(
    name="strategyqa",
    task="yesno",
    splits={
        "bigbench": f"{FILES['bigbench']} (2290, BIG-bench)",
        "train": f"{FILES['train']} (2061, same questions as bigbench)",
        "dev": f"{FILES['dev']} (229, same questions as bigbench)",
    },
    eval_split="bigbench",
    train_split=None,
    parse=parse,
    description="StrategyQA implicit multi-step yes/no questions",
    group="commonsense",
)
