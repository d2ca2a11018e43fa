"""``uqroute calibrate build|apply``: calibration sets from a finished grid, and thresholds for
data a user brings with no labels.

build   fit-role (train/dev) records of one (SLM, UQ method, LLM) in an output folder ->
        stratified calibration set (the paper's pipeline, ``jobs.analysis.calibration``) ->
        ``<output>/calibration/<name>/``: ``calibration.jsonl`` (a questions file any grid can
        use through ``dataset.yaml``), ``record.json`` (what went in, thresholds per target).
apply   a calibration folder + a target call rate (or accuracy) -> threshold and expected
        accuracy; with ``--scores`` or a dataset, also the routing decision per query (the SLM
        and the UQ method run on Ray through the grid's store when a dataset is given).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from jobs.analysis import calibration as C
from jobs.analysis.inputs import GridView
from jobs.records import write_json
from jobs.registry import UnknownNameError
from jobs.uq.definition import Definition
from orchestrator.config import ConfigError, nan_policy_of

CAL_FILE = "calibration.jsonl"
RECORD_FILE = "record.json"


def _pick(kind: str, value: str | None, choices: list[str]) -> str:
    if value is None:
        if len(choices) == 1:
            return choices[0]
        raise ConfigError(f"--{kind} is required: the grid has {len(choices)} ({', '.join(choices)})")
    if value not in choices:
        raise ConfigError(f"--{kind}: {UnknownNameError(f'{kind} of this grid', value, choices)}")
    return value


def _cal_conf(r, **overrides) -> dict:
    conf = r.grid.calibration.to_dict() | {k: v for k, v in overrides.items() if v is not None}
    if conf["binning"] not in C.BINNINGS:
        raise ConfigError(f"--binning {conf['binning']!r}; valid: {', '.join(C.BINNINGS)}")
    if conf["scale"] not in ("paper", *C.SCALES):
        raise ConfigError(f"calibration.scale {conf['scale']!r}; valid: paper, {', '.join(C.SCALES)}")
    if not 0 < float(conf["frac"]) <= 1:
        raise ConfigError(f"--frac {conf['frac']!r} must be in (0, 1]")
    if conf["pool"] not in C.POOLS:
        raise ConfigError(f"--pool {conf['pool']!r}; valid: {', '.join(C.POOLS)}")
    if int(conf["n_bins"]) < 1:
        raise ConfigError(f"--n-bins {conf['n_bins']!r} must be >= 1")
    return conf


def _leave_out_target(r, uq: str, exclude: list[str]) -> str | None:
    """The excluded dataset whose leave-out scores a set of ``uq`` must use: for a method trained on
    other datasets (the OOD probe), the ordinary scores of every other dataset come from probes
    that saw the excluded one's fit rows (item 10 of issue 8). None for other methods or when
    nothing is excluded."""
    from orchestrator.plan import _uq_method

    if not exclude or _uq_method(r, uq).fit != "other_datasets":
        return None
    if len(exclude) > 1:
        raise ConfigError(
            f"--exclude {', '.join(exclude)}: {uq} trains on other datasets, so a calibration set "
            f"for an excluded dataset must be scored by probes that never saw it; the grid has "
            f"such probes for one excluded dataset at a time: exclude one"
        )
    return exclude[0]


def build(
    out: Path,
    *,
    slm: str | None = None,
    uq: str | None = None,
    llm: str | None = None,
    exclude: list[str] | None = None,
    name: str | None = None,
    n_bins: int | None = None,
    frac: float | None = None,
    seed: int | None = None,
    binning: str | None = None,
    pool: str | None = None,
    like: str | None = None,
    task: str | None = None,
) -> dict:
    """Build and write one calibration set; returns {"folder", "record"}.

    The steps: which (SLM, UQ method, LLM) and what to exclude (``_axes``), the calibration
    parameters (``_cal_conf``), the pools the set is drawn from (``calibration_pools``: fit-role
    rows of the allowed datasets, leave-out scores for a method trained on other datasets; with
    ``like``, only the datasets on which the method's statistic is defined as on ``like``: a
    dataset of the grid, or a dataset / questions file (of ``task``) that ``calibrate apply`` is
    given, ``_like``), which must share one definition (``_one_definition``), one set (one draw: a
    calibration folder is what a user deploys; the grid report averages draws), its rows
    (``_write_rows``), thresholds per target (``_thresholds``) and the record (``_record``)."""
    from orchestrator.grid_view import grid_view
    from orchestrator.plan import make_plan
    from orchestrator.runner import load_output

    r = load_output(Path(out))
    slm, uq, llm, exclude = _axes(r, slm, uq, llm, exclude)
    conf = _cal_conf(r, n_bins=n_bins, frac=frac, seed=seed, binning=binning, pool=pool)
    view = grid_view(r, make_plan(r))
    pools, scored_without = calibration_pools(Path(out), r, view, (slm, uq, llm), exclude, conf["pool"])
    if like is not None:
        pools = _like(Path(out), r, view, uq, pools, like, task)
    definition = _one_definition(Path(out), r, view, uq, pools)
    params = C.CalibrationParams.from_conf(conf, r.uq[uq].method)
    cal = C.build_calibration_set(pools, params=params, nan_policy=nan_policy_of(r, uq))
    name = name or "__".join([slm, uq, llm] + ([f"without-{'-'.join(exclude)}"] if exclude else []))
    folder = r.output_dir / "calibration" / name
    _write_rows(folder, _rows(r, cal, view.fit_sources))
    record = _record(r, name, (slm, uq, llm), conf["pool"], scored_without, cal, view.fit_sources, params.targets)
    record["definition"] = {**dataclasses.asdict(definition), "label": definition.label}
    write_json(folder / RECORD_FILE, record)
    (folder / "dataset.yaml").write_text(
        f"# The calibration set {name} as a dataset: copy into a grid's conf/dataset/ to run other\n"
        f"# SLMs or UQ methods on it (each row carries its own task).\n"
        f"name: {name}\nadapter: questions\nlocal_path: {(folder / CAL_FILE).resolve()}\n"
    )
    return {"folder": folder, "record": record}


def _axes(r, slm: str | None, uq: str | None, llm: str | None, exclude: list[str] | None) -> tuple:
    """(slm, uq, llm, sorted exclude), each checked against the grid (ConfigError naming the choices)."""
    slm = _pick("slm", slm, list(r.slms))
    uq = _pick("uq", uq, list(r.uq))
    llm = _pick("llm", llm, list(r.llms))
    exclude = sorted(set(exclude or []))
    for d in exclude:
        if d not in r.datasets:
            raise ConfigError(f"--exclude: {UnknownNameError('dataset of this grid', d, list(r.datasets))}")
    return slm, uq, llm, exclude


def calibration_pools(
    out: Path, r, view: GridView, key: tuple[str, str, str], exclude: list[str], pool: str
) -> tuple[dict[str, C.Pool], str | None]:
    """The pools one calibration set of ``key`` = (slm, uq, llm) is drawn from, and the excluded
    dataset its scores must not have seen (``_leave_out_target``; None for most methods).

    The fit-role pools (``jobs.analysis.findings.fit_pools``) of every dataset not excluded that ``pool``
    allows (train_dev: only datasets with a train/dev split; fit: every dataset); for a method trained
    on other datasets with a dataset excluded, the same rows with the leave-out scores of models that
    never saw it. ConfigError when calibration is off, nothing is left, or a unit is not finished."""
    from jobs.analysis.findings import fit_pools, leave_out_pools

    slm, uq, llm = key
    if not any(s.fit is not None for s in view.settings):
        raise ConfigError(
            f"{out}: calibration is not enabled for this grid, so no train/dev (fit-role) rows were "
            f"scored. Run `uqroute run <grid.yaml> output_dir={out} calibration.enabled=true`: "
            f"finished work is reused and only the fit-role units run."
        )
    pools = fit_pools(view.store, view.settings, view.extraction_policy).get(key, {})
    sources = view.fit_sources
    wanted = [d for d in r.datasets if d not in exclude and (pool == "fit" or sources[d].startswith("split:"))]
    if not wanted:
        raise ConfigError(
            f"{out}: no dataset left to calibrate on: pool={pool!r} takes only datasets with a "
            f"train/dev split ({', '.join(f'{d}: {s}' for d, s in sources.items())}); "
            f"use --pool fit to also take never-evaluated rows of test-only datasets"
        )
    missing = [d for d in wanted if d not in pools]
    if missing:
        raise ConfigError(
            f"{out}: fit-role units of {slm}/{uq}/{llm} are not finished for {', '.join(missing)}; "
            f"run `uqroute resume {out}` first"
        )
    pools = {d: pools[d] for d in wanted}
    scored_without = _leave_out_target(r, uq, exclude)
    if scored_without is not None:  # the OOD probe: rows scored by probes that never saw the target
        lo = leave_out_pools(view.store, view.leave_out, {}, {key: pools}).get(key, {})
        lo = lo.get(scored_without, {})
        lacking = [d for d in pools if d not in lo]
        if lacking:
            raise ConfigError(
                f"{out}: {uq} trains on other datasets, so the calibration rows of {', '.join(lacking)} "
                f"must be scored by a probe that never saw the excluded {scored_without!r}; those "
                f"leave-out units are not finished (`uqroute resume {out}`) or cannot exist (the probe "
                f"needs a third dataset to train on)"
            )
        pools = {d: lo[d] for d in pools}
    return pools, scored_without


def _like(out: Path, r, view, uq: str, pools: Mapping, like: str, task: str | None) -> dict:
    """The pools of the datasets on which ``uq``'s statistic is defined as on ``like``: a grid
    dataset's definition (its answer mode, and its option count where the method depends on it),
    or, for a dataset outside the grid, its answer mode (its option count is not known before it is
    scored; ``_one_definition`` then refuses pools of several). ConfigError when none is left."""
    from jobs.analysis.findings import dataset_forms, method_definitions
    from jobs.prompts import AnswerModes
    from jobs.uq.definition import dataset_answer_mode
    from orchestrator.config import dataset_task

    defs = method_definitions({uq: r.uq[uq].method}, dataset_forms(view))
    if like in r.datasets:
        want = defs[(uq, like)]
        keep = [d for d in sorted(pools) if defs[(uq, d)] == want]
        label = want.label
    else:
        dc = dataset_conf_for(r, like, task)
        label = dataset_answer_mode(AnswerModes.resolve(dc.answer_mode, r.grid.decoding.answer_mode), dataset_task(dc))
        keep = [d for d in sorted(pools) if defs[(uq, d)].answer_mode in (None, label)]
    if not keep:
        raise ConfigError(
            f"{out}: no calibration dataset of this grid has {like}'s definition of {uq} ({label}): "
            + "; ".join(f"{d}: {defs[(uq, d)].label}" for d in sorted(pools))
        )
    return {d: pools[d] for d in keep}


def _one_definition(out: Path, r, view, uq: str, pools: Mapping) -> Definition:
    """The one definition of ``uq``'s statistic on the datasets of ``pools``
    (``jobs.uq.definition``); ConfigError naming each definition and its datasets when they have
    several, since a set pooling them would put every threshold on one side of the other scores."""
    from jobs.analysis.findings import dataset_forms, method_definitions

    defs = method_definitions({uq: r.uq[uq].method}, dataset_forms(view))
    kinds: dict[Definition, list[str]] = {}
    for d in sorted(pools):
        kinds.setdefault(defs[(uq, d)], []).append(d)
    if len(kinds) > 1:
        biggest = max(kinds.values(), key=len)
        others = sorted(d for ds in kinds.values() if ds is not biggest for d in ds)
        raise ConfigError(
            f"{out}: a calibration set of {uq} would pool datasets on which its statistic is defined "
            f"differently ("
            + "; ".join(f"{k.label}: {', '.join(ds)}" for k, ds in kinds.items())
            + f"); build one set per definition, e.g. --exclude {' --exclude '.join(others)}"
        )
    return next(iter(kinds))


def _rows(r, cal: C.CalibrationSet, sources: Mapping[str, str]) -> list[dict]:
    """The set's rows as a questions file: each fit-role question with its source, score,
    correctness and weight."""
    from jobs.datasets.roles import load_role

    samples = {}
    for d in sorted(set(cal.dataset.tolist())):
        ss, _ = load_role(r.datasets[d], r.dataset_run(d), "fit")
        samples[d] = {s.id: s for s in ss}
    rows = []
    strata = cal.strata.index if cal.strata is not None else [None] * len(cal)
    for d, sid, u, so, lo, w, b in zip(
        cal.dataset, cal.sample_id, cal.uncertainty, cal.slm_correct, cal.llm_correct, cal.weight, strata
    ):
        s = samples[str(d)][str(sid)]
        row = {"id": f"{d}/{sid}", "question": s.question, "task": s.task, "gold": s.gold}
        if s.choices:
            row["choices"] = list(s.choices)
        if s.context:
            row["context"] = s.context
        row |= {
            "source_dataset": str(d),
            "source_id": str(sid),
            "source_split": sources[str(d)],
            "uncertainty": float(u) if np.isfinite(u) else None,  # null: unscored, routed first
            "slm_correct": bool(so),
            "llm_correct": bool(lo),
            "weight": float(w),
            "stratum": None if b is None else int(b),
        }  # weight: inverse of its bin's sampling fraction; stratum: its bin (thresholds cut inside it)
        rows.append(row)
    return rows


def _write_rows(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CAL_FILE + ".tmp")
    tmp.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows), encoding="utf-8")
    tmp.replace(folder / CAL_FILE)


def _thresholds(cal: C.CalibrationSet, targets: Iterable[float]) -> list[dict]:
    """Per target call rate: the set's threshold (cut inside its stratum) and its predicted accuracy."""
    out = []
    for t in targets:
        thr = cal.threshold(t)
        out.append(
            {
                "target_call_rate": t,
                "threshold": thr.value,
                "tie_frac": thr.tie_frac,
                "predicted_accuracy": cal.expected_accuracy(thr),
            }
        )
    return out


def _record(
    r,
    name: str,
    key: tuple[str, str, str],
    pool: str,
    scored_without: str | None,
    cal: C.CalibrationSet,
    sources: Mapping[str, str],
    targets: Iterable[float],
) -> dict:
    """``record.json``: what the set is (grid, axes, pool), what went in (``cal.record``) and its
    thresholds."""
    from orchestrator.runner import config_hash

    slm, uq, llm = key
    return {
        "name": name,
        "slm": slm,
        "uq": uq,
        "llm": llm,
        "uq_conf": r.uq[uq],
        "pool": pool,
        "scored_without": scored_without,
        "grid": r.grid.name,
        "grid_output": str(r.output_dir.resolve()),
        "grid_config_hash": config_hash(r),
        "source_splits": {d: sources[d] for d in cal.record["datasets"]},
        "slm_accuracy": float(np.average(cal.slm_correct, weights=cal.weight)),
        "llm_accuracy": float(np.average(cal.llm_correct, weights=cal.weight)),
        "thresholds": _thresholds(cal, targets),
        **cal.record,
    }


def load_calibration(
    folder: Path,
) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray, C.Strata | None]:
    """record, uncertainty, slm_correct, llm_correct, weight (1 for rows of folders written before
    calibration rows carried weights), strata (None for folders written before rows carried their
    stratum: thresholds are then weighted quantiles)."""
    folder = Path(folder)
    if not (folder / CAL_FILE).is_file() or not (folder / RECORD_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} is not a calibration folder (needs {CAL_FILE} and {RECORD_FILE}; "
            f"make one with `uqroute calibrate build`)"
        )
    record = json.loads((folder / RECORD_FILE).read_text())
    rows = [json.loads(x) for x in (folder / CAL_FILE).read_text(encoding="utf-8").splitlines() if x.strip()]
    u = np.asarray([np.inf if x["uncertainty"] is None else x["uncertainty"] for x in rows], dtype=np.float64)
    w = np.asarray([x.get("weight", 1.0) for x in rows], dtype=np.float64)
    return (
        record,
        u,
        np.asarray([x["slm_correct"] for x in rows], bool),
        np.asarray([x["llm_correct"] for x in rows], bool),
        w,
        C.Strata.from_record(record, [x.get("stratum") for x in rows]),
    )


def read_scores(path: Path) -> tuple[list[str], np.ndarray]:
    """sample_id + uncertainty columns from a .parquet, .csv or .jsonl file."""
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    path = Path(path)
    readers = {".parquet": pq.read_table, ".csv": pcsv.read_csv, ".jsonl": pjson.read_json}
    if path.suffix not in readers:
        raise ConfigError(f"--scores {path}: unknown file type {path.suffix!r}; valid: {', '.join(readers)}")
    if not path.is_file():
        raise FileNotFoundError(f"--scores {path}: no such file")
    t = readers[path.suffix](path)
    for col in ("sample_id", "uncertainty"):
        if col not in t.column_names:
            raise ConfigError(
                f"--scores {path}: needs columns sample_id and uncertainty; has {', '.join(t.column_names)}"
            )
    u = np.asarray([math.nan if x is None else float(x) for x in t.column("uncertainty").to_pylist()])
    return [str(x) for x in t.column("sample_id").to_pylist()], u


def dataset_conf_for(r, dataset: str, task: str | None):
    """A dataset given to ``calibrate apply``, as a typed ``DatasetConf``: a .jsonl questions file
    (labels not needed), or a dataset name known to the grid's conf folders."""
    from jobs.types import TASK_TYPES
    from orchestrator.config import DatasetConf, _resolve_entries, find_conf_dir

    entry: str | dict = dataset
    p = Path(dataset).expanduser()
    if p.suffix == ".jsonl":
        if not p.is_file():
            raise FileNotFoundError(f"dataset file {p} does not exist")
        if task is not None and task not in TASK_TYPES:
            raise ConfigError(f"--task {task!r}; valid: {', '.join(TASK_TYPES)}")
        entry = {"name": f"new_{p.stem}", "adapter": "questions", "local_path": str(p.resolve()), "task": task}
    conf_dir = find_conf_dir(Path(r.source)) if r.source else Path("conf")
    (conf,) = _resolve_entries("dataset", DatasetConf, [entry], conf_dir, "calibrate apply").values()
    return conf


def score_new_dataset(record: dict, dataset: str, task: str | None, limit: int | None) -> tuple[list[str], np.ndarray]:
    """Run the calibration set's SLM and UQ method on ``dataset`` (on Ray, units cached in the
    grid's store) and return its sample ids and uncertainties. No labels are read."""
    from cluster.connect import connect
    from orchestrator.config import validate
    from orchestrator.ledger import Ledger
    from orchestrator.plan import _uq_method, make_plan
    from orchestrator.runner import load_output
    from orchestrator.scheduler import Scheduler

    r = load_output(Path(record["grid_output"]))
    method = _uq_method(r, record["uq"])
    if method.fit == "in_domain":
        raise ConfigError(
            f"uq {record['uq']!r} trains on labelled rows of the dataset it scores, which data "
            f"brought to `calibrate apply` does not have; use a calibration set of an untrained "
            f"method or of ood_probe, or pass --scores"
        )
    dc = dataset_conf_for(r, dataset, task)
    _check_answer_mode(record, r, dc)
    name = dc.name
    if name in r.datasets and dc != r.datasets[name]:
        name = f"{name}_new"
        dc = dataclasses.replace(dc, name=name)
    r2 = r.updated(
        dataset={"limit": limit} if limit else {},
        calibration={"enabled": False},
        exclude=[],
    ).with_axes(
        slms={record["slm"]: r.slms[record["slm"]]},
        llms={record["llm"]: r.llms[record["llm"]]},
        uq={record["uq"]: r.uq[record["uq"]]},
        datasets=dict(r.datasets) | {name: dc},
    )
    validate(r2)
    plan = make_plan(r2)
    target = next(
        u
        for u in plan.by_kind("score")
        if u.spec.dataset == name and u.spec.role == "eval" and u.spec.leave_out is None
    )
    keys, stack = set(), [target.key]
    while stack:  # the score unit and everything it reads: no LLM pass, no setting
        k = stack.pop()
        if k not in keys:
            keys.add(k)
            stack.extend(plan.units[k].deps)
    rc = r2.grid.ray
    connect(rc.address, rc.num_cpus, rc.num_gpus)
    ledger = Ledger(r2.output_dir / "ledger.jsonl")
    report = Scheduler(plan, r2, r2.store_dir, ledger).run(keys)
    if target.key not in report.done:
        why = "; ".join(f"{plan.units[k].label}: {v}" for k, v in list(report.failed.items())[:3])
        raise RuntimeError(f"scoring {dataset} failed: {why or 'blocked'}")
    from jobs.records import read_unit, unit_dir

    t = read_unit(unit_dir(r2.store_dir, "score", target.key)).to_pydict()
    return [str(x) for x in t["sample_id"]], np.asarray([math.nan if x is None else x for x in t["uncertainty"]], float)


def _check_answer_mode(record: dict, r, dc) -> None:
    """ConfigError when the calibration set's statistic depends on the answer mode and ``dc`` would
    be answered in another one than the set's datasets (``record["definition"]``; a set written
    before definitions were recorded is not checked). The option count is not known before the
    dataset is scored; the set's is in ``record["definition"]["option_count"]``."""
    from jobs.prompts import AnswerModes
    from jobs.uq.definition import dataset_answer_mode
    from orchestrator.config import dataset_task

    want = (record.get("definition") or {}).get("answer_mode")
    if want is None:
        return
    mode = dataset_answer_mode(AnswerModes.resolve(dc.answer_mode, r.grid.decoding.answer_mode), dataset_task(dc))
    if mode != want:
        raise ConfigError(
            f"dataset {dc.name!r} would be answered in mode {mode!r}, but calibration set {record['name']!r} "
            f"holds {record['uq']} scores of {want!r} answers ({record['definition'].get('label', want)}): "
            f"its thresholds mean another statistic there; build a set from datasets answered in {mode!r}"
        )


def check_apply_args(rate: float | None, target_accuracy: float | None, scores, dataset) -> None:
    """The arguments of ``apply`` that can be wrong, checked before anything is built or scored."""
    if (rate is None) == (target_accuracy is None):
        raise ConfigError("give exactly one of --target-call-rate and --target-accuracy")
    if rate is not None and not 0.0 <= rate <= 1.0:
        raise ConfigError(f"--target-call-rate {rate!r} must be in [0, 1]")
    if target_accuracy is not None and not 0.0 <= target_accuracy <= 1.0:
        raise ConfigError(f"--target-accuracy {target_accuracy!r} must be in [0, 1]")
    if scores is not None and dataset is not None:
        raise ConfigError("give either --scores or a dataset, not both")


def _threshold(u, slm, llm, w, strata, rate: float | None, target_accuracy: float | None):
    """The calibration set's threshold for the target, and the call rate it means (given, or the
    expected call rate of the threshold that reaches ``target_accuracy``)."""
    if target_accuracy is None:
        return C.threshold_for_call_rate(u, rate, weights=w, strata=strata), rate
    thr = C.threshold_for_accuracy(u, slm, llm, target_accuracy, weights=w, strata=strata)
    if thr is None:
        best = float(np.max(C.weighted_routing_curve(u, slm, llm, w).accuracy))
        raise ConfigError(
            f"--target-accuracy {target_accuracy} is above what routing reaches on the calibration "
            f"set (best {best:.3f}); valid: up to {best:.3f}"
        )
    return thr, C.expected_call_rate(u, thr, weights=w)


def _route(cal, thr, rate: float, ids: list[str], tu: np.ndarray, seed: int, out_file: Path) -> dict:
    """Each query's routing decision at ``rate`` (a tie drawn with ``seed``), written to ``out_file``;
    returns the counts ``apply`` reports."""
    from jobs.records import write_table

    res = C.apply_to_unlabelled(cal, tu, rate)  # unscored queries count as most uncertain
    p_all = res["route_prob"]
    draw = np.random.default_rng(seed).random(len(tu))
    routed = draw < p_all
    counts = {
        "n": int(len(tu)),
        "n_nan": res["n_nan"],
        "expected_call_rate_on_data": float(p_all.mean()),
        "n_routed": int(routed.sum()),
        "n_tied": res["n_tied"],
    }
    write_table(
        out_file,
        [
            {"sample_id": i, "uncertainty": float(x), "route_prob": float(p), "to_llm": bool(t)}
            for i, x, p, t in zip(ids, tu, p_all, routed)
        ],
        meta={"calibration": cal.record["name"], "threshold": thr.value, "tie_frac": thr.tie_frac},
    )
    return counts | {"routes": str(out_file)}


def apply(
    folder: Path,
    *,
    rate: float | None = None,
    target_accuracy: float | None = None,
    scores: Path | None = None,
    dataset: str | None = None,
    task: str | None = None,
    limit: int | None = None,
    out_file: Path | None = None,
    seed: int = 0,
    console=None,
) -> dict:
    """Threshold and expected accuracy for a target call rate (or accuracy) from a calibration
    folder; with scores or a dataset, also each query's routing decision (written to out_file)."""
    check_apply_args(rate, target_accuracy, scores, dataset)
    record, u, slm, llm, w, strata = load_calibration(Path(folder))
    thr, rate = _threshold(u, slm, llm, w, strata, rate, target_accuracy)
    result = {
        "calibration": record["name"],
        "slm": record["slm"],
        "uq": record["uq"],
        "llm": record["llm"],
        "n_calibration": int(len(u)),
        "threshold": thr.value,
        "tie_frac": thr.tie_frac,
        "target_call_rate": float(rate),
        "target_accuracy": target_accuracy,
        "expected_accuracy": C.expected_accuracy(u, slm, llm, thr, weights=w),
        "slm_only_accuracy": float(np.average(slm, weights=w)),
        "llm_only_accuracy": float(np.average(llm, weights=w)),
    }
    if scores is not None:
        ids, tu = read_scores(Path(scores))
    elif dataset is not None:
        ids, tu = score_new_dataset(record, dataset, task, limit)
    else:
        return result
    cal = C.CalibrationSet(np.array([]), np.array([]), u, slm, llm, record, weight=w, strata=strata)
    return result | _route(cal, thr, rate, ids, tu, seed, Path(out_file or (Path(folder) / "routes.parquet")))
