"""A metric registers itself (issue 18): one ``Metric`` declaration in ``jobs.metrics.METRICS`` and
nothing else. A metric declared in a module of its own (written to a temporary folder here) and put
in the registry reaches a setting unit's manifest, the settings row (summary.json) and summary.csv,
the MLflow payload and views, and the report's settings table, its bootstrap interval with it.
The shipped registry gives what ``summarize`` gave before the registry, key for key and value for
value (its old body is kept below as the reference)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from jobs import metrics as M
from jobs import scoring
from jobs.analysis import report
from jobs.scoring import run_setting_unit
from jobs.store import Store, setting_row
from orchestrator import mlflow_sink, plan, runner
from tests.helpers import gen_row, setting_records, setting_unit, store_scores, store_unit

#: ``jobs.metrics.SUMMARY_KEYS`` as it was before the registry (commit 3415642), in its order
RECORDED_KEYS = [
    "n", "n_nan", "unscored_share", "n_used", "slm_acc", "llm_acc", "auroc", "area", "random_area",
    "oracle_area", "apgr", "gap_recovered_vs_random", "call_rate_50", "call_rate_80", "cpt_20", "cpt_50",
    "cpt_80", *(f"relative_accuracy_at_{k}" for k in range(10, 101, 10)), "auroc_lo", "auroc_hi", "area_lo",
    "area_hi", "apgr_lo", "apgr_hi", "gap_recovered_vs_random_lo", "gap_recovered_vs_random_hi",
]  # fmt: skip

#: the new metric, in a module of its own: the LLM's accuracy gain over the SLM, with an interval
#: (no batch statistic: bootstrapped through its function), shown in every place
NEW_METRIC = """
from jobs.metrics import Metric

LLM_GAIN = Metric(
    "llm_gain",
    lambda q: float(q.llm.mean() - q.slm.mean()),
    "LLM gain",
    higher_is_better=None,
    has_interval=True,
    shown_in=("summary", "mlflow", "report"),
)
"""


def _old_summarize(u_raw, slm, llm, nan_policy, ties, n_boot, seed):
    """``summarize``'s body before the registry (commit 3415642), on the public functions."""
    u_raw, slm, llm = np.asarray(u_raw, dtype=float), np.asarray(slm, dtype=bool), np.asarray(llm, dtype=bool)
    u, keep = M.apply_nan_policy(u_raw, nan_policy)
    n = len(u_raw)
    out = {k: float("nan") for k in RECORDED_KEYS}
    out["n"], out["n_nan"] = n, int(np.isnan(u_raw).sum())
    out["unscored_share"] = out["n_nan"] / n
    out["n_used"] = int(keep.sum())
    u, slm, llm = u[keep], slm[keep], llm[keep]
    if len(u) == 0:
        return out
    curve = M.routing_curve(u, slm, llm, ties=ties)
    rnd, orc = M.random_curve(slm, llm), M.oracle_curve(slm, llm)
    out.update(
        slm_acc=float(slm.mean()),
        llm_acc=float(llm.mean()),
        auroc=M.auroc(u, slm),
        area=M.curve_area(curve),
        random_area=M.curve_area(rnd),
        oracle_area=M.curve_area(orc),
        apgr=M.apgr(curve),
        gap_recovered_vs_random=M.gap_recovered_vs_random(curve, rnd, orc),
        call_rate_50=M.call_rate_for_gap(curve, 0.5),
        call_rate_80=M.call_rate_for_gap(curve, 0.8),
        cpt_20=M.cpt(curve, 0.2),
        cpt_50=M.cpt(curve, 0.5),
        cpt_80=M.cpt(curve, 0.8),
    )
    for row in M.relative_accuracy_curve(u, slm, llm, ties=ties):
        out[f"relative_accuracy_at_{row['top_pct']}"] = row["relative_accuracy"]
    if n_boot > 0:
        stats = {
            "auroc": M.batch_auroc,
            "area": lambda a, b, c: M.batch_area(a, b, c, ties),
            "apgr": lambda a, b, c: M.batch_apgr(a, b, c, ties),
            "gap_recovered_vs_random": lambda a, b, c: M.batch_gap_recovered_vs_random(a, b, c, ties),
        }
        for name, (lo, hi) in M.bootstrap_ci(u, slm, llm, stats, n_boot=n_boot, seed=seed).items():
            out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
    return out


def _same(a, b) -> bool:
    return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN equals NaN here


@pytest.mark.parametrize("nan_policy", ["most_uncertain", "drop"])
@pytest.mark.parametrize("ties", ["expected", "stable"])
@pytest.mark.parametrize("n", [1, 2, 9, 60])
def test_the_shipped_registry_gives_what_summarize_gave_before(n, ties, nan_policy):
    rng = np.random.default_rng(n)
    u = np.round(rng.random(n), 1)  # coarse: ties
    if n > 2:
        u[[0, n // 2]] = np.nan
    slm, llm = rng.random(n) < 0.5, rng.random(n) < 0.7
    assert sorted(M.summary_keys()) == sorted(RECORDED_KEYS) and len(set(M.summary_keys())) == len(RECORDED_KEYS)
    for n_boot in (0, 40):
        new = M.summarize(u, slm, llm, nan_policy=nan_policy, ties=ties, n_boot=n_boot, seed=3)
        old = _old_summarize(u, slm, llm, nan_policy, ties, n_boot, 3)
        assert list(new) == list(M.summary_keys())
        assert {k for k in old if not _same(old[k], new[k])} == set(), (old, new)
    # every query unscored under "drop": the counts only
    empty = M.summarize([np.nan] * 3, [1, 0, 1], [1, 1, 1], nan_policy="drop")
    assert {k: v for k, v in empty.items() if v == v} == {"n": 3, "n_nan": 3, "unscored_share": 1.0, "n_used": 0}


def test_the_shipped_places_and_directions():
    assert [m.name for m in M.shown("summary")] == [
        "slm_acc", "llm_acc", "auroc", "unscored_share", "area", "apgr", "call_rate_50", "call_rate_80",
    ]  # fmt: skip
    assert [k for k, _ in report.settings_columns()][4:] == [
        "auroc", "auroc_lo", "auroc_hi", "unscored_share", "nan_policy", "area", "area_lo", "area_hi",
        "apgr", "apgr_lo", "apgr_hi", "gap_recovered_vs_random", "gap_recovered_vs_random_lo",
        "gap_recovered_vs_random_hi", "cpt_50", "cpt_80", "n_nan",
    ]  # fmt: skip
    assert mlflow_sink.run_order() == ("metrics.`auroc`", False)  # best AUROC first
    assert M.metric("unscored_share").higher_is_better is False and M.metric("n").higher_is_better is None
    # the key version of score and setting units lives beside scoring; the plan keys by it
    assert plan.SCORING_VERSION is scoring.SCORING_VERSION


def _register(tmp_path, monkeypatch) -> M.Metric:
    """Import the new metric's module from a temporary folder and put its one declaration last in
    the registry: the only change made."""
    path = tmp_path / "llm_gain_metric.py"
    path.write_text(NEW_METRIC)
    spec = importlib.util.spec_from_file_location("llm_gain_metric", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(M, "METRICS", (*M.METRICS, mod.LLM_GAIN))
    return mod.LLM_GAIN


def _setting(root, n=30, bootstrap=50) -> dict:
    """A finished setting unit "H" on ``n`` hand-made queries; its manifest."""
    rng = np.random.default_rng(1)
    golds = rng.choice(["yes", "no"], n)
    for key, p in (("G", 0.5), ("L", 0.8)):
        outs = np.where(rng.random(n) < p, golds, np.where(golds == "yes", "no", "yes"))
        store_unit(root, key, [gen_row(f"s{i:02d}", gold=g, raw_output=o) for i, (g, o) in enumerate(zip(golds, outs))])
    store_scores(root, [f"s{i:02d}" for i in range(n)], rng.random(n))
    return run_setting_unit(setting_unit("u", bootstrap=bootstrap), root, plot=False)


def test_a_metric_declared_once_reaches_the_unit_the_summary_files_mlflow_and_the_report(tmp_path, monkeypatch):
    root = tmp_path / "store"
    assert "llm_gain" not in _setting(tmp_path / "before")["metrics"]
    new = _register(tmp_path, monkeypatch)
    manifest = _setting(root)
    # the setting unit: the value from its own records, the interval from the bootstrap it shares
    recs = setting_records(root)
    slm = np.array([r["slm_correct"] for r in recs])
    llm = np.array([r["llm_correct"] for r in recs])
    m = manifest["metrics"]
    assert m["llm_gain"] == pytest.approx(llm.mean() - slm.mean())
    u = np.array([r["uncertainty"] for r in recs])
    ci = M.bootstrap_ci(u, slm, llm, {"g": lambda a, s, l: l.mean(axis=1) - s.mean(axis=1)}, n_boot=50, seed=0)
    assert (m["llm_gain_lo"], m["llm_gain_hi"]) == pytest.approx(ci["g"])
    assert m["llm_gain_lo"] < m["llm_gain"] < m["llm_gain_hi"]
    assert list(m)[: len(M.summary_keys())] == list(M.summary_keys())
    # the summary files: the settings row (summary.json) and summary.csv
    d = Store(root).setting("H")
    row = setting_row(d, "m__u__d__l", "H", {"slm": "m", "uq": "u", "dataset": "d", "llm": "l"})
    assert row is not None and row["llm_gain"] == m["llm_gain"]
    header, line = runner.summary_csv([row]).splitlines()
    assert header.split(",")[-1] == "llm_gain" and line.split(",")[-1] == str(m["llm_gain"])
    # MLflow: logged on the setting's run, a bar on the landing, a column of the grid's table
    curve = json.loads(d.curve_path.read_text())
    logged = {(k, s): v for k, v, s in mlflow_sink.setting_metrics(manifest, curve)}
    assert logged[("llm_gain", 0)] == m["llm_gain"] and ("llm_gain_hi", 0) in logged
    assert mlflow_sink.landing_metrics()[-1] == "llm_gain" and "llm_gain" in mlflow_sink.table_columns()
    view = mlflow_sink.group_view_state("GH", "m", "d", "l")
    first = view["compareRunSections"][0]["uuid"]
    assert {"BAR"} == {c["type"] for c in view["compareRunCharts"] if c["metricKey"] == "llm_gain"}
    assert [c["metricSectionId"] for c in view["compareRunCharts"] if c["metricKey"] == "llm_gain"] == [first]
    # the report's settings table: its label, its value and its interval beside it
    html = "".join(report.alignment_section({"settings": [row], "ranking": [], "relative_accuracy": []}, tmp_path).html)
    assert "<th>LLM gain</th><th>lo</th><th>hi</th></tr>" in html
    assert f"<td>{m['llm_gain']:.3f}</td><td>{m['llm_gain_lo']:.3f}</td><td>{m['llm_gain_hi']:.3f}</td>" in html
    assert new.label == "LLM gain" and M.metric("llm_gain") is new


def test_a_bad_declaration_is_refused_naming_the_choices(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown place\(s\) \['plots'\] in shown_in; valid: summary, mlflow, report"):
        M.Metric("x", lambda q: 0.0, shown_in=("plots",))
    with pytest.raises(ValueError, match="must be an identifier"):
        M.Metric("x-y", lambda q: 0.0)
    with pytest.raises(ValueError, match="unknown metric 'aurock'; valid: slm_acc, llm_acc, auroc"):
        M.metric("aurock")
    monkeypatch.setattr(M, "METRICS", (*M.METRICS, M.Metric("auroc_lo", lambda q: 0.0)))
    with pytest.raises(ValueError, match=r"metric key\(s\) \['auroc_lo'\] declared twice"):
        M.summarize([0.1, 0.2], [1, 0], [1, 1], n_boot=0)
