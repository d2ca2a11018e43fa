"""The store: where every unit's results are, and the declared schema of every Parquet file in it.

Layout (the only place that knows it)::

    <store>/gen/<key>/part-NNNNN.parquet + manifest.json        one model pass
    <store>/score/<key>/part-00000.parquet + manifest.json      one UQ method's scores
    <store>/settings/<key>/records.parquet, cost.parquet, curve.json, curve.png, manifest.json

``<key>`` is the unit's content key (``orchestrator.plan.unit_key``). A unit is done when its
manifest exists (written last, atomically: ``jobs.records``). Read and write through
``Store(root).gen(key)`` / ``.score(key)`` / ``.setting(key)`` (a ``UnitDir``), never by joining
path strings.

Schemas: every Parquet file is written with a declared pyarrow type per column (``RecordSchema``;
``gen_schema(stage)`` for a model pass: the columns every pass has plus the stage's own
``Stage.columns``), never inferred from the first rows, so a chunk whose values are all null has
the same types as the others. A row with a column its schema does not declare is refused, naming
the column and the declared ones. Each schema has a version, written into the file's metadata
(``uqroute_schema``: ``<name>:<version>``) beside the store-wide ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from jobs import records as R
from jobs.units import GenManifest, ScoreManifest, SettingManifest

#: unit kind -> its folder in the store
KIND_DIRS = {"gen": "gen", "score": "score", "setting": "settings"}
MANIFEST = R.MANIFEST
CURVE = "curve.json"
RECORDS = "records.parquet"
COST = "cost.parquet"
PLOT = "curve.png"
#: a setting's files that are logged as MLflow artifacts, in that order
SETTING_ARTIFACTS = (PLOT, RECORDS, CURVE, COST)

_MANIFESTS: dict[str, type[GenManifest] | type[ScoreManifest] | type[SettingManifest]] = {
    "gen": GenManifest,
    "score": ScoreManifest,
    "setting": SettingManifest,
}

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


def _setting_columns() -> dict[str, pa.DataType]:
    cols = {
        "sample_id": STR,
        "setting": STR,
        "setting_hash": STR,
        "slm_answer": STR,
        "slm_correct": BOOL,
        "llm_answer": STR,
        "llm_correct": BOOL,
        "uncertainty": F64,
        "route_rank": I64,
        "extraction_rule": STR,
        "llm_extraction_rule": STR,
        "answer_prob_rule": STR,
        # a method with its own answer (UQMethod.answer_stage) / a parsed confidence
        "greedy_answer": STR,
        "greedy_correct": BOOL,
        "confidence_parse": STR,
    }
    from jobs.stages import STAGES

    for st in STAGES.in_order():  # <stage>_answer / _correct / _agrees of an answer stage
        cols |= {f"{st}_answer": STR, f"{st}_correct": BOOL, f"{st}_agrees": BOOL}
    return cols


def _cost_columns() -> dict[str, pa.DataType]:
    cols: dict[str, pa.DataType] = {"sample_id": STR}
    for part in ("slm", "uq", "llm"):
        cols |= {f"{part}_{k}": F64 for k in ("prompt_tokens", "new_tokens", "seconds", "passes")}
    return cols | {"slm_usd": F64, "uq_usd": F64, "llm_usd": F64}


#: calibrate's routes file (``uqroute calibrate apply``)
ROUTES = RecordSchema("routes", "1", {"sample_id": STR, "uncertainty": F64, "route_prob": F64, "to_llm": BOOL})

_SCHEMAS: dict[str, RecordSchema] = {}


def schema(name: str) -> RecordSchema:
    """A declared schema by name: ``gen:<stage>``, ``score``, ``setting``, ``cost``, ``routes``."""
    if name.startswith("gen:"):  # not cached: the stage registry is the truth (a test may swap it)
        from jobs.stages import stage

        st = stage(name[4:])
        return GEN_COMMON.extend(name, st.schema_version, st.columns)
    if name not in _SCHEMAS:
        if name == "setting":
            _SCHEMAS[name] = RecordSchema("setting", "1", _setting_columns())
        elif name == "cost":
            _SCHEMAS[name] = RecordSchema("cost", "1", _cost_columns())
        elif name in ("score", "routes"):
            _SCHEMAS[name] = {"score": SCORE, "routes": ROUTES}[name]
        else:
            raise SchemaError(f"unknown record schema {name!r}; valid: gen:<stage>, score, setting, cost, routes")
    return _SCHEMAS[name]


def gen_schema(stage_name: str) -> RecordSchema:
    return schema(f"gen:{stage_name}")


def write_rows(path: Path, rows: list[dict], schema_name: str, meta: dict | None = None) -> Path:
    """Write rows atomically as Parquet with their declared schema (``schema(schema_name)``)."""
    sch = schema(schema_name)
    return R.write_table(path, sch.table(rows), meta=meta, schema_tag=sch.tag)


@dataclass(frozen=True)
class UnitDir:
    """One unit's folder in the store."""

    kind: str
    key: str
    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def curve_path(self) -> Path:
        return self.path / CURVE

    @property
    def records_path(self) -> Path:
        return self.path / RECORDS

    @property
    def cost_path(self) -> Path:
        return self.path / COST

    @property
    def plot_path(self) -> Path:
        return self.path / PLOT

    @property
    def done(self) -> bool:
        return R.is_complete(self.path)

    def manifest_json(self) -> dict:
        return R.read_json(self.manifest_path)

    def manifest(self) -> GenManifest | ScoreManifest | SettingManifest:
        """The typed manifest (``jobs.units``); FileNotFoundError when the unit is not done."""
        return _MANIFESTS[self.kind].from_json(self.manifest_json())

    def curve(self) -> dict:
        return R.read_json(self.curve_path)

    def finish(self, manifest: GenManifest | ScoreManifest | SettingManifest | dict) -> dict:
        """Write the manifest last: from now on the unit counts as done. Returns its JSON."""
        d = manifest.to_json() if hasattr(manifest, "to_json") else dict(manifest)
        R.finish_unit(self.path, d)
        return d

    # parts (gen and score units)
    def part_path(self, index: int) -> Path:
        return R.part_path(self.path, index)

    def parts(self) -> set[int]:
        return R.existing_parts(self.path)

    def read(self, columns: Iterable[str] | None = None) -> pa.Table:
        return R.read_unit(self.path, columns)

    def rows(self, columns: Iterable[str] | None = None) -> list[dict]:
        return self.read(columns).to_pylist()


class Store:
    """The store of a grid's output (``ResolvedGrid.store_dir``)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def unit(self, kind: str, key: str) -> UnitDir:
        if kind not in KIND_DIRS:
            raise ValueError(f"unknown unit kind {kind!r}; valid: {', '.join(KIND_DIRS)}")
        return UnitDir(kind, key, self.root / KIND_DIRS[kind] / key)

    def gen(self, key: str) -> UnitDir:
        return self.unit("gen", key)

    def score(self, key: str) -> UnitDir:
        return self.unit("score", key)

    def setting(self, key: str) -> UnitDir:
        return self.unit("setting", key)

    def done(self, unit: Any) -> bool:
        """Whether a work unit (anything with ``kind`` and ``key``) is complete."""
        return self.unit(unit.kind, unit.key).done

    def keys(self, kind: str) -> list[str]:
        """Keys of every complete unit of ``kind`` in the store (any grid's)."""
        folder = self.root / KIND_DIRS[kind]
        return sorted(p.parent.name for p in folder.glob(f"*/{MANIFEST}"))

    def setting_rows(self, plan: Any) -> list[dict]:
        """One row per finished setting of ``plan`` (``orchestrator.plan.Plan``: its ``settings`` and
        ``setting_keys``), in plan order: name, setting hash, unit key, axes, the summary metrics,
        nan_policy, answer_route and unscored_share. The one settings table (summary.json, the
        analysis, the CLI)."""
        rows = (setting_row(self.setting(plan.setting_keys[s.hash]), s.name, s.hash, s.axes()) for s in plan.settings)
        return [row for row in rows if row is not None]


def setting_row(d: UnitDir, name: str, setting_hash: str, axes: Mapping[str, str]) -> dict | None:
    """The settings-table row of the setting whose results are in ``d`` (None: not finished)."""
    if not d.done:
        return None
    m = d.manifest_json()
    row = {
        "setting": name,
        "hash": setting_hash,
        "key": d.key,
        **axes,
        **m["metrics"],
        "nan_policy": m.get("nan_policy"),
        "answer_route": m.get("answer_route"),
    }
    row["unscored_share"] = unscored_share(row)
    return row


def unscored_share(row: Mapping[str, Any]) -> float:
    """A setting's share of queries its method could not score (n_nan / n; settings written
    before ``unscored_share`` existed have n and n_nan)."""
    if row.get("unscored_share") is not None:
        return float(row["unscored_share"])
    n = row.get("n") or 0
    return float(row.get("n_nan") or 0) / n if n else float("nan")
