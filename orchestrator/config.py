"""Typed configuration: OmegaConf structured configs, closed to typos.

A grid file (``conf/grid/*.yaml``) names its SLMs, LLMs, UQ methods and datasets by the
name of a file in ``conf/slm/``, ``conf/llm/``, ``conf/uq/`` and ``conf/dataset/``
(or gives them inline as mappings); a registered UQ method or dataset with no file there gets
the default conf, ``name: <key>`` (``REGISTRIES``). Loading resolves every name into its full typed
config, applies dotlist overrides (``dataset.limit=50``), and checks everything that
can be checked without running a model: unknown keys, wrong types, unknown registry
names, unknown choices. Errors are ``ConfigError`` and name the file, the key, the bad
value and the valid choices.

The resolved config (``ResolvedGrid``) is what the plan, the hashes and resume read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException, ValidationError

from jobs.registry import UnknownNameError

REPO_CONF = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(ValueError):
    """A bad config value, with the file, key, value and valid choices in the message."""


# immutable values and typed configs read by attribute (jobs.conf: the workers use them too)
# ---------------------------------------------------------------- schemas
# ModelConf (every model's fields) and each backend's subclass (its own fields and checks) live with
# the backends: jobs.backends.base.ModelConf, jobs.backends.BACKENDS
from jobs.backends.base import ModelConf  # noqa: E402
from jobs.conf import ConfView, FrozenDict, FrozenList, MetricsConf, freeze, plain  # noqa: E402, F401

# the dataset entries and the grid's dataset block travel to the workers in every gen unit's spec
from jobs.datasets.conf import DatasetConf, DatasetRunConf, FieldMappingConf  # noqa: E402, F401


@dataclass(frozen=True, eq=False)
class UQConf(ConfView):
    """One UQ method (``conf/uq/<name>.yaml``): a registry key plus parameters.

    nan_policy: what the metrics do with samples the method could not score (most_uncertain |
    drop); None = the method's own default (``UQMethod.nan_policy``: drop for the verbal methods).
    See ``nan_policy_of``."""

    name: str = MISSING
    method: str = ""  # registry key; defaults to name
    params: dict = field(default_factory=dict)
    nan_policy: str | None = None


@dataclass(frozen=True, eq=False)
class DecodingConf(ConfView):
    max_new_tokens: dict = field(default_factory=lambda: {"numeric": 160, "mc": 48, "yesno": 48, "freeform": 48})
    num_samples: int = 5  # m for Jaccard degree
    sample_temperature: float = 1.0
    sample_max_new_tokens: int | None = None  # default: same as greedy
    verbal_max_new_tokens: int = 24
    extraction_policy: str = "flexible"  # strict | flexible
    # generate | constrained | cloze, or per task {mc: cloze, yesno: cloze, numeric: generate}:
    # constrained mc / yes-no answers are the most probable option letter after the answer prompt,
    # from one forward pass (jobs/stages/constrained.py); cloze answers the option whose text is the
    # most likely continuation of the question, as lm-evaluation-harness scores multiple choice
    # (jobs/stages/cloze.py, jobs/cloze.py); numeric and freeform always generate. A dataset conf's
    # own answer_mode wins. Recorded in the gen units' keys only when not generate.
    answer_mode: Any = "generate"


@dataclass(frozen=True, eq=False)
class MlflowConf(ConfView):
    enabled: bool = True
    tracking_uri: str | None = None  # None: start a local server with SQLite under the output folder
    experiment: str = "uqroute"
    port: int = 5000


@dataclass(frozen=True, eq=False)
class RayConf(ConfView):
    address: str | None = None  # None: start a local Ray; "auto" or ray://host:port to join one
    num_cpus: int | None = None
    num_gpus: int | None = None
    max_in_flight: int = 8  # light (score / setting) tasks in flight; model work is bounded by its replicas
    max_retries: int = 2
    reserve_cpus: float = 0.5  # CPUs never given to models, so score / setting tasks always run
    watchdog_s: float = 1800.0  # stop with a diagnosis when no unit finished for this long
    poll_s: float = 1.0  # how long the scheduler waits for a completion before looking again


@dataclass(frozen=True, eq=False)
class CalibrationConf(ConfView):
    """Calibration ("proxy routing") data and threshold transfer (paper section on generalization).

    enabled: also run every SLM stage, UQ method and LLM on the ``fit`` role (train/dev splits, or
    rows disjoint from the evaluated ones) of every dataset, so calibration sets can be built from
    data that is never evaluated, and thresholds transferred leave-one-dataset-out.
    """

    enabled: bool = False
    n_bins: int = 30  # paper: M = 30
    frac: float = 0.1  # paper: 10% of each bin
    seed: int = 50  # paper: seed 50
    binning: str = "equal_width"  # equal_width | equal_freq (the paper does not say)
    # the scale bins are cut on: "paper" = each UQ method's confidence as the paper defines it
    # (UQMethod.confidence: 1 - u, 1 / perplexity, exp(-u)); or one of jobs.analysis.calibration.SCALES for
    # every method (rank = scale-free, i.e. equal-frequency bins; uncertainty = the raw score)
    scale: str = "paper"
    # calibration sets drawn per held-out dataset, seeds seed, seed + 1, ...; transfer reports their
    # mean and spread (the paper repeats its calibration 3 times)
    n_draws: int = 3
    targets: list = field(default_factory=lambda: [round(i / 10, 1) for i in range(1, 10)])
    crossfit_folds: int = 5  # trained UQ methods score their own fit rows out-of-fold
    fixed_threshold: dict = field(default_factory=dict)  # uq name -> untuned threshold (default 0.5)
    # which datasets' fit rows may feed calibration sets: train_dev = only those with a train/dev
    # split (a dataset shipped as a test file alone is still held out and evaluated); fit = also
    # rows of a test file that are never evaluated
    pool: str = "train_dev"
    # which transfer splits the analysis reports: leave_one_out (each dataset held out, calibrated on
    # the others) and cross_group (the paper's fully out-of-domain split: calibrated only on datasets
    # of one group, applied to each dataset of another, e.g. math -> commonsense and the reverse;
    # groups: ``jobs.datasets.dataset_group``). cross_group reuses the same pools; for methods
    # trained on other datasets it adds leave-group-out score units (``Plan.leave_group_out``)
    splits: list = field(default_factory=lambda: ["leave_one_out"])


@dataclass(frozen=True, eq=False)
class CostConf(ConfView):
    """The cost axis (``jobs/cost.py``): which price table prices tokens and wall time."""

    prices: str = "default"  # a table in conf/prices/ (the grid's conf folder, then the repository's) or a YAML path


@dataclass(frozen=True, eq=False)
class GridConf(ConfView):
    name: str = MISSING
    output_dir: str = "runs/${name}"
    store_dir: str | None = None  # shared work-unit store; default <output_dir>/store
    slms: list = field(default_factory=list)
    llms: list = field(default_factory=list)
    uq: list = field(default_factory=list)
    datasets: list = field(default_factory=list)
    exclude: list = field(default_factory=list)  # [{slm: x, dataset: y}, ...] settings to skip
    seed: int = 0
    dataset: DatasetRunConf = field(default_factory=DatasetRunConf)
    decoding: DecodingConf = field(default_factory=DecodingConf)
    metrics: MetricsConf = field(default_factory=MetricsConf)
    mlflow: MlflowConf = field(default_factory=MlflowConf)
    ray: RayConf = field(default_factory=RayConf)
    calibration: CalibrationConf = field(default_factory=CalibrationConf)
    cost: CostConf = field(default_factory=CostConf)


def _choices() -> dict[str, tuple[str, ...]]:
    """The valid values of every enumerated config field, read from the module that owns each
    vocabulary (none is re-listed here)."""
    from jobs import answers, metrics
    from jobs.analysis import calibration
    from jobs.datasets.hub import GOLD_FORMATS
    from jobs.types import TASK_TYPES

    # the backends are read from their registry where a model is checked (``validate``)
    return {
        "ties": metrics.TIES,
        "nan_policy": metrics.NAN_POLICIES,
        "extraction_policy": answers.POLICIES,
        "task": TASK_TYPES,
        "binning": calibration.BINNINGS,
        "pool": calibration.POOLS,
        "split": calibration.SPLITS,
        "gold_format": GOLD_FORMATS,
    }


CHOICES = _choices()


#: a grid's axes (GridConf fields) -> the key listing their names in the stored resolved config
AXIS_NAMES = {"slms": "slm_names", "llms": "llm_names", "uq": "uq_names", "datasets": "dataset_names"}


@dataclass(frozen=True)
class ResolvedGrid:
    """The grid with every name resolved to a typed, immutable config.

    grid: the ``GridConf`` (its axes ``slms`` / ``llms`` / ``uq`` / ``datasets`` hold the resolved
    names, in grid order); slms / llms: name -> ``ModelConf``; uq: name -> ``UQConf`` (``method``
    filled: it defaults to the name); datasets: name -> ``DatasetConf`` (``adapter`` filled). Every
    value is frozen; ``updated`` derives a changed copy. Built by ``load_grid`` (a grid file) and
    ``resolved_from_yaml`` (an output folder's stored copy), and nowhere else."""

    grid: GridConf
    slms: Mapping[str, ModelConf]
    llms: Mapping[str, ModelConf]
    uq: Mapping[str, UQConf]
    datasets: Mapping[str, DatasetConf]
    source: str  # the grid file

    def grid_dict(self) -> dict:
        """The grid section as stored in an output folder (``resolved.yaml``) and hashed into its
        identity: plain values, the axes as ``slm_names`` ... ``dataset_names``."""
        g = plain(self.grid)
        return {k: v for k, v in g.items() if k not in AXIS_NAMES} | {n: g[a] for a, n in AXIS_NAMES.items()}

    def to_dict(self) -> dict:
        return {
            "grid": self.grid_dict(),
            **{axis: {k: plain(v) for k, v in getattr(self, axis).items()} for axis in AXIS_NAMES},
            "source": self.source,
        }

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(OmegaConf.create(self.to_dict()))

    def updated(self, **changes: Any) -> ResolvedGrid:
        """A copy with grid fields changed: a section by a mapping of its fields
        (``updated(ray={"address": "auto"})``), a plain field by its value (``output_dir=...``)."""
        kw: dict[str, Any] = {}
        for k, v in changes.items():
            cur = getattr(self.grid, k)
            if isinstance(cur, ConfView) and isinstance(v, Mapping):
                kw[k] = dataclasses.replace(cur, **{kk: freeze(vv) for kk, vv in v.items()})  # type: ignore[type-var]
            else:
                kw[k] = freeze(v)
        return dataclasses.replace(self, grid=dataclasses.replace(self.grid, **kw))

    def with_axes(self, **axes: Mapping) -> ResolvedGrid:
        """A copy with other axis entries (``slms={name: ModelConf}``, ...); the grid's name lists follow."""
        new: dict[str, Any] = {a: FrozenDict(v) for a, v in axes.items()}
        names: dict[str, Any] = {a: FrozenList(v) for a, v in new.items()}
        grid = dataclasses.replace(self.grid, **names)
        return dataclasses.replace(self, grid=grid, **new)

    def dataset_run(self, dataset: str) -> DatasetRunConf:
        """The rows of ``dataset`` a grid reads: the grid's ``dataset`` block (limit, fit_limit, seed,
        data_root) with the dataset config's own ``limit`` / ``fit_limit`` where it sets them."""
        run = self.grid.dataset
        dc = self.datasets[dataset]
        if dc.limit is None and dc.fit_limit is None:
            return run
        return dataclasses.replace(
            run,
            limit=run.limit if dc.limit is None else dc.limit,
            fit_limit=run.fit_limit if dc.fit_limit is None else dc.fit_limit,
        )

    @property
    def output_dir(self) -> Path:
        return Path(self.grid.output_dir)

    @property
    def store_dir(self) -> Path:
        return Path(self.grid.store_dir or (self.output_dir / "store"))


# ---------------------------------------------------------------- loading
def _writable(node) -> None:
    """A structured config of a frozen schema is read-only; merging needs it writable (the typed
    object made from it at the end is frozen again)."""
    OmegaConf.set_readonly(node, None)
    if isinstance(node, DictConfig):
        for key in list(node.keys()):
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                _writable(child)


def _merge(schema_cls, data, where: str):
    base = OmegaConf.structured(schema_cls)
    _writable(base)
    OmegaConf.set_struct(base, True)
    _open_dicts(base)
    try:
        merged = OmegaConf.merge(base, data)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        if isinstance(e, ValidationError):
            raise ConfigError(f"{where}: {_bad_value(e)}") from None
        valid = ", ".join(f.name for f in dataclasses.fields(schema_cls))
        raise ConfigError(
            f"{where}: bad key {key!r}: {_short(e)}. Valid keys of {schema_cls.__name__}: {valid}"
        ) from None
    return merged


def _short(e: OmegaConfBaseException) -> str:
    """OmegaConf's message without its ``full_key: / reference_type= / object_type=`` lines."""
    return (getattr(e, "msg", None) or str(e)).strip().splitlines()[0]


def _bad_value(e: ValidationError) -> str:
    """key, value and expected type only: "dataset.limit='abc' is not a valid int"."""
    import re

    key = getattr(e, "full_key", None) or getattr(e, "key", None) or "?"
    msg = _short(e)
    m = re.match(r"Value '(.*)' of type '(\w+)' could not be converted to (\w+)", msg)
    if m:
        want = {"Integer": "int", "Float": "float", "Boolean": "bool (true/false)"}.get(m.group(3), m.group(3))
        return f"{key}={m.group(1)!r} is not a valid {want}"
    return f"{key}: {msg}"


def _open_dicts(node) -> None:
    """Free-form dict fields (params, resources, max_new_tokens) accept any key."""
    for key in list(node.keys()):
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            if child._metadata.object_type in (None, dict):
                OmegaConf.set_struct(child, False)
            else:
                _open_dicts(child)


def _load_yaml(path: Path, where: str):
    try:
        return OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found: {path}") from None
    except Exception as e:  # yaml syntax
        raise ConfigError(f"{where}: cannot parse {path}: {e}") from None


#: the axes whose names are registry keys (``jobs.registry``): a registered key with no conf file
#: gets the default conf, ``name: <key>`` and the schema's defaults
REGISTRIES = {"uq": "jobs.uq:UQ_METHODS", "dataset": "jobs.datasets:DATASETS"}


def _registered(kind: str) -> list[str]:
    """The keys registered for an axis (none for the model axes): names only, nothing imported."""
    from jobs.registry import import_string

    return import_string(REGISTRIES[kind]).names() if kind in REGISTRIES else []


def _resolve_entries(kind: str, schema_cls, entries, conf_dir: Path, grid_file: str) -> dict:
    # a grid's own conf/ folder first, then the repository's (a project can add or shadow entries)
    folders = [f for f in dict.fromkeys([conf_dir / kind, REPO_CONF / kind]) if f.is_dir()]
    out: dict = {}
    for i, entry in enumerate(entries):
        where = f"{grid_file}: {kind}[{i}]"
        if isinstance(entry, str):
            merged = _named_entry(kind, schema_cls, entry, folders, where)
        elif isinstance(entry, (dict, DictConfig)):
            merged = _merge(_schema_of(schema_cls, entry, where), entry, where)
        else:
            raise ConfigError(f"{where}: expected a name or a mapping, got {entry!r}")
        name = merged.name
        if name in out:
            raise ConfigError(f"{where}: {kind} {name!r} is listed twice")
        out[name] = _typed(merged)
    return out


def _named_entry(kind: str, schema_cls, entry: str, folders: list[Path], where: str):
    """The merged config of an entry given by name: its conf file (the first folder that has
    ``<name>.yaml``), else, for a registry key (``REGISTRIES``), the default conf ``name: <key>``;
    an unknown name fails with "did you mean" over both."""
    path = next((f / f"{entry}.yaml" for f in folders if (f / f"{entry}.yaml").is_file()), None)
    if path is None:
        if entry in _registered(kind):
            return _merge(schema_cls, {"name": entry}, where)
        available = sorted({p.stem for f in folders for p in f.glob("*.yaml")} | set(_registered(kind)))
        where_dirs = ", ".join(str(f) for f in folders)
        what = f"{kind} (a conf file in {where_dirs}, or a registry key)" if kind in REGISTRIES else None
        raise ConfigError(
            str(UnknownNameError(what or f"{kind} config (in {where_dirs})", entry, available)).replace(
                "unknown", f"{where}: unknown", 1
            )
        )
    data = _load_yaml(path, where)
    merged = _merge(_schema_of(schema_cls, data, str(path)), data, str(path))
    if merged.name != entry:
        raise ConfigError(f"{path}: name {merged.name!r} must equal the file name {entry!r}")
    return merged


def _schema_of(schema_cls, data, where: str):
    """The schema an entry is merged into: for a model, its backend's config class
    (``jobs.backends.BACKENDS``; ``backend`` defaults to hf), else ``schema_cls``."""
    if schema_cls is not ModelConf:
        return schema_cls
    from jobs.backends import conf_class

    backend = (data.get("backend") if hasattr(data, "get") else None) or ModelConf.backend
    try:
        return conf_class(str(backend))
    except UnknownNameError as e:
        raise ConfigError(f"{where}: backend: {e}") from None


def _typed(merged: Any) -> Any:
    """The typed, frozen config object of a merged node; the one place defaults that follow the
    entry's name are filled (a UQ entry's ``method`` and a dataset's ``adapter`` default to it)."""
    if "method" in merged and not merged.method:
        merged.method = merged.name
    if "adapter" in merged and not merged.adapter:
        merged.adapter = merged.name
    obj: Any = OmegaConf.to_object(merged)
    return obj._frozen()


def warnings_of(r: ResolvedGrid) -> list[str]:
    """Things a user must know before a run starts (printed by the CLI)."""
    return [
        f"{kind} {w}"
        for kind, models in (("slm", r.slms), ("llm", r.llms))
        for m in models.values()
        for w in m.warnings()
    ] + _definition_warnings(r)


def _definition_warnings(r: ResolvedGrid) -> list[str]:
    """``definition_check``'s warnings, and its refusals too when calibration is off (``validate``
    refuses them only when calibration units would be run for nothing)."""
    warn, refuse = definition_check(r)
    return warn + ([] if r.grid.calibration.enabled else refuse)


def dataset_answer_modes(r: ResolvedGrid) -> dict[str, str]:
    """dataset -> the answer mode the grid runs it in (``jobs.uq.definition.dataset_answer_mode``:
    the dataset conf's own ``answer_mode`` when it has one, else ``decoding.answer_mode`` for its task)."""
    from jobs.prompts import AnswerModes
    from jobs.uq.definition import dataset_answer_mode

    grid_mode = r.grid.decoding.answer_mode
    return {
        d: dataset_answer_mode(AnswerModes.resolve(dc.answer_mode, grid_mode), dataset_task(dc))
        for d, dc in r.datasets.items()
    }


def definition_check(r: ResolvedGrid) -> tuple[list[str], list[str]]:
    """(warnings, refusals) of the calibration splits against the definitions of each UQ method's
    statistic (``jobs.uq.definition.split_source_check``): datasets are pooled for a method only
    when it is defined the same way on them (answer mode; option count, known here for yes/no only:
    the report separates the others once the options are read). A refusal is raised by ``validate``
    when calibration is enabled (its units would feed no calibration set of that split)."""
    from jobs.datasets.roles import fit_source
    from jobs.uq import UQ_METHODS
    from jobs.uq.definition import DatasetForm, definitions, split_source_check, task_option_counts

    modes = dataset_answer_modes(r)
    forms = {
        d: DatasetForm(modes[d], task_option_counts(dataset_task(dc)) if modes[d] != "generate" else ())
        for d, dc in r.datasets.items()
    }
    methods = {uq: UQ_METHODS.get(u.method) for uq, u in r.uq.items() if u.method in UQ_METHODS}
    cal = r.grid.calibration
    sources = None
    if cal.enabled and cal.pool == "train_dev":
        sources = [d for d, dc in r.datasets.items() if fit_source(dc).startswith("split:")]
    return split_source_check(definitions(methods, forms), list(cal.splits), dataset_groups(r), sources)


def _check_encoding(where: str, encoding: str) -> None:
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(
            f"{where}: encoding={encoding!r} is not a known text encoding; e.g. utf-8, latin-1, "
            f"cp1252, utf-16 (any Python codec name)"
        ) from None


def nan_policy_of(r: ResolvedGrid, uq: str) -> str:
    """The NaN policy of the UQ entry ``uq``: its own ``nan_policy`` when set, else its method's
    declared default (``UQMethod.nan_policy``: ``drop`` for the verbal methods, whose NaN means an
    unparseable confidence; the others declare none), else ``metrics.nan_policy`` (default
    ``most_uncertain``: an empty generation's NaN is offloaded first).

    The one place that decides it: the setting's identity, its metrics, its MLflow params, the
    report's paired comparisons and the calibration transfer all read it."""
    from jobs.uq import UQ_METHODS

    conf = r.uq[uq]
    if conf.nan_policy:
        return conf.nan_policy
    method = UQ_METHODS.get(conf.method)
    return getattr(method, "nan_policy", None) or r.grid.metrics.nan_policy


def _check_choice(where: str, key: str, value, choices) -> None:
    if value is not None and value not in choices:
        raise ConfigError(f"{where}: {key}={value!r} is not valid; valid choices: {', '.join(choices)}")


def _check_answer_mode(where: str, mode) -> None:
    """decoding.answer_mode: one mode for every task, or a mapping task -> mode."""
    from jobs.prompts import ANSWER_MODES, CONSTRAINED_TASKS

    if isinstance(mode, dict):
        for task, m in mode.items():
            _check_choice(f"{where}.answer_mode", "task", task, CHOICES["task"])
            valid = ANSWER_MODES if task in CONSTRAINED_TASKS else ("generate",)
            if m not in valid:
                raise ConfigError(
                    f"{where}: answer_mode.{task}={m!r} is not valid; valid choices: {', '.join(valid)}"
                    + (
                        ""
                        if task in CONSTRAINED_TASKS
                        else f" (constrained answers need options: {', '.join(CONSTRAINED_TASKS)})"
                    )
                )
    elif mode not in ANSWER_MODES:
        raise ConfigError(
            f"{where}: answer_mode={mode!r} is not valid; valid choices: {', '.join(ANSWER_MODES)}, "
            f"or a mapping task -> mode (tasks: {', '.join(CHOICES['task'])})"
        )


def _check_dataset_answer_modes(r: ResolvedGrid) -> None:
    """A dataset conf's ``answer_mode`` (valid modes, and not cloze / constrained for a task without
    options) and ``cloze_format`` (a ``jobs.cloze.FORMATS`` name)."""
    from jobs.cloze import FORMATS
    from jobs.prompts import CONSTRAINED_TASKS

    for name, dc in r.datasets.items():
        where = f"{r.source}: dataset {name}"
        mode = dc.answer_mode
        if mode is not None:
            _check_answer_mode(where, mode)
            task = dc.task if dc.adapter in ("hub", "local", "questions") else None
            if task is None and dc.adapter not in ("hub", "local", "questions"):
                from jobs.datasets import DATASETS

                task = DATASETS.get(dc.adapter or name).task
            if isinstance(mode, str) and mode != "generate" and task and task not in CONSTRAINED_TASKS:
                raise ConfigError(
                    f"{where}: answer_mode={mode!r} needs options, but its task is {task!r}; valid "
                    f"choices for it: generate (constrained and cloze answers exist for "
                    f"{', '.join(CONSTRAINED_TASKS)})"
                )
        _check_choice(where, "cloze_format", dc.cloze_format, tuple(FORMATS))


def find_conf_dir(grid_file: Path) -> Path:
    """conf/grid/x.yaml -> conf/ (names not found there are looked up in the repository's conf/)."""
    return grid_file.resolve().parent.parent


def load_grid(grid_file: str | Path, overrides: list[str] | None = None, conf_dir: Path | None = None) -> ResolvedGrid:
    grid_file = Path(grid_file)
    where = str(grid_file)
    data = _load_yaml(grid_file, where)
    try:
        ov = OmegaConf.from_dotlist(list(overrides or []))
    except Exception as e:
        raise ConfigError(f"command-line overrides {overrides}: {e}") from None
    grid = _merge(GridConf, data, where)
    try:
        grid = OmegaConf.merge(grid, ov)
    except OmegaConfBaseException as e:
        if isinstance(e, ValidationError):
            raise ConfigError(f"command-line override: {_bad_value(e)}") from None
        raise ConfigError(
            f"command-line override: bad key {getattr(e, 'full_key', '')!r}: {_short(e)}. "
            f"Valid top-level keys: {', '.join(f.name for f in dataclasses.fields(GridConf))}"
        ) from None
    conf_dir = conf_dir or find_conf_dir(grid_file)
    g: Any = OmegaConf.to_container(grid, resolve=True)
    for axis in AXIS_NAMES:
        if not g[axis]:
            raise ConfigError(f"{where}: '{axis}' is empty; a grid needs at least one entry per axis")
    kinds = {
        "slms": ("slm", ModelConf),
        "llms": ("llm", ModelConf),
        "uq": ("uq", UQConf),
        "datasets": ("dataset", DatasetConf),
    }
    axes = {axis: _resolve_entries(kind, cls, g[axis], conf_dir, where) for axis, (kind, cls) in kinds.items()}
    for axis, entries in axes.items():
        setattr(grid, axis, list(entries))  # the grid lists the resolved names
    frozen: dict[str, Any] = {a: FrozenDict(v) for a, v in axes.items()}
    resolved = ResolvedGrid(grid=_typed(grid), **frozen, source=str(grid_file))
    validate(resolved)
    return _resolve_locations(resolved)


def _resolve_locations(r: ResolvedGrid) -> ResolvedGrid:
    """Absolute paths for where data is read and results go, fixed by the driver for every worker.

    On a cluster, workers on other nodes (and a `ray job submit` driver in its temporary working
    dir) must read the same files: the data root and the output folder must then be on a
    filesystem every node sees, given as absolute paths or found from the driver's location."""
    g = r.grid
    r = r.updated(
        output_dir=str(Path(g.output_dir).expanduser().absolute()),
        store_dir=str(Path(g.store_dir).expanduser().absolute()) if g.store_dir else None,
    )
    root = g.dataset.data_root or os.environ.get("UQROUTE_DATA_ROOT")
    needs_shared = [n for n, d in r.datasets.items() if d.adapter not in ("hub", "local", "questions")]
    if root:
        path = Path(root).expanduser().absolute()
        if needs_shared and not path.is_dir():
            raise ConfigError(
                f"dataset.data_root={root!r}: no such folder (datasets {', '.join(needs_shared)} "
                f"read their files there)"
            )
        return r.updated(dataset={"data_root": str(path)})
    if not needs_shared:
        return r
    from jobs.datasets import default_data_root

    try:
        return r.updated(dataset={"data_root": str(default_data_root())})
    except FileNotFoundError as e:
        raise ConfigError(
            f"datasets {', '.join(needs_shared)} need the benchmark files: {e}. Give "
            f"dataset.data_root=/absolute/path (on a cluster: a filesystem every node sees) "
            f"or set UQROUTE_DATA_ROOT."
        ) from None


def validate(r: ResolvedGrid) -> None:
    """Check every value that can be checked before any expensive work starts (each check raises a
    ConfigError naming the file, the key, the bad value and the valid choices)."""
    _check_decoding(r)
    _check_sampling(r)
    _check_ray(r)
    _check_calibration(r)
    _check_models(r)
    _check_slm_stats(r)
    _check_uq(r)
    _check_prices(r)
    for name, d in r.datasets.items():
        _check_dataset(f"dataset {name!r}", d)
    _check_exclude(r)
    if r.grid.calibration.enabled:
        _check_definitions(r)


def _check_decoding(r: ResolvedGrid) -> None:
    """metrics.ties / nan_policy, decoding.extraction_policy, the tasks of decoding.max_new_tokens and
    the answer modes (the grid's and each dataset's)."""
    g = r.grid
    _check_choice(f"{r.source}: metrics", "ties", g.metrics.ties, CHOICES["ties"])
    _check_choice(f"{r.source}: metrics", "nan_policy", g.metrics.nan_policy, CHOICES["nan_policy"])
    _check_choice(
        f"{r.source}: decoding", "extraction_policy", g.decoding.extraction_policy, CHOICES["extraction_policy"]
    )
    for task in g.decoding.max_new_tokens:
        _check_choice(f"{r.source}: decoding.max_new_tokens", "task", task, CHOICES["task"])
    _check_answer_mode(f"{r.source}: decoding", g.decoding.answer_mode)
    _check_dataset_answer_modes(r)


def _check_sampling(r: ResolvedGrid) -> None:
    """The row counts (the grid's dataset.limit / fit_limit and each dataset's own) and num_samples."""
    g = r.grid
    if g.dataset.limit is not None and g.dataset.limit < 1:
        raise ConfigError(f"{r.source}: dataset.limit={g.dataset.limit} must be >= 1 or null")
    if g.dataset.fit_limit < 0:
        raise ConfigError(f"{r.source}: dataset.fit_limit={g.dataset.fit_limit} must be >= 0")
    for name, dc in r.datasets.items():
        for k, v, least in (("limit", dc.limit, 1), ("fit_limit", dc.fit_limit, 0)):
            if v is not None and v < least:
                raise ConfigError(
                    f"{r.source}: dataset {name!r}: {k}={v} must be >= {least} or null (null: the grid's dataset.{k})"
                )
    if g.decoding.num_samples < 2:
        raise ConfigError(f"{r.source}: decoding.num_samples={g.decoding.num_samples} must be >= 2")


def _check_ray(r: ResolvedGrid) -> None:
    rc = r.grid.ray
    for key, value, low in (
        ("max_in_flight", rc.max_in_flight, 1),
        ("max_retries", rc.max_retries, 0),
        ("reserve_cpus", rc.reserve_cpus, 0),
        ("watchdog_s", rc.watchdog_s, 1),
        ("poll_s", rc.poll_s, 0.01),
    ):
        if value < low:
            raise ConfigError(f"{r.source}: ray.{key}={value!r} must be >= {low}")


def _check_calibration(r: ResolvedGrid) -> None:
    """The calibration block: its choices, counts and fractions, splits, targets and fixed thresholds."""
    from jobs.analysis.calibration import SCALES

    cal = r.grid.calibration
    _check_choice(f"{r.source}: calibration", "binning", cal.binning, CHOICES["binning"])
    _check_choice(f"{r.source}: calibration", "pool", cal.pool, CHOICES["pool"])
    _check_choice(f"{r.source}: calibration", "scale", cal.scale, ("paper", *SCALES))
    if cal.n_draws < 1:
        raise ConfigError(f"{r.source}: calibration.n_draws={cal.n_draws} must be >= 1")
    if cal.n_bins < 1:
        raise ConfigError(f"{r.source}: calibration.n_bins={cal.n_bins} must be >= 1")
    if not 0.0 < cal.frac <= 1.0:
        raise ConfigError(f"{r.source}: calibration.frac={cal.frac} must be in (0, 1]")
    if cal.crossfit_folds < 2:
        raise ConfigError(f"{r.source}: calibration.crossfit_folds={cal.crossfit_folds} must be >= 2")
    _check_splits(r)
    for t in cal.targets:
        if not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise ConfigError(f"{r.source}: calibration.targets has {t!r}; each target call rate must be in [0, 1]")
    for k in cal.fixed_threshold:
        if k not in r.uq:
            raise ConfigError(
                f"{r.source}: calibration.fixed_threshold names uq {k!r}, not in the grid; "
                f"valid: {', '.join(sorted(r.uq))}"
            )


def _check_models(r: ResolvedGrid) -> None:
    """Every model's backend, the fields every model has and its backend's own checks (jobs/backends)."""
    from jobs.backends import BACKENDS

    for kind, models in (("slm", r.slms), ("llm", r.llms)):
        for name, m in models.items():
            where = f"{kind} {name!r}"
            _check_choice(where, "backend", m.backend, BACKENDS.names())  # the registry as it is now
            try:
                m.check_common(where)
                m.check(where)
            except ValueError as e:
                raise ConfigError(str(e)) from None


def _check_slm_stats(r: ResolvedGrid) -> None:
    """An SLM on a backend that lacks some stats (``ModelConf.no_stats``: an HTTP endpoint has no
    hidden states) may run every UQ method but those that need them; exclude rules that drop each
    such setting make it pass."""
    from jobs.uq import UQ_METHODS

    rules = [x for x in r.grid.exclude if isinstance(x, dict)]  # malformed rules are reported later
    for name, m in r.slms.items():
        lacks = set(type(m).no_stats)
        if not lacks:
            continue
        refused = {}
        for uq, u in r.uq.items():
            if u.method not in UQ_METHODS:  # reported by _check_uq
                continue
            missing = sorted(lacks & set(UQ_METHODS.get(u.method).requires))
            if missing and any(
                not excluded({"slm": name, "uq": uq, "dataset": d, "llm": llm}, rules)
                for d in r.datasets
                for llm in r.llms
            ):
                refused[uq] = missing
        if refused:
            ok = [x for x in UQ_METHODS.names() if not lacks & set(UQ_METHODS.get(x).requires)]
            needs = ", ".join(f"{uq} (needs {', '.join(st)})" for uq, st in refused.items())
            rules_hint = ", ".join(f"{{slm: {name}, uq: {uq}}}" for uq in refused)
            raise ConfigError(
                f"slm {name!r}: backend={m.backend!r} provides no {', '.join(sorted(lacks))}, so "
                f"it cannot run uq {needs}; UQ methods that work with this SLM: {', '.join(ok)}. "
                f"Drop those methods from the grid, use an hf SLM, or add exclude: [{rules_hint}]"
            )


def _check_uq(r: ResolvedGrid) -> None:
    """Every UQ entry's method (a registry key), NaN policy and parameters (the method's own check)."""
    from jobs.uq import UQ_METHODS

    for name, u in r.uq.items():
        try:
            UQ_METHODS.check(u.method)
        except UnknownNameError as e:
            raise ConfigError(f"uq {name!r}: {e}") from None
        _check_choice(f"uq {name!r}", "nan_policy", u.nan_policy, CHOICES["nan_policy"])
        try:
            UQ_METHODS.get(u.method).check_params(u.params)
        except (TypeError, ValueError, ImportError) as e:
            raise ConfigError(f"uq {name!r}: params: {e}") from None


def _check_dataset(where: str, d: DatasetConf) -> None:
    """One dataset entry: its encoding, and what its adapter needs (a questions file, a hub path or
    local file with a task and a field mapping, or a registry key)."""
    from jobs.datasets import DATASETS  # registry only: imports no dataset module

    _check_encoding(where, d.encoding)
    if d.adapter == "questions":
        _check_choice(where, "task", d.task, CHOICES["task"])
        if not d.local_path or not Path(d.local_path).expanduser().is_file():
            raise ConfigError(
                f"{where}: adapter 'questions' needs local_path, an existing .jsonl file; got {d.local_path!r}"
            )
    elif d.adapter in ("hub", "local"):
        _check_choice(where, "task", d.task, CHOICES["task"])
        if d.task is None:
            raise ConfigError(f"{where}: adapter {d.adapter!r} needs task; valid: {', '.join(CHOICES['task'])}")
        _check_choice(where, "mapping.gold_format", d.mapping.gold_format, CHOICES["gold_format"])
        need, path = ("hub_path", d.hub_path) if d.adapter == "hub" else ("local_path", d.local_path)
        if not path:
            raise ConfigError(f"{where}: adapter {d.adapter!r} needs {need}")
        if d.adapter == "local" and not Path(path).expanduser().is_file():
            raise ConfigError(f"{where}: local_path {d.local_path!r} does not exist")
    else:
        try:
            DATASETS.check(d.adapter)
        except UnknownNameError as e:
            raise ConfigError(f"{where}: {e}") from None


def _check_exclude(r: ResolvedGrid) -> None:
    """Each exclude rule: a non-empty mapping of axes to names in the grid."""
    known = {"slm": set(r.slms), "llm": set(r.llms), "uq": set(r.uq), "dataset": set(r.datasets)}
    for i, rule in enumerate(r.grid.exclude):
        if not isinstance(rule, dict) or not rule:
            raise ConfigError(f"{r.source}: exclude[{i}] must be a mapping like {{slm: x, dataset: y}}")
        for k, v in rule.items():
            if k not in known:
                raise ConfigError(f"{r.source}: exclude[{i}] key {k!r}; valid: {', '.join(known)}")
            if v not in known[k]:
                raise ConfigError(
                    f"{r.source}: exclude[{i}] {k}={v!r} is not in the grid; valid: {', '.join(sorted(known[k]))}"
                )


def _check_definitions(r: ResolvedGrid) -> None:
    """With calibration enabled: refuse splits that would pool datasets on which a UQ method's
    statistic is defined differently (``definition_check``)."""
    refusals = definition_check(r)[1]
    if refusals:
        raise ConfigError(
            f"{r.source}: "
            + "; ".join(refusals)
            + " (or set calibration.enabled=false: the other findings need no calibration units)"
        )


def dataset_groups(r: ResolvedGrid) -> dict[str, str | None]:
    """dataset name -> its group (``jobs.datasets.dataset_group``; None when it has none)."""
    from jobs.datasets import dataset_group

    return {d: dataset_group(dc) for d, dc in r.datasets.items()}


def _check_splits(r: ResolvedGrid) -> None:
    """calibration.splits: a non-empty list of known splits, each once; cross_group needs datasets
    of at least two groups."""
    where = f"{r.source}: calibration.splits"
    splits = r.grid.calibration.splits
    if isinstance(splits, str) or not isinstance(splits, (list, tuple)) or not splits:
        raise ConfigError(f"{where}={splits!r} must be a non-empty list; valid choices: {', '.join(CHOICES['split'])}")
    for x in splits:
        if x not in CHOICES["split"]:
            raise ConfigError(f"{where} has {x!r}, not a split; valid choices: {', '.join(CHOICES['split'])}")
    if len(set(splits)) != len(splits):
        raise ConfigError(f"{where}={list(splits)!r} names a split twice")
    if "cross_group" in splits:
        groups = dataset_groups(r)
        present = sorted({g for g in groups.values() if g})
        if len(present) < 2:
            raise ConfigError(
                f"{where}: cross_group calibrates on one dataset group and applies on another, but "
                f"this grid's datasets span {len(present)} group(s) ("
                + ", ".join(f"{d}: {g or 'no group'}" for d, g in sorted(groups.items()))
                + "); add datasets of another group or set a dataset's group in conf/dataset/"
            )


def _check_prices(r: ResolvedGrid) -> None:
    from jobs.cost import PriceError

    try:
        grid_prices(r)
    except PriceError as e:
        raise ConfigError(f"{r.source}: {e}") from None


def _defaults(cls) -> dict:
    """Every field of a schema with its default (fields without one are left out)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING and f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            v = f.default_factory()
            out[f.name] = dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
    return out


def _stored_entry(schema_cls, conf: dict, where: str):
    """One stored axis entry, typed. A model entry written before configs were split per backend
    holds every backend's fields: those its backend's class does not have are dropped (they had no
    effect on it)."""
    cls = _schema_of(schema_cls, conf, where)
    if schema_cls is ModelConf:
        names = {f.name for f in dataclasses.fields(cls)}
        conf = {k: v for k, v in conf.items() if k in names or k not in _PRE_SPLIT_FIELDS}
    return _typed(_merge(cls, conf, where))


#: the fields every model config had before configs were split per backend (hf and openai ones)
_PRE_SPLIT_FIELDS = frozenset(
    "source id file revision dtype quantize use_chat_template stop hidden_layer trust_remote_code base_url "
    "model_name api_key_env max_concurrency request_timeout_s top_logprobs gpu_memory_fraction torch_threads".split()
)


def resolved_from_yaml(text: str) -> ResolvedGrid:
    """A stored resolved config (``ResolvedGrid.to_yaml``); fields added to the schemas since it was
    written get their defaults (a new field's default keeps the old behaviour), so an older output
    folder still matches its grid."""
    d: Any = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    stored = dict(d["grid"])
    g = {k: v for k, v in stored.items() if k not in AXIS_NAMES.values()}
    g |= {axis: stored.get(names, list(d[axis])) for axis, names in AXIS_NAMES.items()}
    kinds = {"slms": ModelConf, "llms": ModelConf, "uq": UQConf, "datasets": DatasetConf}
    axes: dict[str, Any] = {
        axis: FrozenDict({n: _stored_entry(cls, c, f"stored config: {axis}.{n}") for n, c in d[axis].items()})
        for axis, cls in kinds.items()
    }
    return ResolvedGrid(grid=_typed(_merge(GridConf, g, "stored config")), **axes, source=d.get("source", ""))


# ---- read by the grid, the plan and the views (they import config; config imports neither) -------


def dataset_task(dc: DatasetConf) -> str:
    """The dataset's task; "mixed" for a questions file whose rows carry their own tasks."""
    if dc.adapter == "questions":
        return dc.task or "mixed"
    if dc.adapter in ("hub", "local"):
        if dc.task is None:
            raise ConfigError(
                f"dataset {dc.name!r}: adapter {dc.adapter!r} needs task; valid: {', '.join(CHOICES['task'])}"
            )
        return dc.task
    from jobs.datasets import DATASETS

    return DATASETS.get(dc.adapter).task


def grid_prices(r: ResolvedGrid):
    """The grid's price table (``cost.prices``: a name in the grid's ``conf/prices/`` or the
    repository's, or a YAML path), as ``jobs.cost.PriceTable``."""
    from jobs.cost import load_prices

    conf_dirs = [find_conf_dir(Path(r.source))] if r.source else []
    return load_prices(r.grid.cost.prices, conf_dirs)


def excluded(axes: dict, rules: list[dict]) -> bool:
    """Whether a setting's axes match one of the grid's ``exclude`` rules (every key of a rule equal)."""
    return any(all(axes.get(k) == v for k, v in rule.items()) for rule in rules)
