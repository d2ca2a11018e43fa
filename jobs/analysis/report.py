"""The grid report: one self-contained HTML file (PNGs embedded) plus the PNGs beside it.

Where this sits in the flow: ``jobs.analysis.findings.analyze`` (numbers) -> **report** (figures,
tables, prose) -> ``<output>/report/`` and the grid's parent MLflow run.

Figures use matplotlib's Agg canvas (no display needed). The HTML has no external reference
(no CDN, no web font): it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jobs import metrics as M
from jobs.analysis.inputs import GridView, SettingView
from jobs.analysis.results import setting_curves
from jobs.figures import colors as _colors
from jobs.figures import grid_shape as _grid_shape
from jobs.figures import img_html as _img
from jobs.figures import new_figure as _fig
from jobs.figures import plot_routing, table_html
from jobs.figures import save_figure as _save
from jobs.metrics import RoutingCurve

VERDICT_CLASS = {"holds": "ok", "partly": "partly", "does not hold": "bad", "not testable": "na"}


# ---- figures ----------------------------------------------------------------------------------


def _curve(points: list[dict]) -> RoutingCurve:
    ratio = np.array([p["ratio"] for p in points])
    return RoutingCurve(k=np.arange(len(ratio)), ratio=ratio, accuracy=np.array([p["accuracy"] for p in points]))


def routing_figures(settings: Iterable[SettingView], folder: Path, prefix: str = "routing__") -> list[tuple[str, Path]]:
    """One PNG per (SLM, dataset, LLM), ``<prefix><slm>__<dataset>__<llm>.png``: every UQ
    method's curve, random and oracle, from the settings' results folders. Returns (caption, path)
    pairs."""
    groups: dict[tuple, list] = {}
    for s, c in setting_curves(settings):  # what ``uqroute.open(...).curves()`` reads
        groups.setdefault((s.slm, s.dataset, s.llm), []).append((s, c))
    out = []
    for (slm, ds, llm), items in sorted(groups.items()):
        curves, rnd, orc = {}, None, None
        for s, c in sorted(items, key=lambda x: x[0].uq):
            if not c["curve"]:  # the method scored no query (all unscored under "drop")
                continue
            auroc = s.unit.manifest_json()["metrics"]["auroc"]
            curves[f"{s.uq} (AUROC {auroc:.2f})"] = _curve(c["curve"])
            rnd, orc = _curve(c["random"]), _curve(c["oracle"])
        if not curves:
            continue
        p = plot_routing(
            curves, folder / f"{prefix}{slm}__{ds}__{llm}.png", random=rnd, oracle=orc, title=f"{slm} -> {llm} on {ds}"
        )
        out.append((f"{slm} → {llm} on {ds}", p))
    return out


def auroc_figure(table: list[dict], path: Path) -> Path | None:
    """AUROC with 95% CI per UQ method, one group of bars per (SLM, dataset, LLM)."""
    if not table:
        return None
    groups = sorted({(t["slm"], t["dataset"], t["llm"]) for t in table})
    methods = sorted({t["uq"] for t in table})
    fig = _fig(max(6.0, 1.2 * len(groups) * max(1, len(methods)) / 3), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(methods)
    cmap = _colors(len(methods))
    for j, m in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, g in enumerate(groups):
            row = next((t for t in table if (t["slm"], t["dataset"], t["llm"]) == g and t["uq"] == m), None)
            if row is None or row["auroc"] is None or not np.isfinite(row["auroc"]):
                continue
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            ys.append(row["auroc"])
            lo.append(row["auroc"] - row["auroc_lo"] if np.isfinite(row["auroc_lo"]) else 0.0)
            hi.append(row["auroc_hi"] - row["auroc"] if np.isfinite(row["auroc_hi"]) else 0.0)
        ax.bar(xs, ys, width, yerr=[lo, hi], label=m, color=cmap[j], capsize=2, error_kw={"linewidth": 0.8})
    ax.axhline(0.5, color="k", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(
        [
            f"{g[1]}\n{g[0]}→{g[2]}" if len({x[0] for x in groups}) > 1 or len({x[2] for x in groups}) > 1 else g[1]
            for g in groups
        ],
        fontsize="small",
    )
    ax.set_ylabel("AUROC (uncertainty vs SLM error)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="x-small", ncol=min(5, len(methods)), loc="upper center", bbox_to_anchor=(0.5, -0.15))
    ax.set_title("Alignment of each UQ method (95% bootstrap CI; 0.5 = chance)")
    return _save(fig, path)


def histogram_figure(dist: dict, path: Path) -> Path | None:
    """The paper's figure 2: for each (SLM, method), the confidence histogram (the paper's scale,
    ``analysis.distance_analysis`` "scores") of every dataset overlaid; alike shapes = the
    distribution is set by the SLM and the method."""
    scores = dist.get("scores", {})
    if not scores:
        return None
    keys = sorted({tuple(k.split("__")[:2]) for k in scores})
    datasets = sorted({k.split("__")[2] for k in scores})
    rows, cols = _grid_shape(len(keys))
    fig = _fig(3.3 * cols, 2.6 * rows)
    colors = dict(zip(datasets, _colors(len(datasets))))
    bins = np.linspace(0, 1, 21)
    for i, (slm, uq) in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        for ds in datasets:
            v = scores.get(f"{slm}__{uq}__{ds}")
            if v:
                ax.hist(v, bins=bins, density=True, histtype="step", linewidth=1.5, label=ds, color=colors[ds])
        ax.set_title(f"{uq}" + (f" ({slm})" if len({k[0] for k in keys}) > 1 else ""), fontsize="small")
        ax.tick_params(labelsize="x-small")
        if i == 0:
            ax.legend(fontsize="x-small")
    fig.suptitle(
        "Confidence distributions per dataset (the paper's confidence of each method, in [0, 1])", fontsize="small"
    )
    return _save(fig, path)


def heatmap_figure(mats: dict, path: Path, title: str, metric: str = "ks") -> Path | None:
    """Small multiples of symmetric distance matrices (``distance_analysis`` by_method/by_dataset)."""
    if not mats:
        return None
    keys = sorted(mats)
    n_names = max(len(mats[k]["names"]) for k in keys)
    cell = max(3.4, 0.42 * n_names + 1.6)  # panels grow with the number of names
    rows, cols = _grid_shape(len(keys), 3 if n_names <= 8 else 2)
    fig = _fig(cell * cols, (cell - 0.4) * rows)
    for i, k in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        m = np.asarray(mats[k][metric])
        names = mats[k]["names"]
        im = ax.imshow(m, vmin=0, vmax=1 if metric == "ks" else max(1e-9, float(m.max())), cmap="viridis")
        ax.set_xticks(range(len(names)))
        ax.set_yticks(range(len(names)))
        ax.set_xticklabels(names, rotation=60, ha="right", fontsize="x-small")
        ax.set_yticklabels(names, fontsize="x-small")
        if len(names) <= 12:
            for (a, b), v in np.ndenumerate(m):
                ax.text(
                    b,
                    a,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6 if len(names) <= 6 else 5,
                    color="w" if v < 0.5 else "k",
                )
        ax.set_title(k.replace("__", " / "), fontsize="small")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize="small")
    return _save(fig, path)


def transfer_figure(rows: list[dict], path: Path) -> Path | None:
    """Realized vs target call rate, one panel per UQ method: each held-out dataset's calibration
    thresholds (solid), the in-domain upper bound (dotted), the fixed threshold (x)."""
    if not rows:
        return None
    methods = sorted({r["uq"] for r in rows})
    heldouts = sorted({r["heldout"] for r in rows})
    colors = dict(zip(heldouts, _colors(len(heldouts))))
    nr, nc = _grid_shape(len(methods))
    fig = _fig(3.3 * nc, 3.0 * nr)
    for i, uq in enumerate(methods):
        ax = fig.add_subplot(nr, nc, i + 1)
        ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        for h in heldouts:
            for method, style in (("calibration", "-o"), ("in_domain", ":"), ("fixed", "x")):
                rs = sorted(
                    [r for r in rows if r["uq"] == uq and r["heldout"] == h and r["method"] == method],
                    key=lambda r: r["target_call_rate"],
                )
                if rs:
                    ax.plot(
                        [r["target_call_rate"] for r in rs],
                        [r["realized_call_rate"] for r in rs],
                        style,
                        color=colors[h],
                        markersize=3,
                        linewidth=1.2,
                        label=h if method == "calibration" else None,
                    )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(uq, fontsize="small")
        ax.tick_params(labelsize="x-small")
        if i == 0:
            ax.legend(fontsize="x-small", title="held out", title_fontsize="x-small")
    fig.suptitle("Realized vs target LLM call rate (solid: calibration; dotted: in-domain; x: fixed)", fontsize="small")
    fig.supxlabel("target call rate", fontsize="small")
    fig.supylabel("realized call rate", fontsize="small")
    return _save(fig, path)


# ---- html -------------------------------------------------------------------------------------


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em;display:block;max-width:100%;overflow-x:auto} th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f2f2f2} td:first-child,th:first-child{text-align:left}
figure{margin:1em 0} img{max-width:100%;border:1px solid #eee} figcaption{font-size:.8em;color:#555}
.finding{border-left:6px solid #999;padding:.4em 1em;margin:1em 0;background:#fafafa}
.finding.ok{border-color:#2a8a2a} .finding.partly{border-color:#d18f00} .finding.bad{border-color:#c0392b} .finding.na{border-color:#999}
.verdict{font-weight:bold;text-transform:uppercase;font-size:.85em} .na{color:#777}
.neg{color:#c0392b} nav a{margin-right:1em} code{background:#f4f4f4;padding:0 .2em}
"""


def _error_pivot(
    rows: list[dict], method: str, targets: list[float], key: str = "call_rate_error", agg: str = "mean_abs"
) -> tuple[list[dict], list[tuple[str, str]]]:
    """(uq, held-out) x target table of ``key`` (default: realized - target call rate, the mean
    over calibration draws) for one transfer method; last column: mean |key| over targets and
    draws ("mean_abs") or the plain mean ("mean", for SDs)."""
    piv: dict[tuple, dict] = {}
    absval: dict[tuple, list[float]] = {}
    for r in rows:
        if r["method"] != method:
            continue
        k = (r["slm"], r["uq"], r["llm"], r["heldout"])
        d = piv.setdefault(k, {"slm": k[0], "uq": k[1], "llm": k[2], "heldout": k[3]})
        d[f"t{r['target_call_rate']:.2f}"] = r.get(key, 0.0)
        absval.setdefault(k, []).append(
            r.get("abs_call_rate_error", abs(r["call_rate_error"])) if agg == "mean_abs" else r.get(key, 0.0)
        )
    for k, d in piv.items():
        d["mean_abs"] = float(np.mean(absval[k])) if absval[k] else float("nan")
    cols = [("uq", "UQ method"), ("heldout", "held-out dataset")]
    if len({k[0] for k in piv}) > 1:
        cols.insert(0, ("slm", "SLM"))
    if len({k[2] for k in piv}) > 1:
        cols.append(("llm", "LLM"))
    cols += [(f"t{t:.2f}", f"{t:.0%}") for t in targets] + [("mean_abs", "mean |err|" if agg == "mean_abs" else "mean")]
    return [piv[k] for k in sorted(piv)], cols


def cross_group_html(cross: dict | None) -> list[str]:
    """The report section "Out-of-domain (cross-group) transfer" (``calibration.splits:
    [cross_group]``): one plain sentence per direction, the table (source group, target group,
    UQ method, target call rate, realized, error; means over the target group's datasets) and
    what was skipped. Empty when the split was not requested."""
    if not cross:
        return []
    out = [
        '<h2 id="cross-group">Out-of-domain (cross-group) transfer</h2>',
        _cross_group_intro(cross.get("groups", {})),
    ]
    sents = cross.get("sentences", [])
    if sents:
        out.append(
            "<ul class='cross-group-sentences'>"
            + "".join(f"<li>{html.escape(x['sentence'])}</li>" for x in sents)
            + "</ul>"
        )
    rows = cross.get("summary", [])
    if rows:
        out += _cross_group_table(rows)
    else:
        out.append("<p class='na'>(no direction could be evaluated)</p>")
    if cross.get("skipped"):
        out.append(
            "<p class='na'>Not evaluated: "
            + "; ".join(
                html.escape(f"{s['slm']}/{s['uq']}/{s['llm']} {s['source_group']} → {s['target_group']}: {s['reason']}")
                for s in cross["skipped"]
            )
            + "</p>"
        )
    return out


def _cross_group_intro(groups: dict) -> str:
    """What the cross-group split is, and which datasets form each group (dataset -> group)."""
    by_g: dict[str, list[str]] = {}
    for d, g in sorted(groups.items()):
        by_g.setdefault(g or "no group", []).append(d)
    return (
        "<p>The paper's fully out-of-domain split: the calibration set is drawn only from the datasets of "
        "the source group (their calibration rows, as in the leave-one-out transfer: same bins, draws and "
        "weights) and its thresholds are applied to every dataset of the target group, whose rows never "
        "reach the calibration set. Methods trained on other datasets (the OOD probe, the cross-dataset "
        "learned routers) calibrate on rows scored by models that trained on no dataset of the target group. "
        "Groups: "
        + "; ".join(f"{html.escape(g)}: {html.escape(', '.join(ds))}" for g, ds in sorted(by_g.items()))
        + " (datasets without a group take no part).</p>"
    )


def _cross_group_table(rows: list[dict]) -> list[str]:
    """The cross-group summary table (``cross_group.summary`` rows) and its legend."""
    cols = [
        ("source_group", "source group"),
        ("target_group", "target group"),
        ("uq", "UQ method"),
        ("target_call_rate", "target rate"),
        ("realized_call_rate", "realized"),
        ("call_rate_error", "error"),
        ("abs_call_rate_error", "mean |error|"),
        ("accuracy_error", "acc − predicted"),
        ("n_targets", "target datasets"),
    ]
    if len({r["slm"] for r in rows}) > 1:
        cols.insert(2, ("slm", "SLM"))
    if len({r["llm"] for r in rows}) > 1:
        cols.insert(3, ("llm", "LLM"))
    return [
        "<p>Means over the target group's datasets (and over calibration draws); <b>error</b> = "
        "realized − target call rate, <b>acc − predicted</b> = realized accuracy − the calibration "
        "set's predicted accuracy at the threshold. Per-dataset rows are in analysis.json "
        "(<code>cross_group.call_rate</code>).</p>",
        table_html(rows, cols, "cross-group"),
    ]


def relative_accuracy_html(settings: list[dict]) -> list[str]:
    """The paper's relative accuracy (SLM / LLM accuracy on the top k% most confident queries,
    k = 10..100) per setting, with the paper's PIQA example restated on this grid's numbers."""
    pcts = [k for k in range(10, 101, 10) if any(f"relative_accuracy_at_{k}" in t for t in settings)]
    out = ['<h3 id="relative">Relative accuracy (the paper’s metric)</h3>']
    if not pcts:
        return out + ["<p class='na'>(no setting reports relative accuracy: rerun the setting units)</p>"]
    out.append(
        "<p>SLM accuracy divided by the LLM’s accuracy on the same queries: the k% the UQ method is most "
        "confident about. 1 = the SLM matches the LLM there. Paper’s example: on PIQA, Danube-3.1-4B nearly "
        "matches GPT-4o mini on its 20% most confident queries."
    )
    at20 = [
        t
        for t in settings
        if t.get("relative_accuracy_at_20") is not None and np.isfinite(t["relative_accuracy_at_20"])
    ]
    if at20:
        best = max(at20, key=lambda t: t["relative_accuracy_at_20"])
        out[-1] += (
            f" Here the highest at 20% is {best['relative_accuracy_at_20']:.2f}: {html.escape(best['slm'])} with "
            f"{html.escape(best['uq'])} on {html.escape(best['dataset'])} against {html.escape(best['llm'])}"
        )
        piqa = [t for t in at20 if t["dataset"] == "piqa"]
        if piqa:
            b = max(piqa, key=lambda t: t["relative_accuracy_at_20"])
            out[-1] += (
                f"; on PIQA {b['relative_accuracy_at_20']:.2f} ({html.escape(b['slm'])}, {html.escape(b['uq'])}, "
                f"against {html.escape(b['llm'])})"
            )
        out[-1] += "."
    out[-1] += "</p>"
    rows = sorted(settings, key=lambda t: (t["slm"], t["dataset"], t["llm"], t["uq"]))
    out.append(
        table_html(
            rows,
            [("slm", "SLM"), ("dataset", "dataset"), ("llm", "LLM"), ("uq", "UQ method")]
            + [(f"relative_accuracy_at_{k}", f"top {k}%") for k in pcts],
            "relative-accuracy",
        )
    )
    return out


@dataclass(frozen=True)
class Section:
    """One section of the report: its HTML parts, the PNGs it embeds (in page order) and the
    parent-run metrics it adds (``build_report`` joins them)."""

    html: tuple[str, ...] = ()
    pngs: tuple[Path, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)


def _section(parts: list[str], *pngs: Path | None, metrics: Mapping[str, float] | None = None) -> Section:
    return Section(tuple(parts), tuple(p for p in pngs if p), dict(metrics or {}))


def build_report(view: GridView, out_dir: Path | None = None, analysis: dict | None = None) -> dict:
    """Write ``<output>/report/index.html`` (self-contained), its PNGs and ``analysis.json``, for a
    grid's typed view (``orchestrator.grid_view.grid_view``): one function per section, in page order.

    Returns {"html": path, "pngs": [paths], "analysis": path, "findings": [...], "metrics": {...}}."""
    from jobs.analysis.findings import analyze

    out_dir = Path(out_dir or (view.output / "report"))
    out_dir.mkdir(parents=True, exist_ok=True)
    a = analysis or analyze(view)
    sections = [
        findings_section(a),
        grid_section(view, a),
        curves_section(view, out_dir),
        alignment_section(a, out_dir),
        paired_section(a),
        definitions_section(a),
        distributions_section(a, out_dir),
        transfer_section(a, out_dir),
        _section(cross_group_html(a.get("cross_group"))),
        cost_section(view, out_dir),
    ]
    parts = [f"<h1>uqroute report: grid <code>{html.escape(view.name)}</code></h1>", nav_html(a)]
    parts += [x for s in sections for x in s.html]
    doc = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>uqroute report: {html.escape(view.name)}"
        f"</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
    html_path = out_dir / "index.html"
    html_path.write_text(doc, encoding="utf-8")
    analysis_path = out_dir / "analysis.json"
    analysis_path.write_text(json.dumps(_jsonable(a), indent=1, sort_keys=True))
    metrics = report_metrics(a)
    for s in sections:
        metrics.update(s.metrics)
    pngs = [p for s in sections for p in s.pngs]
    return {"html": html_path, "pngs": pngs, "analysis": analysis_path, "findings": a["findings"], "metrics": metrics}


def nav_html(a: dict) -> str:
    """The links to every section (the cross-group one only when that split ran)."""
    return (
        "<nav>"
        + "".join(
            f'<a href="#{i}">{t}</a>'
            for i, t in (
                ("findings", "Findings"),
                ("grid", "Grid"),
                ("curves", "Routing curves"),
                ("alignment", "AUROC & area"),
                ("relative", "Relative accuracy"),
                ("paired", "Paired comparisons"),
                *((("definitions", "What is combined"),) if a.get("definitions") else ()),
                ("distributions", "Distributions"),
                ("transfer", "Calibration transfer"),
                *((("cross-group", "Out-of-domain transfer"),) if a.get("cross_group") else ()),
                ("cost", "Cost"),
            )
        )
        + "</nav>"
    )


def findings_section(a: dict) -> Section:
    """The paper's three findings, each with its verdict on this grid and the evidence."""
    parts = []
    parts.append('<h2 id="findings">The paper’s three findings, with this grid’s numbers</h2>')
    for f in a["findings"]:
        cls = VERDICT_CLASS.get(f["verdict"], "na")
        ev = "".join(f"<li>{html.escape(e)}</li>" for e in f["evidence"])
        parts.append(
            f'<div class="finding {cls}" data-finding="{f["id"]}"><p><b>Finding {f["id"]}.</b> '
            f'{html.escape(f["claim"])} <span class="verdict">Here: {html.escape(f["verdict"])}</span></p>'
            f"<ul>{ev}</ul></div>"
        )
    return _section(parts)


def grid_section(view: GridView, a: dict) -> Section:
    """What the grid ran, and each (SLM, dataset, LLM)'s accuracies and reference areas."""
    parts = []
    n_done = len(a["settings"])
    parts.append('<h2 id="grid">Grid</h2>')
    parts.append(
        f"<p>{n_done} of {len(view.settings)} settings finished. SLMs: {', '.join(view.slm_names)}; "
        f"LLMs: {', '.join(view.llm_names)}; UQ methods: {', '.join(view.uq_names)}; datasets: "
        f"{', '.join(view.dataset_names)}; {view.limit} evaluated questions per dataset "
        f"(seed {view.dataset_seed}), {view.fit_limit} fit/calibration rows"
        + "".join(f"; {d}: {lim} evaluated, {fit} fit" for d, (lim, fit) in view.dataset_limits.items())
        + ".</p>"
    )
    acc_rows = {}
    # the SLM's accuracy is its greedy answers' on every query: prefer a setting that judges the
    # greedy answer and used every query (a verbal_1s setting may judge its own answer, and "drop"
    # leaves the unscored queries out)
    for t in sorted(
        a["settings"], key=lambda t: (t.get("answer_route") == "own_answer", (t.get("n_used") or t["n"]) < t["n"])
    ):
        acc_rows.setdefault((t["slm"], t["dataset"], t["llm"]), t)
    parts.append(
        table_html(
            [
                {
                    "slm": k[0],
                    "dataset": k[1],
                    "llm": k[2],
                    "n": v["n"],
                    "slm_acc": v["slm_acc"],
                    "llm_acc": v["llm_acc"],
                    "random_area": v["random_area"],
                    "oracle_area": v["oracle_area"],
                }
                for k, v in sorted(acc_rows.items())
            ],
            [
                ("slm", "SLM"),
                ("dataset", "dataset"),
                ("llm", "LLM"),
                ("n", "n"),
                ("slm_acc", "SLM acc"),
                ("llm_acc", "LLM acc"),
                ("random_area", "random area"),
                ("oracle_area", "oracle area"),
            ],
        )
    )
    weak = [k for k, v in acc_rows.items() if np.isfinite(v["llm_acc"]) and v["llm_acc"] <= v["slm_acc"]]
    if weak:
        parts.append(
            '<p class="neg">On '
            + ", ".join(f"{k[1]} ({k[0]}→{k[2]})" for k in weak)
            + " the LLM is not more accurate than the SLM, so routing cannot beat keeping queries local; "
            "routing areas there say little about the UQ method.</p>"
        )
    return _section(parts)


def curves_section(view: GridView, out_dir: Path) -> Section:
    """The routing curves, one PNG per (SLM, dataset, LLM) (``routing_figures``)."""
    figs = routing_figures(view.settings, out_dir)
    parts = []
    parts.append(
        '<h2 id="curves">Routing curves</h2><p>Accuracy of the SLM+LLM system when the most uncertain '
        "x% of queries go to the LLM; every UQ method overlaid, with random routing and the oracle.</p>"
    )
    parts += [_img(p, t) for t, p in figs]
    return _section(parts, *(p for _, p in figs))


def settings_columns() -> list[tuple[str, str]]:
    """The settings table's columns, (key, header): the setting's axes, then each metric
    ``jobs.metrics.METRICS`` shows in the report, its label and its interval beside it
    (``metrics.report_columns``); the NaN policy (a row field, not a metric) beside the unscored
    share it explains."""
    cols = [("slm", "SLM"), ("dataset", "dataset"), ("llm", "LLM"), ("uq", "UQ method"), *M.report_columns()]
    keys = [k for k, _ in cols]
    at = keys.index("unscored_share") + 1 if "unscored_share" in keys else len(cols)
    return [*cols[:at], ("nan_policy", "NaN policy"), *cols[at:]]


def alignment_section(a: dict, out_dir: Path) -> Section:
    """AUROC and routing area per setting (95% bootstrap CIs), the ranking of methods, the verbal
    methods' own-answer agreement and the paper's relative accuracy."""
    auroc_png = auroc_figure(a["settings"], out_dir / "auroc.png")
    parts = []
    parts.append('<h2 id="alignment">AUROC and routing area (95% bootstrap CIs)</h2>')
    parts.append(_img(auroc_png, "AUROC per UQ method and dataset"))
    parts.append(
        table_html(
            a["ranking"],
            [
                ("rank", "rank"),
                ("uq", "UQ method"),
                ("mean_auroc", "mean AUROC"),
                ("min_auroc", "min"),
                ("max_auroc", "max"),
                ("mean_unscored_share", "unscored"),
                ("n", "settings"),
            ],
        )
    )
    parts.append(
        table_html(
            sorted(
                a["settings"],
                key=lambda t: (
                    t["slm"],
                    t["dataset"],
                    t["llm"],
                    -(t["auroc"] if t["auroc"] is not None and np.isfinite(t["auroc"]) else -9),
                ),
            ),
            settings_columns(),
            "settings",
        )
    )
    parts.append(
        "<p><b>unscored</b>: the share of queries the UQ method could not score (e.g. a verbalized "
        "confidence that does not parse). Under the NaN policy <b>drop</b> (the verbal methods' default) "
        "every other number of the row is computed without them; under <b>most_uncertain</b> they are "
        "offloaded first.</p>"
    )
    parts.append(
        "<p><b>APGR</b> and <b>CPT(x%)</b> are RouteLLM's (lm-sys/RouteLLM, "
        "<code>routellm/evals/evaluate.py</code>): APGR = (area − SLM acc) / (LLM acc − SLM acc), so random "
        "routing scores 0.5; CPT(x%) = the call rate (fraction) at which accuracy reaches SLM acc + x% of the "
        "gap, by linear interpolation. <b>gap vs random</b> is ours: (area − random area) / (oracle area − "
        "random area), 0 = random, 1 = oracle.</p>"
    )
    parts += agreement_html(a["settings"])
    parts += relative_accuracy_html(a["settings"])
    return _section(parts, auroc_png)


def agreement_html(settings: list[dict]) -> list[str]:
    """How often a one-stage verbal method's own answer equals the greedy one, per setting that
    reports it (``answer_agreement``); empty when no setting does."""
    own = [t for t in settings if t.get("answer_agreement") is not None]
    if not own:
        return []
    return [
        "<p>One-stage verbal confidence comes with an answer of its own. <b>agreement</b>: the share "
        "of queries where that answer equals the greedy one; <b>SLM acc</b> is the accuracy of the "
        "answer the setting judges (its route), <b>greedy acc</b> that of the greedy answer.</p>",
        table_html(
            own,
            [
                ("slm", "SLM"),
                ("dataset", "dataset"),
                ("llm", "LLM"),
                ("uq", "UQ method"),
                ("answer_route", "route"),
                ("answer_agreement", "agreement"),
                ("slm_acc", "SLM acc"),
                ("greedy_slm_acc", "greedy acc"),
                ("auroc", "AUROC"),
                ("unscored_share", "unscored"),
            ],
            "agreement",
        ),
    ]


def paired_section(a: dict) -> Section:
    """Paired bootstrap differences between UQ methods on the same queries."""
    parts = []
    parts.append(
        '<h2 id="paired">Paired comparisons between UQ methods</h2><p>Difference a − b on the same queries; '
        "CI and p from a paired bootstrap (same resamples for both methods).</p>"
    )
    parts.append(
        table_html(
            a["paired"],
            [
                ("dataset", "dataset"),
                ("slm", "SLM"),
                ("llm", "LLM"),
                ("uq_a", "a"),
                ("uq_b", "b"),
                ("auroc_diff", "ΔAUROC"),
                ("auroc_diff_lo", "lo"),
                ("auroc_diff_hi", "hi"),
                ("p_auroc", "p"),
                ("area_diff", "Δarea"),
                ("area_diff_lo", "lo"),
                ("area_diff_hi", "hi"),
                ("p_area", "p"),
            ],
            "paired",
        )
    )
    return _section(parts)


def definitions_section(a: dict) -> Section:
    """Which datasets' statistics are combined: each UQ method's definition per dataset (its answer
    mode, and the option count where its statistic is bounded by it: ``jobs.uq.definition``), and
    every dataset left out of a calibration pool or a finding-2 comparison, with the reason.
    Empty for an analysis made before definitions existed."""
    d = a.get("definitions")
    if not d:
        return _section([])
    parts = ['<h2 id="definitions">Which datasets are combined</h2>']
    parts.append(
        "<p>A UQ method's statistic is combined across datasets (calibration sets, leave-one-out and "
        "cross-group transfer, the distances between datasets of finding 2) only where it has the same "
        "definition: the same answer mode (a generated answer's token log p or entropy over the whole "
        "vocabulary is another number than an option's), and, for statistics over the options (their "
        "entropy, draws among them), the same number of options. p(True) and verbalized confidences mean "
        "the same in every mode. Datasets as run here: "
        + html.escape("; ".join(f"{ds}: {label}" for ds, label in sorted(d.get("forms", {}).items())))
        + ".</p>"
    )
    dss = sorted(d.get("forms", {}))
    rows = [
        {"uq": uq, "deps": ", ".join(d["depends_on"].get(uq, [])) or "nothing", **by}
        for uq, by in sorted(d.get("by_uq", {}).items())
    ]
    parts.append(table_html(rows, [("uq", "UQ method"), ("deps", "depends on"), *((x, x) for x in dss)], "definitions"))
    lists = [
        ("Left out of leave-one-out calibration pools", d.get("not_pooled", {}).get("leave_one_out", [])),
        ("Left out of cross-group calibration pools", d.get("not_pooled", {}).get("cross_group", [])),
        ("Dataset pairs finding 2 does not compare", d.get("not_compared", [])),
        (
            "Trained on other datasets of another definition only (kept: the out-of-domain test is the point; "
            "read their scores there as a transfer across answer modes)",
            d.get("trained_across_definitions", []),
        ),
    ]
    for title, items in lists:
        if items:
            parts.append(
                f"<p><b>{html.escape(title)}</b>:</p><ul class='not-pooled'>"
                + "".join(f"<li>{html.escape(x)}</li>" for x in items)
                + "</ul>"
            )
    if not any(items for _, items in lists):
        parts.append("<p>Every dataset of this grid has one definition per method: nothing was left out.</p>")
    return _section(parts)


def distributions_section(a: dict, out_dir: Path) -> Section:
    """Finding 2: the confidence histograms, the distance families and the KS heatmaps."""
    d = a["distances"]
    hist_png = histogram_figure(d, out_dir / "distributions.png")
    heat_ds = heatmap_figure(
        d["by_method"],
        out_dir / "ks_across_datasets.png",
        "KS distance between datasets, per SLM / UQ method (lower = more alike)",
    )
    heat_uq = heatmap_figure(
        d["by_dataset"],
        out_dir / "ks_across_methods.png",
        "KS distance between UQ methods (paper confidence scale), per SLM / dataset",
    )
    parts = []
    parts.append('<h2 id="distributions">Uncertainty distributions (finding 2)</h2>')
    parts.append(_img(hist_png, "confidence histograms (the paper's scale), datasets overlaid"))
    parts.append(
        "<p>Distances between datasets (and SLMs) compare one method's scores on its pooled ranks, so "
        "they do not depend on the method's units or extreme values; between UQ methods no scale-free "
        "comparison exists, so they are compared on the paper's confidence scale of each method "
        "(1 − u, 1 / perplexity, exp(−u) for entropies and NLLs).</p>"
    )
    fam_rows = []
    for metric in ("ks", "wasserstein"):
        for fam, label in (
            ("across_datasets", "between datasets (SLM, method fixed)"),
            ("across_uq", "between UQ methods (SLM, dataset fixed)"),
            ("across_slm", "between SLMs (method, dataset fixed)"),
        ):
            x = d[metric][fam]
            fam_rows.append(
                {"metric": metric, "family": label, "mean": x["mean"], "pairs": x["n_pairs"], "groups": x["n_groups"]}
            )
    parts.append(
        table_html(
            fam_rows,
            [
                ("metric", "distance"),
                ("family", "pairs compared"),
                ("mean", "mean"),
                ("pairs", "pairs"),
                ("groups", "groups"),
            ],
            "families",
        )
    )
    parts.append(_img(heat_ds, "KS distances between datasets"))
    parts.append(_img(heat_uq, "KS distances between UQ methods"))
    return _section(parts, hist_png, heat_ds, heat_uq)


def transfer_section(a: dict, out_dir: Path) -> Section:
    """Finding 3: leave-one-dataset-out calibration transfer (how the sets are drawn, the realized vs
    target figure, error tables per threshold source, the summary, curve prediction, accuracy targets
    and what was skipped)."""
    t = a["transfer"]
    cal = a["calibration"]
    targets = [float(x) for x in cal["targets"]]
    transfer_png = transfer_figure(t["call_rate"], out_dir / "transfer.png")
    parts = []
    parts.append('<h2 id="transfer">Calibration transfer, leave one dataset out (finding 3)</h2>')
    if "leave_one_out" not in a.get("splits", ["leave_one_out"]):
        parts.append("<p class='na'>Not requested: calibration.splits does not list leave_one_out.</p>")
    n_draws = int(cal.get("n_draws", 1))
    parts.append(_transfer_method_html(a, n_draws))
    parts.append(_img(transfer_png, "realized vs target call rate"))
    parts += _transfer_error_html(t["call_rate"], targets, n_draws)
    parts += _transfer_tables_html(a)
    if t["skipped"]:
        parts.append(
            "<p class='na'>Not evaluated: "
            + "; ".join(
                html.escape(f"{s['slm']}/{s['uq']}/{s['llm']} held-out {s.get('heldout', '-')}: {s['reason']}")
                for s in t["skipped"]
            )
            + "</p>"
        )
    return _section(parts, transfer_png)


def _calibration_source_text(a: dict) -> str:
    """Which rows the leave-one-out calibration sets were drawn from, in words."""
    src = sorted({x["source"] for x in a["transfer"]["call_rate"]})
    if src == ["fit"]:
        where = ", ".join(
            f"{d} ({s_.replace('split:', '')} split)"
            if s_.startswith("split:")
            else f"{d} (rows of its test file never evaluated)"
            for d, s_ in sorted(a["fit_sources"].items())
            if d in a["calibration_datasets"]
        )
        left = sorted(set(a["fit_sources"]) - set(a["calibration_datasets"]))
        return (
            "calibration (fit-role) rows, never an evaluated row. Calibration rows come from: "
            + where
            + (
                f"; {', '.join(left)} ship no train/dev split and only feed in-domain fits "
                f"(calibration.pool = train_dev)"
                if left
                else ""
            )
        )
    return "evaluated rows (calibration was not enabled for this grid: the paper's own leave-one-out)"


def _transfer_method_html(a: dict, n_draws: int) -> str:
    """How each calibration set is drawn and how a threshold is read off it (bins, scale, draws)."""
    cal = a["calibration"]
    source_text = _calibration_source_text(a)
    scales = a.get("calibration_scales", {})
    scale_text = (
        "each method's own confidence (" + ", ".join(f"{u}: {sc}" for u, sc in sorted(scales.items())) + ")"
        if cal.get("scale", "paper") == "paper"
        else f"the {cal.get('scale')} scale"
    )
    seeds = ", ".join(str(int(cal["seed"]) + i) for i in range(n_draws))
    return (
        "<p>For each held-out dataset, the calibration set is built from the other datasets' "
        + source_text
        + f": {cal['n_bins']} {cal['binning'].replace('_', '-')} bins cut on {scale_text}, {cal['frac']:.0%} of "
        f"each, every drawn row weighted by the inverse of its bin's sampling fraction (so sparse bins are not "
        f"over-represented), {n_draws} draw{'s' if n_draws > 1 else ''} (seed{'s' if n_draws > 1 else ''} {seeds}). "
        "The threshold for target call rate r is the weighted r-quantile of its uncertainties; "
        + ("errors below are means over the draws, with their SD across draws. " if n_draws > 1 else "")
        + "<i>in_domain</i> fits the threshold on the held-out dataset's own labelled fit rows (upper bound); "
        "<i>fixed</i> uses one untuned threshold for every target.</p>"
    )


def _transfer_error_html(call_rate: list[dict], targets: list[float], n_draws: int) -> list[str]:
    """The transfer-error pivots: calibration thresholds, their SD over draws, in-domain and fixed."""
    parts = []
    parts.append("<h3>Transfer error (realized − target call rate), calibration thresholds</h3>")
    rows, cols = _error_pivot(call_rate, "calibration", targets)
    parts.append(table_html(rows, cols, "transfer-error"))
    if n_draws > 1:
        parts.append(f"<h3>Spread over the {n_draws} calibration draws (SD of realized − target call rate)</h3>")
        rows, cols = _error_pivot(call_rate, "calibration", targets, key="call_rate_error_sd", agg="mean")
        parts.append(table_html(rows, cols, "transfer-error-sd"))
    parts.append("<h3>The same for in-domain (upper bound) and fixed thresholds</h3>")
    for m in ("in_domain", "fixed"):
        rows, cols = _error_pivot(call_rate, m, targets)
        parts.append(f"<p><b>{m}</b></p>" + table_html(rows, cols, f"transfer-error-{m}"))
    return parts


def _transfer_tables_html(a: dict) -> list[str]:
    """The transfer summary per method and threshold source, curve prediction and accuracy targets."""
    t = a["transfer"]
    parts = []
    parts.append("<h3>Summary per UQ method and threshold source</h3>")
    parts.append(
        table_html(
            a["transfer_summary"],
            [
                ("uq", "UQ method"),
                ("method", "threshold from"),
                ("mean_abs_call_rate_error", "mean |call-rate err|"),
                ("max_abs_call_rate_error", "max |call-rate err|"),
                ("sd_call_rate_error", "SD over draws"),
                ("n_draws", "draws"),
                ("mean_abs_accuracy_error", "mean |acc − predicted|"),
                ("n", "n"),
            ],
        )
    )
    parts.append("<h3>Routing-curve prediction (RMS distance to the true held-out curve)</h3>")
    parts.append(
        table_html(
            t["curves"],
            [
                ("uq", "UQ method"),
                ("heldout", "held-out"),
                ("slm", "SLM"),
                ("llm", "LLM"),
                ("rms_calibration", "calibration curve"),
                ("rms_calibration_sd", "SD over draws"),
                ("rms_random", "random line"),
                ("n_calibration", "n calibration"),
                ("n_heldout", "n held-out"),
            ],
        )
    )
    parts.append(
        "<h3>Accuracy targets</h3><p>Threshold at the smallest call rate whose calibration accuracy reaches the "
        "target (25/50/75% of the calibration set's gap between SLM-only and its best accuracy).</p>"
    )
    parts.append(
        table_html(
            t["accuracy"],
            [
                ("uq", "UQ method"),
                ("heldout", "held-out"),
                ("target_accuracy", "target acc"),
                ("realized_accuracy", "realized acc"),
                ("accuracy_error", "error"),
                ("accuracy_error_sd", "SD over draws"),
                ("predicted_call_rate", "predicted call rate"),
                ("realized_call_rate", "realized call rate"),
            ],
        )
    )
    return parts


def report_metrics(a: dict) -> dict[str, float]:
    """Headline numbers of the analysis for the grid's parent MLflow run: transfer errors, curve
    distances, KS means, cross-group errors (the cost section adds its own)."""
    t, d = a["transfer"], a["distances"]
    metrics = {}
    for method in ("calibration", "in_domain", "fixed"):
        errs = [
            x.get("abs_call_rate_error", abs(x["call_rate_error"])) for x in t["call_rate"] if x["method"] == method
        ]
        if errs:
            metrics[f"transfer_{method}_mean_abs_call_rate_error"] = float(np.mean(errs))
            metrics[f"transfer_{method}_sd_call_rate_error"] = float(
                np.mean([x.get("call_rate_error_sd", 0.0) for x in t["call_rate"] if x["method"] == method])
            )
    if t["curves"]:
        metrics["transfer_curve_rms_calibration"] = float(np.mean([c["rms_calibration"] for c in t["curves"]]))
        metrics["transfer_curve_rms_random"] = float(np.mean([c["rms_random"] for c in t["curves"]]))
    for fam in ("across_datasets", "across_uq", "across_slm"):
        metrics[f"ks_{fam}"] = d["ks"][fam]["mean"]
    for sent in (a.get("cross_group") or {}).get("sentences", []):
        pair = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{sent['source_group']}_to_{sent['target_group']}")  # MLflow names
        metrics[f"cross_group_{pair}_mean_abs_call_rate_error"] = sent["mean_abs_call_rate_error"]
    return metrics


def cost_section(view: GridView, out_dir: Path) -> Section:
    """The cost section (``jobs/analysis/cost_report.py``): HTML parts, the Pareto PNG, parent-run metrics;
    ``cost.json`` beside the report holds the numbers."""
    from jobs.analysis import cost_report

    ca = cost_report.cost_analysis(view)
    png = cost_report.pareto_figure(ca["groups"], out_dir / "cost_pareto.png")
    (out_dir / "cost.json").write_text(
        json.dumps(
            _jsonable(
                {
                    **ca,
                    "groups": [
                        {
                            **g,
                            "curves": {m: cv.points() for m, cv in g["curves"].items()},
                            "random": g["random"].points() if g["random"] is not None else None,
                        }
                        for g in ca["groups"]
                    ],
                }
            ),
            indent=1,
            sort_keys=True,
        )
    )
    return _section(cost_report.cost_section_html(ca, png), png, metrics=cost_report.report_metrics(ca))


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
