"""``grid_view``: the typed inputs of the analysis, the report and the cost section
(``jobs/analysis/inputs.py``) from a resolved grid and its plan.

The one place outside ``orchestrator/plan.py`` that reads unit specs (and the plan's
calibration and leave-out tables) for ``jobs.analysis.findings``, ``jobs.analysis.report`` and ``jobs.analysis.cost_report``:
a change to the plan's specs changes this file, not them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from jobs.analysis.inputs import CalibrationUnits, GridView, LeaveOutScore, SettingView
from jobs.units import ScoreSpec, SettingSpec
from orchestrator.config import ResolvedGrid, dataset_answer_modes, dataset_groups, nan_policy_of

if TYPE_CHECKING:
    from orchestrator.grid import Setting
    from orchestrator.plan import Plan


def grid_view(r: ResolvedGrid, plan: Plan) -> GridView:
    """The grid as ``jobs.analysis.findings.analyze``, ``jobs.analysis.report.build_report`` and
    ``jobs.analysis.cost_report.cost_analysis`` read it."""
    from jobs.datasets.roles import fit_source
    from orchestrator.config import dataset_task

    g = r.grid
    store = r.store_dir
    return GridView(
        name=g.name,
        store=store,
        output=r.output_dir,
        settings=tuple(setting_view(r, plan, s) for s in plan.settings),
        slm_names=tuple(r.slms),
        llm_names=tuple(r.llms),
        uq_names=tuple(r.uq),
        dataset_names=tuple(r.datasets),
        limit=g.dataset.limit,
        fit_limit=g.dataset.fit_limit,
        dataset_limits={
            d: (run.limit, run.fit_limit) for d in r.datasets if (run := r.dataset_run(d)) is not g.dataset
        },
        dataset_seed=g.dataset.seed,
        extraction_policy=g.decoding.extraction_policy,
        bootstrap=g.metrics.bootstrap,
        bootstrap_seed=g.metrics.seed,
        ties=g.metrics.ties,
        nan_policy=g.metrics.nan_policy,
        calibration=g.calibration.to_dict(),
        uq_methods={uq: conf.method for uq, conf in r.uq.items()},
        nan_policies={uq: nan_policy_of(r, uq) for uq in r.uq},
        fit_sources={d: fit_source(dc) for d, dc in r.datasets.items()},
        groups=dataset_groups(r),
        leave_out=_leave_out(plan.leave_out),
        leave_group_out=_leave_out(getattr(plan, "leave_group_out", {}) or {}),
        prices=g.cost.prices,
        price_dirs=(Path(r.source).resolve().parent.parent,) if getattr(r, "source", None) else (),
        answer_modes=dataset_answer_modes(r),
        dataset_tasks={d: dataset_task(dc) for d, dc in r.datasets.items()},
    )


def setting_view(r: ResolvedGrid, plan: Plan, s: Setting) -> SettingView:
    """One setting: its axes, results folder, the units it joins and its calibration units."""
    u = plan.setting_unit(s).spec
    assert isinstance(u, SettingSpec)
    return SettingView(
        slm=s.slm,
        uq=s.uq,
        dataset=s.dataset,
        llm=s.llm,
        results=plan.setting_dir(r.store_dir, s),
        key=u.key,
        hash=s.hash,
        score_key=u.score,
        greedy_key=u.slm_greedy,
        llm_key=u.llm,
        stage_keys=dict(u.slm_stages),
        method=u.method or "",
        params=dict(u.uq_params),
        nan_policy=u.metrics.nan_policy,
        slm_model=r.slms[s.slm],
        llm_model=r.llms[s.llm],
        fit=_fit_source(plan, s),
    )


def _fit_source(plan: Plan, s: Setting) -> CalibrationUnits | None:
    fs = plan.fit_scores.get((s.slm, s.uq, s.dataset))
    fl = plan.fit_llm.get((s.llm, s.dataset))
    if fs is None or fl is None:
        return None
    sp = plan.spec(fs.score)
    assert isinstance(sp, ScoreSpec)
    return CalibrationUnits(
        score_key=fs.score,
        greedy_key=fs.slm_greedy,
        llm_key=fl,
        stage_keys=dict(fs.slm_stages),
        method=sp.method,
        params=dict(sp.params),
    )


def _leave_out(entries: dict) -> tuple[LeaveOutScore, ...]:
    """``Plan.leave_out`` / ``Plan.leave_group_out`` ((slm, uq, dataset, without) -> ScoreRef), in
    their order."""
    return tuple(
        LeaveOutScore(slm, uq, dataset, without, lo.score, lo.role)
        for (slm, uq, dataset, without), lo in entries.items()
    )
