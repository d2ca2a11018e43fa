"""MathQA (official release files): AQuA-derived math problems, 5 options in one string.

``options`` is usually one string ``"a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) none of these"``;
a few rows (66 of test, 115 of dev) hold the Python repr of a list instead:
``"['a ) 12', 'b ) 15', ...]"``, sometimes with the marker doubled (``'a ) a ) 4 inches'``).
Gold: ``correct`` (lowercase a-e) -> uppercase letter. MathQA overlaps AQuA (same source problems).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from jobs.datasets.base import DatasetAdapter, RowError, build_samples, make_sample, read_json_list
from jobs.types import LoadResult

FILES = {"test": "mathqa/test.json", "dev": "mathqa/dev.json"}
LETTERS = "abcde"


def _strip_marker(text: str, letter: str) -> str:
    # "a ) a ) 4 inches" -> "4 inches": drop the marker as often as it repeats
    marker = re.compile(rf"^\s*{letter}\s*\)\s*")
    while marker.match(text):
        text = marker.sub("", text, count=1)
    return text.strip()


def split_options(options: str) -> list[str]:
    """The five option texts of a MathQA ``options`` field (either format above)."""
    if not isinstance(options, str):
        raise RowError(f"options is {type(options).__name__}, expected a string")
    text = options.strip()
    if text.startswith("["):
        try:
            items = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise RowError(f"options {options[:60]!r} looks like a list but does not parse") from None
        if not isinstance(items, list) or len(items) != len(LETTERS):
            raise RowError(f"wrong option count: expected {len(LETTERS)} options in {options[:60]!r}")
        for letter, item in zip(LETTERS, items):
            if not isinstance(item, str) or not re.match(rf"^\s*{letter}\s*\)", item):
                raise RowError(f"option {item!r} does not start with '{letter} )'")
        return [_strip_marker(item, letter) for letter, item in zip(LETTERS, items)]
    # Find "a ) " at the start, then ", b ) ", ", c ) " ... in order; texts may contain commas.
    starts = []
    position = 0
    for i, letter in enumerate(LETTERS):
        pattern = re.compile(rf"^\s*{letter}\s*\)\s*" if i == 0 else rf"\s*,\s*{letter}\s*\)\s*")
        match = pattern.match(text) if i == 0 else pattern.search(text, position)
        if not match:
            raise RowError(f"wrong option count: no option '{letter} )' in {options[:80]!r}")
        starts.append(match)
        position = match.end()
    texts = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        texts.append(_strip_marker(text[match.end() : end], LETTERS[i]))
    return texts


def parse(root: Path, split: str) -> LoadResult:
    path = root / FILES[split]

    def make(index: int, row: dict):
        correct = row["correct"]
        if not isinstance(correct, str) or correct.strip().lower() not in LETTERS:
            raise RowError(f"correct {correct!r} is not a letter a-e")
        return make_sample(
            id=f"{split}-{index}",
            question=row["Problem"],
            task="mc",
            gold=correct.strip().upper(),
            choices=split_options(row["options"]),
            n_choices=5,
            meta={"category": row.get("category")},
        )

    return build_samples(read_json_list(path), str(path), make)


ADAPTER = DatasetAdapter(
    name="mathqa",
    task="mc",
    splits={"test": f"{FILES['test']} (2985)", "dev": f"{FILES['dev']} (4475)"},
    eval_split="test",
    train_split="dev",
    parse=parse,
    description="MathQA math word problems (AQuA-derived), 5 options",
    group="math",
)
