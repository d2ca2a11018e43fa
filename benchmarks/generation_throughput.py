"""Tokens/s of batched vs one-question-at-a-time greedy generation, same model, one run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/generation_throughput.py [--n 32] [--batch 16]

Uses the real SmolLM2-135M-Instruct (conf/slm/smollm2-135m.yaml) on real questions.
Prints tokens/s for both and their ratio. Run by hand on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from omegaconf import OmegaConf

    from jobs import prompts
    from jobs.backends import make_backend
    from jobs.datasets import load_samples

    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--dataset", default="arc_easy")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args()
    conf = OmegaConf.to_container(OmegaConf.load("conf/slm/smollm2-135m.yaml"))
    conf["torch_threads"] = a.threads
    backend = make_backend(conf)
    samples = load_samples(a.dataset, limit=a.n, seed=0).samples
    msgs = [prompts.answer_messages(s) for s in samples]
    backend.generate(msgs[:2], max_new_tokens=4)  # warm-up

    def run(bs: int) -> tuple[float, int]:
        t0, tokens = time.perf_counter(), 0
        for i in range(0, len(msgs), bs):
            tokens += sum(
                g.n_new_tokens
                for g in backend.generate(msgs[i : i + bs], max_new_tokens=a.max_new_tokens, with_stats=True)
            )
        return time.perf_counter() - t0, tokens

    t1, n1 = run(1)
    tb, nb = run(a.batch)
    print(f"model {backend.identity}  questions {len(msgs)}  max_new_tokens {a.max_new_tokens}")
    print(f"one at a time : {n1:6d} tokens in {t1:7.2f}s = {n1 / t1:8.1f} tok/s")
    print(f"batch of {a.batch:<4d}  : {nb:6d} tokens in {tb:7.2f}s = {nb / tb:8.1f} tok/s")
    print(f"ratio batched/single tokens per second: {(nb / tb) / (n1 / t1):.2f}x")


if __name__ == "__main__":
    main()
