"""Records (atomic Parquet parts + manifest) and model-free scoring on hand-made records."""

from __future__ import annotations

import math

import pytest

from jobs import records
from jobs.judge import answer_logprob, judge
from jobs.scoring import load_stats, run_score_unit, run_setting_unit
from tests.helpers import gen_row, setting_unit, store_unit


def test_write_table_is_atomic_and_versioned(tmp_path):
    p = records.write_table(tmp_path / "a" / "x.parquet", [{"a": 1}, {"a": 2}], meta={"k": "v"})
    import pyarrow.parquet as pq

    t = pq.read_table(p)
    assert t.column("a").to_pylist() == [1, 2]
    assert t.schema.metadata[b"uqroute_schema_version"] == records.SCHEMA_VERSION.encode()
    assert not [f for f in p.parent.iterdir() if f.name.endswith(".tmp")]


def test_unit_is_complete_only_after_manifest(tmp_path):
    d = records.unit_dir(tmp_path, "gen", "k1")
    records.write_table(records.part_path(d, 0), [{"sample_id": "a"}])
    records.write_table(records.part_path(d, 2), [{"sample_id": "c"}])
    assert not (d / records.MANIFEST).is_file() and records.existing_parts(d) == {0, 2}
    records.finish_unit(d, {"n": 2})
    assert (d / records.MANIFEST).is_file()
    assert records.read_unit(d).column("sample_id").to_pylist() == ["a", "c"]


def _row(sid, task, gold, out, choices=(), lps=None, texts=None, hidden=None):
    lps = lps if lps is not None else [-0.1, -0.2]
    return gen_row(
        sid,
        gold=gold,
        task=task,
        choices=list(choices),
        raw_output=out,
        n_new_tokens=len(lps),
        token_logprobs=lps,
        token_entropy=[0.5] * len(lps),
        token_texts=texts or ["x"] * len(lps),
        hidden_state=hidden or [0.0, 1.0],
    )


def test_answer_logprob_finds_the_option_letter_token():
    from jobs.answers import Extraction

    row = _row(
        "1",
        "mc",
        "B",
        "The answer is B.",
        choices=("x", "y"),
        lps=[-0.1, -0.2, -0.3, -1.5, -0.05],
        texts=["The", " answer", " is", " B", "."],
    )
    assert answer_logprob(row, Extraction("B", "strict:the_answer_is", (14, 15))) == (
        pytest.approx(-1.5),
        "matched_letter_token",
    )
    assert math.isnan(answer_logprob(row, Extraction("A", "strict:the_answer_is", (14, 15)))[0])  # not that letter
    assert math.isnan(
        answer_logprob(_row("2", "numeric", "3", "3"), Extraction("3", "flexible:last_number", (0, 1)))[0]
    )


def test_judge_uses_extraction_policy_and_error_rows():
    rows = [
        _row("1", "numeric", "42", "so 40 + 2 = 42"),
        _row("2", "numeric", "42", "The answer is 42."),
        dict(_row("3", "numeric", "42", "The answer is 42."), error="boom"),
    ]
    a_flex, ok_flex = judge(rows, "flexible")
    a_strict, ok_strict = judge(rows, "strict")
    assert ok_flex.tolist() == [True, True, False] and ok_strict.tolist() == [False, True, False]
    assert a_strict[0] is None and a_flex[2] is None


def test_score_and_setting_units_from_records(tmp_path):
    # 4 yes/no samples: SLM right on s0, s1; LLM right on s1..s3. perplexity ranks s3 > s2 > s1 > s0.
    g = [
        _row(f"s{i}", "yesno", "yes", out, lps=[lp])
        for i, (out, lp) in enumerate([("yes", -0.1), ("yes", -0.5), ("no", -1.0), ("no", -2.0)])
    ]
    llm = [_row(f"s{i}", "yesno", "yes", out) for i, out in enumerate(["no", "yes", "yes", "yes"])]
    store_unit(tmp_path, "G", g)
    store_unit(tmp_path, "L", llm)
    ids, stats = load_stats(tmp_path, {"greedy": "G"}, "flexible")
    assert ids == ["s0", "s1", "s2", "s3"] and stats["correct"].tolist() == [True, True, False, False]
    s = run_score_unit(
        {
            "key": "S",
            "method": "perplexity",
            "uq": "perplexity",
            "params": {},
            "slm": "m",
            "dataset": "d",
            "stages": {"greedy": "G"},
            "fit": [],
            "policy": "flexible",
        },
        tmp_path,
    )
    assert s["n"] == 4 and s["n_nan"] == 0
    unit = setting_unit("perplexity", bootstrap=20)
    m = run_setting_unit(unit, tmp_path, plot=False)["metrics"]
    # perplexity = exp(-lp): s3 (e^2) first, then s2; routing both fixes both errors: oracle-perfect
    assert m["slm_acc"] == 0.5 and m["llm_acc"] == 0.75 and m["auroc"] == 1.0
    import pyarrow.parquet as pq

    t = pq.read_table(records.unit_dir(tmp_path, "settings", "H") / "records.parquet").to_pylist()
    assert [r["route_rank"] for r in t] == [3, 2, 1, 0]
    # accuracy after routing 2 of 4: s3, s2 to the LLM (both right) + s0, s1 kept (both right) = 1.0
    import json

    curve = json.loads((records.unit_dir(tmp_path, "settings", "H") / "curve.json").read_text())["curve"]
    assert [round(p["accuracy"], 4) for p in curve] == [0.5, 0.75, 1.0, 1.0, 0.75]
