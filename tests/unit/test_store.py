"""The store owns its layout and declares the schema of every Parquet file (issue 9, item 5)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import store as S
from jobs.schemas import GEN_COMMON, SchemaError
from jobs.units import SettingManifest


def _gen_row(sid: str, **cols) -> dict:
    base = {"sample_id": sid, "dataset": "d", "role": "eval", "gold": "1", "task": "numeric", "choices": [],
            "aliases": [], "error": None, "prompt": "p", "n_prompt_tokens": None, "n_new_tokens": 1,
            "latency_s": 0.1, "prompt_truncated_from": None}  # fmt: skip
    return base | cols


def test_layout_is_one_object(tmp_path):
    st = S.Store(tmp_path)
    d = st.setting("k1")
    assert d.path == tmp_path / "settings" / "k1" and d.records_path.name == "records.parquet"
    assert st.gen("g").path == tmp_path / "gen" / "g" and st.score("s").path == tmp_path / "score" / "s"
    assert not d.done and st.keys("setting") == []
    m = SettingManifest("k1", "h1", "a__b__c__d", "a", "b", "c", "d", metrics={"auroc": 0.5})
    d.finish(m)
    assert d.done and st.keys("setting") == ["k1"] and d.manifest() == m and d.manifest().axes["uq"] == "b"
    with pytest.raises(ValueError, match="unknown unit kind 'gens'; valid: gen, score, setting"):
        st.unit("gens", "x")


def test_types_are_declared_not_inferred_from_the_rows(tmp_path):
    """A chunk whose n_prompt_tokens are all null (a constrained pass) and whose error column is all
    null still gets the declared types, the same as every other chunk of the unit."""
    p = tmp_path / "part-00000.parquet"
    S.write_rows(p, [_gen_row("a", raw_output="1", token_logprobs=[-0.1])], "gen:greedy")
    schema = pq.read_schema(p)
    assert schema.field("n_prompt_tokens").type == pa.int64() and schema.field("error").type == pa.string()
    assert schema.field("token_logprobs").type == pa.list_(pa.float64())
    assert schema.metadata[b"uqroute_schema"] == b"gen:greedy:1"
    assert pq.read_table(p).to_pylist()[0]["raw_output"] == "1"  # values as written


def test_a_column_the_schema_does_not_declare_is_refused_naming_it(tmp_path):
    with pytest.raises(SchemaError, match=r"schema gen:ptrue:1: column\(s\) \['ptrue_pro'\] are not declared"):
        S.write_rows(tmp_path / "x.parquet", [_gen_row("a", ptrue_pro=0.5)], "gen:ptrue")
    with pytest.raises(SchemaError, match="unknown record schema 'records'"):
        S.schema("records")


def test_every_stage_declares_the_columns_its_rows_have():
    from jobs.stages import declared

    for st in declared():
        sch = S.schema(f"gen:{st.name}")
        assert set(GEN_COMMON.columns) <= set(sch.columns) and set(st.columns) <= set(sch.columns)
        assert sch.tag == f"gen:{st.name}:{st.schema_version}"
        assert st.name == "llm" or any(p in sch.columns for p in st.provides) or st.name == "greedy"
