"""Dataset adapters: the first stage of ``jobs/``.

Where this sits in the flow: the orchestrator's config names a dataset key (same key in
``conf/dataset/<key>.yaml``, Parquet columns and MLflow tags); an actor calls :func:`load_samples`
to get normalized :class:`~jobs.types.Sample` objects, which ``jobs/prompts.py`` turns into chat
messages and ``jobs/answers.py`` scores against ``Sample.gold``.

The real files live in the shared ``datasets/`` folder (see its MANIFEST.md), never in the repo;
:func:`default_data_root` finds it, and every loader takes an explicit ``root`` that wins.

To add a dataset:
1. write ``jobs/datasets/<key>.py`` with a ``parse(root, split) -> LoadResult`` and
   ``ADAPTER = DatasetAdapter(...)`` (use the readers and ``make_sample`` in ``base.py``, which
   validate rows and turn bad ones into ``Malformed`` records; ``group`` places it for the
   cross-group calibration split);
2. add one line ``"<key>": "jobs.datasets.<key>:ADAPTER"`` to ``DATASETS`` below.
Datasets that exist only on the Hugging Face hub or as a local jsonl/parquet/csv can use
``jobs.datasets.hub`` (a ``FieldMapping`` from columns to Sample fields) instead.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from jobs.datasets.base import DatasetAdapter, LoadResult, default_data_root, resolve_root
from jobs.datasets.conf import DatasetConf
from jobs.registry import Registry

DATASETS = Registry(
    "dataset",
    {
        "gsm8k": "jobs.datasets.gsm8k:ADAPTER",
        "multiarith": "jobs.datasets.mawps:MULTIARITH",
        "addsub": "jobs.datasets.mawps:ADDSUB",
        "singleeq": "jobs.datasets.mawps:SINGLEEQ",
        "aqua": "jobs.datasets.aqua:ADAPTER",
        "mathqa": "jobs.datasets.mathqa:ADAPTER",
        "commonsenseqa": "jobs.datasets.commonsenseqa:ADAPTER",
        "strategyqa": "jobs.datasets.strategyqa:ADAPTER",
        "arc_easy": "jobs.datasets.arc:ARC_EASY",
        "arc_challenge": "jobs.datasets.arc:ARC_CHALLENGE",
        "piqa": "jobs.datasets.piqa:ADAPTER",
        "social_iqa": "jobs.datasets.social_iqa:ADAPTER",
        "hellaswag": "jobs.datasets.hellaswag:ADAPTER",
        "winogrande": "jobs.datasets.winogrande:ADAPTER",
        "boolq": "jobs.datasets.boolq:ADAPTER",
        "mmlu": "jobs.datasets.mmlu:ADAPTER",
        "truthfulqa": "jobs.datasets.truthfulqa:ADAPTER",
        "date_understanding": "jobs.datasets.date_understanding:ADAPTER",
        "coin_flip": "jobs.datasets.coin_flip:ADAPTER",
        "last_letters": "jobs.datasets.last_letters:ADAPTER",
    },
)

#: The paper's fourteen datasets, in its order (``conf/grid/paper.yaml``).
PAPER_DATASETS: tuple[str, ...] = (
    "gsm8k",
    "aqua",
    "multiarith",
    "svamp",
    "commonsenseqa",
    "hellaswag",
    "openbookqa",
    "piqa",
    "truthfulqa",
    "winogrande",
    "boolq",
    "social_iqa",
    "coqa",
    "mmlu",
)
#: Built-in stand-ins for the three of them that only the Hugging Face hub has (SVAMP, OpenBookQA,
#: CoQA are not in the shared folder): the paper's grid shape offline.
PAPER_STAND_INS = {"svamp": "addsub", "openbookqa": "arc_easy", "coqa": "strategyqa"}
#: The paper's fourteen with the stand-ins in place, in its order: every one a built-in adapter.
PAPER_DATASETS_OFFLINE: tuple[str, ...] = tuple(PAPER_STAND_INS.get(d, d) for d in PAPER_DATASETS)


def dataset_group(dc: DatasetConf) -> str | None:
    """A resolved dataset config's group: its own ``group``, else its adapter's
    (``DatasetAdapter.group``), else None (a hub / local / questions dataset that names none)."""
    if dc.group:
        return dc.group
    key = dc.adapter or dc.name or ""
    return DATASETS.get(key).group if key in DATASETS else None


def load_samples(
    name: str,
    split: str | None = None,
    root: Path | str | None = None,
    limit: int | None = None,
    seed: int = 0,
    exclude_ids: set[str] | frozenset[str] = frozenset(),
) -> LoadResult:
    """Load normalized samples of one dataset split.

    name:        registry key (unknown -> ``jobs.registry.UnknownNameError`` with "did you mean").
    split:       split name; None = the adapter's ``eval_split``. Unknown -> ValueError listing splits.
    root:        the shared ``datasets/`` folder; None = :func:`default_data_root`.
    limit:       keep a deterministic subsample of this many samples (after dropping ``exclude_ids``):
                 ids are shuffled with ``numpy.random.default_rng(seed)``, the first ``limit`` kept,
                 and file order restored. Same (name, split, limit, seed, exclude_ids) -> same ids.
    exclude_ids: sample ids to drop (e.g. the ones used for calibration).

    Returns a fresh LoadResult: the parsed file is cached per process (key: name, root, split), the
    lists are copied; Samples are frozen but share their ``meta`` dicts with the cache.
    """
    adapter: DatasetAdapter = DATASETS.get(name)
    split = adapter.eval_split if split is None else split
    if split not in adapter.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; valid splits: {', '.join(adapter.splits)}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
    parsed = _parse_cached(name, str(resolve_root(root)), split)
    samples = [s for s in parsed.samples if s.id not in exclude_ids]
    if limit is not None and limit < len(samples):
        order = np.random.default_rng(seed).permutation(len(samples))
        keep = np.sort(order[:limit])
        samples = [samples[i] for i in keep]
    return LoadResult(samples=samples, malformed=list(parsed.malformed))


@cache
def _parse_cached(name: str, root: str, split: str) -> LoadResult:
    adapter: DatasetAdapter = DATASETS.get(name)
    return adapter.parse(Path(root), split)


__all__ = [
    "DATASETS",
    "PAPER_DATASETS",
    "PAPER_DATASETS_OFFLINE",
    "PAPER_STAND_INS",
    "DatasetAdapter",
    "dataset_group",
    "default_data_root",
    "load_samples",
]
