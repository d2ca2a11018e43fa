"""The generation engine: runs one generation unit (a stage's pass of one model over one dataset's
role) in fixed chunks, each written as one Parquet part, and finishes a unit run as shards.

``run_gen_unit`` is what a model actor calls (``cluster.actors``); it fits each prompt to the
model's budget (``fit_prompt``), forms batches (``token_batches`` / ``length_order``), runs the
stage's declared ``run`` (``jobs.stages``) on each batch and writes the rows with the stage's
declared schema (``jobs.store``). The stages know nothing of the store or of chunks; this module
knows nothing of a stage beyond its declaration.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

from jobs import prompts
from jobs.backends.base import DEFAULT_BATCH_SIZE, CountsTokens
from jobs.datasets.roles import load_role
from jobs.stages import stage
from jobs.stages.base import OPTIONS, common_columns, cut_middle
from jobs.store import Store, write_rows
from jobs.types import DataError, Sample
from jobs.units import GenManifest, GenSpec


def _dep_answers(store, dep_key: str) -> dict[str, str]:
    t = store.gen(dep_key).read(columns=["sample_id", "raw_output"])
    return {sid: (out or "") for sid, out in zip(t.column("sample_id").to_pylist(), t.column("raw_output").to_pylist())}


def _dep_options(store, dep_key: str) -> dict[str, tuple[list, list | None]]:
    """sample_id -> (option_labels, option_logprobs) of a constrained unit's rows."""
    t = store.gen(dep_key).read(columns=["sample_id", "option_labels", "option_logprobs"]).to_pydict()
    return {sid: (lab or [], lp) for sid, lab, lp in zip(t["sample_id"], t["option_labels"], t["option_logprobs"])}


def _load_deps(store, unit: GenSpec) -> dict:
    """What a unit's stage reads of its deps (``StageFn``): raw outputs, and the option
    distributions of its ``constrained_deps`` when the unit is constrained."""
    deps: dict = {name: _dep_answers(store, k) for name, k in unit.deps.items()}
    if prompts.AnswerModes.of_params(unit.params) is not None:
        for name in stage(unit.stage).constrained_deps:
            deps[name + OPTIONS] = _dep_options(store, unit.deps[name])
    return deps


def prompt_budget(backend, params: dict, max_prompt_tokens: int | None) -> int | None:
    """Tokens a prompt may have: ``max_prompt_tokens``, else the model's context length minus the
    stage's generation budget; None when the backend cannot count tokens (an HTTP endpoint)."""
    if max_prompt_tokens:
        return int(max_prompt_tokens)
    ctx = getattr(backend, "context_length", None)
    if not ctx or not hasattr(backend, "prompt_tokens"):
        return None
    return max(16, int(ctx) - int(params.get("max_new_tokens") or 0))


def fit_prompt(backend, s: Sample, budget: int | None) -> tuple[Sample, int | None]:
    """The sample, shortened until its answer prompt has at most ``budget`` tokens.

    The rule (documented in the README, "Long inputs"): the longest of the passage (context) and
    the question is cut in its middle -- its first two thirds and last third kept, joined by
    " [...] " -- to the longest length that fits (binary search on characters). A passage is cut
    before the question; the instruction and the options are never cut. Returns the sample and
    the prompt's original token count when it was cut (None when it fitted)."""
    if budget is None or not hasattr(backend, "prompt_tokens"):
        return s, None
    n = backend.prompt_tokens(prompts.answer_messages(s))
    if n <= budget:
        return s, None
    cut = s
    for field_name in ("context", "question"):
        text = getattr(s, field_name) or ""
        if not text:
            continue

        lo, hi = 0, len(text)
        while lo < hi:  # the longest kept length whose prompt fits
            mid = (lo + hi + 1) // 2
            trial = dataclasses.replace(cut, **{field_name: cut_middle(text, mid)})
            if backend.prompt_tokens(prompts.answer_messages(trial)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        cut = dataclasses.replace(cut, **{field_name: cut_middle(text, lo)})
        if backend.prompt_tokens(prompts.answer_messages(cut)) <= budget:
            return cut, n
    raise DataError(
        f"sample {s.id!r}: even with passage and question cut, the prompt does not fit in "
        f"{budget} tokens (instruction and options alone exceed it); raise max_prompt_tokens"
    )


def length_order(samples: list[Sample]) -> list[int]:
    """Indices of ``samples`` from shortest to longest prompt text (stable), so that batches hold
    prompts of similar length and one long prompt does not pad the short ones."""
    size = [len(x.question) + len(x.context or "") + sum(len(c) for c in x.choices) for x in samples]
    return sorted(range(len(samples)), key=lambda i: size[i])


def token_batches(lengths: list[int], batch_size: int, max_batch_tokens: int | None) -> list[list[int]]:
    """Batches (lists of indices into ``lengths``) of at most ``batch_size`` rows each whose padded
    prompt tokens -- rows x the batch's longest prompt, as left padding feeds them -- stay within
    ``max_batch_tokens``; a prompt longer than the budget runs alone.

    The rows are taken from shortest to longest (stable for ties), and each batch grows while the
    next row still fits: with the lengths sorted, a batch's longest prompt is its last one, so one
    long prompt never pads the short ones. ``max_batch_tokens`` None: consecutive batches of
    ``batch_size`` in that order. Pure: ``tests/unit/test_long_inputs.py``."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        fits = max_batch_tokens is None or (len(cur) + 1) * lengths[i] <= max_batch_tokens
        if cur and (len(cur) >= batch_size or not fits):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


def run_gen_unit(
    backend,
    unit: GenSpec,
    store: str | Path,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
    shard: tuple[int, int] | None = None,
    batch_by_length: bool = False,
    max_prompt_tokens: int | None = None,
    max_batch_tokens: int | None = None,
) -> dict:
    """Run one generation unit (or one shard of it); return a small summary (never the data).

    unit: the unit's ``jobs.units.GenSpec``.
    shard: ``(j, n)`` runs only the chunks ``ci`` with ``ci % n == j`` (data parallelism across a
    model's replicas); with ``n > 1`` no manifest is written: ``finish_gen_shards`` writes it once
    every shard is done. Chunks already on disk are skipped either way (chunk-level resume). A row
    does not depend on which shard ran it, nor on its batch: the stages get the unit's seed and
    draw each row's randomness from ``row_seed(seed, sample id, j)`` (``jobs.stages.base``).
    batch_by_length: batches are formed over the chunk sorted by prompt length (rows are written
    in the chunk's order). max_batch_tokens: batches are formed over the chunk sorted by prompt
    tokens (the backend's ``prompt_tokens`` of the answer prompt), each within that many padded
    prompt tokens (``token_batches``); ignored for a backend that counts no tokens (an HTTP
    endpoint sends one request per prompt anyway). max_prompt_tokens: longer prompts are cut by ``fit_prompt`` and the row
    records ``prompt_truncated_from`` (default budget: context length minus generation budget); the
    stages that show the model its answer (ptrue, verbal_2s) get the budget as
    ``params["prompt_budget"]`` and cut a too-long answer in its middle (``fit_answer``; the row
    records ``answer_truncated_from``).
    """
    unit = GenSpec.of(unit)
    st = Store(store)
    udir = st.gen(unit.key)
    j, n = shard or (0, 1)
    if udir.done:
        return {"key": unit.key, "skipped": True, "shard": j, "n_shards": n}
    samples, malformed = _unit_samples(unit)
    fn = stage(unit.stage).run
    chunk = unit.chunk_size
    bs = int(batch_size or DEFAULT_BATCH_SIZE)
    n_chunks = max(1, math.ceil(len(samples) / chunk))
    done = udir.parts()
    todo = [ci for ci in range(n_chunks) if ci % n == j and ci not in done]
    deps = _load_deps(st, unit) if todo else {}
    t0 = time.perf_counter()
    tokens = 0
    budget = prompt_budget(backend, unit.params, max_prompt_tokens)
    for ci in todo:
        part = samples[ci * chunk : (ci + 1) * chunk]
        rows, new_tokens = _run_chunk(backend, fn, unit, part, deps, budget, bs, batch_by_length, max_batch_tokens)
        tokens += new_tokens
        write_rows(udir.part_path(ci), rows, f"gen:{unit.stage}", meta={"unit": unit.key, "stage": unit.stage})
        if progress:
            progress(ci + 1, n_chunks)
    manifest = _manifest(unit, backend, samples, malformed, tokens, time.perf_counter() - t0, todo, n_chunks)
    summary = manifest.to_json()
    if n == 1:
        udir.finish(manifest)
    return summary | {"shard": j, "n_shards": n}


def _manifest(
    unit: GenSpec, backend, samples: list, malformed: list, tokens: int, seconds: float, todo: list[int], n_chunks: int
) -> GenManifest:
    """The manifest of a unit run (or of one shard's run: ``todo``, the chunks it ran)."""
    chunk = unit.chunk_size
    return GenManifest(
        unit.key,
        unit.stage,
        unit.model,
        unit.dataset,
        unit.role,
        n_samples=len(samples),
        n_malformed=len(malformed),
        malformed=tuple(m.__dict__ for m in malformed[:20]),
        new_tokens=tokens,
        seconds=seconds,
        model_identity=getattr(backend, "identity", None),
        n_chunks=n_chunks,
        extra={
            "chunks_run": len(todo),
            "samples_run": sum(len(samples[ci * chunk : (ci + 1) * chunk]) for ci in todo),
        },
    )


def _unit_samples(unit: GenSpec) -> tuple[list[Sample], list]:
    """The unit's samples of its dataset's role, and the malformed rows left out; DataError when
    no sample is usable."""
    samples, malformed = load_role(unit.dataset_conf, unit.run, unit.role)
    if not samples:
        reasons = "; ".join(f"row {m.row}: {m.reason}" for m in malformed[:3])
        raise DataError(
            f"dataset {unit.dataset!r} ({unit.role} role) has no usable samples; "
            f"{len(malformed)} malformed rows{': ' + reasons if reasons else ''}"
        )
    return samples, malformed


def _run_chunk(
    backend,
    fn: Callable,
    unit: GenSpec,
    part: list[Sample],
    deps: dict,
    budget: int | None,
    batch_size: int,
    batch_by_length: bool,
    max_batch_tokens: int | None,
) -> tuple[list[dict], int]:
    """One chunk's rows, in the chunk's order (each prompt fitted to ``budget``, the stage run batch
    by batch: ``fn``, the stage's ``run``), and the new tokens generated."""
    fitted = [fit_prompt(backend, x, budget) for x in part]
    rows: list = [None] * len(part)
    tokens = 0
    # the unit's seed: each stage draws a row's randomness from (seed, sample id), so the batches
    # below decide speed only, never a row's outputs
    p = dict(unit.params, seed=int(unit.params.get("seed", 0)), prompt_budget=budget)
    for idx in _batches(backend, [x for x, _ in fitted], batch_size, batch_by_length, max_batch_tokens):
        batch = [fitted[i][0] for i in idx]
        out = fn(backend, batch, deps, p)
        for i, r in zip(idx, out):
            rows[i] = common_columns(part[i], unit.role, unit.dataset) | r | {"prompt_truncated_from": fitted[i][1]}
            tokens += int(r.get("n_new_tokens") or 0)
    return rows, tokens


def _batches(
    backend, samples: list[Sample], batch_size: int, by_length: bool, max_batch_tokens: int | None
) -> list[list[int]]:
    """The batches ``run_gen_unit`` runs a chunk's (fitted) samples in, as index lists."""
    if max_batch_tokens and isinstance(backend, CountsTokens):
        lengths = [backend.prompt_tokens(prompts.answer_messages(x)) for x in samples]
        return token_batches(lengths, batch_size, int(max_batch_tokens))
    order = length_order(samples) if by_length else list(range(len(samples)))
    return [order[b : b + batch_size] for b in range(0, len(order), batch_size)]


SHARD_FIELDS = ("shard", "n_shards", "chunks_run", "samples_run", "skipped")


def finish_gen_shards(unit: GenSpec, store: str | Path, summaries: list[dict]) -> dict:
    """Write the manifest of a unit run as shards, once every chunk's part is on disk.

    Raises ``RuntimeError`` naming the missing chunks when a shard left a gap (the scheduler
    then reruns the unit, which redoes only the missing chunks)."""
    unit = GenSpec.of(unit)
    udir = Store(store).gen(unit.key)
    if udir.done:
        return {"key": unit.key, "skipped": True}
    ran = [s for s in summaries if not s.get("skipped")]
    if not ran:
        raise RuntimeError(f"unit {unit.key}: no shard summary to finish from")
    n_chunks = int(ran[0]["n_chunks"])
    missing = sorted(set(range(n_chunks)) - udir.parts())
    if missing:
        raise RuntimeError(f"unit {unit.key}: chunks {missing} of {n_chunks} are missing after all shards")
    first = ran[0]
    summary = {k: v for k, v in first.items() if k not in SHARD_FIELDS}
    summary["new_tokens"] = sum(int(s.get("new_tokens") or 0) for s in ran)
    summary["seconds"] = sum(float(s.get("seconds") or 0.0) for s in ran)
    summary["n_shards"] = len(summaries)
    return udir.finish(GenManifest.from_json(summary))
