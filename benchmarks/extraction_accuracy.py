"""Accuracy of the answer extractor on the hand-labelled corpus of real model outputs.

  PYTHONPATH=$PWD python benchmarks/extraction_accuracy.py [--corpus PATH ...] [--ref GIT_REV] [--by-model] [--timing]

The corpus is the real model outputs (corpus.jsonl) and the hand-written adversarial outputs
(adversarial.jsonl: hedges, echoes, self-corrections, number forms); the tables are printed for the
whole extended corpus, then for each of the two.

For each task type and policy: the share of outputs where ``extract`` returns exactly the
hand label (a null label must give None: declining to answer is part of the job), the same on
the outputs that do have a label ("answered") and on those that do not ("no answer"), and the
share whose *correctness* (``is_correct`` against the dataset's gold) equals that of the label:
what routing sees. ``--ref`` also scores the extractor of an older revision
(``git show REV:jobs/answers.py``), e.g. the v1 extractor before issue 8.
The corpus and how it was labelled: tests/fixtures/extraction_corpus/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "fixtures" / "extraction_corpus" / "corpus.jsonl"
ADVERSARIAL = CORPUS.with_name("adversarial.jsonl")
TASKS = ("numeric", "mc", "yesno", "freeform")
POLICIES = ("strict", "flexible")


def load_corpus(path: Path = CORPUS) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def sample_of(row: dict):
    from jobs.types import Sample

    return Sample(
        id=row["sample_id"],
        question=row["question"],
        task=row["task"],
        gold=row["gold_answer"],
        choices=tuple(row.get("options") or ()),
        aliases=tuple(row.get("aliases") or ()),
    )


def score(rows: list[dict], answers_module) -> dict:
    """{(group, policy): counts} with group a task type or "all"."""
    out: dict = defaultdict(lambda: defaultdict(int))
    for row in rows:
        s = sample_of(row)
        for policy in POLICIES:
            label = row[f"gold_extracted_{policy}"]
            got = answers_module.extract(row["raw_output"], s, policy)
            same = got == label
            same_judgement = answers_module.is_correct(got, s) == answers_module.is_correct(label, s)
            for group in (row["task"], "all"):
                c = out[(group, policy)]
                c["n"] += 1
                c["exact"] += same
                c["judged"] += same_judgement
                c["n_answered" if label is not None else "n_none"] += 1
                c["answered" if label is not None else "none"] += same
    return out


def load_ref(rev: str):
    """jobs/answers.py as it was at ``rev`` (run from a checkout that has that revision)."""
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:jobs/answers.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "answers_ref.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("answers_ref", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:5.1f}% ({k}/{n})" if n else "    -"


def table(counts: dict, title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| task | policy | n | exact | answered | no answer | same correctness |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in (*TASKS, "all"):
        for policy in POLICIES:
            c = counts.get((group, policy))
            if not c:
                continue
            lines.append(
                f"| {group} | {policy} | {c['n']} | {_pct(c['exact'], c['n'])} | "
                f"{_pct(c['answered'], c['n_answered'])} | {_pct(c['none'], c['n_none'])} | "
                f"{_pct(c['judged'], c['n'])} |"
            )
    return "\n".join(lines)


def timing(rows: list[dict], answers_module, repeat: int = 10) -> str:
    """Seconds per 1,000 outputs: extraction (both policies) and judging, on the corpus repeated;
    the numeric fast path on plain numbers; math-verify on LaTeX answers (distinct, uncached)."""
    import time

    from jobs.types import Sample

    samples = [(r["raw_output"], sample_of(r)) for r in rows] * repeat
    out = []
    for policy in POLICIES:
        t0 = time.perf_counter()
        for text, s in samples:
            answers_module.is_correct(answers_module.extract(text, s, policy), s)
        out.append(
            f"extract + is_correct ({policy}): {1000 * (time.perf_counter() - t0) / len(samples):.2f} s "
            f"per 1,000 outputs ({len(samples)} timed)"
        )
    plain = [Sample(str(i), "", "numeric", str(i)) for i in range(10000)]
    t0 = time.perf_counter()
    assert all(answers_module.is_correct(f"{i}.0", s) for i, s in enumerate(plain))
    out.append(
        f"is_correct, plain numbers (fast path): {1000 * (time.perf_counter() - t0) / len(plain):.4f} s per 1,000"
    )
    t0 = time.perf_counter()
    answers_module.is_correct("\\frac{1}{2}", Sample("w", "", "numeric", "0.5"))
    out.append(f"first math-verify call (imports sympy): {time.perf_counter() - t0:.2f} s")
    latex = [(f"\\frac{{{2 * i}}}{{2}}", Sample(str(i), "", "numeric", str(i))) for i in range(1, 1001)]
    t0 = time.perf_counter()
    assert all(answers_module.is_correct(p, s) for p, s in latex)
    out.append(
        f"is_correct, LaTeX answers (math-verify): {1000 * (time.perf_counter() - t0) / len(latex):.2f} s per 1,000"
    )
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, nargs="+", default=[CORPUS, ADVERSARIAL])
    ap.add_argument("--ref", help="also score jobs/answers.py of this git revision")
    ap.add_argument("--by-model", action="store_true", help="one table per model as well")
    ap.add_argument("--timing", action="store_true", help="also time extraction and judging")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from jobs import answers

    parts = {c: load_corpus(c) for c in a.corpus}
    rows = [r for part in parts.values() for r in part]
    names = {c: str(c.relative_to(ROOT) if c.is_relative_to(ROOT) else c) for c in a.corpus}
    print(f"corpus: {', '.join(f'{names[c]} ({len(p)})' for c, p in parts.items())}, {len(rows)} outputs\n")
    print(table(score(rows, answers), f"extractor {answers.EXTRACTION_VERSION} (this checkout), all outputs"))
    if len(parts) > 1:
        for c, part in parts.items():
            print()
            print(
                table(score(part, answers), f"extractor {answers.EXTRACTION_VERSION}, {names[c]} ({len(part)} outputs)")
            )
    if a.by_model:
        for model in sorted({r["model"] for r in rows}):
            sub = [r for r in rows if r["model"] == model]
            print()
            print(table(score(sub, answers), f"extractor {answers.EXTRACTION_VERSION}, {model} ({len(sub)} outputs)"))
    if a.timing:
        print()
        print(timing(rows, answers))
    if a.ref:
        ref = load_ref(a.ref)
        version = getattr(ref, "EXTRACTION_VERSION", "?")
        print()
        print(table(score(rows, ref), f"extractor {version} (git {a.ref}), all outputs"))
        if len(parts) > 1:
            for c, part in parts.items():
                print()
                print(table(score(part, ref), f"extractor {version} (git {a.ref}), {names[c]} ({len(part)} outputs)"))


if __name__ == "__main__":
    main()
