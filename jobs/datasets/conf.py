"""A dataset's typed config (``conf/dataset/<name>.yaml``: ``DatasetConf``) and the grid's sampling of
every dataset (``dataset:`` block: ``DatasetRunConf``). Resolved and checked by
``orchestrator.config``; a gen unit's spec (``jobs.units.GenSpec``) carries both to the worker, which
reads them by attribute (``jobs.datasets.roles.load_role``). No torch, no OmegaConf."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.conf import ConfView


@dataclass(frozen=True, eq=False)
class FieldMappingConf(ConfView):
    id: str | None = None
    question: str = "question"
    gold: str = "answer"
    choices: Any = None  # a field holding a list, or a list of field names
    context: str | None = None
    gold_format: str = "text"


@dataclass(frozen=True, eq=False)
class DatasetConf(ConfView):
    """One dataset (``conf/dataset/<name>.yaml``).

    adapter: a key of jobs.datasets.DATASETS (files in the shared folder), or ``hub`` /
    ``local`` for data brought by the user with a field mapping.
    """

    name: str = "???"  # omegaconf.MISSING: required
    adapter: str = ""  # defaults to name; hub | local | questions for data without an adapter file
    split: str | None = None  # default: the adapter's eval split
    train_split: str | None = None  # default: the adapter's train split
    task: str | None = None  # required for hub/local
    hub_path: str | None = None
    hub_config: str | None = None
    local_path: str | None = None
    mapping: FieldMappingConf = field(default_factory=FieldMappingConf)
    encoding: str = "utf-8"  # of local / questions files (a Python codec name: latin-1, cp1252, utf-16)
    group: str | None = None  # math | commonsense | ... (for reports and OOD splits)
    # this dataset's answer mode, over the grid's decoding.answer_mode: generate | constrained | cloze,
    # or a mapping task -> mode (a mixed questions file); null: the grid's
    answer_mode: Any = None
    cloze_format: str | None = None  # cloze prompt format (jobs/cloze.py FORMATS); null: the adapter's
    # this dataset's own evaluated / fit row counts, over the grid's dataset.limit / fit_limit
    # (null: the grid's); part of its units' keys as the grid's are
    limit: int | None = None
    fit_limit: int | None = None


@dataclass(frozen=True, eq=False)
class DatasetRunConf(ConfView):
    """Grid-wide sampling of every dataset (``dataset.limit=50`` on the command line)."""

    limit: int | None = 100  # evaluated questions per dataset (None = all)
    fit_limit: int = 100  # questions for probe training, from the train split (or disjoint rows)
    seed: int = 0
    data_root: str | None = None  # default: ../shared/datasets beside the repo
