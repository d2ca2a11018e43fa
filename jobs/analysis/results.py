"""A grid's results read as tables, from the store, one setting folder at a time.

The readers behind ``uqroute.open`` (``orchestrator/results.py``), the report's routing figures
(``jobs.analysis.report.routing_figures``) and ``uqroute explain``: they take the settings to read
(``jobs.analysis.inputs.SettingView``, already chosen by the caller) and open only their folders, so a
question about one dataset of a grid of thousands of settings reads that dataset's files alone.
They never check a unit's health: callers refuse damaged units first
(``orchestrator.verify.require_healthy``), and a setting whose results are not finished is left
out. Plain data: no torch, no Ray, no orchestrator import; pandas is the caller's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from jobs.analysis.inputs import SettingView
from jobs.store import setting_row

#: the lines of a setting's curve.json: the UQ method's routing curve, random routing, the oracle
CURVE_LINES = ("curve", "random", "oracle")


def finished(settings: Iterable[SettingView]) -> Iterator[SettingView]:
    """The settings whose results are complete (manifest written and its files verify, shallow)."""
    for s in settings:
        if s.unit.done:
            yield s


def setting_rows(settings: Iterable[SettingView]) -> list[dict]:
    """The settings table's rows of the finished ones (``jobs.store.setting_row``: name, hash, unit
    key, axes, summary metrics, nan_policy, answer_route, unscored_share) plus ``method`` (the UQ
    method the ``uq`` entry runs)."""
    out = []
    for s in settings:
        row = setting_row(s.unit, s.name, s.hash, s.axes())
        if row is not None:
            out.append(row | {"method": s.method})
    return out


def setting_curves(settings: Iterable[SettingView]) -> Iterator[tuple[SettingView, dict]]:
    """(setting, its curve.json) of each finished setting that has one: ``curve``, ``random`` and
    ``oracle``, each a list of points {ratio, accuracy} (``curve`` is empty when the method
    scored no query), and ``cost`` when the grid priced it."""
    for s in settings:
        d = s.unit
        if d.curve_path.is_file() and d.done:
            yield s, d.curve()


def curve_rows(settings: Iterable[SettingView], lines: Sequence[str] = CURVE_LINES) -> list[dict]:
    """The routing curves as long rows: setting, slm, uq, method, dataset, llm, ``line`` (one of
    ``lines``), ``point`` (its index along the line), ``ratio`` (share of queries routed to the LLM,
    0..1) and ``accuracy``."""
    bad = [x for x in lines if x not in CURVE_LINES]
    if bad:
        raise ValueError(f"curve lines {bad} are not known; valid: {', '.join(CURVE_LINES)}")
    out = []
    for s, c in setting_curves(settings):
        head = {"setting": s.name, **s.axes(), "method": s.method}
        for line in lines:
            for i, p in enumerate(c.get(line) or []):
                out.append(head | {"line": line, "point": i, "ratio": p["ratio"], "accuracy": p["accuracy"]})
    return out


def records_table(settings: Iterable[SettingView], columns: Sequence[str] | None = None, where: Any = None) -> pa.Table:
    """The per-query records of the finished settings given, one Arrow table (``pyarrow.dataset``
    over their ``records.parquet`` files alone): in the order given, each file's rows in its order.
    ``columns``: only these (None: every column any of the files has; a file without one gives
    nulls); ``where``: a ``pyarrow.dataset`` filter expression on the rows, e.g.
    ``pc.field("slm_correct") == False``."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    paths = [str(s.unit.records_path) for s in finished(settings) if s.unit.records_path.is_file()]
    if not paths:
        return pa.table({c: pa.array([], pa.string()) for c in columns or ("sample_id", "setting", "setting_hash")})
    # the union of the files' columns (a row holds the columns its method has), from their footers
    schema = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in paths])
    unknown = [c for c in columns or () if c not in schema.names]
    if unknown:
        raise ValueError(
            f"record column(s) {unknown} are not in these settings' records; valid: {', '.join(schema.names)}"
        )
    return ds.dataset(paths, format="parquet", schema=schema).to_table(
        columns=list(columns) if columns else None, filter=where
    )
