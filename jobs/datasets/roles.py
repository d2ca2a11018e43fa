"""Which samples a work unit reads: the ``eval`` role and the ``fit`` role.

eval: the evaluated questions: ``limit`` of the dataset's eval split, subsampled by ``seed``.
fit:  questions kept apart from the evaluation for trained UQ methods (probes) and
      calibration: ``fit_limit`` questions of the adapter's train split when the shared
      folder has one; otherwise ``fit_limit`` rows of the eval split that are *not* among
      the evaluated ids (disjoint by construction; recorded as ``fit_source`` in summaries).
"""

from __future__ import annotations

import numpy as np

from jobs.conf import plain
from jobs.datasets.conf import DatasetConf, DatasetRunConf
from jobs.types import LoadResult, Malformed, Sample

ROLES = ("eval", "fit")
CUSTOM = ("hub", "local", "questions")  # adapters configured by the dataset config, not a registry entry


def _subsample(samples: list[Sample], limit, seed: int, exclude: set[str]) -> list[Sample]:
    samples = [s for s in samples if s.id not in exclude]
    if limit is not None and limit < len(samples):
        keep = np.sort(np.random.default_rng(seed).permutation(len(samples))[:limit])
        samples = [samples[i] for i in keep]
    return samples


def _load_custom(dc: DatasetConf) -> LoadResult:
    from jobs.datasets import hub

    if dc.adapter == "questions":
        from jobs.datasets.questions import load_questions

        return load_questions(dc.local_path, dc.name, dc.task, dc.encoding or "utf-8")
    mapping = hub.FieldMapping(**plain(dc.mapping))
    if dc.adapter == "hub":
        return hub.load_hub(dc.hub_path, dc.hub_config, dc.split or "test", mapping, dc.task, dc.name)
    return hub.load_local(dc.local_path, mapping, dc.task, dc.name, encoding=dc.encoding or "utf-8")


def fit_source(dc: DatasetConf) -> str:
    """Where the fit role comes from for this dataset config (for records and reports)."""
    if dc.adapter in CUSTOM:
        return "eval-disjoint"
    from jobs.datasets import DATASETS

    a = DATASETS.get(dc.adapter)
    return f"split:{dc.train_split or a.train_split}" if (dc.train_split or a.train_split) else "eval-disjoint"


def load_role(dc: DatasetConf, run: DatasetRunConf, role: str) -> tuple[list[Sample], list[Malformed]]:
    """dc: a resolved ``DatasetConf``; run: the grid's ``DatasetRunConf`` for it
    (``ResolvedGrid.dataset_run``); both read by attribute."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    root, seed = run.data_root, int(run.seed)
    if dc.adapter in CUSTOM:
        res = _load_custom(dc)
        evals = _subsample(res.samples, run.limit, seed, set())
        if role == "eval":
            return evals, res.malformed
        return _subsample(res.samples, run.fit_limit, seed + 1, {s.id for s in evals}), res.malformed

    from jobs.datasets import DATASETS, load_samples

    adapter = DATASETS.get(dc.adapter)
    eval_split = dc.split or adapter.eval_split
    ev = load_samples(dc.adapter, eval_split, root=root, limit=run.limit, seed=seed)
    if role == "eval":
        return ev.samples, ev.malformed
    train = dc.train_split or adapter.train_split
    if train:
        tr = load_samples(dc.adapter, train, root=root, limit=run.fit_limit, seed=seed)
        return tr.samples, tr.malformed
    full = load_samples(dc.adapter, eval_split, root=root, limit=None, seed=seed)
    return _subsample(full.samples, run.fit_limit, seed + 1, {s.id for s in ev.samples}), full.malformed
