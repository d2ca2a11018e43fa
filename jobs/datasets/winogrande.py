"""WinoGrande 1.1: fill the blank ``_`` in a sentence with one of two options.

Gold comes from the line-aligned ``*-labels.lst`` ("1"/"2"); the jsonl's own ``answer`` field must
agree. ``dev`` (= winogrande_xl validation) is the evaluation split. The train sizes are nested
(train_xs within train_s within train_m); ``train_m`` is the calibration split.
"""

from __future__ import annotations

from jobs.datasets.base import (
    DatasetAdapter,
    RowError,
    labelled_jsonl_parser,
    letter_from_index,
    make_sample,
    parse_int_label,
)
from jobs.types import Sample

FILES = {
    split: (f"winogrande/{split}.jsonl", f"winogrande/{split}-labels.lst")
    for split in ("dev", "train_xs", "train_s", "train_m")
}
COUNTS = {"dev": 1267, "train_xs": 160, "train_s": 640, "train_m": 2558}


def _sample(split: str, index: int, row: dict, label: str) -> Sample:
    if "answer" in row and str(row["answer"]).strip() != label:
        raise RowError(f"answer {row['answer']!r} disagrees with label line {label!r}")
    sentence = row["sentence"]
    if not isinstance(sentence, str) or sentence.count("_") != 1:
        raise RowError("sentence does not have exactly one blank '_'")
    return make_sample(
        id=row["qID"],
        question=f"Which option correctly fills the blank (_) in the sentence?\n{sentence.strip()}",
        task="mc",
        gold=letter_from_index(parse_int_label(label) - 1, 2),
        choices=[row["option1"], row["option2"]],
        n_choices=2,
    )


ADAPTER = DatasetAdapter(
    name="winogrande",
    task="mc",
    splits={split: f"{data} + {labels} ({COUNTS[split]})" for split, (data, labels) in FILES.items()},
    eval_split="dev",
    train_split="train_m",
    parse=labelled_jsonl_parser(FILES, _sample),
    description="WinoGrande 1.1 pronoun-style blank filling, 2 options",
    group="commonsense",
)
