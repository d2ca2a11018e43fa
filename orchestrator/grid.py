"""Grid expansion: a pure function from the resolved config to frozen settings.

A setting = (SLM, UQ method, dataset, LLM). Its readable name is
``slm__uq__dataset__llm``; its identity is the hash of the resolved configuration that
decides its result (the four configs plus sampling, decoding and metric parameters).
Order is deterministic (SLM, dataset, UQ, LLM as listed in the grid); exclusion rules
drop settings that match every key of a rule.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import product

from jobs.backends.base import ModelConf
from orchestrator.config import DatasetConf, DatasetRunConf, ResolvedGrid, excluded, nan_policy_of, plain

MODEL_IDENTITY_FIELDS = (
    "backend",
    "source",
    "id",
    "file",
    "revision",
    "dtype",
    "quantize",
    "use_chat_template",
    "stop",
    "max_new_tokens",
    "hidden_layer",
    "base_url",
    "model_name",
)
DATASET_IDENTITY_FIELDS = ("adapter", "split", "train_split", "task", "hub_path", "hub_config", "local_path", "mapping")


def stable_hash(obj, n: int = 16) -> str:
    """Hash of a JSON-able object, independent of dict order."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_value)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def _json_value(x):
    """A typed config object as the plain dict it reads as (``orchestrator.config.ConfView``); else str."""
    from orchestrator.config import ConfView, plain

    return plain(x) if isinstance(x, ConfView) else str(x)


#: what a model config held for the identity fields its backend's class no longer has (before configs
#: were split per backend, every model had every field): keys of existing stores stay valid
PRE_SPLIT_DEFAULTS = {
    "source": "hub",
    "id": "",
    "dtype": "float32",
    "use_chat_template": True,
    "stop": [],
    "hidden_layer": -8,
}


def model_identity(m: ModelConf) -> dict:
    """What of a model config changes its outputs (hashed into its units' keys): the fields every
    model has (``PRE_SPLIT_DEFAULTS`` for those its backend's class lacks), the options that change
    outputs when set, and its backend's own (``ModelConf.identity_fields``)."""
    ident = {k: getattr(m, k, PRE_SPLIT_DEFAULTS.get(k)) for k in MODEL_IDENTITY_FIELDS}
    # options that change outputs, recorded only when set (the keys of existing stores stay valid)
    for k in ("trust_remote_code", "batch_by_length", "max_prompt_tokens"):
        if getattr(m, k, None):
            ident[k] = getattr(m, k)
    for k in type(m).identity_fields:
        ident[k] = getattr(m, k)
    return ident


def dataset_identity(d: DatasetConf, run: DatasetRunConf) -> dict:
    ident = {k: getattr(d, k) for k in DATASET_IDENTITY_FIELDS}
    ident.update(limit=run.limit, fit_limit=run.fit_limit, seed=run.seed)
    return ident


@dataclass(frozen=True)
class Setting:
    slm: str
    uq: str
    dataset: str
    llm: str
    hash: str

    @property
    def name(self) -> str:
        return f"{self.slm}__{self.uq}__{self.dataset}__{self.llm}"

    def axes(self) -> dict:
        return {"slm": self.slm, "uq": self.uq, "dataset": self.dataset, "llm": self.llm}


def setting_identity(r: ResolvedGrid, slm: str, uq: str, dataset: str, llm: str) -> dict:
    g = r.grid
    uq_conf = r.uq[uq]
    ident = {
        "slm": model_identity(r.slms[slm]),
        "uq": {"method": uq_conf.method, "params": uq_conf.params},
        "dataset": dataset_identity(r.datasets[dataset], r.dataset_run(dataset)),
        "llm": model_identity(r.llms[llm]),
        "decoding": g.decoding,
        # the NaN policy this setting's metrics apply (the UQ entry's, its method's or the grid's)
        "metrics": plain(g.metrics) | {"nan_policy": nan_policy_of(r, uq)},
        "seed": g.seed,
    }
    # the OOD probe and the learned routers are fitted on the other datasets of the grid: they are
    # part of its identity
    if uq_conf.method == "ood_probe" or uq == "ood_probe" or _fits_other_datasets(uq_conf.method):
        ident["fit_datasets"] = sorted(x for x in r.datasets if x != dataset)
    return ident


def _fits_other_datasets(method: str) -> bool:
    from jobs.uq import UQ_METHODS

    return method in UQ_METHODS and UQ_METHODS.get(method).fit == "other_datasets"


def expand(r: ResolvedGrid) -> list[Setting]:
    out = []
    for slm, dataset, uq, llm in product(r.slms, r.datasets, r.uq, r.llms):
        axes = {"slm": slm, "uq": uq, "dataset": dataset, "llm": llm}
        if excluded(axes, r.grid.exclude):
            continue
        out.append(Setting(slm, uq, dataset, llm, stable_hash(setting_identity(r, slm, uq, dataset, llm))))
    return out
