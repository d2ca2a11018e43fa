"""The driver <-> worker interface: what a work unit asks a worker to do, and what it leaves on disk.

The plan (``orchestrator/plan.py``) makes one spec per work unit and the scheduler hands it to a
worker as it is (Ray pickles it); the worker (``jobs.engine.run_gen_unit``,
``jobs.scoring.run_score_unit`` / ``run_setting_unit``) reads nothing else. A spec is frozen:
nothing downstream of the plan changes what a unit computes. Its ``key`` is the unit's content key
(``orchestrator.plan.unit_key``), made from the same fields; a spec's fields are not re-hashed.

Every unit ends by writing its manifest (``jobs.store``): the fact on disk that it is complete.
The manifests are typed here too (``GenManifest``, ``ScoreManifest``, ``SettingManifest``); on disk
they are the JSON of ``to_json()``, and ``from_json`` reads the JSON of any store (fields a store
written before a field existed lacks get its default). The store adds, when the unit finishes
(``jobs.records.finish_unit``), ``files`` (each file of the unit: ``FileRecord``), ``hash`` (the
content hash's name, sha256) and ``checksum`` (the manifest's own); ``from_json`` keeps them in
``extra`` and ``files`` reads them typed. A manifest without ``files`` was written before they
existed: its unit is checked for structure only (``jobs.store.check_unit``).

No torch, no Ray: both sides import this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from jobs.conf import MetricsConf
from jobs.datasets.conf import DatasetConf, DatasetRunConf, FieldMappingConf

#: samples per chunk of a gen unit (one Parquet part each: the unit of resume); part of gen keys
CHUNK_SIZE = 32

M = TypeVar("M", bound="_Manifest")
S = TypeVar("S", bound="_SpecOf")


class _SpecOf:
    """``Spec.of(x)``: ``x`` itself when it is already the spec, else the spec built from a mapping of
    its fields (a script or test driving a worker directly); an unknown or missing field is a
    TypeError naming it and the valid ones."""

    @classmethod
    def of(cls: type[S], x: Any) -> S:
        if isinstance(x, cls):
            return x
        if not isinstance(x, Mapping):
            raise TypeError(f"expected a {cls.__name__} or a mapping of its fields; got {type(x).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(x) - set(fields))
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown field(s) {unknown}; valid: {', '.join(fields)}")
        return cls(**cls._coerce(dict(x)))

    @classmethod
    def _coerce(cls, kw: dict) -> dict:
        """Nested fields given as plain data, as the spec's own types (none by default)."""
        return kw


def _typed_conf(conf_cls: type, x: Mapping, where: str) -> Any:
    """A config object of ``conf_cls`` from a mapping of its fields (a dataset entry's ``mapping``
    too); an unknown field is a TypeError naming it and the valid ones."""
    fields = [f.name for f in dataclasses.fields(conf_cls)]
    unknown = sorted(set(x) - set(fields))
    if unknown:
        raise TypeError(f"{where}: unknown field(s) {unknown}; valid: {', '.join(fields)}")
    kw = dict(x)
    if isinstance(kw.get("mapping"), Mapping):
        kw["mapping"] = _typed_conf(FieldMappingConf, kw["mapping"], f"{where}.mapping")
    return conf_cls(**kw)._frozen()


# ---------------------------------------------------------------- specs (driver -> worker)


@dataclass(frozen=True)
class GenSpec(_SpecOf):
    """One model pass: stage ``stage`` of model ``model`` over the ``role`` rows of ``dataset``.

    dataset_conf / run: the resolved dataset entry and the grid's ``dataset`` block (which rows);
    params: the decoding parameters the unit is keyed on (``Stage.params`` + seed, chunk size and
    the answer mode); deps: {stage: gen key} of the passes whose raw output it reads."""

    kind: ClassVar[str] = "gen"
    key: str
    stage: str
    model: str
    dataset: str
    dataset_conf: DatasetConf
    run: DatasetRunConf  # ResolvedGrid.dataset_run: the grid's block with the dataset's own limits
    role: str  # eval | fit
    params: Mapping[str, Any]
    deps: Mapping[str, str] = field(default_factory=dict)
    model_kind: str = "slm"  # slm | llm

    @classmethod
    def _coerce(cls, kw: dict) -> dict:
        """``dataset_conf`` / ``run`` given as mappings of their fields (a script driving a worker)."""
        for name, conf_cls in (("dataset_conf", DatasetConf), ("run", DatasetRunConf)):
            v = kw.get(name)
            if isinstance(v, Mapping):
                kw[name] = _typed_conf(conf_cls, v, f"GenSpec.{name}")
        return kw

    @property
    def row_limit(self) -> int | None:
        """The most rows it reads: the run's ``limit`` (eval role) or ``fit_limit`` (fit); None: all."""
        n = self.run.limit if self.role == "eval" else self.run.fit_limit
        return int(n) if n is not None else None

    @property
    def chunk_size(self) -> int:
        return int(self.params.get("chunk_size", CHUNK_SIZE))


@dataclass(frozen=True)
class FitRows:
    """The rows a trained UQ method fits on: ``dataset``'s fit-role passes, {stage: gen key}."""

    dataset: str
    stages: Mapping[str, str]


@dataclass(frozen=True)
class ScoreSpec(_SpecOf):
    """Uncertainty of UQ entry ``uq`` (method ``method`` with ``params``) on ``slm``'s answers to the
    ``role`` rows of ``dataset``.

    stages: {stage: gen key} of the scored rows (greedy always; the order of its rows is the
    score's); fit: what a trained method fits on; crossfit: folds (> 0 when the scored rows are the
    fit rows themselves, scored out-of-fold, with ``crossfit_seed``); policy: the extraction
    policy; leave_out: a held-out dataset (or a tuple: a held-out group) no model behind these
    scores saw (leave-out units of the transfer analysis), None otherwise."""

    kind: ClassVar[str] = "score"
    key: str
    uq: str
    method: str
    params: Mapping[str, Any]
    slm: str
    dataset: str
    stages: Mapping[str, str]
    role: str = "eval"
    fit: tuple[FitRows, ...] = ()
    crossfit: int = 0
    crossfit_seed: int = 0
    policy: str = "flexible"
    leave_out: str | tuple[str, ...] | None = None

    @classmethod
    def _coerce(cls, kw: dict) -> dict:
        if "fit" in kw:
            kw["fit"] = tuple(f if isinstance(f, FitRows) else FitRows(**f) for f in kw["fit"])
        return kw

    @property
    def greedy(self) -> str:
        """Key of the greedy pass whose rows are scored."""
        return self.stages["greedy"]


@dataclass(frozen=True)
class SettingSpec(_SpecOf):
    """One setting: the join of a score with an LLM pass, its routing metrics, records and plot.

    setting_hash: the setting's identity (its MLflow run); axes: {slm, uq, dataset, llm};
    score / slm_greedy / llm: the keys it reads; slm_stages: the SLM passes the score read (a verbal
    method's own answer and parse status); method / uq_params: which answer is judged
    (``UQMethod.route``); metrics: the grid's ``metrics`` block with the method's ``nan_policy``;
    cost: the price block of ``jobs.cost.cost_payload`` (None: no cost axis)."""

    kind: ClassVar[str] = "setting"
    key: str
    setting_hash: str
    name: str
    axes: Mapping[str, str]
    score: str
    slm_greedy: str
    llm: str
    slm_stages: Mapping[str, str] = field(default_factory=dict)
    method: str | None = None
    uq_params: Mapping[str, Any] = field(default_factory=dict)
    metrics: MetricsConf = field(default_factory=MetricsConf)
    policy: str = "flexible"
    cost: Mapping[str, Any] | None = None

    @classmethod
    def _coerce(cls, kw: dict) -> dict:
        """``metrics`` given as a mapping of its fields (a script or test driving a worker)."""
        if isinstance(kw.get("metrics"), Mapping):
            kw["metrics"] = _typed_conf(MetricsConf, kw["metrics"], "SettingSpec.metrics")
        return kw


Spec = GenSpec | ScoreSpec | SettingSpec


# ---------------------------------------------------------------- manifests (worker -> disk)


@dataclass(frozen=True)
class FileRecord:
    """One file of a finished unit as its manifest records it: ``size`` in bytes, ``sha256`` of the
    whole content; for Parquet, ``rows`` (from its footer) and ``footer_sha256`` (the footer alone:
    what the shallow check compares)."""

    size: int
    sha256: str
    rows: int | None = None
    footer_sha256: str | None = None

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> FileRecord:
        return cls(int(d["size"]), str(d["sha256"]), d.get("rows"), d.get("footer_sha256"))


class _Manifest:
    """JSON round trip shared by the manifests: ``to_json`` writes every field (plus the extras a
    worker adds, e.g. the schema version), ``from_json`` keeps the known fields and puts the rest in
    ``extra``."""

    extra: Mapping[str, Any]

    @property
    def files(self) -> dict[str, FileRecord]:
        """The unit's files (name -> ``FileRecord``) as recorded when it finished; {} for a
        manifest written before manifests listed them."""
        return {name: FileRecord.of(rec) for name, rec in (self.extra.get("files") or {}).items()}

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}  # type: ignore[arg-type]
        return dict(self.extra) | d

    @classmethod
    def from_json(cls: type[M], d: Mapping[str, Any]) -> M:
        names = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}  # type: ignore[arg-type]
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})  # type: ignore[call-arg]


@dataclass(frozen=True)
class GenManifest(_Manifest):
    """A finished model pass: how many samples it saw and skipped, and what it cost."""

    key: str
    stage: str
    model: str
    dataset: str
    role: str
    n_samples: int = 0
    n_malformed: int = 0
    malformed: tuple = ()
    new_tokens: int = 0
    seconds: float = 0.0
    model_identity: str | None = None
    n_chunks: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ScoreManifest(_Manifest):
    """A finished score: rows scored, rows the method could not score, what a trained method fit on."""

    key: str
    uq: str
    slm: str
    dataset: str
    role: str = "eval"
    crossfit: int = 0
    n: int = 0
    n_nan: int = 0
    fit_n: int = 0
    fit_datasets: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class SettingManifest(_Manifest):
    """A finished setting: its identity, axes and routing metrics (``jobs.metrics.summarize``)."""

    key: str
    setting_hash: str
    name: str
    slm: str
    uq: str
    dataset: str
    llm: str
    metrics: MetricsConf = field(default_factory=MetricsConf)
    nan_policy: str | None = None
    answer_route: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def axes(self) -> dict[str, str]:
        return {"slm": self.slm, "uq": self.uq, "dataset": self.dataset, "llm": self.llm}
