"""Build the labelled extraction corpus (tests/fixtures/extraction_corpus/corpus.jsonl).

Two steps, because the labels are written by a person reading each output, not by the extractor:

  generate  run SmolLM2-135M-Instruct (the SLM, conf/slm/smollm2-135m.yaml: fp32 since issue 16; the
            shipped corpus was generated with its int8 predecessor) and Gemma-3-270M (the offline LLM, a base
            model) on a few questions of the shared datasets (all four task types) with the
            project's own answer prompts (``jobs.prompts.answer_messages``), free-text answers
            (no constrained decoding), and write the raw outputs to ``--out`` (JSONL).
  merge     join those outputs with hand-written labels (``labels.jsonl``: one line per id with
            ``gold_extracted_strict``, ``gold_extracted_flexible``, ``label_notes``) into the fixture.

  PYTHONPATH=$PWD python scripts/build_extraction_corpus.py generate --out /tmp/corpus_outputs.jsonl
  PYTHONPATH=$PWD python scripts/build_extraction_corpus.py merge /tmp/corpus_outputs.jsonl \\
      /tmp/labels.jsonl tests/fixtures/extraction_corpus/corpus.jsonl

The hand-written adversarial outputs beside it (``adversarial.jsonl``: hedges, echoes, self-corrections,
number forms) are not generated: that file is its own source (README there).

The labels file is a working file (the corpus keeps the labels); the labelling conventions are in
tests/fixtures/extraction_corpus/README.md. About 10 minutes of CPU for the whole plan (Gemma decodes
at a few tokens per second). Outputs depend on the models, prompts (``PROMPT_VERSION``) and datasets; the seed picks the questions.
SmolLM2 multiple-choice rows keep their tokens and token log-probs (the answer-probability tests
map an extracted span onto them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from jobs import prompts
from jobs.datasets import load_samples

ROOT = Path(__file__).resolve().parents[1]
# (model config, dataset, questions, max_new_tokens)
PLAN = {
    "smollm2-135m": (
        "conf/slm/smollm2-135m.yaml",
        [
            ("gsm8k", 30, 128),
            ("addsub", 20, 96),
            ("multiarith", 15, 96),
            ("arc_easy", 25, 64),
            ("commonsenseqa", 20, 64),
            ("mmlu", 10, 64),
            ("piqa", 10, 64),
            ("strategyqa", 25, 64),
            ("boolq", 15, 64),
            ("coin_flip", 15, 64),
            ("last_letters", 30, 64),
            ("aqua", 10, 64),
            ("mathqa", 10, 64),
            ("social_iqa", 10, 64),
            ("truthfulqa", 10, 64),
            ("date_understanding", 10, 64),
            ("winogrande", 10, 64),
        ],
    ),
    "gemma3-270m": (
        "conf/llm/gemma3-270m.yaml",
        [
            ("gsm8k", 15, 48),
            ("addsub", 10, 48),
            ("arc_easy", 15, 48),
            ("commonsenseqa", 10, 48),
            ("strategyqa", 15, 48),
            ("boolq", 10, 48),
            ("coin_flip", 10, 48),
            ("last_letters", 15, 48),
            ("arc_challenge", 10, 48),
            ("mmlu", 10, 48),
            ("piqa", 10, 48),
        ],
    ),
}
SEED = 7
KEEP_TOKENS = {("smollm2-135m", "mc")}
QUESTION_CHARS = 200


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= QUESTION_CHARS else text[: QUESTION_CHARS - 3] + "..."


def generate(out: Path, models: list[str], batch: int, datasets: list[str] | None = None) -> None:
    from jobs.backends import make_backend

    with out.open("w") as f:
        for model in models:
            if datasets and not any(d in datasets for d, _, _ in PLAN[model][1]):
                continue
            conf_path, plan = PLAN[model]
            conf = yaml.safe_load((ROOT / conf_path).read_text())
            backend = make_backend(conf)
            for dataset, n, max_new in plan:
                if datasets and dataset not in datasets:
                    continue
                samples = load_samples(dataset, limit=n, seed=SEED).samples
                t0 = time.perf_counter()
                for i in range(0, len(samples), batch):
                    chunk = samples[i : i + batch]
                    with_stats = any((model, s.task) in KEEP_TOKENS for s in chunk)
                    gens = backend.generate(
                        [prompts.answer_messages(s) for s in chunk],
                        max_new_tokens=max_new,
                        with_stats=with_stats,
                        seed=0,
                    )
                    for s, g in zip(chunk, gens):
                        row = {
                            "id": f"{model}/{dataset}/{s.id}",
                            "model": model,
                            "dataset": dataset,
                            "sample_id": s.id,
                            "task": s.task,
                            "question": _short(s.question),
                            "options": list(s.choices) or None,
                            "gold_answer": s.gold,
                            "aliases": list(s.aliases) or None,
                            "max_new_tokens": max_new,
                            "prompt_version": prompts.PROMPT_VERSION,
                            "raw_output": g.text,
                        }
                        if (model, s.task) in KEEP_TOKENS:
                            row["token_texts"] = backend.token_strings(g.token_ids)
                            row["token_logprobs"] = [round(float(x), 5) for x in g.token_logprobs]
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    f.flush()
                print(
                    f"{model} {dataset}: {len(samples)} outputs in {time.perf_counter() - t0:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )


LABEL_KEYS = ("gold_extracted_strict", "gold_extracted_flexible", "label_notes")


def merge(outputs: Path, labels: Path, corpus: Path) -> None:
    rows = [json.loads(x) for x in outputs.read_text().splitlines() if x.strip()]
    labelled = {}
    for x in labels.read_text().splitlines():
        if x.strip():
            lab = json.loads(x)
            labelled[lab["id"]] = lab
    missing = [r["id"] for r in rows if r["id"] not in labelled]
    if missing:
        raise SystemExit(f"{len(missing)} outputs have no label, e.g. {missing[:3]}")
    with corpus.open("w") as f:
        for r in rows:
            lab = labelled[r["id"]]
            r.update({k: lab.get(k) for k in LABEL_KEYS})
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} labelled outputs -> {corpus} ({corpus.stat().st_size / 1024:.0f} KiB)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--models", nargs="+", default=list(PLAN), choices=list(PLAN))
    g.add_argument("--batch", type=int, default=16)
    g.add_argument("--datasets", nargs="+", help="only these datasets of the plan")
    m = sub.add_parser("merge")
    m.add_argument("outputs", type=Path)
    m.add_argument("labels", type=Path)
    m.add_argument("corpus", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "generate":
        generate(a.out, a.models, a.batch, a.datasets)
    else:
        merge(a.outputs, a.labels, a.corpus)


if __name__ == "__main__":
    main()
