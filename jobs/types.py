"""Plain data types shared by every stage of ``jobs/`` (no torch, no Ray)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jobs.errors import DataError  # noqa: F401  (re-exported: stages and dataset adapters import it from here)

TaskType = Literal["numeric", "mc", "yesno", "freeform"]
TASK_TYPES: tuple[str, ...] = ("numeric", "mc", "yesno", "freeform")
CHOICE_LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Sample:
    """One normalized benchmark question.

    id:       stable id within the dataset (row index based where the file has none).
    question: the question text (without options).
    task:     numeric | mc | yesno | freeform.
    gold:     normalized gold answer: a number string ("72", "39.5") for numeric, a choice
              letter ("A".."Z") for mc, "yes"/"no" for yesno, the reference text for freeform.
    choices:  option texts for mc, in label order A, B, C...; empty otherwise.
    context:  an optional passage shown before the question (BoolQ).
    aliases:  other acceptable answers for freeform questions.
    meta:     free-form extras (subject, source file) kept for reports.
    """

    id: str
    question: str
    task: str
    gold: str
    choices: tuple[str, ...] = ()
    context: str | None = None
    aliases: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def choice_labels(self) -> tuple[str, ...]:
        return tuple(CHOICE_LABELS[: len(self.choices)])


@dataclass
class Malformed:
    """A row that could not be turned into a Sample: counted and reported, never fatal."""

    source: str
    row: int
    reason: str


@dataclass
class LoadResult:
    samples: list[Sample]
    malformed: list[Malformed] = field(default_factory=list)
