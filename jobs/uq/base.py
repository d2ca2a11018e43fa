"""The UQ method type and the one function that runs a method on named stats.

A UQ method is a small pure function over named per-sample stats (lm-polygraph style): it declares
the stats it reads in ``requires`` and maps them to one uncertainty per sample, **higher = more
uncertain**, NaN where it cannot score a sample. ``compute`` does the checking (stats present, same
length, output shape) so that each method file stays a few lines of arithmetic.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jobs.metrics import NAN_POLICIES

#: Allowed values of ``UQMethod.fit``: untrained, trained on the evaluated dataset's training
#: subsample, or trained on all other datasets (leave the evaluated one out).
FIT_KINDS: tuple[str | None, ...] = (None, "in_domain", "other_datasets")

#: Allowed values of ``UQMethod.confidence``: the monotone map from a method's uncertainty u back to
#: the paper's confidence (higher = more certain, bounded), on which calibration sets are binned
#: (``jobs.analysis.calibration.to_confidence``): 1 - u for u = 1 - probability; 1 / u for u = perplexity
#: (the paper's "1 / exp(mean NLL)"); exp(-u) for unbounded u >= 0 in nats.
CONFIDENCE_MAPS: tuple[str, ...] = ("complement", "reciprocal", "exp_neg")

#: Stat that trained methods read from ``fit_stats`` on top of ``requires``.
LABEL_STAT = "correct"

#: What a method's statistic can depend on besides the model and the question
#: (``UQMethod.definition_depends_on``; ``jobs.uq.definition``): the dataset's answer mode as this
#: grid runs it (generate | constrained | cloze: the token log p of a generated answer, of one
#: option letter, of an option's text are different numbers) and, in an option-scoring mode, the
#: number of options K (an entropy over K options is at most ln K).
DEFINITION_PARTS: tuple[str, ...] = ("answer_mode", "option_count")

#: Values of the ``route`` param of a method with an ``answer_stage``: judge the method's own
#: answer (the one its confidence is about) or the plain greedy answer.
ROUTES: tuple[str, ...] = ("own_answer", "greedy_answer")


@dataclass(frozen=True)
class UQMethod:
    """One uncertainty quantification method.

    name:        registry key (same key in YAML, Parquet and MLflow).
    requires:    names of the per-sample stats that ``fn`` reads.
    fn:          ``fn(stats, **params)`` when ``fit`` is None, else ``fn(stats, fit_stats, **params)``;
                 returns one float per sample, higher = more uncertain, NaN = not scored.
    fit:         None | "in_domain" | "other_datasets": which data trains the method. A trained method
                 also reads ``fit_stats["correct"]`` (bool SLM correctness on the training rows).
    description: one line for reports.
    confidence:  how to map the uncertainty back to the paper's bounded confidence, one of
                 ``CONFIDENCE_MAPS`` (default "complement": u = 1 - confidence in [0, 1]).
    nan_policy:  what the routing metrics do with the samples it could not score (NaN), one of
                 ``jobs.metrics.NAN_POLICIES``: "most_uncertain" (offload them first; right when
                 NaN means "no answer", e.g. an empty generation) or "drop" (leave them out and
                 report their share; right when NaN means "unreadable", e.g. a verbalized
                 confidence that does not parse); None (default): the grid's
                 ``metrics.nan_policy`` (most_uncertain unless set). A UQ entry's ``nan_policy``
                 overrides both (``orchestrator.config.nan_policy_of``).
    parsed_stat: the stat holding a value parsed from generated text (verbal confidences), or
                 None: NaN there means the text did not parse, and setting records carry
                 ``confidence_parse`` ("ok" / "unparsed") per sample.
    answer_stage: the generation stage whose output holds an answer of the method's own
                 (verbal_1s: answer and confidence in one output), or None: setting records then
                 carry that answer and whether it agrees with the greedy one, and the param
                 ``route`` (``ROUTES``) says which of the two is judged.
    param_choices: param name -> its valid values, checked when the config is loaded.
    extra_check: optional ``extra_check(params)`` raising ValueError / ImportError for parameters
                 that cannot work here (an unavailable model, say); the config runs it at load
                 time, before any model pass, so a bad value fails in seconds, not after generation.
    definition_depends_on: which of ``DEFINITION_PARTS`` change what the statistic *is*, so that
                 datasets differing in them are never pooled for this method (calibration sets,
                 leave-one-out and cross-group transfer, finding 2's distances between datasets:
                 ``jobs.uq.definition``). Default ("answer_mode",): token log-probabilities,
                 perplexity, probes and routers on hidden states (whose position moves with the
                 mode). Add "option_count" when, in an option-scoring mode, the statistic is bounded
                 by the number of options (an entropy or a maximum over the options, draws among
                 them); () when it means the same whatever the mode (p(True), a stated confidence).
    """

    name: str
    requires: tuple[str, ...]
    fn: Callable[..., np.ndarray]
    fit: str | None = None
    description: str = ""
    confidence: str = "complement"
    nan_policy: str | None = None
    parsed_stat: str | None = None
    answer_stage: str | None = None
    param_choices: Mapping[str, tuple] = field(default_factory=dict, hash=False)
    extra_check: Callable[[dict], None] | None = field(default=None, hash=False)
    definition_depends_on: tuple[str, ...] = ("answer_mode",)

    def __post_init__(self) -> None:
        if self.fit not in FIT_KINDS:
            raise ValueError(f"uq method {self.name!r}: fit={self.fit!r}; valid: {FIT_KINDS}")
        if self.confidence not in CONFIDENCE_MAPS:
            raise ValueError(
                f"uq method {self.name!r}: confidence={self.confidence!r}; valid: {', '.join(CONFIDENCE_MAPS)}"
            )
        if not self.requires:
            raise ValueError(f"uq method {self.name!r}: requires must name at least one stat")
        if self.nan_policy is not None and self.nan_policy not in NAN_POLICIES:
            raise ValueError(
                f"uq method {self.name!r}: nan_policy={self.nan_policy!r}; valid: {', '.join(NAN_POLICIES)}"
            )
        if self.parsed_stat is not None and self.parsed_stat not in self.requires:
            raise ValueError(
                f"uq method {self.name!r}: parsed_stat {self.parsed_stat!r} is not one of its requires {self.requires}"
            )
        bad = [x for x in self.definition_depends_on if x not in DEFINITION_PARTS]
        if bad or isinstance(self.definition_depends_on, str):
            raise ValueError(
                f"uq method {self.name!r}: definition_depends_on={self.definition_depends_on!r}; "
                f"a tuple of: {', '.join(DEFINITION_PARTS)}"
            )
        if self.answer_stage is not None and "route" not in self.param_choices:
            raise ValueError(
                f"uq method {self.name!r}: answer_stage needs a 'route' param (param_choices['route'] = {ROUTES})"
            )

    def route(self, params: Mapping[str, Any]) -> str:
        """Which answer a setting judges: "greedy_answer" (the plain greedy pass) or, for a method
        with an ``answer_stage``, its ``route`` param (default: the fn's default)."""
        if self.answer_stage is None:
            return "greedy_answer"
        default = inspect.signature(self.fn).parameters["route"].default
        return str(params.get("route", default))

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise TypeError for a parameter ``fn`` does not take, ValueError for a value outside
        ``param_choices``; both name the method, the parameter and the valid choices. Then the
        method's ``extra_check``, if any (ValueError / ImportError)."""
        _check_params(self, params)
        for key, choices in self.param_choices.items():
            if key in params and params[key] not in choices:
                raise ValueError(
                    f"uq method {self.name!r}: {key}={params[key]!r} is not valid; "
                    f"valid choices: {', '.join(map(str, choices))}"
                )
        if self.extra_check is not None:  # e.g. an embedding model that is not installed here
            self.extra_check(dict(params))

    @property
    def fit_requires(self) -> tuple[str, ...]:
        """Stats needed in ``fit_stats`` (empty for untrained methods)."""
        return () if self.fit is None else (*self.requires, LABEL_STAT)


def _check_stats(method: UQMethod, stats: Mapping[str, Any], needed: Sequence[str], which: str) -> int:
    """Raise KeyError for a missing stat, ValueError for mismatched lengths; return N."""
    missing = [s for s in needed if s not in stats]
    if missing:
        raise KeyError(
            f"uq method {method.name!r} needs {which} {', '.join(repr(m) for m in missing)}; "
            f"{which} available: {', '.join(sorted(stats)) or '(none)'}"
        )
    lengths = {s: len(stats[s]) for s in needed}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"uq method {method.name!r}: {which} have different lengths: {lengths}")
    return next(iter(lengths.values()))


def _check_params(method: UQMethod, params: Mapping[str, Any]) -> None:
    sig = inspect.signature(method.fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    valid = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
    bad = sorted(set(params) - set(valid))
    if bad:
        raise TypeError(
            f"uq method {method.name!r}: unknown parameter(s) {', '.join(bad)}; valid: {', '.join(valid) or '(none)'}"
        )


def compute(
    method: UQMethod,
    stats: Mapping[str, Any],
    fit_stats: Mapping[str, Any] | None = None,
    **params: Any,
) -> np.ndarray:
    """Run ``method`` on ``stats`` and return a float64 array of shape (N,), higher = more uncertain.

    fit_stats: training stats for trained methods (must hold ``requires`` plus ``"correct"``);
               ignored for untrained methods.
    params:    keyword parameters of the method (e.g. ``lr=1e-4`` for the probe).
    Raises KeyError naming the method, the missing stat and the stats available; ValueError when a
    trained method gets no fit_stats or the output does not have shape (N,); TypeError for an
    unknown parameter.
    """
    n = _check_stats(method, stats, method.requires, "stats")
    method.check_params(params)
    if method.fit is None:
        out = method.fn(stats, **params)
    else:
        if fit_stats is None:
            raise ValueError(
                f"uq method {method.name!r} is trained (fit={method.fit!r}) and needs fit_stats "
                f"with {', '.join(method.fit_requires)}"
            )
        _check_stats(method, fit_stats, method.fit_requires, "fit_stats")
        out = method.fn(stats, fit_stats, **params)
    out = np.asarray(out, dtype=np.float64)
    if out.shape != (n,):
        raise ValueError(f"uq method {method.name!r} returned shape {out.shape}; expected ({n},)")
    return out


# ---- small helpers shared by the method files -------------------------------------------------


def per_sequence(seqs: Sequence[Any], reduce: Callable[[np.ndarray], float]) -> np.ndarray:
    """Apply ``reduce`` to each 1-D per-token array; NaN for an empty (or None) sequence."""
    out = np.full(len(seqs), np.nan)
    for i, seq in enumerate(seqs):
        if seq is None:
            continue
        arr = np.asarray(seq, dtype=np.float64).ravel()
        if arr.size:
            out[i] = reduce(arr)
    return out


def complement(stats: Mapping[str, Any], key: str) -> np.ndarray:
    """1 - stats[key] for a per-sample probability in [0, 1]; NaN passes through.

    A finite value outside [0, 1] means a bug upstream (parsing, normalization), so it raises
    instead of producing a score.
    """
    p = np.asarray(stats[key], dtype=np.float64).ravel()
    bad = ~np.isnan(p) & ((p < -1e-9) | (p > 1 + 1e-9))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"stat {key!r} must lie in [0, 1] (or be NaN); sample {i} is {p[i]!r}")
    return 1.0 - p
