"""What "the same statistic" means: a UQ method's definition on a dataset as a grid runs it.

Where this sits in the flow: the grid's decoding and dataset configs (answer modes) and the stored
greedy rows (option counts) -> **a definition per (UQ method, dataset)** -> every place that
combines datasets (``jobs.analysis.findings``: calibration pools, leave-one-out and cross-group transfer,
finding 2's distances between datasets; ``orchestrator.config``: the config-time check of the
calibration splits; ``orchestrator.calibrate``: ``uqroute calibrate build``).

One UQ method reads a different number under different answer modes: mean token entropy is over the
whole vocabulary for a generated answer (>= 1.5 nats on generated math here), over the two options
of a constrained yes/no answer (<= ln 2) and over four options of a constrained ARC question
(<= ln 4). Pooling such datasets into one calibration set puts every threshold on one side of the
other dataset's scores (leave-one-out to or from AddSub routed 0% or 100% of the queries on the
default grid). So datasets are combined for a method only when its definition key is equal:

    definition_key(method, form, dataset) -> Definition

keeps the parts of the dataset's ``DatasetForm`` the method declares in
``UQMethod.definition_depends_on`` (``jobs.uq.base.DEFINITION_PARTS``):

  answer_mode   generate | constrained | cloze as this grid runs the dataset: a dataset conf's own
                ``answer_mode`` wins over the grid's ``decoding.answer_mode`` (per task); tasks
                without options always generate (``jobs.prompts.answer_mode``). A questions file
                whose tasks answer in more than one mode is a definition of its own.
  option_count  K, only in an option-scoring mode (``OPTION_MODES``) and only for methods bounded by
                it (an entropy or a maximum over the options, draws among them). K comes from the
                data (the stored greedy rows' ``option_labels``; yes/no is always 2); a dataset
                whose K varies from question to question is a definition of its own.

A method that declares () (p(True), verbalized confidences, a text router) has one definition for
every dataset and pools across modes as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jobs.prompts import AnswerModes
from jobs.uq.base import UQMethod

#: answer modes that score a fixed set of options (so the option count can bound a statistic)
OPTION_MODES: tuple[str, ...] = ("constrained", "cloze")
#: the answer mode of a questions file whose tasks answer in more than one mode
MIXED = "mixed"
#: the transfer splits the config-time check knows (``jobs.analysis.calibration.SPLITS``)
_SPLITS = ("leave_one_out", "cross_group")


def dataset_answer_mode(modes: AnswerModes, task: str) -> str:
    """The answer mode a grid runs a dataset of ``task`` in.

    modes: the dataset's ``jobs.prompts.AnswerModes`` (``AnswerModes.resolve(dataset_conf.answer_mode,
    decoding.answer_mode)``: its conf's own wins over the grid's). task: the dataset's task
    (``orchestrator.config.dataset_task``), "mixed" for a questions file whose rows carry their own:
    then the one mode all its tasks get, or ``MIXED`` when they differ.
    """
    from jobs.types import TASK_TYPES

    if task == "mixed":
        used = {modes.mode(t) for t in TASK_TYPES}
        return used.pop() if len(used) == 1 else MIXED
    return modes.mode(task)


@dataclass(frozen=True)
class DatasetForm:
    """How a grid runs one dataset, as far as a statistic's definition can depend on it.

    answer_mode: generate | constrained | cloze | ``MIXED``; option_counts: the distinct numbers of
    options among its questions, sorted (() in generate mode, or when not known yet: at config time
    only yes/no's 2 is known)."""

    answer_mode: str
    option_counts: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """ "generate", "constrained, 4 options", "cloze, 3-5 options"."""
        if self.answer_mode not in OPTION_MODES or not self.option_counts:
            return self.answer_mode
        ks = self.option_counts
        n = str(ks[0]) if len(ks) == 1 else f"{ks[0]}-{ks[-1]}"
        return f"{self.answer_mode}, {n} options"


def option_counts(rows: Iterable[Mapping[str, Any]]) -> tuple[int, ...]:
    """The distinct option counts of a pass's rows (their ``option_labels``; rows without any,
    e.g. generated ones, are not counted), sorted."""
    return tuple(sorted({len(r["option_labels"]) for r in rows if r.get("option_labels")}))


def task_option_counts(task: str) -> tuple[int, ...]:
    """The option counts a task fixes before any data is read: (2,) for yes/no, () otherwise."""
    return (2,) if task == "yesno" else ()


@dataclass(frozen=True)
class Definition:
    """A method's definition key on one dataset: equal keys = the same statistic, poolable.

    answer_mode, option_count: the parts the method depends on (None where it does not); own: the
    dataset's name when it is a definition of its own (its option count varies, or its tasks answer
    in several modes), else None. label: for messages ("constrained, 4 options"; "any answer mode"
    for a method that depends on nothing); not part of the key."""

    answer_mode: str | None = None
    option_count: int | None = None
    own: str | None = None

    @property
    def label(self) -> str:
        if self.answer_mode is None:
            return "any answer mode"
        if self.own is not None:
            what = "tasks answered in several modes" if self.answer_mode == MIXED else "option count varies"
            return f"{self.answer_mode}, {what}: a definition of its own"
        if self.option_count is not None:
            return f"{self.answer_mode}, {self.option_count} options"
        return self.answer_mode


def definition_key(method: UQMethod | tuple[str, ...], form: DatasetForm, dataset: str) -> Definition:
    """The definition of ``method``'s statistic on ``dataset`` run as ``form``: the parts of the
    form the method declares (``UQMethod.definition_depends_on``, or those parts themselves). In an
    option-scoring mode a method that depends on the option count gets the dataset's K, or a
    definition of its own when K varies; a ``MIXED`` dataset is its own for every method that
    depends on the answer mode."""
    parts = method if isinstance(method, tuple) else method.definition_depends_on
    if "answer_mode" not in parts and "option_count" not in parts:
        return Definition()
    mode = form.answer_mode
    if mode == MIXED:
        return Definition(mode, None, dataset)
    if "option_count" in parts and mode in OPTION_MODES:
        ks = form.option_counts
        if len(ks) > 1:
            return Definition(mode, None, dataset)
        return Definition(mode, ks[0] if ks else None)
    return Definition(mode if "answer_mode" in parts else None)


def definitions(methods: Mapping[str, UQMethod], forms: Mapping[str, DatasetForm]) -> dict[tuple[str, str], Definition]:
    """(uq name, dataset) -> ``definition_key`` for every method and dataset of a grid.
    methods: uq name -> its UQ method; forms: dataset -> its ``DatasetForm``."""
    return {(uq, d): definition_key(m, f, d) for uq, m in methods.items() for d, f in forms.items()}


def not_pooled(uq: str, target: str, target_def: Definition, other: str, other_def: Definition) -> str:
    """The sentence the report gives for a dataset left out of a pool:
    "addsub (generate) not pooled with arc_easy (constrained, 4 options) for mean_token_entropy"."""
    return f"{other} ({other_def.label}) not pooled with {target} ({target_def.label}) for {uq}"


def same_definition(
    uq: str, target: str, candidates: Iterable[str], defs: Mapping[tuple[str, str], Definition] | None
) -> tuple[list[str], dict[str, str]]:
    """Split ``candidates`` (datasets that could feed ``target``'s calibration set for ``uq``) into
    those of ``target``'s definition (in the given order) and the others, each with its
    ``not_pooled`` sentence. defs None: every dataset has one definition (the caller vouches)."""
    cands = list(candidates)
    if defs is None:
        return cands, {}
    td = defs[(uq, target)]
    keep = [d for d in cands if defs[(uq, d)] == td]
    return keep, {d: not_pooled(uq, target, td, d, defs[(uq, d)]) for d in cands if defs[(uq, d)] != td}


def split_source_check(
    defs: Mapping[tuple[str, str], Definition],
    splits: Iterable[str],
    groups: Mapping[str, str | None],
    sources: Iterable[str] | None = None,
) -> tuple[list[str], list[str]]:
    """The config-time check of the calibration splits: (warnings, refusals).

    defs: ``definitions`` of the grid (at config time the option count is known for yes/no only);
    splits: ``calibration.splits``; groups: dataset -> its group (cross_group); sources: the
    datasets that may feed calibration sets (``calibration.pool``; None = all).
    A warning names, per split, each target dataset that has a calibration source of some other
    definition but none of its own (its rows for those methods will be left out, the report says
    which); a refusal names a split where no (method, target) has a source of its own definition
    at all, so the split could produce nothing but would pool different definitions."""
    uqs = sorted({u for u, _ in defs})
    datasets = sorted({d for _, d in defs})
    allowed = set(datasets if sources is None else sources)
    warnings: list[str] = []
    refusals: list[str] = []
    for split in splits:
        if split not in _SPLITS:
            continue
        pairs = []  # (uq, target, candidate sources of any definition)
        for uq in uqs:
            for t in datasets:
                if split == "leave_one_out":
                    cands = [d for d in datasets if d != t and d in allowed]
                    pairs.append((uq, t, cands))
                elif groups.get(t):
                    for g1 in sorted({g for g in groups.values() if g and g != groups[t]}):
                        pairs.append((uq, t, [d for d in datasets if groups.get(d) == g1 and d in allowed]))
        some_source = [p for p in pairs if p[2]]
        ok = [p for p in some_source if any(defs[(p[0], d)] == defs[(p[0], p[1])] for d in p[2])]
        lacking = [p for p in some_source if p not in ok]
        if some_source and not ok:
            refusals.append(
                f"calibration.splits {split}: no dataset has a calibration source answered the way it is "
                f"for any UQ method, so every calibration set would pool different definitions of the "
                f"statistic ({_lacking_text(lacking, defs)}); add datasets of the same answer mode, or "
                f"drop {split} from calibration.splits"
            )
        elif lacking:
            warnings.append(
                f"calibration.splits {split}: {_lacking_text(lacking, defs)}; those rows are left out of "
                f"the transfer tables (the report says which), never pooled across definitions"
            )
    return warnings, refusals


def _lacking_text(lacking: list[tuple[str, str, list[str]]], defs: Mapping[tuple[str, str], Definition]) -> str:
    """One clause per target dataset: which methods find no source of its definition."""
    by_target: dict[tuple[str, str], list[str]] = {}
    for uq, t, _ in lacking:
        uqs = by_target.setdefault((t, defs[(uq, t)].label), [])
        if uq not in uqs:
            uqs.append(uq)
    return "; ".join(
        f"{t} ({label}) has no calibration dataset of the same definition for {', '.join(uqs)}"
        for (t, label), uqs in sorted(by_target.items())
    )


__all__ = [
    "MIXED",
    "OPTION_MODES",
    "DatasetForm",
    "Definition",
    "dataset_answer_mode",
    "definition_key",
    "definitions",
    "not_pooled",
    "option_counts",
    "same_definition",
    "split_source_check",
    "task_option_counts",
]
