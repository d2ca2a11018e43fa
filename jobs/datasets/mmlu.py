"""MMLU (hendrycks test): 57 subjects, 4 options A-D, one headerless CSV per subject and split.

Rows are ``question, A, B, C, D, answer``; fields may hold commas and newlines (real CSV parser).
id = ``<subject>-<row>``, subject also in ``meta["subject"]``. ``dev`` is the standard 5-shot pool
(5 per subject); ``val`` is for calibration.
"""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import DatasetAdapter, RowError, build_samples, make_sample, read_csv_rows
from jobs.types import LoadResult

SPLITS = {"test": 14042, "dev": 285, "val": 1531}


def parse(root: Path, split: str) -> LoadResult:
    folder = root / "mmlu" / split
    files = sorted(folder.glob(f"*_{split}.csv"))
    if not files:
        raise FileNotFoundError(f"no MMLU files matching {folder / f'*_{split}.csv'}")
    result = LoadResult(samples=[])
    for path in files:
        subject = path.name[: -len(f"_{split}.csv")]

        def make(index: int, row: list[str], subject: str = subject):
            if len(row) != 6:
                raise RowError(f"wrong column count: {len(row)} columns, expected 6")
            answer = row[5].strip()
            if answer not in ("A", "B", "C", "D"):
                raise RowError(f"answer {row[5]!r} is not a letter A-D")
            return make_sample(
                id=f"{subject}-{index}",
                question=row[0],
                task="mc",
                gold=answer,
                choices=row[1:5],
                n_choices=4,
                meta={"subject": subject},
            )

        part = build_samples(read_csv_rows(path), str(path), make)
        result.samples.extend(part.samples)
        result.malformed.extend(part.malformed)
    return result


ADAPTER = DatasetAdapter(
    name="mmlu",
    task="mc",
    splits={split: f"mmlu/{split}/<subject>_{split}.csv (57 files, {n})" for split, n in SPLITS.items()},
    eval_split="test",
    train_split="val",
    parse=parse,
    description="MMLU 57-subject knowledge questions, 4 options",
    group="knowledge",
)
