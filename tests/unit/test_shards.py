"""Sharded generation units: split across replicas, the store holds the same rows as one run.

A deterministic backend stands in for a model here (its output depends on the prompt and the
seed only, as a real model's does); the real SmolLM2 runs sharded through Ray in the default
grid (two replicas) and in ``benchmarks/paper_scale.py``.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from jobs.backends.base import Generation
from jobs.engine import finish_gen_shards, run_gen_unit
from jobs.records import existing_parts, read_unit, unit_dir
from jobs.store import Store
from tests.helpers import HashBackend


class EchoBackend(HashBackend):
    identity = "echo"

    def answer(self, messages, digest, max_new_tokens):
        return Generation(text=f"The answer is {int(digest[:4], 16) % 50}.", n_prompt_tokens=5, n_new_tokens=3)


def unit(key: str, limit: int) -> dict:
    return {
        "key": key,
        "stage": "llm",
        "model": "echo",
        "dataset": "strategyqa",
        "dataset_conf": {"name": "strategyqa", "adapter": "strategyqa"},
        "run": {"limit": limit, "fit_limit": 4, "seed": 0, "data_root": None},
        "role": "eval",
        "params": {"seed": 3, "chunk_size": 8, "max_new_tokens": 4},
        "deps": {},
    }


def rows(store, key):
    return sorted(read_unit(unit_dir(store, "gen", key)).to_pylist(), key=lambda r: r["sample_id"])


def test_shards_write_the_same_rows_as_one_run(tmp_path):
    b = EchoBackend()
    whole = run_gen_unit(b, unit("whole", 30), tmp_path, batch_size=4)
    assert whole["n_chunks"] == 4 and Store(tmp_path).gen("whole").done
    u = unit("sharded", 30)
    u["key"] = "sharded"
    s1 = run_gen_unit(b, u, tmp_path, batch_size=4, shard=(1, 3))
    assert not Store(tmp_path).gen("sharded").done  # no manifest before every shard is in
    assert existing_parts(unit_dir(tmp_path, "gen", "sharded")) == {1}
    with pytest.raises(RuntimeError, match=r"chunks \[0, 2, 3\] of 4 are missing"):
        finish_gen_shards(u, tmp_path, [s1])
    s0 = run_gen_unit(b, u, tmp_path, batch_size=4, shard=(0, 3))
    s2 = run_gen_unit(b, u, tmp_path, batch_size=4, shard=(2, 3))
    assert (s0["chunks_run"], s1["chunks_run"], s2["chunks_run"]) == (2, 1, 1)  # chunks 0,3 | 1 | 2
    m = finish_gen_shards(u, tmp_path, [s0, s1, s2])
    assert m["n_shards"] == 3 and m["new_tokens"] == whole["new_tokens"] == 30 * 3
    assert Store(tmp_path).gen("sharded").done
    strip = lambda rs: [{k: v for k, v in r.items() if k != "latency_s"} for r in rs]  # noqa: E731
    assert strip(rows(tmp_path, "sharded")) == strip(rows(tmp_path, "whole"))


def test_a_shard_resumes_at_chunk_level(tmp_path):
    """A retried shard redoes only its missing chunks; a shard with no chunk does nothing."""
    b = EchoBackend()
    u = unit("u", 20)  # 3 chunks of 8
    run_gen_unit(b, u, tmp_path, shard=(0, 2))  # chunks 0 and 2
    part = unit_dir(tmp_path, "gen", "u") / "part-00002.parquet"
    before = pq.read_table(part).to_pylist()
    part.unlink()
    again = run_gen_unit(b, u, tmp_path, shard=(0, 2))
    assert again["chunks_run"] == 1 and pq.read_table(part).to_pylist()[0]["raw_output"] == before[0]["raw_output"]
    empty = run_gen_unit(b, unit("u", 20), tmp_path, shard=(5, 6))
    assert empty["chunks_run"] == 0 and empty["new_tokens"] == 0
