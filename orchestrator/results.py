"""``uqroute.open(path)``: a grid's results as pandas DataFrames, read lazily from its Parquet store.

    import uqroute
    res = uqroute.open("runs/default")
    res.settings()                                   # one row per finished setting: axes + metrics
    res.curves(dataset="strategyqa")                 # routing curves, long: one row per point
    res.records(dataset="arc_easy", method="perplexity", columns=["sample_id", "uncertainty"])
    res.calibration()                                # calibration transfer, as the last report computed it

Opening plans the grid from its ``resolved_config.yaml`` (no store read); each call reads the
folders of the settings its filters select and nothing else (``jobs/analysis/results.py``), so a question
about one dataset of a 1,792-setting grid opens that dataset's files alone. Filters, on every
table: ``slm``, ``uq`` (the grid's UQ entry), ``method`` (the UQ method it runs), ``dataset``,
``llm``, ``setting`` (a setting name), each a name or a list of names; an unknown filter or name
is refused with the valid ones. A damaged setting unit (its files do not verify against its
manifest) is refused as ``report`` and ``sync`` refuse it (``orchestrator.verify.DamagedStore``,
naming it and the command that recomputes it); a setting not finished yet is left out.
No torch is imported (the driver rule), nor Ray, nor MLflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.analysis import results as R
from jobs.analysis.inputs import SettingView

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from orchestrator.config import ResolvedGrid
    from orchestrator.plan import Plan

#: what the tables can be filtered by (SettingView attributes)
FILTERS = ("slm", "uq", "method", "dataset", "llm", "setting")
#: the tables of the report's calibration transfer (``analysis.json`` -> ``transfer``)
CALIBRATION_TABLES = ("call_rate", "accuracy", "curves", "skipped")


def _value(s: SettingView, key: str) -> str:
    return s.name if key == "setting" else getattr(s, key)


class Results:
    """The results of one grid output folder (``open``). ``resolved``, ``plan``: the grid as run;
    ``views``: every setting (``jobs.analysis.inputs.SettingView``), in plan order."""

    def __init__(self, resolved: ResolvedGrid, plan: Plan):
        from orchestrator.grid_view import grid_view

        self.resolved, self.plan = resolved, plan
        self.path = Path(resolved.output_dir)
        self.view = grid_view(resolved, plan)
        self.views: tuple[SettingView, ...] = self.view.settings

    def __repr__(self) -> str:
        r = self.resolved
        return (
            f"<uqroute results {str(self.path)!r}: grid {r.grid.name!r}, {len(self.views)} settings = "
            f"{len(r.slms)} SLMs x {len(r.uq)} UQ x {len(r.datasets)} datasets x {len(r.llms)} LLMs>"
        )

    # ------------------------------------------------------------------ selection
    def choices(self, key: str) -> list[str]:
        """The values filter ``key`` can take in this grid, in plan order."""
        if key not in FILTERS:
            raise ValueError(f"unknown filter {key!r}; valid: {', '.join(FILTERS)}")
        return list(dict.fromkeys(_value(s, key) for s in self.views))

    def select(self, **filters: str | Iterable[str] | None) -> list[SettingView]:
        """The settings that match every filter (``FILTERS``; a name or a list of names; None: any),
        in plan order. An unknown filter or value is refused, naming the valid ones."""
        want: dict[str, set[str]] = {}
        for key, v in filters.items():
            if v is None:
                continue
            names = {v} if isinstance(v, str) else set(v)
            valid = self.choices(key)
            bad = sorted(names - set(valid))
            if bad:
                raise ValueError(
                    f"{key}={bad[0]!r} is not in grid {self.resolved.grid.name!r}; valid: {', '.join(valid)}"
                )
            want[key] = names
        return [s for s in self.views if all(_value(s, k) in names for k, names in want.items())]

    def _healthy(self, settings: Sequence[SettingView]) -> list[SettingView]:
        """``settings``, after refusing any whose unit is damaged (``DamagedStore``)."""
        from orchestrator.verify import require_healthy

        require_healthy(
            self.plan, self.resolved.store_dir, self.path, kinds=("setting",), keys=[s.key for s in settings]
        )
        return list(settings)

    # ------------------------------------------------------------------ tables
    def setting_rows(self, **filters: Any) -> list[dict]:
        """The settings table as dicts (``settings`` is its DataFrame)."""
        return R.setting_rows(self._healthy(self.select(**filters)))

    def settings(self, **filters: Any) -> pd.DataFrame:
        """One row per finished setting: setting (name), hash, key (its unit key: results under
        ``store/settings/<key>``), slm, uq, dataset, llm, method, the summary metrics of its manifest
        (slm_acc, llm_acc, auroc with its CI, area, apgr, call rates, n, n_nan, ...), nan_policy,
        answer_route, unscored_share."""
        import pandas as pd

        return pd.DataFrame(self.setting_rows(**filters))

    def curves(self, lines: Sequence[str] = R.CURVE_LINES, **filters: Any) -> pd.DataFrame:
        """The routing curves (curve.json), one row per point: setting, slm, uq, method, dataset, llm,
        line (``curve``: the method's; ``random``; ``oracle``), point, ratio (share of queries routed
        to the LLM, 0..1), accuracy. The report's overlay of a (SLM, dataset, LLM) group is the
        ``line == "curve"`` rows of that group, one line per ``uq``."""
        import pandas as pd

        cols = ["setting", "slm", "uq", "dataset", "llm", "method", "line", "point", "ratio", "accuracy"]
        return pd.DataFrame(R.curve_rows(self._healthy(self.select(**filters)), lines), columns=cols)

    def records_table(self, columns: Sequence[str] | None = None, where: Any = None, **filters: Any) -> pa.Table:
        """The per-query records of the selected settings as one Arrow table, as stored
        (``jobs.store`` schema ``setting``: sample_id, setting, setting_hash, slm/llm answers and
        correctness, uncertainty, route_rank, ...). ``columns``: only these; ``where``: a
        ``pyarrow.dataset`` expression on the rows."""
        return R.records_table(self._healthy(self.select(**filters)), columns, where)

    def records(self, columns: Sequence[str] | None = None, where: Any = None, **filters: Any) -> pd.DataFrame:
        """``records_table`` as a DataFrame, with each row's slm, uq, method, dataset and llm."""
        views = self._healthy(self.select(**filters))
        need = list(dict.fromkeys([*columns, "setting_hash"])) if columns else None
        df = R.records_table(views, need, where).to_pandas()
        by_hash = {s.hash: s for s in views}
        for axis in ("slm", "uq", "method", "dataset", "llm"):
            df[axis] = df["setting_hash"].map({h: getattr(v, axis) for h, v in by_hash.items()})
        if columns and "setting_hash" not in columns:
            df = df.drop(columns="setting_hash")
        return df

    def calibration(self, table: str = "call_rate", **filters: Any) -> pd.DataFrame:
        """The calibration transfer of the grid's report (``report/analysis.json``, written by ``run``
        and ``uqroute report``): thresholds fitted on other datasets' calibration rows, applied to a
        held-out dataset. ``table``: ``call_rate`` (target vs achieved call rate per held-out dataset
        and calibration source), ``accuracy`` (accuracy targets), ``curves``, ``skipped``. Filters:
        slm, uq, llm, dataset (the held-out one)."""
        import json

        import pandas as pd

        if table not in CALIBRATION_TABLES:
            raise ValueError(f"calibration table {table!r}; valid: {', '.join(CALIBRATION_TABLES)}")
        bad = sorted(set(filters) - {"slm", "uq", "llm", "dataset"})
        if bad:
            raise ValueError(f"unknown filter {bad[0]!r} for calibration; valid: slm, uq, llm, dataset")
        self.select(**filters)  # names checked against the grid
        path = self.path / "report" / "analysis.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not there yet: `uqroute report {self.path}` computes it")
        rows = json.loads(path.read_text())["transfer"][table]
        for key, v in filters.items():
            if v is None:
                continue
            names = {v} if isinstance(v, str) else set(v)
            col = "heldout" if key == "dataset" else key
            rows = [x for x in rows if x.get(col) in names]
        return pd.DataFrame(rows)


def open(path: str | Path) -> Results:
    """The results of the grid output folder ``path`` (a folder ``uqroute run`` wrote)."""
    from orchestrator.plan import make_plan
    from orchestrator.runner import load_output

    r = load_output(Path(path))
    return Results(r, make_plan(r))
