"""The typed inputs of the analysis, the report and the cost section (``jobs/analysis/inputs.py``), built from a
plan by ``orchestrator.grid_view.grid_view``: the one place outside the plan that reads unit payloads for
them, so ``jobs/`` reads no plan internals and imports nothing of ``orchestrator``."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.analysis.inputs import CalibrationUnits, GridView, LeaveOutScore, SettingView
from orchestrator.config import dataset_groups, load_grid, nan_policy_of, plain
from orchestrator.grid_view import grid_view
from orchestrator.plan import make_plan

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "conf" / "grid" / "tiny.yaml"


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    r = load_grid(TINY, [f"output_dir={tmp_path_factory.mktemp('views') / 'out'}"])
    return r, make_plan(r)


def test_every_setting_is_viewed_in_plan_order_with_its_results_folder_and_units(planned):
    r, plan = planned
    view = grid_view(r, plan)
    assert isinstance(view, GridView) and view.store == r.store_dir and view.output == r.output_dir
    assert [(s.slm, s.uq, s.dataset, s.llm) for s in view.settings] == [
        (s.slm, s.uq, s.dataset, s.llm) for s in plan.settings
    ]
    for sv, s in zip(view.settings, plan.settings):
        unit = plan.setting_unit(s)
        assert sv.results == plan.setting_dir(r.store_dir, s) and sv.key == unit.key and sv.hash == s.hash
        assert sv.name == s.name and sv.axes() == s.axes()
        assert (sv.score_key, sv.greedy_key, sv.llm_key) == (
            unit.spec.score,
            unit.spec.slm_greedy,
            unit.spec.llm,
        )
        assert sv.stage_keys == plan.units[unit.spec.score].spec.stages
        assert sv.method == (r.uq[s.uq].method or s.uq) and sv.params == r.uq[s.uq].params
        assert sv.slm_model == r.slms[s.slm] and sv.llm_model == r.llms[s.llm]
    with pytest.raises(AttributeError):
        view.settings[0].results = Path("elsewhere")  # frozen


def test_calibration_units_and_leave_out_scores(planned):
    r, plan = planned
    view = grid_view(r, plan)
    for sv in view.settings:
        fs, fl = plan.fit_scores[(sv.slm, sv.uq, sv.dataset)], plan.fit_llm[(sv.llm, sv.dataset)]
        su = plan.units[fs.score].spec
        assert sv.fit == CalibrationUnits(fs.score, fs.slm_greedy, fl, fs.slm_stages, su.method, su.params)
    assert view.leave_out == tuple(
        LeaveOutScore(slm, uq, d, t, lo.score, lo.role) for (slm, uq, d, t), lo in plan.leave_out.items()
    )
    assert view.leave_group_out == tuple(
        LeaveOutScore(slm, uq, d, g, lo.score, lo.role) for (slm, uq, d, g), lo in plan.leave_group_out.items()
    )
    off = load_grid(TINY, [f"output_dir={r.output_dir}", "calibration.enabled=false"])
    assert all(sv.fit is None for sv in grid_view(off, make_plan(off)).settings)


def test_the_grid_block_the_analysis_reads(planned):
    r, plan = planned
    view = grid_view(r, plan)
    g = r.grid
    assert view.name == "tiny" and view.uq_names == tuple(r.uq) and view.limit == g.dataset.limit
    assert dict(view.calibration) == plain(g.calibration)
    assert dict(view.nan_policies) == {uq: nan_policy_of(r, uq) for uq in r.uq}
    assert dict(view.groups) == dataset_groups(r) and set(view.fit_sources) == set(r.datasets)
    assert view.extraction_policy == g.decoding.extraction_policy and view.ties == g.metrics.ties
    assert view.prices == "default" and view.price_dirs == (TINY.resolve().parent.parent,)


def test_a_hand_built_view_needs_only_what_it_is_asked_for(tmp_path):
    s = SettingView("m", "perplexity", "d", "l", results=tmp_path)
    assert s.fit is None and s.name == "m__perplexity__d__l"
    assert GridView("g", tmp_path, tmp_path, settings=(s,)).settings == (s,)


def test_jobs_modules_import_nothing_of_orchestrator():
    """Every module of ``jobs/`` (both halves): none imports the driver (``tests/unit/test_structure.py``
    walks the whole graph)."""
    from tests.unit.test_structure import module_imports

    files = sorted((REPO / "jobs").rglob("*.py"))
    assert len(files) > 60
    bad = {str(f.relative_to(REPO)): m for f in files for m in module_imports(f) if m.split(".")[0] == "orchestrator"}
    assert bad == {}
