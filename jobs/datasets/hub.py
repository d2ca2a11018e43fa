"""Samples from Hugging Face hub datasets or local jsonl/json/parquet/csv files, via a column mapping.

For benchmarks that have no adapter file: a :class:`FieldMapping` says which column holds the id,
question, gold, options and context, and how the gold is written (``gold_format``). :func:`load_hub`
and :func:`load_local` share one row -> Sample conversion (:func:`convert_rows`) with the same
validation and malformed-row reporting as the adapters in this package.

``datasets`` is imported lazily (it is slow to import and optional: ``pip install .[hub]``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.datasets.base import (
    RowError,
    build_samples,
    canonical_number,
    letter_from_index,
    make_sample,
    read_jsonl,
    require_file,
    require_text,
    yes_no,
)
from jobs.datasets.gsm8k import gsm8k_gold
from jobs.types import TASK_TYPES, LoadResult, Sample

GOLD_FORMATS: tuple[str, ...] = ("text", "letter", "index0", "index1", "bool", "number", "gsm8k")
# Which gold formats make sense for which task ("text" fits all).
_TASKS_FOR_FORMAT = {
    "text": TASK_TYPES,
    "letter": ("mc",),
    "index0": ("mc",),
    "index1": ("mc",),
    "bool": ("yesno",),
    "number": ("numeric",),
    "gsm8k": ("numeric",),
}
LOCAL_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".parquet", ".csv")


@dataclass(frozen=True)
class FieldMapping:
    """Where each Sample field comes from in a row. Field names may be dotted ("question.stem",
    "choices.text") to reach into nested dicts / lists.

    id:          column with a stable id; None -> ``<split>-<row>``.
    question:    column with the question text.
    gold:        column with the gold answer, written as ``gold_format`` says.
    choices:     mc only: one column holding a list of option texts, or a tuple of columns, one per option.
    context:     optional passage column (shown before the question).
    gold_format: text   - the answer itself (for mc: the text of one option);
                 letter - "A".."Z" (any case, "(B)" accepted);  index0 / index1 - option index;
                 bool   - true/false (bool, 0/1, "yes"/"no", "true"/"false") -> yes/no;
                 number - a number ("1,234" ok);  gsm8k - a GSM8K solution, answer after "####".
    """

    id: str | None = None
    question: str = "question"
    gold: str = "answer"
    choices: str | tuple[str, ...] | None = None
    context: str | None = None
    gold_format: str = "text"

    def __post_init__(self) -> None:
        if self.gold_format not in GOLD_FORMATS:
            raise ValueError(
                f"FieldMapping.gold_format: unknown value {self.gold_format!r}; valid: {', '.join(GOLD_FORMATS)}"
            )
        if self.choices is not None and not isinstance(self.choices, str):  # a list / ListConfig of fields
            object.__setattr__(self, "choices", tuple(str(f) for f in self.choices))

    def check(self, task: str) -> None:
        """Raise ValueError if this mapping cannot produce samples of ``task``."""
        if task not in TASK_TYPES:
            raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASK_TYPES)}")
        if task not in _TASKS_FOR_FORMAT[self.gold_format]:
            fits = [f for f, tasks in _TASKS_FOR_FORMAT.items() if task in tasks]
            raise ValueError(
                f"FieldMapping.gold_format {self.gold_format!r} does not fit task {task!r}; use one of {', '.join(fits)}"
            )
        if (task == "mc") != (self.choices is not None):
            raise ValueError(
                f"FieldMapping.choices must be set for task 'mc' and only for it (task {task!r}, choices {self.choices!r})"
            )


def get_field(row: Any, name: str) -> Any:
    """``row["a"]["b"]`` for ``name="a.b"`` (list items by integer position); KeyError(name) if absent."""
    value = row
    for part in name.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(name)
    return value


def normalize_gold(value: Any, fmt: str, task: str, choices: tuple[str, ...]) -> str:
    """A row's gold in the form ``jobs.answers`` compares with: an option letter (mc), a canonical
    number (numeric), yes/no (yesno), or the text. ``fmt`` says how the value is written (the
    ``gold_format`` of a FieldMapping)."""
    if fmt == "text":
        if task == "mc":
            text = require_text(value, "gold")
            matches = [i for i, c in enumerate(choices) if c.strip() == text]
            if len(matches) != 1:
                raise RowError(f"gold text {text[:60]!r} matches {len(matches)} options, expected exactly 1")
            return letter_from_index(matches[0], len(choices))
        if task == "numeric":
            return canonical_number(value)
        if task == "yesno":
            return yes_no(value)
        return require_text(value, "gold")
    if fmt == "letter":
        return require_text(value, "gold").strip("()").strip().upper()
    if fmt in ("index0", "index1"):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise RowError(f"gold {value!r} is not an integer index")
        return letter_from_index(value - (fmt == "index1"), len(choices))
    if fmt == "bool":
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            value = bool(value)
        return yes_no(value)
    if fmt == "number":
        return canonical_number(value)
    return gsm8k_gold(value)  # "gsm8k"


def row_to_sample(row: Any, index: int, mapping: FieldMapping, task: str, split: str) -> Sample:
    """One mapped row -> Sample (raises RowError / KeyError on a bad row; see build_samples)."""
    if not isinstance(row, dict):
        raise RowError(f"row is {type(row).__name__}, expected an object")
    choices: tuple[str, ...] = ()
    if mapping.choices is not None:
        raw = (
            get_field(row, mapping.choices)
            if isinstance(mapping.choices, str)
            else [get_field(row, f) for f in mapping.choices]
        )
        if not isinstance(raw, (list, tuple)):
            raise RowError(f"choices field {mapping.choices!r} is {type(raw).__name__}, expected a list")
        choices = tuple(require_text(c, f"choice {i + 1}") for i, c in enumerate(raw))
    sample_id = get_field(row, mapping.id) if mapping.id else f"{split}-{index}"
    return make_sample(
        id=sample_id,
        question=get_field(row, mapping.question),
        task=task,
        gold=normalize_gold(get_field(row, mapping.gold), mapping.gold_format, task, choices),
        choices=choices,
        context=get_field(row, mapping.context) if mapping.context else None,
    )


def convert_rows(
    rows: Iterable[tuple[int, Any]], mapping: FieldMapping, task: str, source: str, split: str
) -> LoadResult:
    """The shared conversion: ``(index, row dict)`` pairs -> LoadResult with malformed rows counted."""
    mapping.check(task)
    return build_samples(rows, source, lambda i, row: row_to_sample(row, i, mapping, task, split))


def load_hub(
    path: str,
    config_name: str | None,
    split: str,
    mapping: FieldMapping,
    task: str,
    name: str,
    **load_kwargs: Any,
) -> LoadResult:
    """Samples of one split of a ``datasets.load_dataset(path, config_name, split=split)`` dataset.

    name: the dataset key (used in the Malformed source label).
    load_kwargs: passed to ``load_dataset`` (e.g. ``data_files=``, ``cache_dir=``, ``revision=``).
    The hub is offline by default here (HF_HUB_OFFLINE=1 unless already set): on our machines a hub
    lookup hangs for about 50 s before failing. Set HF_HUB_OFFLINE=0 before the first import of
    ``datasets`` to download.
    """
    mapping.check(task)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets  # lazy: slow import, optional dependency

    data = datasets.load_dataset(path, config_name, split=split, **load_kwargs)
    source = f"{name}: hub {path}{'/' + config_name if config_name else ''} [{split}]"
    return convert_rows(enumerate(data), mapping, task, source, split)


def load_local(
    path: Path | str, mapping: FieldMapping, task: str, name: str, split: str | None = None, encoding: str = "utf-8"
) -> LoadResult:
    """Samples from a local ``.jsonl``, ``.json`` (a list, ``{"examples"|"data": [...]}`` or JSON Lines),
    ``.parquet`` or ``.csv`` (with a header row) file. ``split`` (default: the file stem) prefixes
    row-index ids."""
    mapping.check(task)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise ValueError(f"load_local: unsupported file type {suffix!r} of {path}; valid: {', '.join(LOCAL_SUFFIXES)}")
    require_file(path)
    split = split or path.stem
    return convert_rows(_read_local(path, suffix, encoding), mapping, task, f"{name}: {path}", split)


def _read_local(path: Path, suffix: str, encoding: str = "utf-8") -> Iterable[tuple[int, Any]]:
    if suffix == ".jsonl":
        return read_jsonl(path, encoding)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return enumerate(pq.read_table(path).to_pylist())
    if suffix == ".csv":
        try:
            with open(path, encoding=encoding, newline="") as fh:
                return list(enumerate(csv.DictReader(fh)))
        except UnicodeDecodeError as exc:
            raise _not_encoded(path, encoding, exc) from None
    try:
        data = json.loads(path.read_text(encoding=encoding))
    except UnicodeDecodeError as exc:
        raise _not_encoded(path, encoding, exc) from None
    except json.JSONDecodeError:
        return read_jsonl(path, encoding)  # JSON Lines named .json (e.g. AQuA)
    if isinstance(data, dict):
        lists = [data[k] for k in ("examples", "data") if isinstance(data.get(k), list)]
        if not lists:
            raise ValueError(f"{path}: a JSON object needs an 'examples' or 'data' list; keys: {', '.join(data)}")
        data = lists[0]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return enumerate(data)


def _not_encoded(path: Path, encoding: str, exc: UnicodeDecodeError):
    from jobs.types import DataError

    return DataError(
        f"{path}: not valid {encoding} (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}). "
        f"Declare the file's encoding in the dataset config, e.g. `encoding: latin-1`."
    )
