"""Typed, read-only inputs of the grid analysis, the report and its cost section.

Where this sits in the flow: a resolved grid + its plan (driver side) ->
``orchestrator.grid_view.grid_view`` -> **these views** -> ``jobs.analysis.findings.analyze``,
``jobs.analysis.report.build_report``, ``jobs.analysis.cost_report.cost_analysis``, ``uqroute calibrate``.

They say which settings the grid has, where each one's results are in the store, which units its
numbers were computed from (by key) and how the grid asked for them to be analysed. ``jobs/``
reads no plan internals: ``orchestrator.grid_view.grid_view`` is the one place outside
``orchestrator.plan`` that reads unit payloads for the analysis, the report and the cost section.
Plain data: no torch, no Ray, no orchestrator import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.store import UnitDir


@dataclass(frozen=True)
class CalibrationUnits:
    """A setting's calibration (fit-role) units: what ``jobs.analysis.findings.fit_pools`` reads.

    score_key: the fit-role score unit; greedy_key: the SLM's greedy pass on the fit rows;
    stage_keys: stage -> key of every SLM pass that score read (greedy included); llm_key: the LLM's
    pass on the fit rows; method, params: the score unit's UQ method and its params, which say which
    SLM answer is judged (``jobs.scoring.slm_judgement``; method None: the greedy answer)."""

    score_key: str
    greedy_key: str
    llm_key: str
    stage_keys: Mapping[str, str] = field(default_factory=dict)
    method: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SettingView:
    """One setting (SLM x UQ method x dataset x LLM) of the grid.

    results: its results folder in the store (``settings/<unit key>``: manifest.json,
    records.parquet, curve.json); key: its setting unit's key; hash: its setting hash (names its
    MLflow run); score_key, greedy_key, llm_key: the eval-role units it joins (the UQ scores, the
    SLM's greedy pass, the LLM's pass); stage_keys: stage -> key of every SLM pass its score read;
    method, params: its UQ method and params; slm_model, llm_model: the resolved model configs (what
    the price table prices); fit: its calibration units (None when the grid did not enable
    calibration); nan_policy: the setting's NaN policy (``orchestrator.config.nan_policy_of``)."""

    slm: str
    uq: str
    dataset: str
    llm: str
    results: Path
    key: str = ""
    hash: str = ""
    score_key: str = ""
    greedy_key: str = ""
    llm_key: str = ""
    stage_keys: Mapping[str, str] = field(default_factory=dict)
    method: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    slm_model: Mapping[str, Any] = field(default_factory=dict)
    llm_model: Mapping[str, Any] = field(default_factory=dict)
    fit: CalibrationUnits | None = None
    nan_policy: str = "most_uncertain"  # what its metrics do with unscored queries (its method's / entry's)

    @property
    def name(self) -> str:
        return f"{self.slm}__{self.uq}__{self.dataset}__{self.llm}"

    @property
    def unit(self) -> UnitDir:
        """Its results folder as the store reads it (``manifest_path``, ``records_path``, ``curve()``...)."""
        return UnitDir("setting", self.key, self.results)

    def axes(self) -> dict[str, str]:
        return {"slm": self.slm, "uq": self.uq, "dataset": self.dataset, "llm": self.llm}


@dataclass(frozen=True)
class LeaveOutScore:
    """Scores of ``dataset``'s calibration-source rows (``role``: fit, or eval when calibration is
    off) by a model of ``uq`` (a method trained on other datasets) that trained on neither
    ``dataset`` nor ``without``: a held-out dataset (leave-one-out) or a dataset group (every dataset
    of it: leave-group-out). score_key: that score unit."""

    slm: str
    uq: str
    dataset: str
    without: str
    score_key: str
    role: str


@dataclass(frozen=True)
class GridView:
    """A planned grid, as the analysis, the report and the cost section read it.

    store, output: the work-unit store and the grid's output folder; settings: every setting, in plan
    order; slm_names ... dataset_names: the grid's axes; limit, fit_limit, dataset_seed: the
    ``dataset`` block (evaluated questions, fit rows per dataset, sampling seed), dataset_limits: the
    datasets whose config sets its own row counts; extraction_policy:
    ``decoding.extraction_policy``; bootstrap, bootstrap_seed, ties, nan_policy: the ``metrics``
    block (nan_policy: the grid's default); calibration: the ``calibration`` block as configured
    (``jobs.analysis.calibration.CalibrationParams.from_conf`` reads it per UQ method); uq_methods: uq name ->
    UQ method name; nan_policies: uq name -> its NaN policy (``orchestrator.config.nan_policy_of``);
    fit_sources: dataset -> where its fit rows come from ("split:<split>" | "eval-disjoint");
    groups: dataset -> its dataset group (None: none); leave_out, leave_group_out: the leave-out
    scores of methods trained on other datasets (``LeaveOutScore``); prices, price_dirs: the price
    table's name (``cost.prices``) and the conf folders it may be in; answer_modes: dataset -> the
    answer mode the grid runs it in (``jobs.uq.definition.dataset_answer_mode``), dataset_tasks:
    dataset -> its task: what a UQ statistic's definition depends on (``jobs.analysis.findings.dataset_forms``)."""

    name: str
    store: Path
    output: Path
    settings: tuple[SettingView, ...] = ()
    slm_names: tuple[str, ...] = ()
    llm_names: tuple[str, ...] = ()
    uq_names: tuple[str, ...] = ()
    dataset_names: tuple[str, ...] = ()
    limit: int | None = 100
    fit_limit: int | None = 100
    dataset_seed: int = 0
    # dataset -> (limit, fit_limit) where its config sets its own (``DatasetConf.limit``)
    dataset_limits: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)
    extraction_policy: str = "flexible"
    bootstrap: int = 1000
    bootstrap_seed: int = 0
    ties: str = "expected"
    nan_policy: str = "most_uncertain"
    calibration: Mapping[str, Any] = field(default_factory=dict)
    uq_methods: Mapping[str, str] = field(default_factory=dict)
    nan_policies: Mapping[str, str] = field(default_factory=dict)
    fit_sources: Mapping[str, str] = field(default_factory=dict)
    groups: Mapping[str, str | None] = field(default_factory=dict)
    leave_out: tuple[LeaveOutScore, ...] = ()
    leave_group_out: tuple[LeaveOutScore, ...] = ()
    prices: str = "default"
    price_dirs: tuple[Path, ...] = ()
    answer_modes: Mapping[str, str] = field(default_factory=dict)
    dataset_tasks: Mapping[str, str] = field(default_factory=dict)
