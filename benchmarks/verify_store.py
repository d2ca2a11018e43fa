"""How long verifying a paper-shaped store takes: shallow (every resume, status, report) and deep.

    .venv/bin/python benchmarks/verify_store.py [--rows 160] [--hidden 256] [--keep DIR]

Builds the store of the paper's grid (``conf/grid/paper.yaml``: 1,792 settings, 6,216 work
units) without any model: every unit of its plan gets synthetic files of the shapes the real ones
have (generation parts of 32 rows with token log-probs, a hidden state and its prompt-side twin of
``--hidden`` floats; one score part; a setting's records, cost, curve.json and PNG), finished
through the store's own writer (``UnitDir.finish``: sizes, SHA-256, row counts, footer hashes).
Then it times ``orchestrator.verify.check_plan`` shallow (sizes, Parquet magic and footer hash:
what ``resume`` / ``status`` / ``report`` run every time) and deep (every byte hashed), each cold
(page cache dropped when run as root) and warm, and ``Plan.done`` (the scheduler's sequential
pass). ``--rows`` (rows per generation unit) and ``--hidden`` scale the bytes; the paper's
8B-parameter SLMs have 4096-float hidden states and full test sets, so its deep pass reads more
bytes than this one: the deep rate (MB/s) is what carries over, the shallow time depends on the
number of files only.

The machine is shared (2 cores, several processes): timings are under contention.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent


def _gen_rows(i0: int, n: int, hidden: int, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(i0, i0 + n):
        k = rng.randint(8, 40)
        rows.append(
            {
                "sample_id": f"q{i}",
                "dataset": "d",
                "role": "eval",
                "gold": "42",
                "task": "numeric",
                "choices": [],
                "aliases": [],
                "error": None,
                "prompt": "Question: " + "x" * rng.randint(100, 600),
                "n_prompt_tokens": 120,
                "n_new_tokens": k,
                "latency_s": rng.random(),
                "raw_output": "The answer is " + "y" * rng.randint(20, 200),
                "token_logprobs": [rng.random() for _ in range(k)],
                "token_entropy": [rng.random() for _ in range(k)],
                "hidden_state": [rng.random() for _ in range(hidden)],
                "prompt_hidden_state": [rng.random() for _ in range(hidden)],
            }
        )
    return rows


def build(plan, store, rows: int, hidden: int) -> dict:
    """Synthetic files for every unit of ``plan``; returns counts and bytes."""
    import pyarrow as pa

    from jobs import records as R
    from jobs.store import Store

    rng = random.Random(0)
    st = Store(store)
    chunk = 32
    # one pre-built part per shape, written under each unit's name (what is timed is reading them)
    part = pa.Table.from_pylist(_gen_rows(0, chunk, hidden, rng))
    score = pa.Table.from_pylist([{"sample_id": f"q{i}", "uncertainty": rng.random()} for i in range(rows)])
    records = pa.Table.from_pylist(
        [
            {
                "sample_id": f"q{i}",
                "setting": "s",
                "setting_hash": "h",
                "slm_answer": "42",
                "slm_correct": True,
                "llm_answer": "41",
                "llm_correct": False,
                "uncertainty": rng.random(),
                "route_rank": i,
                "extraction_rule": "flexible:last_number",
                "llm_extraction_rule": "flexible:last_number",
            }
            for i in range(rows)
        ]
    )
    cost = pa.Table.from_pylist(
        [
            {"sample_id": f"q{i}"}
            | {f"{c}_{k}": rng.random() for c in ("slm", "uq", "llm") for k in ("prompt_tokens", "new_tokens")}
            for i in range(rows)
        ]
    )
    curve = {"curve": [{"ratio": i / 100, "accuracy": rng.random()} for i in range(rows + 1)]}
    png = bytes(rng.getrandbits(8) for _ in range(30_000))
    n_parts = -(-rows // chunk)
    for u in plan.units.values():
        d = st.unit(u.kind, u.key)
        if u.kind == "gen":
            for ci in range(n_parts):
                R.write_table(d.part_path(ci), part)
            d.finish({"key": u.key, "n_chunks": n_parts})
        elif u.kind == "score":
            R.write_table(d.part_path(0), score)
            d.finish({"key": u.key})
        else:
            R.write_table(d.records_path, records)
            R.write_table(d.cost_path, cost)
            R.write_json(d.curve_path, curve)
            R.atomic_write(d.plot_path, png)
            d.finish({"key": u.key, "metrics": {"auroc": 0.7}})
    files = [p for p in Path(store).rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def drop_caches() -> bool:
    """Empty the page cache (root only), so that a pass reads from disk."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=160, help="rows per generation unit (32 per part)")
    ap.add_argument("--hidden", type=int, default=256, help="floats per hidden state")
    ap.add_argument("--keep", help="build the store in this folder and keep it")
    a = ap.parse_args()

    from orchestrator.config import load_grid
    from orchestrator.plan import make_plan
    from orchestrator.verify import check_plan

    folder = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="uqroute-verify-bench-"))
    store = folder / "store"
    r = load_grid(REPO / "conf" / "grid" / "paper.yaml", [f"output_dir={folder}"])
    plan = make_plan(r)
    counts = plan.counts()
    try:
        if not (store / "gen").is_dir():
            t_build = timed(lambda: build(plan, store, a.rows, a.hidden))
        else:
            t_build = float("nan")
        files = [p for p in store.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        res = {
            "units": len(plan.units),
            "by_kind": {
                k: sum(v for kk, v in counts.items() if kk.split(":")[0] == k) for k in ("gen", "score", "setting")
            },
            "files": len(files),
            "MB": round(size / 1e6, 1),
            "build_s": round(t_build, 1),
            "cold_cache": drop_caches(),
        }
        for deep in (False, True):
            name = "deep" if deep else "shallow"
            drop_caches()
            h = None

            def run(deep=deep):
                nonlocal h
                h = check_plan(plan, store, deep=deep)

            res[f"{name}_cold_s"] = round(timed(run), 2)
            res[f"{name}_warm_s"] = round(timed(run), 2)
            assert h is not None and not h.damaged and len(h.done()) == len(plan.units)
        res["deep_MB_per_s_warm"] = round(size / 1e6 / res["deep_warm_s"], 0)
        res["plan_done_sequential_warm_s"] = round(timed(lambda: plan.done(store)), 2)
        res["note"] = "machine shared with other processes (2 cores): timings measured under contention"
        print(json.dumps(res, indent=1))
    finally:
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
