"""A JSON Lines file of questions, each row with its own task: calibration sets written by
``uqroute calibrate build``, and questions a user brings to ``uqroute calibrate apply``.

One row: ``{"id": ..., "question": ..., "task": "numeric|mc|yesno|freeform", "choices": [...]
(mc only), "context": ... (optional), "gold": ... (optional)}``; extra keys (source dataset,
uncertainty, ...) are kept in ``Sample.meta``. ``task`` may be left out when the dataset config
gives one for every row. Rows without ``gold`` are *unlabelled*: they can be answered and scored
for uncertainty, and are judged incorrect (their correctness is unknown; nothing that needs labels
should read them). A labelled ``gold`` is normalized like the adapters do (mc: a letter or an
option index; numeric: a number; yesno: yes/no or a bool).

Used through a dataset config ``adapter: questions`` with ``local_path`` (see
``jobs/datasets/roles.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.datasets.base import (
    RowError,
    build_samples,
    make_sample,
    read_jsonl,
)
from jobs.datasets.hub import normalize_gold
from jobs.types import TASK_TYPES, LoadResult, Sample

KNOWN_KEYS = ("id", "question", "task", "choices", "context", "gold")


def _gold(value: Any, task: str, choices: tuple[str, ...]) -> str:
    """Gold as written in a questions file: an option letter or a 0-based index (mc), a number, a
    yes/no or boolean, or the text; normalized by the hub loader's one normalizer."""
    if task == "mc":
        fmt = "index0" if isinstance(value, int) and not isinstance(value, bool) else "letter"
    else:
        fmt = {"numeric": "number", "yesno": "bool"}.get(task, "text")
    return normalize_gold(value, fmt, task, choices)


def row_sample(index: int, row: Any, default_task: str | None) -> Sample:
    if not isinstance(row, dict):
        raise RowError(f"row is {type(row).__name__}, expected an object")
    task = row.get("task") or default_task
    if task not in TASK_TYPES:
        raise RowError(f"task {task!r} is not one of {', '.join(TASK_TYPES)} (set it per row or in the dataset config)")
    choices = tuple(row.get("choices") or ())
    meta = {k: v for k, v in row.items() if k not in KNOWN_KEYS}
    sid = row.get("id", f"row-{index}")
    gold = row.get("gold")
    if gold is not None and gold != "":
        return make_sample(
            id=sid,
            question=row.get("question"),
            task=task,
            gold=_gold(gold, task, choices),
            choices=choices,
            context=row.get("context"),
            meta=meta,
        )
    # unlabelled: validate with a stand-in gold, then drop it
    stand_in = {"mc": "A", "numeric": "0", "yesno": "yes", "freeform": "?"}[task]
    s = make_sample(
        id=sid,
        question=row.get("question"),
        task=task,
        gold=stand_in,
        choices=choices,
        context=row.get("context"),
        meta=meta | {"unlabelled": True},
    )
    return Sample(id=s.id, question=s.question, task=s.task, gold="", choices=s.choices, context=s.context, meta=s.meta)


def load_questions(path: str | Path, name: str, default_task: str | None = None, encoding: str = "utf-8") -> LoadResult:
    """Samples of a questions file (see the module docstring); bad rows become Malformed."""
    path = Path(path).expanduser()
    return build_samples(read_jsonl(path, encoding), f"{name}: {path}", lambda i, row: row_sample(i, row, default_task))
