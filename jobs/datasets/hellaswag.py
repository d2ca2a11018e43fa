"""HellaSwag validation: pick the most plausible of 4 endings.

Only available as a bz2 text rendering (6 lines per item: "activity: ctx", gold index 0-3, then the
4 endings); no ids (id = ``val-<item>``). Test labels are hidden, so ``val`` is the evaluation split;
no train split here.
"""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import (
    DatasetAdapter,
    build_samples,
    letter_from_index,
    make_sample,
    parse_int_label,
    read_bz2_blocks,
)
from jobs.types import LoadResult

FILES = {"val": "hellaswag/hellaswag_val_full.txt.bz2"}


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]

    def make(index: int, block: list[str]):
        context, label, *endings = block
        activity = context.split(":", 1)[0].strip()
        return make_sample(
            id=f"{split}-{index}",
            question=f"Which ending is the most plausible continuation of the text?\n{context.strip()}",
            task="mc",
            gold=letter_from_index(parse_int_label(label, "gold label"), 4),
            choices=endings,
            n_choices=4,
            meta={"activity": activity},
        )

    return build_samples(read_bz2_blocks(path, 6), str(path), make)


ADAPTER = DatasetAdapter(
    name="hellaswag",
    task="mc",
    splits={"val": f"{FILES['val']} (10042, 6 lines per item)"},
    eval_split="val",
    train_split=None,
    parse=parse,
    description="HellaSwag commonsense sentence completion, 4 endings",
    group="commonsense",
)
