"""The declared Parquet schemas of the store's files: column types, ``RecordSchema``, and the schemas
that depend on nothing else (the columns every model pass has, a UQ method's scores, calibrate's
routes).

A leaf: the stages read their column types here (``Stage.columns``) and ``jobs.store`` builds a
pass's full schema from ``GEN_COMMON`` + the stage's columns (``jobs.store.schema``), so neither
imports the other for types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

STR, F64, I64, BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()
LIST_STR, LIST_F64, LIST_I64 = pa.list_(STR), pa.list_(F64), pa.list_(I64)


class SchemaError(ValueError):
    """Rows that do not fit their declared schema."""


@dataclass(frozen=True)
class RecordSchema:
    """The declared columns of one kind of Parquet file, with a version.

    Columns are written in the order the rows give them (a row holds the columns it has: a
    generate-mode greedy pass has no ``option_labels``); each gets its declared type."""

    name: str
    version: str
    columns: Mapping[str, pa.DataType]

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    def extend(self, name: str, version: str, columns: Mapping[str, pa.DataType]) -> RecordSchema:
        clash = sorted(set(columns) & set(self.columns))
        if clash:
            raise SchemaError(f"schema {name!r} redeclares columns {clash} of {self.name!r}")
        return RecordSchema(name, version, dict(self.columns) | dict(columns))

    def table(self, rows: list[dict]) -> pa.Table:
        names: dict[str, None] = {}
        for r in rows:
            names.update(dict.fromkeys(r))
        unknown = [c for c in names if c not in self.columns]
        if unknown:
            raise SchemaError(
                f"schema {self.tag}: column(s) {unknown} are not declared; declared: {', '.join(self.columns)}"
            )
        schema = pa.schema([(c, self.columns[c]) for c in names])
        return pa.Table.from_pylist(rows, schema=schema)


#: every generation row (``jobs.stages.base.common_columns`` + what ``run_gen_unit`` adds)
GEN_COMMON = RecordSchema(
    "gen",
    "1",
    {
        "sample_id": STR,
        "dataset": STR,
        "role": STR,
        "gold": STR,
        "task": STR,
        "choices": LIST_STR,
        "aliases": LIST_STR,
        "error": STR,
        "prompt": STR,
        "n_prompt_tokens": I64,
        "n_new_tokens": I64,
        "latency_s": F64,
        "prompt_truncated_from": I64,
    },
)

SCORE = RecordSchema("score", "1", {"sample_id": STR, "uncertainty": F64})

#: calibrate's routes file (``uqroute calibrate apply``)
ROUTES = RecordSchema("routes", "1", {"sample_id": STR, "uncertainty": F64, "route_prob": F64, "to_llm": BOOL})
