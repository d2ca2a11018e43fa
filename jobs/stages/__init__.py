"""Generation stages: the expensive work, one model pass per (model, dataset, role, stage).

A stage is one declaration (``jobs.stages.base.Stage``: name, run function, the stats it provides,
its dependencies, its params as a function of the decoding config / model config / task), one file
``jobs/stages/<name>.py`` exporting ``STAGE``, and one line in ``STAGES`` below. The plan, the
stats the UQ methods read (``jobs.scoring.load_stats``) and the cost axis are generic over it.
The stages and the named stats they provide (the contract read by ``jobs/uq``):

  greedy     token_logprobs, token_entropy, answer_logprob, hidden_state, correct  (+ raw_output)
             option_logprobs               (the scored options' distribution: cloze, constrained)
             prompt_hidden_state, prompt   (the learned routers' query side)
  samples    sampled_texts                 (m samples at temperature T)
  ptrue      ptrue_prob                    (one forward pass; shows the whole greedy answer)
  verbal_1s  verbal_1s_conf                (answer + confidence in one output: verbal_1s_raw)
  verbal_2s  verbal_2s_conf                (second turn after the whole greedy answer)
  llm        raw_output of an LLM (greedy), for the other side of the routing

A stage's ``run(backend, samples, deps, params) -> list[row]`` is run by the generation engine
(``jobs.engine.run_gen_unit``) in fixed chunks of samples; each chunk becomes one Parquet part, so a killed unit resumes at chunk
level. With ``decoding.answer_mode: constrained`` the greedy, llm and samples stages of mc and
yes/no questions score the option letters in one forward pass instead of generating
(``jobs/stages/constrained.py``); with ``cloze`` they score each option's text as the question's
continuation, as lm-evaluation-harness does (``jobs/stages/cloze.py``, formats in ``jobs/cloze.py``);
the stats keep their names (their cloze definitions are in ``jobs/stages/cloze.py``).

Scoring, extraction and correctness are *not* done here (see ``jobs/scoring.py``): raw
outputs are kept, so they can be recomputed without a model.

This package does not import torch: the backend object is passed in; the methods a stage may call
on it are ``jobs.backends.base.Backend`` (and the optional ``CountsTokens`` / ``ScoresOptions`` /
``ScoresContinuations``).
"""

from __future__ import annotations

from typing import Any

from jobs.backends.base import ModelConf
from jobs.registry import Registry
from jobs.stages.base import Stage, StageContext, StageParams

#: name -> its declaration, in plan order (a stage comes after its deps). Adding a stage: one file
#: ``jobs/stages/<name>.py`` exporting ``STAGE = Stage(...)`` and one line here.
STAGES = Registry(
    "stage",
    {
        "greedy": "jobs.stages.greedy:STAGE",
        "samples": "jobs.stages.samples:STAGE",
        "ptrue": "jobs.stages.ptrue:STAGE",
        "verbal_1s": "jobs.stages.verbal_1s:STAGE",
        "verbal_2s": "jobs.stages.verbal_2s:STAGE",
        "llm": "jobs.stages.llm:STAGE",
    },
)


def stage(name: str) -> Stage:
    """The declaration of stage ``name`` (UnknownNameError, with "did you mean", otherwise)."""
    st = STAGES.get(name)
    if st.name != name:
        raise ValueError(f"stage registered as {name!r} declares name {st.name!r}")
    return st


def declared() -> list[Stage]:
    """Every stage, in declaration order."""
    return [stage(n) for n in STAGES.in_order()]


def check_stages() -> None:
    """Raise ValueError when the declarations do not form a plan: a dependency that is not a stage
    or declared after its dependent, or one stat provided by two stages."""
    seen: set[str] = set()
    owner: dict[str, str] = {}
    for st in declared():
        for d in (*st.deps, *st.constrained_deps):
            if d not in seen:
                raise ValueError(
                    f"stage {st.name!r} depends on {d!r}, which is not a stage declared before it; "
                    f"declared before: {', '.join(sorted(seen)) or '(none)'}"
                )
        for x in st.provides:
            if x in owner:
                raise ValueError(f"stat {x!r} is provided by both stage {owner[x]!r} and stage {st.name!r}")
            owner[x] = st.name
        seen.add(st.name)


def stat_stages() -> dict[str, str]:
    """stat -> the stage that provides it (the declarations checked first: ``check_stages``)."""
    check_stages()
    return {x: st.name for st in declared() for x in st.provides}


def stage_params(name: str, decoding: Any, model: ModelConf, task: str) -> dict:
    """The decoding params stage ``name``'s units are keyed on: its ``Stage.params`` (a
    ``StageParams``), as the dict the unit key hashes (``StageParams.key``)."""
    p = stage(name).params(StageContext(decoding=decoding, model=model, task=task))
    if not isinstance(p, StageParams):
        raise TypeError(
            f"stage {name!r}: params(ctx) returned a {type(p).__name__}; a stage declares its decoding "
            f"params as a frozen dataclass subclassing jobs.stages.base.StageParams"
        )
    return p.key()
