"""MultiArith, AddSub and SingleEq: the MAWPS-style word-problem sets of Kojima et al.'s
zero_shot_cot copy, numeric answer. One JSON list per set (``iIndex``, ``sQuestion``,
``lSolutions``); the whole file is the evaluation set (no train split here). Gold:
``lSolutions[0]``; id: ``iIndex``. The three share one reader; each is one ``mawps_adapter`` line.
"""

from __future__ import annotations

from pathlib import Path

from jobs.datasets.base import DatasetAdapter, build_samples, mawps_sample, read_json_list
from jobs.types import LoadResult


def mawps_adapter(name: str, file: str, n: int, description: str, group: str | None) -> DatasetAdapter:
    """The adapter of one MAWPS-style set stored at ``<root>/<file>`` with ``n`` problems, in ``group``."""

    def parse(root: Path, split: str) -> LoadResult:
        path = root / file
        return build_samples(read_json_list(path), str(path), mawps_sample)

    return DatasetAdapter(
        name=name,
        task="numeric",
        splits={"test": f"{file} ({n}, the whole set)"},
        eval_split="test",
        train_split=None,
        parse=parse,
        description=description,
        group=group,
    )


MULTIARITH = mawps_adapter(
    "multiarith",
    "multiarith/MultiArith.json",
    600,
    "MultiArith arithmetic word problems (Roy & Roth 2015), numeric answer",
    group="math",
)
ADDSUB = mawps_adapter(
    "addsub",
    "addsub/AddSub.json",
    395,
    "AddSub addition/subtraction word problems (Hosseini et al. 2014), numeric answer",
    group="math",
)
SINGLEEQ = mawps_adapter(
    "singleeq",
    "singleeq/questions.json",
    508,
    "SingleEq single-equation word problems (Koncel-Kedziorski et al. 2015), numeric answer",
    group="math",
)
