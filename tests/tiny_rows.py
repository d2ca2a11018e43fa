"""The rows of a store, normalised for comparison: shared by the recorder and the test.

``tests/fixtures/record_tiny_rows.py`` runs the tiny grid (tests/conf/grid/tiny.yaml) and writes
``read_store(<store>)`` to ``tests/fixtures/tiny_rows.json.gz``;
``tests/integration/test_tiny_rows.py`` reads the ``tiny_run`` fixture's store the same way and
``compare``s. Only what is on disk is read (Parquet with pyarrow, manifests with json), never the
code that wrote it, so a refactor of the writers is checked against the rows they wrote before.

What is kept: every unit folder ``<store>/<gen|score|settings>/<key>/`` (kind, key), every
``*.parquet`` in it (column -> list of values, in row order), and a setting's manifest
``metrics``. Normalised so that the fixture is stable across runs:

* timing: wall-time columns / metrics (``latency_s``, ``seconds``, ``*_seconds``, ``seconds_*``)
  and what is priced from them -- the tiny grid's models are local, priced by the hour
  (``jobs/cost.py``: ``Rate.usd`` of kind "time" = seconds x per_hour), so cost.parquet's ``*_usd``
  and the manifests' ``cost_*`` metrics too -- become ``TIMED`` (``TIMED_NAN`` / ``TIMED_INF``
  where the value is NaN / infinite, ``None`` stays ``None``): the column is still there, its
  value is not compared.
* long float vectors (``hidden_state``, ``prompt_hidden_state``) become
  ``{"len": n, "sum": s, "sumsq": q}``.
* every other value is kept (token_logprobs / token_entropy lists included).

``compare`` matches strings, ints, bools and None exactly, floats within ``Tolerance`` (NaN equals
NaN, infinities match exactly), and reports the first differences by unit / file / column / row.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path

KINDS = ("gen", "score", "settings")
VECTORS = ("hidden_state", "prompt_hidden_state")
TIMED, TIMED_NAN, TIMED_INF = "<timed>", "<timed:nan>", "<timed:inf>"
FORMAT = 1
#: manifest fields kept as a unit's ``about`` (what failure messages name it by, and the ``uq`` that
#: picks a trained method's tolerance); not compared
ABOUT = ("stage", "uq", "name", "model", "slm", "llm", "dataset", "role")


def is_timed(name: str) -> bool:
    """A column or metric that is wall time, or priced from wall time (see the module doc)."""
    return (
        name in ("latency_s", "seconds")
        or name.endswith("_seconds")
        or name.startswith("seconds_")
        or name.endswith("_usd")
        or name.startswith("cost_")
    )


def _timed(v):
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return TIMED_NAN
    if isinstance(v, float) and math.isinf(v):
        return TIMED_INF
    return TIMED


def _vector(v):
    if v is None:
        return None
    return {"len": len(v), "sum": math.fsum(v), "sumsq": math.fsum(x * x for x in v)}


def normalise(name: str, values: list) -> list:
    """One column's (or metric's) values as the fixture holds them."""
    if is_timed(name):
        return [_timed(v) for v in values]
    if name in VECTORS:
        return [_vector(v) for v in values]
    return list(values)


def read_parquet(path: Path) -> dict:
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    return {"rows": t.num_rows, "columns": {c: normalise(c, t.column(c).to_pylist()) for c in t.column_names}}


def read_unit(kind: str, udir: Path) -> dict:
    manifest = json.loads((udir / "manifest.json").read_text())
    unit = {
        "kind": kind,
        "key": udir.name,
        "about": {k: manifest[k] for k in ABOUT if k in manifest},
        "files": {p.name: read_parquet(p) for p in sorted(udir.glob("*.parquet"))},
    }
    if kind == "settings":
        unit["metrics"] = {k: normalise(k, [v])[0] for k, v in sorted(manifest["metrics"].items())}
    return unit


def read_store(store: Path | str) -> dict[str, dict]:
    """``"<kind>/<key>"`` -> the unit's normalised content, for every unit folder of ``store``."""
    store = Path(store)
    return {
        f"{kind}/{udir.name}": read_unit(kind, udir)
        for kind in KINDS
        for udir in sorted(p for p in (store / kind).glob("*") if p.is_dir())
    }


def cpu_kind() -> str:
    """torch's CPU capability (recorded in the fixture for information: the rows hold on every CPU
    kind within ``TOLERANCE``)."""
    from tests.fixtures.record_hf_stats import cpu_kind as kind

    return kind()


def write_fixture(path: Path, units: dict[str, dict], **meta) -> None:
    doc = {"format": FORMAT, **meta, "units": units}
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
        f.write(blob)


def load_fixture(path: Path) -> dict:
    with gzip.open(path, "rb") as f:
        return json.loads(f.read())


# ---- comparison ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """Float tolerance: |a - b| <= max(rel * max(|a|, |b|), abs) (``math.isclose``).

    rel / abs: every float but those of trained methods' units -- model statistics (token
    log-probs / entropies, p(True), the hidden-state sums) and what is computed from them without
    training (uncertainties, setting records, metrics). trained_rel / trained_abs: the score and
    setting units of the methods in ``trained`` (by the fixture's ``about.uq``), whose fitted
    models amplify input differences. A vector's ``sum`` is compared with
    abs = rel * sqrt(len * sumsq), a bound on its error from a per-element relative error
    (sum |dx| <= rel * sum |x| <= rel * sqrt(n * sum x^2)): cancellation leaves the sum itself no scale."""

    rel: float = 1e-3
    abs: float = 2e-3
    trained_rel: float = 1e-3
    trained_abs: float = 2e-3
    trained: tuple[str, ...] = ("probe", "ood_probe")

    def of(self, unit: dict) -> tuple[float, float]:
        if unit["kind"] != "gen" and unit.get("about", {}).get("uq") in self.trained:
            return self.trained_rel, self.trained_abs
        return self.rel, self.abs


def _show(v) -> str:
    s = repr(v)
    return s if len(s) <= 120 else s[:117] + "..."


def _same(a, b, rel: float, abs_: float, where: str, out: list[str], limit: int) -> None:
    """Append where ``b`` (actual) differs from ``a`` (expected) to ``out``."""
    if len(out) >= limit:
        return
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None or isinstance(a, str):
        if type(a) is not type(b) or a != b:
            out.append(f"{where}: expected {_show(a)}, got {_show(b)}")
        return
    if isinstance(a, int) and not isinstance(a, float):
        if type(b) is not int or a != b:
            out.append(f"{where}: expected {_show(a)} (int), got {_show(b)} ({type(b).__name__})")
        return
    if isinstance(a, float):
        if not isinstance(b, float):
            out.append(f"{where}: expected {_show(a)} (float), got {_show(b)} ({type(b).__name__})")
        elif math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
            if not (math.isnan(a) and math.isnan(b)) and a != b:
                out.append(f"{where}: expected {a!r}, got {b!r}")
        elif not math.isclose(a, b, rel_tol=rel, abs_tol=abs_):
            out.append(
                f"{where}: expected {a!r}, got {b!r} (diff {abs(a - b):.3g}; tolerance rel {rel:g}, abs {abs_:g})"
            )
        return
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            n = len(b) if isinstance(b, list) else type(b).__name__
            out.append(f"{where}: expected a list of {len(a)}, got {n}: {_show(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, rel, abs_, f"{where}[{i}]", out, limit)
        return
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            out.append(f"{where}: expected {_show(a)}, got {_show(b)}")
            return
        if set(a) == {"len", "sum", "sumsq"}:  # a vector's summary
            _same(a["len"], b["len"], rel, abs_, f"{where}.len", out, limit)
            _same(a["sumsq"], b["sumsq"], rel, abs_, f"{where}.sumsq", out, limit)
            scale = rel * math.sqrt(max(a["len"] * a["sumsq"], 0.0))
            _same(a["sum"], b["sum"], rel, max(abs_, scale), f"{where}.sum", out, limit)
            return
        for k in sorted(a):
            _same(a[k], b[k], rel, abs_, f"{where}.{k}", out, limit)
        return
    out.append(f"{where}: cannot compare {_show(a)} with {_show(b)}")


def _keyset(label: str, expected, actual) -> list[str]:
    missing, extra = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    out = []
    if missing:
        out.append(f"{label}: missing {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if extra:
        out.append(f"{label}: unexpected {', '.join(extra[:10])}{' ...' if len(extra) > 10 else ''}")
    return out


def label(unit: dict) -> str:
    """``<kind>/<key> (<what its manifest says it is>)``: a setting's name, else e.g. ``greedy,
    smollm2-test, addsub, fit``."""
    about = unit.get("about", {})
    about = about.get("name") or ", ".join(str(about[k]) for k in ABOUT if k in about)
    return f"{unit['kind']}/{unit['key']}" + (f" ({about})" if about else "")


def compare(expected: dict[str, dict], actual: dict[str, dict], tol: Tolerance, limit: int = 20) -> list[str]:
    """Differences of ``actual`` from ``expected`` (both ``read_store`` results), first ``limit``:
    each names the unit (kind/key and what it is), the file, the column and the row (and its
    sample_id)."""
    out = _keyset("units", expected, actual)
    for uid in sorted(set(expected) & set(actual)):
        if len(out) >= limit:
            break
        e, a = expected[uid], actual[uid]
        rel, abs_ = tol.of(e)
        name = label(e)
        out += _keyset(f"{name}: files", e["files"], a["files"])
        for fname in sorted(set(e["files"]) & set(a["files"])):
            ef, af = e["files"][fname], a["files"][fname]
            where = f"{name} {fname}"
            if ef["rows"] != af["rows"]:
                out.append(f"{where}: expected {ef['rows']} rows, got {af['rows']}")
                continue
            out += _keyset(f"{where}: columns", ef["columns"], af["columns"])
            ids = ef["columns"].get("sample_id") or [None] * ef["rows"]
            for col in sorted(set(ef["columns"]) & set(af["columns"])):
                for i, (x, y) in enumerate(zip(ef["columns"][col], af["columns"][col])):
                    row = f"row {i}" + (f" (sample_id {ids[i]!r})" if ids[i] is not None else "")
                    _same(x, y, rel, abs_, f"{where} column {col!r} {row}", out, limit)
        if "metrics" in e or "metrics" in a:
            em, am = e.get("metrics", {}), a.get("metrics", {})
            out += _keyset(f"{name} manifest.json: metrics", em, am)
            for k in sorted(set(em) & set(am)):
                _same(em[k], am[k], rel, abs_, f"{name} manifest.json metric {k!r}", out, limit)
    return out[:limit]


def max_differences(expected: dict[str, dict], actual: dict[str, dict]) -> dict[str, dict]:
    """The largest float differences between two stores of the same units, by kind (and uq method):
    ``{group: {"abs": (diff, where), "rel": (diff, where), "rel_over_1e-3_abs": ...}}`` (what the
    tolerance is sized from; the last leaves out values under 1e-3, where abs decides)."""
    worst: dict[str, dict] = {}

    def walk(kind, a, b, where):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in set(a) & set(b):
                walk(kind, a[k], b[k], f"{where}.{k}")
        elif isinstance(a, list) and isinstance(b, list):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(kind, x, y, f"{where}[{i}]")
        elif isinstance(a, float) and isinstance(b, float) and math.isfinite(a) and math.isfinite(b):
            d = abs(a - b)
            r = d / max(abs(a), abs(b)) if d else 0.0
            w = worst.setdefault(kind, {"abs": (0.0, ""), "rel": (0.0, ""), "rel_over_1e-3_abs": (0.0, "")})
            if d > w["abs"][0]:
                w["abs"] = (d, where)
            if r > w["rel"][0]:
                w["rel"] = (r, where)
            if max(abs(a), abs(b)) > 1e-3 and r > w["rel_over_1e-3_abs"][0]:
                w["rel_over_1e-3_abs"] = (r, where)

    for uid in set(expected) & set(actual):
        e = expected[uid]
        group = e["kind"] if e["kind"] == "gen" else f"{e['kind']}:{e.get('about', {}).get('uq')}"
        walk(group, e["files"], actual[uid]["files"], uid)
        walk(group, e.get("metrics", {}), actual[uid].get("metrics", {}), f"{uid}/metrics")
    return worst


#: the test's tolerance (how it was sized: tests/integration/test_tiny_rows.py's module doc)
TOLERANCE = Tolerance(rel=1e-3, abs=2e-3, trained_rel=2e-2, trained_abs=2e-2)
