"""A new metric is one place (issue 9, issue 18): its ``Metric`` declaration in
``jobs.metrics.METRICS``; the report's settings table then shows it (``shown_in`` "report") with its
CI columns, with no edit of ``jobs/analysis/report.py`` (the whole path: test_metric_registry.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from jobs import metrics as M
from jobs.analysis import report


def _row(uq: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    s = M.summarize(rng.random(40), rng.random(40) < 0.5, rng.random(40) < 0.7, n_boot=20, seed=0)
    return {"slm": "m", "dataset": "d", "llm": "l", "uq": uq, "nan_policy": "drop", **s}


def test_every_reported_column_is_a_summary_metric_or_a_settings_row_field():
    row = _row("u", 0)
    assert {k for k, _ in report.settings_columns()} <= set(row)
    # a metric with a bootstrap CI brings its lo / hi columns beside it
    cols = [k for k, _ in M.report_columns()]
    assert cols[cols.index("auroc") + 1 : cols.index("auroc") + 3] == ["auroc_lo", "auroc_hi"]


def test_a_metric_added_in_the_metrics_module_reaches_the_report_table(monkeypatch, tmp_path):
    a = {"settings": [_row("u1", 1), _row("u2", 2)], "ranking": [], "relative_accuracy": []}
    before = "".join(report.alignment_section(a, tmp_path).html)
    assert "<th>SLM accuracy</th>" not in before
    shown = tuple(
        replace(m, label="SLM accuracy", shown_in=(*m.shown_in, "report")) if m.name == "slm_acc" else m
        for m in M.METRICS
    )
    monkeypatch.setattr(M, "METRICS", shown)
    after = "".join(report.alignment_section(a, tmp_path).html)
    assert "<th>SLM accuracy</th>" in after
    assert f"<td>{a['settings'][0]['slm_acc']:.3f}</td>" in after
