"""The ``uqroute`` command line. The driver: no torch is imported here."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from jobs.records import StoreFull
from orchestrator.config import ConfigError, load_grid, warnings_of
from orchestrator.lock import FolderLocked
from orchestrator.progress import PROGRESS_ENV
from orchestrator.rescore import RescoreError

# when piped (CI logs, files) rich would assume 80 columns and cut the summary table. soft_wrap: rich
# never breaks a printed line (a link or a path would be cut in two in a file, and copied broken from
# a terminal); a terminal folds a long line on screen only. Tables still fit the width.
console = Console(width=None if sys.stdout.isatty() else 120, soft_wrap=True)


def _fmt(x, nd=3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "nan" if x != x else f"{x:.{nd}f}"
    return str(x)


def print_summary(rows: list[dict]) -> None:
    """One line per setting; SLM/LLM named in the title when the grid has one of each."""
    slms, llms = {r["slm"] for r in rows}, {r["llm"] for r in rows}
    single = len(slms) == 1 and len(llms) == 1
    title = "Routing summary: most uncertain queries go to the LLM"
    if single and rows:
        title += f"\nSLM {next(iter(slms))} -> LLM {next(iter(llms))}"
    t = Table(title=title)
    cols = ([] if single else ["slm", "llm"]) + ["dataset", "uq"]
    for c in cols:
        t.add_column(c, no_wrap=True)
    for c in ("SLM acc", "LLM acc", "AUROC", "95% CI", "unscored", "area", "APGR"):
        t.add_column(c, justify="right", no_wrap=True)
    for r in sorted(rows, key=lambda r: (r["slm"], r["llm"], r["dataset"], -(r.get("auroc") or 0))):
        t.add_row(
            *(r[c] for c in cols),
            _fmt(r.get("slm_acc"), 2),
            _fmt(r.get("llm_acc"), 2),
            _fmt(r.get("auroc")),
            f"{_fmt(r.get('auroc_lo'), 2)}-{_fmt(r.get('auroc_hi'), 2)}",
            _fmt(r.get("unscored_share"), 2),
            _fmt(r.get("area")),
            _fmt(r.get("apgr"), 2),
        )
    console.print(t)


def _progress_cb(progress: Progress, task, meter):
    """The bar counts model work (orchestrator.progress.WorkMeter); the text names what runs."""
    current = {"label": ""}

    def cb(event: str, unit, info: dict) -> None:
        if event == "started" and unit.kind == "gen":
            current["label"] = unit.label
        if meter.event(event, unit, info) or event == "started":
            progress.update(
                task,
                completed=meter.done,
                total=max(meter.total, 1),
                description=f"[cyan]{current['label']}[/] | {meter.describe()}",
            )

    return cb


def print_links(links: list[tuple[str, str]], header: str | None = None) -> None:
    """``  label : url`` lines, labels aligned. A link is never wrapped, at any terminal width or in a
    file: each line is printed whole (soft_wrap: rich inserts no line break; a terminal folds a
    long line only on screen), with no markup or highlighting to split or restyle it."""
    if header:
        console.print(header, highlight=False, markup=False, soft_wrap=True)
    w = max((len(label) for label, _ in links), default=0)
    for label, url in links:
        console.print(f"  {label:<{w}} : {url}", highlight=False, markup=False, soft_wrap=True)


def _plain(line: str) -> None:
    """One progress line, whole and flushed at once (a pipe or a file buffers otherwise)."""
    console.print(line, highlight=False, markup=False, soft_wrap=True)
    console.file.flush()


@contextmanager
def _progress(meter, every_s: float):
    """The progress callback of a run: a rich bar on a terminal; elsewhere (a file, a pipe, the logs
    of ``ray job submit``) a plain line every ``every_s`` seconds (``orchestrator.progress.ProgressLines``)."""
    from orchestrator.progress import ProgressLines

    if not console.is_terminal:
        lines = ProgressLines(meter, every_s, write=_plain).start()
        try:
            yield lines.event, lambda: lines.stop(final=False)
        finally:
            lines.stop(final=True)
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(f"starting Ray | {meter.describe()}", total=max(meter.total, 1))
        yield _progress_cb(progress, task, meter), progress.stop


def _print_interrupted(r, plan, e: KeyboardInterrupt) -> None:
    """Ctrl-C during a run: how many settings are kept, and how to resume."""
    n_done = (
        e.done
        if hasattr(e, "done")
        else len([s for s in plan.settings if plan.setting_keys[s.hash] in plan.done(r.store_dir)])
    )
    console.print(
        f"interrupted: {n_done} of {len(plan.settings)} settings done (kept in "
        f"{r.store_dir.resolve()}); resume with: uqroute resume {r.output_dir}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _print_finished(r, plan, report, sink, t0: float) -> None:
    """After a run: the summary table, the failed units, and where to look."""
    from orchestrator.runner import mlflow_pending, settings_table, ui_links

    rows = settings_table(r, plan)
    print_summary(rows)
    console.print(
        f"finished in {time.time() - t0:.0f}s: {len(rows)}/{len(plan.settings)} settings done, "
        f"{len(report.failed)} units failed, {len(report.blocked)} blocked"
    )
    for k, why in list(report.failed.items())[:10]:
        console.print(f"  [red]failed[/] {plan.units[k].label}: {why}")
    out = r.output_dir
    links = (
        ui_links(sink, rows)
        if sink
        else [("MLflow UI", "(disabled)" if not r.grid.mlflow.enabled else "(did not answer)")]
    )
    pending = mlflow_pending(out)
    if pending:
        links.append(("MLflow lacks", f"{len(pending)} settings; `uqroute sync {out}` logs them"))
    console.print()
    print_links(
        links
        + [
            ("Parquet store", str(r.store_dir.resolve())),
            ("Plots", str((out / "plots").resolve())),
            ("Report", str((out / "report" / "index.html").resolve())),
            ("Summary", str((out / "summary.csv").resolve())),
        ],
        header="Where to look:",
    )


def _execute(r, keys=None, progress_every: float | None = None) -> int:
    from orchestrator.plan import make_plan
    from orchestrator.progress import WorkMeter, progress_interval
    from orchestrator.runner import run_grid
    from orchestrator.verify import check_plan, plan_repair, start_counts

    every_s = progress_interval(progress_every)
    plan = make_plan(r)
    health = check_plan(plan, r.store_dir)
    repair = plan_repair(plan, health)
    # what stays done: a damaged unit and its dependents are recomputed by the run (runner.heal)
    done = health.done() - set(repair.units)
    console.print(f"[bold]{r.grid.name}[/]: {start_counts(plan, health, repair).line}", highlight=False)
    t0 = time.time()
    meter = WorkMeter.of(plan, {k for k in plan.units if k not in done and (keys is None or k in keys)})
    with _progress(meter, every_s) as (cb, stop):
        try:
            plan, report, sink = run_grid(r, keys=keys, console=console, progress=cb)
        except KeyboardInterrupt as e:  # run_grid has stopped the writer and marked the MLflow run KILLED
            stop()
            _print_interrupted(r, plan, e)
            return 130
    _print_finished(r, plan, report, sink, t0)
    return 0 if report.ok else 1


def cmd_run(a) -> int:
    r = load_grid(a.grid, a.overrides)
    if a.address:
        r = r.updated(ray={"address": a.address})
    for w in warnings_of(r):
        console.print(f"[yellow]warning: {w}[/]")
    if "runtime_resources" in str(r.output_dir):  # a `ray job submit` driver in its temporary working dir
        console.print(
            f"[yellow]warning: the output folder {r.output_dir} is inside the job's temporary working "
            f"dir: it goes away with the job and other nodes do not see it. Give "
            f"output_dir=/absolute/path on a filesystem every node sees.[/]"
        )
    if a.no_mlflow:
        r = r.updated(mlflow={"enabled": False})
    if a.tracking_uri:
        r = r.updated(mlflow={"tracking_uri": a.tracking_uri})
    return _execute(r, progress_every=a.progress_every)


def cmd_plan(a) -> int:
    from orchestrator.plan import make_plan

    t0 = time.perf_counter()
    r = load_grid(a.grid, a.overrides)
    plan = make_plan(r)
    dt = time.perf_counter() - t0
    done = plan.done(r.store_dir)
    counts = plan.counts()
    done_counts = Counter(
        (f"{u.kind}:{u.stage}" if u.kind == "gen" else u.kind) for k, u in plan.units.items() if k in done
    )
    t = Table(title=f"plan of {a.grid}")
    t.add_column("work")
    t.add_column("units", justify="right")
    t.add_column("done", justify="right")
    t.add_row("settings", str(len(plan.settings)), str(done_counts.get("setting", 0)))
    for k in sorted(counts):
        t.add_row(k, str(counts[k]), str(done_counts.get(k, 0)))
    console.print(t)
    console.print(
        f"{len(plan.settings)} settings = {len(r.slms)} SLMs x {len(r.uq)} UQ methods x "
        f"{len(r.datasets)} datasets x {len(r.llms)} LLMs (minus exclusions); planned in {dt:.2f}s"
    )
    return 0


def cmd_resume(a) -> int:
    from orchestrator.ledger import Ledger
    from orchestrator.runner import load_output

    r = load_output(Path(a.output))
    if a.address:
        r = r.updated(ray={"address": a.address})
    keys = None
    if a.failed_only:
        last = Ledger(r.output_dir / "ledger.jsonl").last_state()
        keys = {k for k, e in last.items() if e["event"] == "failed"}
        # a failed unit's dependents were blocked; they must run again too
        from orchestrator.plan import make_plan

        plan = make_plan(r)
        changed = True
        while changed:
            changed = False
            for k, u in plan.units.items():
                if k not in keys and any(d in keys for d in u.deps):
                    keys.add(k)
                    changed = True
        console.print(f"resuming {len(keys)} failed or blocked units")
    return _execute(r, keys, progress_every=a.progress_every)


_STATUS_COLS = ("work", "total", "done", "damaged", "running", "failed", "not started")


def _status_table(plan, done: set, redo: set, last: dict, title: str) -> tuple[Table, Counter]:
    """Units per kind of work and state, and the failed units' (label, reason, detail) counts."""
    t = Table(title=title)
    for c in _STATUS_COLS:
        t.add_column(c, justify="right" if c != "work" else "left")
    groups: dict[str, Counter] = {}
    reasons: Counter = Counter()
    for k, u in plan.units.items():
        g = f"{u.kind}:{u.stage}" if u.kind == "gen" else u.kind
        c = groups.setdefault(g, Counter())
        c["total"] += 1
        ev = last.get(k, {}).get("event")
        if k in done:
            c["done"] += 1
        elif k in redo:  # damaged, or done but reading a damaged unit: recomputed by the repair
            c["damaged"] += 1
        elif ev == "failed":
            c["failed"] += 1
            reasons[(u.label, last[k].get("reason"), last[k].get("detail", ""))] += 1
        elif ev in ("started", "retry"):
            c["running"] += 1
        else:
            c["not started"] += 1
    for g in sorted(groups):
        c = groups[g]
        t.add_row(g, *(str(c[x]) for x in _STATUS_COLS[1:]))
    return t, reasons


def _status_last_run(output: str) -> None:
    """How the folder's last run ended, and whether MLflow lacks some of its settings."""
    from orchestrator.runner import mlflow_pending, run_state

    st = run_state(Path(output))
    if st and st["state"] in ("interrupted", "killed"):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.get("ts", 0)))
        what = "interrupted (Ctrl-C)" if st["state"] == "interrupted" else "stopped without finishing (driver gone)"
        done = f"{st['done']} of {st['total']} settings done" if "done" in st else f"{st.get('total', '?')} settings"
        console.print(
            f"[yellow]last run {what}[/] at {when}: {done}; resume with: uqroute resume {output}",
            highlight=False,
            soft_wrap=True,
        )
    elif st:
        console.print(f"last run {st['state']}", highlight=False)
    pending = mlflow_pending(Path(output))
    if pending:
        console.print(
            f"[yellow]{len(pending)} settings are not in MLflow[/]; `uqroute sync {output}` logs them",
            highlight=False,
            soft_wrap=True,
        )


def cmd_status(a) -> int:
    from orchestrator.ledger import Ledger
    from orchestrator.plan import make_plan
    from orchestrator.runner import load_output
    from orchestrator.verify import check_plan, describe, plan_repair, start_counts

    r = load_output(Path(a.output))
    plan = make_plan(r)
    health = check_plan(plan, r.store_dir)  # shallow: a damaged unit is never counted done
    repair = plan_repair(plan, health)
    redo = set(repair.units)
    done = health.done() - redo
    last = Ledger(r.output_dir / "ledger.jsonl").last_state()
    t, reasons = _status_table(plan, done, redo, last, title=f"status of {a.output}")
    console.print(t)
    console.print(start_counts(plan, health, repair).line, highlight=False)
    for (label, reason, detail), _n in reasons.items():
        console.print(f"[red]failed[/] {label}: {reason} {detail}")
    if repair.damaged:
        for line in describe(plan, health, repair, a.output):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        console.print(
            f"[red]{len(repair.damaged)} damaged unit(s) are not counted as done[/]; "
            f"`uqroute verify {a.output} --repair` (or `uqroute resume {a.output}`) recomputes them",
            highlight=False,
            soft_wrap=True,
        )
    _status_last_run(a.output)
    _status_links(r, Path(a.output))
    return 1 if repair.damaged else 0


def _status_links(r, out: Path) -> None:
    """The folder's MLflow links when its server answers (``status`` starts none), else how to get them."""
    from orchestrator.runner import serve_ui

    if not r.grid.mlflow.enabled:
        return
    _, links = serve_ui(out, start=False, console=console)
    print_links(links or [("MLflow UI", f"not running; `uqroute ui {out}` starts it and prints its links")])


def cmd_ui(a) -> int:
    """``uqroute ui OUT``: start (or reuse) the folder's MLflow server and print its links."""
    from orchestrator.runner import load_output, mlflow_pending, running_uri, serve_ui

    out = Path(a.output)
    r = load_output(out)
    mc = r.grid.mlflow
    if not mc.enabled:
        raise ConfigError(
            f"MLflow is disabled for {out} (mlflow.enabled: false in its {out / 'resolved_config.yaml'}): "
            f"its results are in {r.store_dir} and {out / 'report' / 'index.html'}"
        )
    before = mc.tracking_uri or running_uri(out / "mlflow")
    try:
        uri, links = serve_ui(out, start=True, console=console, max_groups=None)
    except (RuntimeError, TimeoutError, OSError) as exc:
        console.print(f"[red]error:[/] the MLflow server of {out} did not start: {exc}", highlight=False)
        return 1
    state = (
        "the grid's tracking server"
        if mc.tracking_uri
        else f"already running; `uqroute mlflow-stop {out}` stops it"
        if before
        else f"started; `uqroute mlflow-stop {out}` stops it"
    )
    print_links([("MLflow server", f"{uri} ({state})")] + (links or [("MLflow UI", "(the server did not answer)")]))
    pending = mlflow_pending(out)
    if pending:
        print_links([("MLflow lacks", f"{len(pending)} settings; `uqroute sync {out}` logs them")])
    return 0 if links else 1


def cmd_verify(a) -> int:
    """``uqroute verify OUT [--deep] [--repair] [--rehash]``: exit 0 when every unit verifies (or the
    repair ran and succeeded), 1 when damage is found and not repaired."""
    from orchestrator.plan import make_plan
    from orchestrator.runner import load_output
    from orchestrator.verify import check_plan, describe, plan_repair, rehash

    r = load_output(Path(a.output))
    plan = make_plan(r)
    health = check_plan(plan, r.store_dir, deep=a.deep)
    repair = plan_repair(plan, health)
    states = Counter(h.state for h in health.checks.values())
    console.print(
        f"verified {len(plan.units)} units of {a.output} ({'deep: every byte hashed' if a.deep else 'shallow: sizes and Parquet footers'}) "
        f"in {health.seconds:.1f}s: {states['ok']} ok, {states['legacy']} legacy, {states['damaged']} damaged, "
        f"{states['absent']} not in the store (not run yet, or not copied)",
        highlight=False,
        soft_wrap=True,
    )
    left = sum(len(h.leftovers) for h in health.checks.values())
    if left:
        console.print(
            f"{left} temp file(s) of cut-off writes are in unfinished units; they are never read", highlight=False
        )
    if health.legacy:
        if a.rehash:
            n = rehash(plan, r.store_dir, health)
            console.print(f"recorded the files of {n} legacy units in their manifests (after a full decode)")
        else:
            console.print(
                f"{len(health.legacy)} units were written before manifests listed their files: checked for "
                f"structure only (parts present, footers readable); `uqroute verify {a.output} --deep --rehash` "
                f"records their sizes and hashes",
                highlight=False,
                soft_wrap=True,
            )
    if not repair.units:
        console.print("no damaged unit", highlight=False)
        return 0
    for line in describe(plan, health, repair, a.output):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if not a.repair:
        return 1
    return cmd_resume(
        argparse.Namespace(output=a.output, address=a.address, failed_only=False, progress_every=a.progress_every)
    )


def cmd_sync(a) -> int:
    from orchestrator.runner import sync

    n = sync(Path(a.output), console)
    console.print(f"logged {n} settings to MLflow")
    return 0


def cmd_rescore(a) -> int:
    from orchestrator.rescore import rescore

    res = rescore(Path(a.output), all_units=a.all, local=a.local, console=console)
    rep, rows = res["report"], res["changes"]
    console.print(
        f"rescored {a.output} from its stored generations in {res['seconds']:.0f}s, no model loaded: "
        f"{res['recomputed']['score']} score units and {res['recomputed']['setting']} settings recomputed"
        f"{' (--all)' if res['all'] else ' (those whose key changed)'}; {len(rep.failed)} failed, "
        f"{len(rep.blocked)} blocked",
        highlight=False,
    )
    for k, why in list(rep.failed.items())[:10]:
        console.print(f"  [red]failed[/] {res['plan'].units[k].label}: {why}")
    changed = [x for x in rows if x["changed"]]
    if changed:
        t = Table(
            title=f"AUROC before -> after ({len(changed)} of {len(rows)} settings changed; "
            f"flagged: moved by more than half the earlier 95% CI)"
        )
        for c in ("setting", "before", "after", "change", "CI half", "moved"):
            t.add_column(c, justify="left" if c == "setting" else "right", no_wrap=c == "setting")
        for x in sorted(changed, key=lambda x: -abs(x["delta"]) if x["delta"] == x["delta"] else 0):
            flag = "[red]YES[/]" if x["moved"] else "-" if x["moved"] is None else "no"
            t.add_row(
                x["setting"],
                _fmt(x["auroc_old"]),
                _fmt(x["auroc_new"]),
                _fmt(x["delta"]),
                _fmt(x["ci_half_width"]),
                flag,
            )
        console.print(t)
    else:
        console.print(f"no setting's AUROC changed ({len(rows)} settings)")
    moved = [x["setting"] for x in rows if x["moved"]]
    if moved:
        console.print(f"[red]{len(moved)} settings moved by more than their CI:[/] {', '.join(moved)}", highlight=False)
    if res["mlflow"]:
        console.print(
            f"MLflow: {res['mlflow']['settings']} setting runs checked (changed ones replaced) at "
            f"{res['mlflow']['uri']}",
            highlight=False,
        )
    console.print(
        f"details in {(Path(a.output) / 'rescore.json').resolve()}; report "
        f"{(Path(a.output) / 'report' / 'index.html').resolve()}",
        highlight=False,
    )
    return 0 if rep.ok else 1


def cmd_explain(a) -> int:
    import json as _json

    from orchestrator.explain import explain, format_explain

    e = explain(Path(a.output), a.setting, a.sample_id, rate=a.rate)
    if a.json:
        sys.stdout.write(_json.dumps(e, indent=1, default=str) + "\n")
    else:
        console.print(format_explain(e), markup=False, highlight=False, soft_wrap=True)
    return 0


def print_findings(findings: list[dict]) -> None:
    colors = {"holds": "green", "partly": "yellow", "does not hold": "red"}
    for f in findings:
        console.print(
            f"[bold]Finding {f['id']}[/] [{colors.get(f['verdict'], 'white')}]{f['verdict']}[/]: {f['claim']}"
        )
        for e in f["evidence"]:
            console.print(f"    - {e}")


def cmd_report(a) -> int:
    from orchestrator.runner import report

    rep = report(Path(a.output), mlflow=not a.no_mlflow, console=console)
    print_findings(rep["findings"])
    console.print(f"\nReport : {rep['html'].resolve()}\nPNGs   : {len(rep['pngs'])} in {rep['html'].parent.resolve()}")
    if rep["mlflow"]:
        console.print(
            f"MLflow : {rep['mlflow']['uri']} (parent run {rep['mlflow']['run_id']}, artifacts under report/)"
        )
    return 0


def cmd_calibrate_build(a) -> int:
    from orchestrator.calibrate import build

    res = build(
        Path(a.output),
        slm=a.slm,
        uq=a.uq,
        llm=a.llm,
        exclude=a.exclude,
        name=a.name,
        n_bins=a.n_bins,
        frac=a.frac,
        seed=a.seed,
        binning=a.binning,
        pool=a.pool,
    )
    rec = res["record"]
    parts = ", ".join(f"{d} ({rec['source_splits'][d]}: {n})" for d, n in rec["n_selected_per_dataset"].items())
    console.print(
        f"calibration set [bold]{rec['name']}[/]: {rec['n_selected']} of {rec['n_pooled']} pooled fit rows "
        f"from {parts}; "
        f"{rec['n_bins']} {rec['binning']} bins, {rec['frac']:.0%} each, seed {rec['seed']}"
    )
    t = Table(title=f"thresholds ({rec['slm']} / {rec['uq']} -> {rec['llm']})")
    for c in ("target call rate", "threshold", "tie frac", "expected accuracy"):
        t.add_column(c, justify="right")
    for x in rec["thresholds"]:
        t.add_row(
            f"{x['target_call_rate']:.0%}",
            _fmt(x["threshold"], 4),
            _fmt(x["tie_frac"], 2),
            _fmt(x["predicted_accuracy"]),
        )
    console.print(t)
    console.print(f"written to {res['folder'].resolve()} (calibration.jsonl, record.json, dataset.yaml)")
    return 0


def _apply_folder(a) -> Path:
    """The calibration set ``calibrate apply`` reads: the folder given, or, for a grid output folder,
    the set built (or refreshed) from it first."""
    from orchestrator.calibrate import build
    from orchestrator.runner import RESOLVED_FILE

    folder = Path(a.calibration)
    if (folder / RESOLVED_FILE).is_file():  # a grid output folder: build (or refresh) its calibration set first
        from orchestrator.runner import load_output

        grid_datasets = set(load_output(folder).datasets)
        exclude = [a.dataset] if a.dataset in grid_datasets else []
        # from the datasets answered like the one given (the same definition of the statistic)
        like = a.dataset if a.dataset and not a.scores else None
        built = build(folder, slm=a.slm, uq=a.uq, llm=a.llm, exclude=exclude, pool=a.pool, like=like, task=a.task)
        folder = built["folder"]
        if not a.json:
            console.print(
                f"calibration set {folder.name}: {built['record']['n_selected']} rows from "
                f"{', '.join(built['record']['datasets'])}",
                highlight=False,
            )
    elif a.slm or a.uq or a.llm:
        raise ConfigError(
            f"--slm/--uq/--llm choose a calibration set inside a grid output folder; {folder} is "
            f"already one calibration set (its record names the SLM, UQ method and LLM)"
        )
    return folder


def _print_apply(res: dict) -> None:
    """The routing rule ``calibrate apply`` found, its expected accuracy, and what it did to the data."""
    console.print(
        f"[bold]{res['slm']} / {res['uq']} -> {res['llm']}[/] (calibration set {res['calibration']}, "
        f"{res['n_calibration']} rows)"
    )
    if res["threshold"] == float("inf"):
        console.print(
            f"  route only unscored queries (the method gave no uncertainty), each with probability "
            f"{res['tie_frac']:.2f}"
        )
    else:
        console.print(
            f"  route to the LLM when uncertainty > {res['threshold']:.6g}"
            + (
                f" (and with probability {res['tie_frac']:.2f} when equal)"
                if res["tie_frac"] not in (0.0, 1.0)
                else " (and when equal)"
                if res["tie_frac"] == 1.0
                else ""
            )
            + "; unscored queries always"
        )
    console.print(
        f"  target call rate {res['target_call_rate']:.1%}; expected accuracy {res['expected_accuracy']:.3f} "
        f"(SLM alone {res['slm_only_accuracy']:.3f}, LLM alone {res['llm_only_accuracy']:.3f}, on calibration data)"
    )
    if "n" in res:
        console.print(
            f"  on your data: {res['n']} queries, expected call rate {res['expected_call_rate_on_data']:.1%}, "
            f"{res['n_routed']} routed, {res['n_nan']} unscored (routed); decisions in {res['routes']}"
        )


def cmd_calibrate_apply(a) -> int:
    import json as _json

    from orchestrator.calibrate import apply, check_apply_args

    check_apply_args(a.target_call_rate, a.target_accuracy, a.scores, a.dataset)  # before building anything
    folder = _apply_folder(a)
    res = apply(
        folder,
        rate=a.target_call_rate,
        target_accuracy=a.target_accuracy,
        scores=Path(a.scores) if a.scores else None,
        dataset=a.dataset,
        task=a.task,
        limit=a.limit,
        out_file=Path(a.out) if a.out else None,
        console=console,
    )
    if a.json:
        sys.stdout.write(_json.dumps(res, indent=1) + "\n")
        return 0
    _print_apply(res)
    return 0


def cmd_mlflow_stop(a) -> int:
    from orchestrator.mlflow_sink import stop_server

    stopped = stop_server(Path(a.output) / "mlflow")
    console.print("stopped" if stopped else "no server recorded")
    return 0


def _progress_every(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--progress-every",
        type=float,
        metavar="SECONDS",
        help=f"when stdout is not a terminal, a progress line every SECONDS (default ${PROGRESS_ENV} or 30; 0: none)",
    )


def _parser_run(sub) -> argparse.ArgumentParser:
    run = sub.add_parser("run", help="run a grid (starts a local Ray and MLflow unless told otherwise)")
    run.add_argument("grid")
    run.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. dataset.limit=50")
    run.add_argument("--address", help="Ray cluster to join: auto, host:port or ray://host:10001")
    run.add_argument("--tracking-uri", help="MLflow tracking server to use instead of a local one")
    run.add_argument("--no-mlflow", action="store_true")
    _progress_every(run)
    run.set_defaults(fn=cmd_run)
    return run


def _parser_plan(sub) -> argparse.ArgumentParser:
    plan = sub.add_parser("plan", help="print the settings and work units of a grid, and what is done")
    plan.add_argument("grid")
    plan.add_argument("overrides", nargs="*")
    plan.set_defaults(fn=cmd_plan)
    return plan


def _parser_resume(sub) -> None:
    res = sub.add_parser("resume", help="run what an output folder still lacks")
    res.add_argument("output")
    res.add_argument("--failed-only", action="store_true")
    res.add_argument("--address")
    _progress_every(res)
    res.set_defaults(fn=cmd_resume)


def _parser_verify(sub) -> None:
    ve = sub.add_parser(
        "verify", help="check every file of the store against its manifest; --repair recomputes what is damaged"
    )
    ve.add_argument("output")
    ve.add_argument("--deep", action="store_true", help="hash every byte (default: sizes and Parquet footers)")
    ve.add_argument(
        "--repair",
        action="store_true",
        help="invalidate the damaged units and their dependents and recompute them (as `resume` does)",
    )
    ve.add_argument(
        "--rehash",
        action="store_true",
        help="with --deep: record the files of legacy units (written before manifests listed them)",
    )
    ve.add_argument("--address", help="Ray cluster to join for --repair")
    _progress_every(ve)
    ve.set_defaults(fn=cmd_verify)


def _parser_output_only(sub, name: str, fn, help: str) -> argparse.ArgumentParser:
    """A sub-command whose one argument is the output folder."""
    sp = sub.add_parser(name, help=help)
    sp.add_argument("output")
    sp.set_defaults(fn=fn)
    return sp


def _parser_calibrate_build(csub) -> None:
    cb = csub.add_parser("build", help="build a calibration set from a grid's train/dev (fit-role) rows")
    cb.add_argument("output", help="a grid output folder (run with calibration.enabled=true)")
    cb.add_argument("--slm")
    cb.add_argument("--uq")
    cb.add_argument("--llm", help="needed when the grid has more than one LLM")
    cb.add_argument("--exclude", action="append", default=[], help="dataset to leave out (repeatable)")
    cb.add_argument("--name", help="folder name under <output>/calibration/")
    cb.add_argument("--n-bins", type=int)
    cb.add_argument("--frac", type=float)
    cb.add_argument("--seed", type=int)
    cb.add_argument("--binning", help="equal_width | equal_freq")
    cb.add_argument(
        "--pool",
        help="train_dev (only datasets with a train/dev split) | fit (also never-evaluated "
        "rows of test-only datasets); default: the grid's calibration.pool",
    )
    cb.set_defaults(fn=cmd_calibrate_build)


def _parser_calibrate_apply(csub) -> argparse.ArgumentParser:
    ca = csub.add_parser("apply", help="threshold + expected accuracy for a target; route a new dataset")
    ca.add_argument(
        "calibration",
        help="a folder written by `calibrate build`, or a grid output folder with "
        "--slm/--uq (the calibration set is built from it first)",
    )
    ca.add_argument("--slm")
    ca.add_argument("--uq")
    ca.add_argument("--llm")
    ca.add_argument("--pool", help="with a grid output folder: train_dev | fit (see calibrate build)")
    ca.add_argument("dataset", nargs="?", help="a dataset name or a .jsonl of questions (no labels needed)")
    ca.add_argument("--target-call-rate", type=float)
    ca.add_argument("--target-accuracy", type=float)
    ca.add_argument("--scores", help="instead of a dataset: a .parquet/.csv/.jsonl with sample_id, uncertainty")
    ca.add_argument("--task", help="task of rows of a .jsonl that do not name one: numeric | mc | yesno | freeform")
    ca.add_argument("--limit", type=int, help="score at most this many questions of the dataset")
    ca.add_argument("--out", help="where to write the routing decisions (default <calibration>/routes.parquet)")
    ca.add_argument("--json", action="store_true", help="print the result as JSON")
    ca.set_defaults(fn=cmd_calibrate_apply)
    return ca


def _parser_rescore(sub) -> None:
    rs = sub.add_parser(
        "rescore",
        help="recompute extraction, UQ scores, settings, MLflow runs and the report from "
        "the stored generations (no model, no GPU)",
    )
    rs.add_argument("output")
    rs.add_argument(
        "--all",
        action="store_true",
        help="recompute every score and setting unit, not only those "
        "whose key changed (after an unversioned code change)",
    )
    rs.add_argument("--local", action="store_true", help="run the units in this process instead of on Ray")
    rs.set_defaults(fn=cmd_rescore)


def _parser_explain(sub) -> None:
    ex = sub.add_parser("explain", help="one query's full trail: prompt, stage outputs, answers, scores, routing")
    ex.add_argument("output")
    ex.add_argument("setting", help="a setting name (slm__uq__dataset__llm) or a prefix of its hash")
    ex.add_argument("sample_id")
    ex.add_argument("--rate", type=float, default=0.3, help="call rate of the routing decision (default 0.3)")
    ex.add_argument("--json", action="store_true", help="print the trail as JSON")
    ex.set_defaults(fn=cmd_explain)


def build_parser() -> argparse.ArgumentParser:
    """The ``uqroute`` parser: one sub-command per ``cmd_*`` function, in the order ``--help`` lists them."""
    p = argparse.ArgumentParser(prog="uqroute", description="Uncertainty-based SLM -> LLM routing benchmarks")
    sub = p.add_subparsers(dest="cmd", required=True)
    # main() parses these intermixed: overrides may follow the options
    p.intermixed = {"run": _parser_run(sub), "plan": _parser_plan(sub)}
    _parser_resume(sub)
    _parser_output_only(sub, "status", cmd_status, "done / running / failed per kind of work")
    _parser_verify(sub)
    _parser_output_only(sub, "sync", cmd_sync, "rebuild MLflow runs from the Parquet store")
    rp = sub.add_parser("report", help="build the HTML report of an output folder and log it to MLflow")
    rp.add_argument("output")
    rp.add_argument("--no-mlflow", action="store_true", help="only write <output>/report/")
    rp.set_defaults(fn=cmd_report)
    cal = sub.add_parser("calibrate", help="calibration sets and thresholds for unseen data")
    csub = cal.add_subparsers(dest="calibrate_cmd", required=True)
    _parser_calibrate_build(csub)
    # main() parses it intermixed: the dataset may follow the options
    p.calibrate_apply_parser = _parser_calibrate_apply(csub)
    _parser_rescore(sub)
    _parser_explain(sub)
    _parser_output_only(sub, "ui", cmd_ui, "start (or reuse) the MLflow server of an output folder and print its links")
    _parser_output_only(sub, "mlflow-stop", cmd_mlflow_stop, "stop the MLflow server started for an output folder")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["calibrate", "apply"]:
        # `apply <folder> --uq U --target-call-rate 0.3 <dataset>`: argparse only takes positionals
        # after options when parsing intermixed, which sub-commands do not support
        a = parser.calibrate_apply_parser.parse_intermixed_args(argv[2:])
    elif argv[:1] and argv[0] in parser.intermixed:
        # `run grid.yaml --address auto output_dir=...`: overrides after an option
        a = parser.intermixed[argv[0]].parse_intermixed_args(argv[1:])
    else:
        a = parser.parse_args(argv)
    try:
        return a.fn(a)
    except (ConfigError, FileNotFoundError, ValueError, FolderLocked, RescoreError, StoreFull) as e:
        console.print(f"[red]error:[/] {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
