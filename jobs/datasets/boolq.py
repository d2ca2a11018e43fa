"""BoolQ: yes/no questions about a Wikipedia passage (the passage becomes ``Sample.context``).

Questions are lowercase without a question mark in the file; we capitalize and add "?". The file's
own question and the article title stay in ``meta`` ("question_raw", "title"): the cloze format
(``jobs/cloze.py``, "boolq") rebuilds the SuperGLUE text lm-evaluation-harness scores from them.
Test labels are hidden, so ``dev`` is the evaluation split; train (>4 MiB) is absent.
"""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import DatasetAdapter, build_samples, make_sample, read_jsonl, require_text, yes_no
from jobs.types import LoadResult

FILES = {"dev": "boolq/dev.jsonl"}


def as_question(text: str) -> str:
    text = require_text(text, "question")
    return text[0].upper() + text[1:] + ("" if text.endswith("?") else "?")


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]

    def make(index: int, row: dict):
        return make_sample(
            id=f"{split}-{index}",
            question=as_question(row["question"]),
            context=row["passage"],
            task="yesno",
            gold=yes_no(row["answer"]),
            meta={"title": row.get("title"), "question_raw": row["question"]},
        )

    return build_samples(read_jsonl(path), str(path), make)


ADAPTER = DatasetAdapter(
    name="boolq",
    task="yesno",
    splits={"dev": f"{FILES['dev']} (3270)"},
    eval_split="dev",
    train_split=None,
    parse=parse,
    description="BoolQ yes/no questions with a passage",
    group="reading",
)
