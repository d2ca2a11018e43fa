"""The store: where every unit's results are, and the declared schema of every Parquet file in it.

Layout (the only place that knows it)::

    <store>/gen/<key>/part-NNNNN.parquet + manifest.json        one model pass
    <store>/score/<key>/part-00000.parquet + manifest.json      one UQ method's scores
    <store>/settings/<key>/records.parquet, cost.parquet, curve.json, curve.png, manifest.json

``<key>`` is the unit's content key (``orchestrator.plan.unit_key``). Every file is written whole
or not at all (temp file in the same folder, fsync, atomic rename: ``jobs.records.atomic_write``),
and the manifest last. The manifest lists every file of its unit with its size and SHA-256 (and,
for Parquet, its row count and the SHA-256 of its footer) plus its own checksum. A unit is done
when its manifest and every file it lists verify (``UnitDir.check``): shallow, size and footer
(a stat and a few KB read per file, cheap enough for every resume); ``deep``, the whole content's
hash. A manifest written before manifests listed their files (a "legacy" unit) is checked for
structure only (every part there and its Parquet footer readable) and counts as done; ``uqroute
verify --deep --rehash`` records its files. Read and write through ``Store(root).gen(key)`` /
``.score(key)`` / ``.setting(key)`` (a ``UnitDir``), never by joining path strings.

Schemas (types and ``RecordSchema`` in ``jobs.schemas``): every Parquet file is written with a declared pyarrow type per column (``RecordSchema``;
``schema("gen:<stage>")`` for a model pass: the columns every pass has plus the stage's own
``Stage.columns``), never inferred from the first rows, so a chunk whose values are all null has
the same types as the others. A row with a column its schema does not declare is refused, naming
the column and the declared ones. Each schema has a version, written into the file's metadata
(``uqroute_schema``: ``<name>:<version>``) beside the store-wide ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from jobs import records as R
from jobs.schemas import BOOL, F64, GEN_COMMON, I64, ROUTES, SCORE, STR, RecordSchema, SchemaError
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
        """Whether the unit is complete: its manifest and every file it lists verify (shallow)."""
        return self.check().done

    def check(self, deep: bool = False) -> Health:
        """The unit's health (``Health``): shallow (size, Parquet magic and footer hash) or ``deep``
        (the whole content's SHA-256; a legacy unit's Parquet files decoded in full)."""
        return check_unit(self.kind, self.key, self.path, deep)

    def manifest_json(self) -> dict:
        return R.read_json(self.manifest_path)

    def manifest(self) -> GenManifest | ScoreManifest | SettingManifest:
        """The typed manifest (``jobs.units``); FileNotFoundError when the unit is not done."""
        return _MANIFESTS[self.kind].from_json(self.manifest_json())

    def curve(self) -> dict:
        return R.read_json(self.curve_path)

    def finish(self, manifest: GenManifest | ScoreManifest | SettingManifest | dict) -> dict:
        """Write the manifest last (listing every file of the unit with its size and hashes,
        ``jobs.records.finish_unit``): from now on the unit counts as done. Returns its JSON."""
        d = manifest.to_json() if hasattr(manifest, "to_json") else dict(manifest)
        return R.finish_unit(self.path, d)

    # parts (gen and score units)
    def part_path(self, index: int) -> Path:
        return R.part_path(self.path, index)

    def parts(self) -> set[int]:
        return R.existing_parts(self.path)

    def read(self, columns: Iterable[str] | None = None) -> pa.Table:
        return R.read_unit(self.path, columns)

    def rows(self, columns: Iterable[str] | None = None) -> list[dict]:
        return self.read(columns).to_pylist()


#: a unit's states (``Health.state``)
OK, LEGACY, ABSENT, DAMAGED = "ok", "legacy", "absent", "damaged"


@dataclass(frozen=True)
class Problem:
    """What is wrong with one file of a unit: ``file`` (its name in the unit folder) and ``what``."""

    file: str
    what: str

    def __str__(self) -> str:
        return f"{self.file}: {self.what}"


@dataclass(frozen=True)
class Health:
    """A unit folder's state, from its manifest and files:

    ok       the manifest parses, matches its checksum and every file it lists verifies;
    legacy   a manifest written before manifests listed their files: its parts are all there and
             their Parquet footers read (``uqroute verify --deep --rehash`` records them);
    absent   no manifest: not run yet, or in progress (its finished parts are kept);
    damaged  a manifest that does not parse or match its checksum, or a listed file missing,
             of another size, with another footer or (deep) another content hash.

    ``problems``: per file, what is wrong; ``leftovers``: temp files a cut-off write left."""

    kind: str
    key: str
    state: str
    problems: tuple[Problem, ...] = ()
    leftovers: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.state in (OK, LEGACY)

    @property
    def damaged(self) -> bool:
        return self.state == DAMAGED

    def bad_parts(self) -> set[int]:
        """Chunk indices of the damaged ``part-NNNNN.parquet`` files."""
        return {int(p.file[5:10]) for p in self.problems if p.file.startswith("part-") and p.file[5:10].isdigit()}


def _check_listed(path: Path, name: str, rec: dict, deep: bool) -> str | None:
    """What is wrong with listed file ``name`` against its record ``rec`` (None: it verifies)."""
    f = path / name
    try:
        size = f.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    want = rec.get("size")
    if want is not None and size != int(want):
        return f"{size} bytes, the manifest says {want} (cut short or replaced)"
    try:
        if deep:
            data = f.read_bytes()
            if R.HASH in rec and R.digest(data) != rec[R.HASH]:
                return f"content differs from what was written ({R.HASH} mismatch)"
            return None
        fkey = f"footer_{R.HASH}"
        if fkey in rec:
            with open(f, "rb") as fh:
                if fh.read(4) != R.PARQUET_MAGIC:
                    return "not a Parquet file any more (magic bytes at its start are gone)"
                fh.seek(size - 8)
                tail = fh.read(8)
                n = int.from_bytes(tail[:4], "little")
                if tail[4:] != R.PARQUET_MAGIC or n + 12 > size:
                    return "its Parquet footer is gone (magic bytes at its end not found)"
                fh.seek(size - n - 8)
                if R.digest(fh.read(n + 8)) != rec[fkey]:
                    return "its Parquet footer differs from the one written"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _check_legacy(path: Path, kind: str, m: dict, deep: bool) -> list[Problem]:
    """A manifest without a file list: the parts it implies are there and readable."""
    out = []
    if kind == "setting":
        names = [RECORDS] + [n for n in (COST,) if (path / n).exists()]
    else:
        names = sorted(p.name for p in path.glob("part-*.parquet"))
        n_chunks = int(m.get("n_chunks") or 0) if kind == "gen" else 1
        have = {int(n[5:10]) for n in names if n[5:10].isdigit()}
        out += [Problem(R.part_path(path, i).name, "missing") for i in range(n_chunks) if i not in have]
    for n in names:
        f = path / n
        if not f.exists():
            out.append(Problem(n, "missing"))
        elif not R.readable_parquet(f):
            out.append(Problem(n, "not a readable Parquet file (cut short?)"))
        elif deep:
            try:
                import pyarrow.parquet as pq

                pq.read_table(f)
            except Exception as exc:  # noqa: BLE001 - any decoding failure is damage
                out.append(Problem(n, f"does not decode ({type(exc).__name__}: {exc})"[:300]))
    return out


def check_unit(kind: str, key: str, path: Path, deep: bool = False) -> Health:
    """The health of the unit folder ``path`` (``Health``); reads the manifest and, per listed file,
    a stat and its footer (shallow) or its whole content (``deep``)."""
    path = Path(path)
    mpath = path / MANIFEST
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        left = tuple(sorted(p.name for p in path.glob(f".*{R.TMP_SUFFIX}"))) if path.is_dir() else ()
        return Health(kind, key, ABSENT, leftovers=left)
    except OSError as exc:
        return Health(kind, key, DAMAGED, (Problem(MANIFEST, f"cannot be read ({exc.strerror or exc})"),))
    try:
        m = json.loads(raw)
        if not isinstance(m, dict):
            raise ValueError(f"a JSON {type(m).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as exc:
        return Health(kind, key, DAMAGED, (Problem(MANIFEST, f"does not parse ({exc})"[:300]),))
    if "checksum" in m and R.manifest_checksum(m) != m["checksum"]:
        return Health(kind, key, DAMAGED, (Problem(MANIFEST, "does not match its own checksum (altered)"),))
    if m.get("key") not in (None, key):
        return Health(kind, key, DAMAGED, (Problem(MANIFEST, f"is the manifest of unit {m['key']}, not {key}"),))
    left = tuple(sorted(p.name for p in path.glob(f".*{R.TMP_SUFFIX}")))
    files = m.get("files")
    if not isinstance(files, dict):
        problems = _check_legacy(path, kind, m, deep)
        return Health(kind, key, DAMAGED if problems else LEGACY, tuple(problems), left)
    problems = []
    for name, rec in sorted(files.items()):
        what = _check_listed(path, name, rec if isinstance(rec, dict) else {}, deep)
        if what:
            problems.append(Problem(name, what))
    return Health(kind, key, DAMAGED if problems else OK, tuple(problems), left)


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
