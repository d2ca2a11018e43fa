"""Date Understanding (BIG-bench): infer a date, 5-6 MM/DD/YYYY options.

``bigbench`` (task.json, 369): options are the keys of ``target_scores``; the true date comes first in
364 of 369 rows, so options are reordered by a fixed per-sample permutation (as in ``truthfulqa``;
``meta["original_gold_index"]`` keeps the file position). ``bbh`` (250) is the BIG-Bench Hard subset
of the same questions with options inlined ("Options:\\n(A) ...") and target "(B)"; it is already
mixed, so it keeps its order. No train split (bbh is a subset of bigbench).
"""

from __future__ import annotations

import re
from pathlib import Path

from jobs.datasets.base import (
    DatasetAdapter,
    RowError,
    build_samples,
    make_sample,
    read_json_list,
    shuffled_mc_sample,
)
from jobs.types import CHOICE_LABELS, LoadResult

FILES = {"bigbench": "date_understanding/task.json", "bbh": "date_understanding/bbh/date_understanding.json"}
_BBH_OPTION = re.compile(r"^\(([A-Z])\)\s*(.*)$")


def parse_bbh_input(text: str) -> tuple[str, list[str]]:
    """(question, options) of a BBH input "question\\nOptions:\\n(A) x\\n(B) y..."."""
    if not isinstance(text, str) or "\nOptions:\n" not in text:
        raise RowError("input has no 'Options:' block")
    question, block = text.split("\nOptions:\n", 1)
    options = []
    for i, line in enumerate(block.strip().splitlines()):
        match = _BBH_OPTION.match(line.strip())
        if not match or match.group(1) != CHOICE_LABELS[i]:
            raise RowError(f"option line {line!r} is not '({CHOICE_LABELS[i]}) ...'")
        options.append(match.group(2))
    return question, options


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]
    if split == "bbh":

        def make_bbh(index: int, row: dict):
            question, options = parse_bbh_input(row["input"])
            target = re.fullmatch(r"\(([A-Z])\)", str(row["target"]).strip())
            if not target:
                raise RowError(f"target {row['target']!r} is not '(X)'")
            return make_sample(
                id=f"{split}-{index}",
                question=question,
                task="mc",
                gold=target.group(1),
                choices=options,
                n_choices=(5, 6),
            )

        return build_samples(read_json_list(path, key="examples"), str(path), make_bbh)

    def make(index: int, row: dict):
        return shuffled_mc_sample("date_understanding", split, index, row, "input", row["target_scores"], (5, 6))

    return build_samples(read_json_list(path, key="examples"), str(path), make)


ADAPTER = DatasetAdapter(
    name="date_understanding",
    task="mc",
    splits={
        "bigbench": f"{FILES['bigbench']} (369, options shuffled)",
        "bbh": f"{FILES['bbh']} (250, BIG-Bench Hard subset)",
    },
    eval_split="bigbench",
    train_split=None,
    parse=parse,
    description="BIG-bench Date Understanding, 5-6 date options (options shuffled)",
    group="other",
)
