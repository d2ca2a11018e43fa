"""Dataset adapter type, data-root discovery, sample loading and the shared row readers.

An adapter turns the real benchmark files under the shared ``datasets/`` folder into normalized
:class:`~jobs.types.Sample` objects. Gold answers are normalized once, here, so that answer extraction
(``jobs/answers.py``) compares like with like:

- numeric:  canonical number string ("1,450,000" -> "1450000", "39.0" -> "39", "1.50" -> "1.5")
- mc:       choice letter "A".."Z" in the order of ``Sample.choices``
- yesno:    "yes" / "no"
- freeform: the reference string, stripped

A row that cannot be turned into a Sample (missing field, unparseable gold, wrong option count,
duplicate id, invalid JSON) becomes a :class:`~jobs.types.Malformed` record with a reason; it never
raises. A missing *file* does raise (FileNotFoundError): that is a broken install, not a bad row.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from jobs.types import CHOICE_LABELS, TASK_TYPES, LoadResult, Malformed, Sample

Parser = Callable[[Path, str], LoadResult]


@dataclass(frozen=True)
class DatasetAdapter:
    """How to read one benchmark from the shared data folder.

    name:        registry key (same key in YAML, Parquet and MLflow).
    task:        numeric | mc | yesno | freeform.
    splits:      split name -> file(s) relative to the data root, with a short note (docs / errors).
    eval_split:  the split the literature evaluates on.
    train_split: a split disjoint from ``eval_split`` for probe training / calibration; None if the
                 shared folder has none.
    parse:       ``parse(root, split) -> LoadResult``; ``root`` is the ``datasets/`` folder.
    description: one line for humans.
    group:       the dataset's group (math | commonsense | knowledge | reading | symbolic | other, or a
                 new one), or None for none. The fully out-of-domain calibration split
                 (``calibration.splits: [cross_group]``) calibrates on one group and applies on
                 another; a dataset without a group takes no part in it. The paper's split is math <->
                 commonsense; the other groups follow Kojima et al. (zero-shot CoT: arithmetic,
                 commonsense, symbolic, other reasoning). A dataset config's ``group`` wins
                 (``jobs.datasets.dataset_group``).
    """

    name: str
    task: str
    splits: dict[str, str] = field(hash=False)
    eval_split: str
    train_split: str | None
    parse: Parser
    description: str
    group: str | None

    def __post_init__(self) -> None:
        if self.group is not None and (not isinstance(self.group, str) or not self.group.strip()):
            raise ValueError(f"dataset {self.name!r}: group must be a non-empty name or None, got {self.group!r}")
        if self.task not in TASK_TYPES:
            raise ValueError(f"dataset {self.name!r}: task {self.task!r} is not one of {', '.join(TASK_TYPES)}")
        for role, split in (("eval_split", self.eval_split), ("train_split", self.train_split)):
            if split is not None and split not in self.splits:
                raise ValueError(
                    f"dataset {self.name!r}: {role} {split!r} is not a split; valid: {', '.join(self.splits)}"
                )
        if self.train_split == self.eval_split:
            raise ValueError(f"dataset {self.name!r}: train_split must differ from eval_split {self.eval_split!r}")


# ----------------------------------------------------------------------------------------------
# Data root
# ----------------------------------------------------------------------------------------------


def default_data_root() -> Path:
    """The shared ``datasets/`` folder: the first ``shared/datasets`` found walking up from this file,
    then from the current directory (the repo lives at ``X/main``, the data at ``X/shared/datasets``).

    Raises FileNotFoundError naming every path tried. An explicit ``root`` argument to the loading
    functions always wins over this default.
    """
    tried: list[Path] = []
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "datasets"
            if candidate in tried:
                continue
            tried.append(candidate)
            if candidate.is_dir():
                return candidate
    raise FileNotFoundError(
        "no shared datasets folder found; pass root= explicitly. Tried: " + ", ".join(str(p) for p in tried)
    )


def resolve_root(root: Path | str | None) -> Path:
    return Path(root) if root is not None else default_data_root()


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Row -> Sample
# ----------------------------------------------------------------------------------------------


class RowError(ValueError):
    """A problem with one row; its message becomes the Malformed reason."""


def build_samples(rows: Iterable[tuple[int, Any]], source: str, make: Callable[[int, Any], Sample]) -> LoadResult:
    """Apply ``make(row_index, row)`` to every row, collecting failures as Malformed.

    ``rows`` may yield a :class:`RowError` instead of a row (e.g. invalid JSON on that line).
    Only row-shaped errors are caught (missing key, wrong type, bad value); anything else is a bug
    and propagates. Duplicate ids are reported as malformed (the later row is dropped).
    """
    samples: list[Sample] = []
    malformed: list[Malformed] = []
    first_row: dict[str, int] = {}
    for index, row in rows:
        try:
            if isinstance(row, RowError):
                raise row
            sample = make(index, row)
        except RowError as exc:
            malformed.append(Malformed(source, index, str(exc)))
            continue
        except KeyError as exc:
            malformed.append(Malformed(source, index, f"missing field {exc.args[0]!r}"))
            continue
        except (ValueError, TypeError, IndexError) as exc:  # e.g. a list where a dict was expected
            malformed.append(Malformed(source, index, f"{type(exc).__name__}: {exc}"))
            continue
        if sample.id in first_row:
            malformed.append(
                Malformed(source, index, f"duplicate id {sample.id!r} (first at row {first_row[sample.id]})")
            )
            continue
        first_row[sample.id] = index
        samples.append(sample)
    return LoadResult(samples=samples, malformed=malformed)


def make_sample(
    *,
    id: Any,
    question: Any,
    task: str,
    gold: str,
    choices: Iterable[Any] = (),
    context: Any = None,
    aliases: Iterable[str] = (),
    meta: dict | None = None,
    n_choices: int | tuple[int, int] | None = None,
) -> Sample:
    """Validate and build a Sample; raise RowError on anything a benchmark row should not have.

    n_choices: exact option count, or an inclusive (min, max) range, for mc rows.
    ``gold`` must already be normalized (see :func:`canonical_number`, :func:`letter_from_index`,
    :func:`yes_no`); it is checked against the task here.
    """
    if id is None or str(id).strip() == "":
        raise RowError("empty id")
    question = require_text(question, "question")
    choices = tuple(require_text(c, f"choice {i + 1}") for i, c in enumerate(choices))
    if task == "mc":
        lo, hi = (n_choices, n_choices) if isinstance(n_choices, int) else (n_choices or (2, len(CHOICE_LABELS)))
        if not lo <= len(choices) <= hi:
            want = str(lo) if lo == hi else f"{lo}-{hi}"
            raise RowError(f"wrong option count: {len(choices)} options, expected {want}")
        labels = CHOICE_LABELS[: len(choices)]
        if gold not in labels:
            raise RowError(f"gold {gold!r} is not one of the choice letters {', '.join(labels)}")
    elif choices:
        raise RowError(f"{task} row has choices")
    elif task == "numeric":
        if gold != canonical_number(gold):
            raise RowError(f"numeric gold {gold!r} is not canonical")
    elif task == "yesno":
        if gold not in ("yes", "no"):
            raise RowError(f"yes/no gold {gold!r} is not 'yes' or 'no'")
    elif task == "freeform":
        gold = require_text(gold, "gold")
    else:
        raise ValueError(f"task {task!r} is not one of {', '.join(TASK_TYPES)}")
    if context is not None:
        context = require_text(context, "context")
    return Sample(
        id=str(id),
        question=question,
        task=task,
        gold=gold,
        choices=choices,
        context=context,
        aliases=tuple(aliases),
        meta=dict(meta or {}),
    )


def require_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RowError(f"{what} is {type(value).__name__}, expected a string")
    text = value.strip()
    if not text:
        raise RowError(f"empty {what}")
    return text


# ----------------------------------------------------------------------------------------------
# Gold normalization
# ----------------------------------------------------------------------------------------------


def canonical_number(value: Any) -> str:
    """Canonical string of a number: commas and spaces dropped, integral values without a decimal point,
    other decimals without trailing zeros ("1,450,000" -> "1450000", "39.0" -> "39", "1.50" -> "1.5",
    "-0" -> "0"). Raise RowError if it is not a finite number."""
    if isinstance(value, bool):
        raise RowError(f"gold {value!r} is a boolean, expected a number")
    text = repr(value) if isinstance(value, float) else str(value)
    text = text.strip().replace(",", "").replace(" ", "")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise RowError(f"gold {value!r} is not a number") from None
    if not number.is_finite():
        raise RowError(f"gold {value!r} is not a finite number")
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def letter_from_index(index: int, n_choices: int) -> str:
    """0-based option index -> letter; RowError if out of range."""
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_choices:
        raise RowError(f"gold index {index!r} out of range for {n_choices} options")
    return CHOICE_LABELS[index]


def parse_int_label(text: Any, what: str = "label") -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise RowError(f"{what} {text!r} is not an integer") from None


def yes_no(value: Any) -> str:
    """True/False, "yes"/"no", "true"/"false" (any case, trailing punctuation ignored) -> "yes"/"no"."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        word = value.strip().rstrip(".!").lower()
        if word in ("yes", "true"):
            return "yes"
        if word in ("no", "false"):
            return "no"
    raise RowError(f"gold {value!r} is not a yes/no value")


def the_one_true(scores: dict, what: str = "target_scores") -> list[str]:
    """Keys of a BIG-bench style ``{option: 0|1}`` dict, and check exactly one is 1."""
    if not isinstance(scores, dict) or not scores:
        raise RowError(f"{what} is not a non-empty dict")
    winners = [k for k, v in scores.items() if v == 1]
    if len(winners) != 1:
        raise RowError(f"{what} has {len(winners)} options scored 1, expected exactly 1")
    return winners


def stable_shuffle(n: int, key: str) -> list[int]:
    """A permutation of range(n) fixed by ``key`` (sha256, independent of numpy / Python versions).

    Used where a file always lists the gold option first (TruthfulQA MC1, BIG-bench date
    understanding): letter-answer prompts would otherwise reward always answering "A".
    """
    return sorted(range(n), key=lambda i: hashlib.sha256(f"{key}\x00{i}".encode()).digest())


def mc_from_scores(
    scores: dict, shuffle_key: str | None, what: str = "target_scores"
) -> tuple[tuple[str, ...], str, int]:
    """(choices, gold letter, original gold index) from an ``{option: 0|1}`` dict, optionally shuffled."""
    (winner,) = the_one_true(scores, what)
    options = list(scores)
    original = options.index(winner)
    if shuffle_key is not None:
        options = [options[i] for i in stable_shuffle(len(options), shuffle_key)]
    return tuple(options), letter_from_index(options.index(winner), len(options)), original


def shuffled_mc_sample(
    dataset: str,
    split: str,
    index: int,
    row: dict,
    question_key: str,
    scores: dict,
    n_choices: int | tuple[int, int] | None,
    what: str = "target_scores",
    meta: dict | None = None,
) -> Sample:
    """An mc row whose options are the keys of an ``{option: 0|1}`` dict, for files that put the true
    option first: id ``<split>-<index>``, question ``row[question_key]``, options reordered by a fixed
    per-sample permutation (keyed ``<dataset>:<id>``), ``meta["original_gold_index"]`` keeping the file
    position, then ``meta``. The options are checked before the question is read."""
    sample_id = f"{split}-{index}"
    choices, gold, original = mc_from_scores(scores, shuffle_key=f"{dataset}:{sample_id}", what=what)
    return make_sample(
        id=sample_id,
        question=row[question_key],
        task="mc",
        gold=gold,
        choices=choices,
        n_choices=n_choices,
        meta={"original_gold_index": original, **(meta or {})},
    )


# ----------------------------------------------------------------------------------------------
# File readers: yield (record_index, record) pairs for build_samples
# ----------------------------------------------------------------------------------------------


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"dataset file not found: {path}")
    return path


def read_jsonl(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, Any]]:
    """Non-empty lines of a JSON Lines file; an unparseable line yields a RowError in its place.

    Lines are decoded one by one, so one line that is not valid ``encoding`` (a stray Latin-1
    byte in a UTF-8 file) is one malformed row, named by its line number, and the rest are used.
    A file most of whose lines do not decode is in another encoding: that is a ``DataError``
    naming the file and the ``encoding:`` to declare in the dataset config.
    """
    from jobs.types import DataError

    rows: list[tuple[int, Any]] = []
    bad = 0
    with open(require_file(path), "rb") as fh:
        index = 0
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                bad += 1
                rows.append(
                    (
                        index,
                        RowError(
                            f"not valid {encoding}: byte 0x{raw[exc.start]:02x} at column "
                            f"{exc.start + 1} of line {lineno}; if the file uses another encoding, set "
                            f"`encoding:` in the dataset config"
                        ),
                    )
                )
                index += 1
                continue
            try:
                rows.append((index, json.loads(line)))
            except json.JSONDecodeError as exc:
                rows.append((index, RowError(f"invalid JSON: {exc.msg} at column {exc.colno} of line {lineno}")))
            index += 1
    if bad and bad * 2 > len(rows):
        raise DataError(
            f"{path}: {bad} of {len(rows)} lines are not valid {encoding}: the file is in another "
            f"encoding. Declare it in the dataset config, e.g. `encoding: latin-1` (or cp1252, utf-16)."
        )
    return iter(rows)


def read_json(path: Path) -> Any:
    with open(require_file(path), encoding="utf-8") as fh:
        return json.load(fh)


def read_json_list(path: Path, key: str | None = None) -> Iterator[tuple[int, Any]]:
    """Records of a JSON file holding a list (or ``{key: [...]}``)."""
    data = read_json(path)
    if key is not None:
        data = data[key]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list{f' under {key!r}' if key else ''}, got {type(data).__name__}")
    return enumerate(data)


def read_labels(path: Path) -> list[str]:
    """A line-aligned label file (``*-labels.lst``): one label per line."""
    with open(require_file(path), encoding="utf-8") as fh:
        return [line.strip() for line in fh.read().splitlines()]


def with_labels(rows: Iterable[tuple[int, Any]], labels: list[str]) -> Iterator[tuple[int, Any]]:
    """Pair each record with its label line; a record without a label line, or a label line without a
    record, becomes a RowError."""
    count = 0
    for index, row in rows:
        count = index + 1
        if isinstance(row, RowError):
            yield index, row
        elif index >= len(labels):
            yield index, RowError(f"no label line for row {index} (label file has {len(labels)} lines)")
        else:
            yield index, (row, labels[index])
    for index in range(count, len(labels)):
        yield index, RowError(f"label line {index} has no data row (data file has {count} rows)")


def read_csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Rows of a headerless CSV (fields may hold commas and newlines)."""
    with open(require_file(path), encoding="utf-8", newline="") as fh:
        yield from enumerate(csv.reader(fh))


def read_bz2_blocks(path: Path, size: int) -> Iterator[tuple[int, Any]]:
    """Consecutive blocks of ``size`` lines of a bz2 text file; a short last block is a RowError."""
    with bz2.open(require_file(path), "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # trailing newline
    for index, start in enumerate(range(0, len(lines), size)):
        block = lines[start : start + size]
        yield index, block if len(block) == size else RowError(f"truncated block: {len(block)} of {size} lines")


def labelled_jsonl_parser(files: Mapping[str, tuple[str, str]], make: Callable[[str, int, dict, str], Sample]):
    """A ``parse(root, split)`` for the sets that keep gold in a line-aligned label file beside their
    jsonl (PIQA, Social IQa, WinoGrande): ``files[split] = (jsonl, labels)``; ``make(split, index,
    row, label)`` builds one sample and raises RowError for a bad row."""

    def parse(root: Path, split: str) -> LoadResult:
        data, labels = (Path(root) / f for f in files[split])
        rows = with_labels(read_jsonl(data), read_labels(labels))
        return build_samples(rows, str(data), lambda index, pair: make(split, index, *pair))

    return parse


def mawps_sample(index: int, row: dict) -> Sample:
    """One record of the MAWPS-style JSON list (``iIndex``, ``sQuestion``, ``lSolutions``) shared by
    MultiArith, AddSub and SingleEq; the file's ``iIndex`` is the id."""
    solutions = row["lSolutions"]
    if not isinstance(solutions, list) or not solutions:
        raise RowError("lSolutions is not a non-empty list")
    return make_sample(
        id=row["iIndex"],
        question=row["sQuestion"],
        task="numeric",
        gold=canonical_number(solutions[0]),
    )


def ai2_mc_sample(index: int, row: dict, n_choices: int | tuple[int, int] | None, meta: dict | None = None) -> Sample:
    """One record of AI2's multiple-choice jsonl (CommonsenseQA, ARC): ``id``,
    ``question.stem``, ``question.choices[{label, text}]``, ``answerKey``.

    Options keep file order and are relabelled A, B, C... by position (a few ARC rows use "1".."4").
    """
    question = row["question"]
    options = question["choices"]
    if not isinstance(options, list):
        raise RowError("question.choices is not a list")
    labels = [str(option["label"]).strip() for option in options]
    key = str(row["answerKey"]).strip()
    if key not in labels:
        raise RowError(f"answerKey {key!r} is not one of the option labels {labels}")
    return make_sample(
        id=row["id"],
        question=question["stem"],
        task="mc",
        gold=letter_from_index(labels.index(key), len(labels)),
        choices=[option["text"] for option in options],
        n_choices=n_choices,
        meta=meta,
    )
