"""What a generation stage is, and the helpers the stage files share. No torch, no model.

A stage is one declaration, ``Stage(...)`` exported as ``STAGE`` by ``jobs/stages/<name>.py`` and
registered by one line in ``jobs/stages/__init__.py`` (``STAGES``). From the declarations alone:

- the plan (``orchestrator/plan.py``) keys a gen unit on ``params(ctx)``, the seed and chunk size,
  the answer mode (``constrained`` stages), and the keys of the ``deps`` units it reads;
- a UQ method that ``requires`` a stat gets the stage that ``provides`` it planned for its score;
- ``jobs.scoring.load_stats`` reads each planned stage's rows into named stats with ``stats``;
- the cost axis (``jobs/cost.py``) counts an ``overhead`` stage's tokens as the UQ method's cost;
- ``jobs.engine.run_gen_unit`` runs ``run`` on each batch of samples.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from jobs import prompts
from jobs.answers import parse_confidence
from jobs.backends.base import ModelConf
from jobs.types import DataError, Sample

#: ``run(backend, samples, deps, params) -> one row (dict) per sample``, in the samples' order.
#: deps: {stage: {sample_id: raw_output}} of the units in ``Stage.deps``, and for a constrained or
#: cloze unit of a stage in ``Stage.constrained_deps`` also {stage + OPTIONS: {sample_id: (option_labels,
#: option_logprobs)}} (``option_logprobs`` None for a row that generated); params: the unit's params
#: (its ``seed`` included) plus the ``prompt_budget`` (``jobs.engine.run_gen_unit``). A row's random
#: draws come from ``row_seed(params["seed"], sample.id, j)`` only (``row_seeds``): never from the
#: batch it happens to be in.
StageFn = Callable[[Any, list[Sample], dict, dict], list[dict]]
#: suffix of the deps entry holding a constrained dependency's option distributions
OPTIONS = ".options"


@dataclass(frozen=True)
class StageContext:
    """What a stage's params are a function of: the grid's ``decoding`` block, the resolved model
    config and the dataset's task ("mixed" for a questions file whose rows carry their own)."""

    decoding: Any  # orchestrator.config.DecodingConf (read by attribute)
    model: ModelConf
    task: str

    @property
    def answer_tokens(self) -> int:
        """The greedy answer's token budget: ``decoding.max_new_tokens`` of the task (the largest for a
        mixed dataset; 64 for a task it does not list), capped by the model's ``max_new_tokens``."""
        per_task = self.decoding.max_new_tokens
        if self.task == "mixed":
            n = max(int(v) for v in per_task.values())
        else:
            n = int(per_task.get(self.task, 64))
        if self.model.max_new_tokens:
            n = min(n, int(self.model.max_new_tokens))
        return n


@dataclass(frozen=True)
class StageParams:
    """A stage's decoding params, typed: each stage declares a frozen dataclass of them (a subclass),
    returned by its ``Stage.params(ctx)``. Its fields are what the stage's units are keyed on, with
    the seed, the chunk size and the answer mode (``key``: the dict hashed into the unit key and
    handed to the stage's run in its params)."""

    def key(self) -> dict[str, Any]:
        """field name -> value: the params the unit key hashes (plain values, nothing added)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class NoParams(StageParams):
    """A stage keyed on no decoding parameter (p(True): one forward pass)."""


@dataclass(frozen=True)
class AnswerParams(StageParams):
    """An answer pass (greedy, llm): its token budget (``StageContext.answer_tokens``)."""

    max_new_tokens: int


def no_params(ctx: StageContext) -> NoParams:
    return NoParams()


def float_stats(provides: Sequence[str]) -> Callable[[list[dict], str], dict]:
    """A ``Stage.stats`` reading each provided stat as a float64 (N,) array of its column."""

    def read(rows: list[dict], policy: str) -> dict:
        return {name: np.asarray([r[name] for r in rows], dtype=np.float64) for name in provides}

    return read


@dataclass(frozen=True)
class Stage:
    """One kind of model pass.

    name:      registry key; also the gen unit's ``stage``, its label and the store's ``stage`` meta.
    run:       ``StageFn``: the pass over one batch of samples.
    provides:  the named stats (the contract read by ``jobs/uq``) its rows give; a UQ method that
               ``requires`` one gets this stage planned for its score.
    stats:     ``stats(rows, policy) -> {stat: value}`` for the rows of one unit, in the greedy
               pass's sample order (policy: the extraction policy); default: each provided stat
               as a float64 array of the row column of that name.
    deps:      stages whose raw output (``deps[stage][sample_id]``) it reads; their unit keys are
               part of its key.
    constrained_deps: stages it reads only in constrained mode (its units that carry
               ``answer_mode``): their keys join its key only there, so generate-mode keys do not
               move, and ``deps[stage + OPTIONS][sample_id]`` holds their rows' option
               distributions (the samples stage draws from the greedy pass's, with no model work).
    params:    ``params(ctx: StageContext) -> StageParams``: the typed decoding parameters of its
               units (keyed on, with the seed and chunk size: ``StageParams.key``); default none.
    constrained: its work changes with ``decoding.answer_mode`` (its units then carry
               ``answer_mode`` and ``answer_prefix`` (constrained: ``jobs/stages/constrained.py``)
               or ``cloze_format`` and ``cloze_version`` (cloze: ``jobs/stages/cloze.py``)).
    reads_extraction: its prompt shows an *extracted* answer, so its keys carry the extraction
               version and policy (no stage today: p(True) and verbal 2s show the raw output).
    overhead:  a pass run only for a UQ method: the cost axis counts its usage as the method's.
    description: one line.
    columns:   the Parquet columns its rows add to the ones every pass has (``jobs.schemas.GEN_COMMON``),
               name -> pyarrow type; ``schema_version``: bump it when they change.
    """

    name: str
    run: StageFn
    provides: tuple[str, ...] = ()
    stats: Callable[[list[dict], str], dict] | None = None
    deps: tuple[str, ...] = ()
    constrained_deps: tuple[str, ...] = ()
    params: Callable[[StageContext], StageParams] = no_params
    constrained: bool = False
    reads_extraction: bool = False
    overhead: bool = False
    description: str = ""
    columns: Mapping[str, Any] = field(default_factory=dict)
    schema_version: str = "1"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name or ""):
            raise ValueError(f"stage name {self.name!r}: use lower-case letters, digits and underscores")
        for field_name in ("provides", "deps", "constrained_deps"):
            v = getattr(self, field_name)
            if isinstance(v, str) or not all(isinstance(x, str) for x in v):
                raise TypeError(f"stage {self.name!r}: {field_name} must be a tuple of names; got {v!r}")
        if self.constrained_deps and not self.constrained:
            raise ValueError(f"stage {self.name!r}: constrained_deps need constrained=True")
        if self.name in self.deps or self.name in self.constrained_deps:
            raise ValueError(f"stage {self.name!r} depends on itself")
        if self.stats is None:
            object.__setattr__(self, "stats", float_stats(self.provides))

    def load(self, rows: list[dict], policy: str) -> dict:
        """Its stats from the rows of one unit; raises ValueError for a stat it does not declare."""
        assert self.stats is not None  # set in __post_init__
        out = self.stats(rows, policy)
        extra = sorted(set(out) - set(self.provides))
        if extra:
            raise ValueError(
                f"stage {self.name!r} returned stats {extra} it does not declare in provides {self.provides}"
            )
        return out


# ---------------------------------------------------------------- helpers of the stage files


def common_columns(s: Sample, role: str, dataset: str) -> dict:
    """The columns every generation row has (written by ``run_gen_unit`` around a stage's row)."""
    return {
        "sample_id": s.id,
        "dataset": dataset,
        "role": role,
        "gold": s.gold,
        "task": s.task,
        "choices": list(s.choices),
        "aliases": list(s.aliases),
        "error": None,
    }


def row_seed(seed: int, sample_id: str, j: int = 0) -> int:
    """A row's own random seed, from the unit's seed, the sample id and the draw index j:
    a row's draws never depend on its batch-mates, the batch size or the sharding."""
    import hashlib

    h = hashlib.blake2b(f"{int(seed)}:{sample_id}:{int(j)}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def row_seeds(seed: int, samples: Sequence[Sample], m: int = 1) -> list[int]:
    """``row_seed(seed, s.id, j)`` for each sample and draw j < m, sample-major: the ``row_seeds`` of
    ``Backend.generate`` with ``num_return_sequences=m``."""
    return [row_seed(seed, s.id, j) for s in samples for j in range(m)]


def vector(x) -> list | None:
    """A hidden-state vector as a Parquet list column value (None stays None)."""
    return None if x is None else np.asarray(x, dtype=np.float32).tolist()


TRUNCATION_MARK = " [...] "


def cut_middle(text: str, keep: int) -> str:
    """``keep`` characters of ``text``: its first two thirds and last third, joined by the mark."""
    head = (2 * keep) // 3
    return text[:head] + TRUNCATION_MARK + text[len(text) - (keep - head) :]


# ---------------------------------------------------------------- the answer shown back
# p(True) and verbal-2s show the model its own greedy answer: prompts.shown_answer of the raw output
# (the whole answer, up to an invented follow-up question). Only when the prompt would exceed the
# budget (``params["prompt_budget"]``, set by run_gen_unit from prompt_budget) is the answer cut,
# in its middle (first two thirds and last third kept), so its final "The answer is X" stays.


def fit_answer(
    backend, make: Callable[[str], list], answer: str, budget: int | None, sample_id: str = "?"
) -> tuple[str, int | None]:
    """``answer``, cut in its middle (``cut_middle``) to the longest length for which the prompt
    ``make(answer)`` has at most ``budget`` tokens (binary search on characters). Returns the text
    and the prompt's token count with the whole answer when it was cut (None when it fitted; and
    always None when there is no budget or the backend cannot count tokens). Raises DataError when
    even an empty answer does not fit."""
    if budget is None or not hasattr(backend, "prompt_tokens"):
        return answer, None
    n = backend.prompt_tokens(make(answer))
    if n <= budget:
        return answer, None
    lo, hi = 0, len(answer)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if backend.prompt_tokens(make(cut_middle(answer, mid))) <= budget:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0 and backend.prompt_tokens(make(cut_middle(answer, 0))) > budget:
        raise DataError(
            f"sample {sample_id!r}: the prompt that shows the model its answer does not fit in "
            f"{budget} tokens even with the answer left out; raise max_prompt_tokens"
        )
    return cut_middle(answer, lo), n


def shown_greedy(backend, samples, deps, p, make) -> list[tuple[list, int | None]]:
    """Per sample: (messages showing the greedy answer, token count before the answer was cut)."""
    out = []
    for s in samples:
        shown = prompts.shown_answer(deps["greedy"][s.id])
        text, cut_from = fit_answer(backend, functools.partial(make, s), shown, p.get("prompt_budget"), s.id)
        out.append((make(s, text), cut_from))
    return out


_STATES_CONFIDENCE = re.compile(r"(?i)confiden")


def stated_confidence(text: str, one_stage: bool = False) -> float:
    """The stated confidence in [0, 1], NaN when none parses. A one-stage output must state it
    ("Confidence: 80%", "80% confident"): its bare numbers belong to the answer ("The answer to
    this question is 1." is not a confidence of 1%)."""
    if one_stage and not _STATES_CONFIDENCE.search(text or ""):
        return math.nan
    c = parse_confidence(text)
    return math.nan if c is None else float(c)
