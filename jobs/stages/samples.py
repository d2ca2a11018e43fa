"""Sampled answers: m answers at temperature T (Jaccard degree). Provides sampled_texts.

Constrained / cloze mc / yes-no: m options drawn from the scored options' distribution
(``constrained.py``, ``cloze.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs import prompts
from jobs import schemas as S
from jobs.stages.base import Stage, StageContext, StageParams, row_seeds
from jobs.stages.cloze import cloze_samples
from jobs.stages.constrained import by_mode, constrained_samples


def samples(backend, batch, deps, p) -> list[dict]:
    if prompts.AnswerModes.of_params(p) is not None:
        return by_mode(backend, batch, deps, p, constrained_samples, samples, cloze_samples)
    m = p["num_samples"]
    msgs = [prompts.answer_messages(s) for s in batch]
    gens = backend.generate(
        msgs,
        max_new_tokens=p["max_new_tokens"],
        do_sample=True,
        temperature=p["temperature"],
        num_return_sequences=m,
        seed=p["seed"],
        row_seeds=row_seeds(p["seed"], batch, m),  # draw j of a sample: row_seed(seed, sample id, j)
    )
    rows = []
    for i, msg in enumerate(msgs):
        chunk = gens[i * m : (i + 1) * m]
        rows.append(
            {
                "prompt": backend.render(msg),
                "sampled_texts": [g.text for g in chunk],
                "sampled_n_tokens": [g.n_new_tokens for g in chunk],
                "n_prompt_tokens": chunk[0].n_prompt_tokens,
                "n_new_tokens": sum(g.n_new_tokens for g in chunk),
                "latency_s": sum(g.latency_s for g in chunk),
                "n_passes": None,
            }
        )
    return rows


@dataclass(frozen=True)
class SampleParams(StageParams):
    """m answers at temperature T, each within its token budget."""

    num_samples: int
    temperature: float
    max_new_tokens: int


def sample_params(ctx: StageContext) -> SampleParams:
    d = ctx.decoding
    return SampleParams(
        num_samples=d.num_samples,
        temperature=d.sample_temperature,
        max_new_tokens=d.sample_max_new_tokens or ctx.answer_tokens,
    )


def sampled_texts(rows: list[dict], policy: str) -> dict:
    return {"sampled_texts": [list(r["sampled_texts"] or []) for r in rows]}


STAGE = Stage(
    name="samples",
    run=samples,
    provides=("sampled_texts",),
    stats=sampled_texts,
    params=sample_params,
    constrained=True,
    constrained_deps=("greedy",),  # constrained: draws from the greedy pass's option distribution
    overhead=True,
    # n_passes: model passes the row caused (None: one per sampled answer; 0: drawn from greedy's)
    columns={"sampled_texts": S.LIST_STR, "sampled_n_tokens": S.LIST_I64, "n_passes": S.I64},
    schema_version="2",
    description="m sampled answers at temperature T",
)
