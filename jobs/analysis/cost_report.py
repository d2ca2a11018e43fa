"""The report's cost section: every finished setting re-priced from its records with the grid's
price table, the Pareto frontier across UQ methods per (SLM, dataset, LLM), the cost to reach
50% / 80% of the SLM-to-LLM gap with each method's overhead counted, and one sentence per group
saying which method is worth its own cost.

Every method of a group is compared on the same queries, all of the dataset's (issue 17.2): a
query a method with the ``drop`` NaN policy could not score (a verbal confidence that did not
parse) is never routed -- the SLM answers it -- and costs what the method spent on it
(``jobs.cost.all_queries_cost_curve``). So the frontier, its shares and the cost to reach x% of the
gap (between the SLM's and the LLM's accuracy on all queries) never rest on a method's scored
subset; the ``scored`` column says how much of the dataset a method could route.

Where this sits in the flow: the store (setting records + generation records) + ``conf/prices``
-> ``jobs.cost`` -> **here** -> ``jobs.analysis.report`` (HTML section, PNG). Re-pricing at report time
means a price edit needs only ``uqroute report``; the settings' MLflow metrics keep the table they
were priced with (curve.json says which), and the section says when that differs.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from jobs import cost as C
from jobs.analysis.inputs import GridView, SettingView
from jobs.records import read_json
from jobs.store import Store

#: Columns of the cost table (key, label); money columns are USD per 1000 queries.
TABLE_COLS: tuple[tuple[str, str], ...] = (
    ("uq", "UQ method"),
    ("uq_passes", "extra passes"),
    ("scored_share", "scored"),
    ("overhead_1k", "UQ overhead"),
    ("slm_only_1k", "SLM + overhead"),
    ("to_50_1k", "to 50% of gap"),
    ("to_80_1k", "to 80% of gap"),
    ("random_80_1k", "random, to 80%"),
    ("llm_all_1k", "LLM alone"),
    ("ratio_80", "80% cost / LLM alone"),
    ("frontier_share", "share of frontier"),
    ("auroc", "AUROC"),
)


def cost_analysis(view: GridView) -> dict:
    """{"prices": {...}, "groups": [{"slm", "dataset", "llm", "rows", "frontier", "curves", "verdict"}],
    "stale": n settings whose stored cost used another table (or none), "skipped": [...]}.

    Each row: a UQ method's ``jobs.cost.setting_cost`` metrics (USD per query) plus the per-1k
    columns of ``TABLE_COLS``; curves: method -> points; frontier: ``jobs.cost.pareto_frontier``.
    Prices: the table ``view.prices`` (looked up in ``view.price_dirs``, then the repository's).
    """
    table = C.load_prices(view.prices, view.price_dirs)
    store = view.store
    rows_of = _cached_gen_rows(store)
    groups: dict[tuple, dict] = {}
    stale, skipped = 0, []
    for s in view.settings:
        d = Store(store).setting(s.key)  # settings/<unit key> (not the setting hash: fixed, issue 9)
        if not (d.done and d.records_path.is_file()):
            continue
        rec = pq.read_table(d.records_path).to_pydict()
        ids = rec["sample_id"]
        try:
            usage = _setting_usage(s, ids, rows_of)
        except (FileNotFoundError, KeyError) as e:
            skipped.append({"setting": s.name, "reason": str(e)})
            continue
        slm_rate, llm_rate = table.rate_for(s.slm_model), table.rate_for(s.llm_model)
        unc = np.asarray([math.nan if x is None else x for x in rec["uncertainty"]], dtype=np.float64)
        sc = C.setting_cost(
            usage,
            unc,
            rec["slm_correct"],
            rec["llm_correct"],
            slm_rate=slm_rate,
            llm_rate=llm_rate,
            nan_policy=s.nan_policy,  # the setting's own (a verbal method drops its unscored queries)
            ties=view.ties,
            sample_ids=ids,
        )
        curve_file = d.curve_path
        stored = read_json(curve_file).get("cost", {}) if curve_file.is_file() else {}
        stale += stored.get("prices_digest") != table.digest
        auroc = d.manifest_json()["metrics"].get("auroc")
        g = groups.setdefault((s.slm, s.dataset, s.llm), _new_group(s, slm_rate, llm_rate))
        row = {"uq": s.uq, "auroc": auroc, **sc.metrics, "overhead_stages": list(usage.overhead_stages)}
        g["rows"].append(all_queries_row(row, sc, unc, rec["llm_correct"]))
        g["curves"][s.uq] = sc.all_queries
        g["random"] = g["random"] or sc.all_queries_random
    return {
        "prices": {"name": table.name, "source": table.source, "digest": table.digest, "currency": table.currency},
        "groups": [frontier_group(groups[key]) for key in sorted(groups)],
        "stale": int(stale),
        "skipped": skipped,
    }


def _cached_gen_rows(store: Path) -> Callable[[str], list[dict]]:
    """A reader of generation units' records (unit key -> rows) that reads each unit once."""
    cache: dict[str, list[dict]] = {}

    def rows_of(key: str) -> list[dict]:
        if key not in cache:
            cache[key] = Store(store).gen(key).rows()
        return cache[key]

    return rows_of


def _setting_usage(s: SettingView, ids: list[str], rows_of: Callable[[str], list[dict]]) -> C.QueryUsage:
    """Per-query token and time usage of setting ``s`` (its greedy rows aligned to its records'
    ``ids``, its LLM rows and its UQ method's overhead stages). FileNotFoundError / KeyError: a unit
    or a row is missing."""
    slm_rows = C.align(rows_of(s.greedy_key), ids, "greedy")
    llm_rows = rows_of(s.llm_key)
    overhead = C.overhead_stages()
    stage_rows = {st: rows_of(k) for st, k in s.stage_keys.items() if st in overhead}
    return C.query_usage(slm_rows, stage_rows, llm_rows, C.answer_stage(s.method, s.params))


def _new_group(s: SettingView, slm_rate: C.Rate, llm_rate: C.Rate) -> dict:
    """An empty cost group of setting ``s``'s (SLM, dataset, LLM), priced at these rates."""
    return {
        "slm": s.slm,
        "dataset": s.dataset,
        "llm": s.llm,
        "rows": [],
        "curves": {},
        "random": None,
        "slm_rate": slm_rate.describe(),
        "llm_rate": llm_rate.describe(),
    }


def all_queries_row(row: dict, sc: C.SettingCost, uncertainty, llm_correct) -> dict:
    """A cost-table row on all of the setting's queries: the costs to reach 50% / 80% of the gap
    (and the ratio to the LLM alone, and random routing's) from ``sc.all_queries`` with the gap
    between the SLM's and the LLM's accuracy on all queries; ``scored_share``: the share of queries
    the method scored. The setting's own numbers (on the queries its NaN policy keeps, as in its
    MLflow metrics) stay beside them as ``*_own_queries``."""
    u = np.asarray(uncertainty, dtype=np.float64)
    out = dict(row, scored_share=float((~np.isnan(u)).mean()) if len(u) else float("nan"))
    if sc.all_queries is None or not len(sc.all_queries.cost):
        return out
    llm_acc = float(np.mean(np.asarray(llm_correct, dtype=bool)))
    for f in C.GAP_FRACTIONS:
        pct = round(100 * f)
        for key, curve in (
            (f"cost_to_{pct}_gap", sc.all_queries),
            (f"cost_to_{pct}_gap_random", sc.all_queries_random),
        ):
            if key in out:
                out[f"{key}_own_queries"] = out[key]
            if curve is not None:
                out[key] = C.cost_to_gap(curve, f, llm_acc)
    c80, llm_all = out.get("cost_to_80_gap", math.nan), out.get("cost_llm_all", math.nan)
    if "cost_ratio_80_vs_llm" in out:
        out["cost_ratio_80_vs_llm_own_queries"] = out["cost_ratio_80_vs_llm"]
    out["cost_ratio_80_vs_llm"] = c80 / llm_all if llm_all > 0 and math.isfinite(c80) else math.nan
    return out


def frontier_group(g: dict) -> dict:
    """Finish one (SLM, dataset, LLM) group: its Pareto frontier over the methods' all-query curves
    (``g["curves"]``), each row's ``frontier_share`` (its share of the frontier's points) and
    per-1k columns, rows sorted by the cost to reach 80% of the gap, and the verdict."""
    frontier = C.pareto_frontier(g["curves"]) if g["curves"] else []
    n_front = max(1, len(frontier))
    for row in g["rows"]:
        row["frontier_share"] = sum(p["label"] == row["uq"] for p in frontier) / n_front
        for src, dst in (
            ("cost_uq_overhead", "overhead_1k"),
            ("cost_slm_only", "slm_only_1k"),
            ("cost_to_50_gap", "to_50_1k"),
            ("cost_to_80_gap", "to_80_1k"),
            ("cost_to_80_gap_random", "random_80_1k"),
            ("cost_llm_all", "llm_all_1k"),
        ):
            row[dst] = 1000 * row[src] if src in row else float("nan")
        row["ratio_80"] = row.get("cost_ratio_80_vs_llm", float("nan"))
    g["rows"].sort(key=lambda x: (_finite_or_inf(x.get("cost_to_80_gap")), x["uq"]))
    g["frontier"] = frontier
    g["verdict"] = C.worth_verdict(g["rows"])
    return g


def _finite_or_inf(x) -> float:
    return float(x) if x is not None and math.isfinite(x) else math.inf


def pareto_figure(groups: list[dict], path: Path) -> Path | None:
    """One panel per (SLM, dataset, LLM): accuracy against cost per 1k queries for every UQ method
    (thin lines), the Pareto frontier across them (thick black steps), random routing with no UQ
    method (dashed) and the LLM alone (star)."""
    from jobs.figures import colors as palette
    from jobs.figures import grid_shape, new_figure, save_figure

    groups = [g for g in groups if g["curves"]]
    if not groups:
        return None
    rows, cols = grid_shape(len(groups), 2)
    fig = new_figure(5.2 * cols, 4.0 * rows)
    methods = sorted({m for g in groups for m in g["curves"]})
    colors = dict(zip(methods, palette(len(methods))))
    for i, g in enumerate(groups):
        ax = fig.add_subplot(rows, cols, i + 1)
        for m, cv in sorted(g["curves"].items()):
            ax.plot(1000 * cv.cost, cv.accuracy, color=colors[m], linewidth=1.1, label=m)
        if g["random"] is not None:
            rnd = g["random"]
            ax.plot(1000 * rnd.cost, rnd.accuracy, "k--", linewidth=0.9, label="random, no UQ")
            llm_all = np.median([x["cost_llm_all"] for x in g["rows"] if "cost_llm_all" in x])
            ax.plot([1000 * llm_all], [rnd.accuracy[-1]], "k*", markersize=9, label="LLM alone")
        f = g["frontier"]
        if f:
            ax.step(
                [1000 * p["cost"] for p in f],
                [p["accuracy"] for p in f],
                where="post",
                color="k",
                linewidth=2.2,
                alpha=0.6,
                label="Pareto frontier",
            )
        ax.set_xlabel("cost per 1k queries (USD, UQ overhead included)", fontsize="small")
        ax.set_ylabel("accuracy", fontsize="small")
        ax.set_title(f"{g['slm']} → {g['llm']} on {g['dataset']}", fontsize="small")
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize="x-small")
        if i == 0:
            ax.legend(fontsize="xx-small", ncol=2, loc="lower right")
    fig.suptitle(
        "Routing on a cost axis: accuracy vs total cost (SLM answer + UQ overhead + routed LLM calls)", fontsize="small"
    )
    return save_figure(fig, path)


def cost_section_html(ca: dict, png: Path | None) -> list[str]:
    """The HTML parts of the cost section (heading, prices, plot, a table and a verdict per group)."""
    from jobs.figures import img_html, table_html

    p = ca["prices"]
    out = ['<h2 id="cost">Cost: which UQ method is worth its own cost</h2>']
    out.append(
        f"<p>Priced with the table <code>{html.escape(p['name'])}</code> ({html.escape(p['source'])}, "
        f"digest <code>{p['digest']}</code>, {html.escape(p['currency'])}). A query costs the SLM's answer, "
        "the UQ method's own passes beyond it (Jaccard's sampled answers, p(True)'s prefill, the verbal "
        "turns; paid for every query) and, when routed, the LLM's call. API models are priced per token, "
        "local models per hour of their recorded wall time. Money columns are per 1000 queries; the cost "
        "to reach x% of the SLM-to-LLM accuracy gap is taken at the first call rate that reaches it "
        "(– when the LLM is not more accurate). <i>random, to 80%</i> routes at random with no UQ method "
        "(no overhead): a method that costs more than that to reach 80% is not worth its cost. Every method "
        "is compared on all of the dataset's queries: a query a method could not score (<i>scored</i> &lt; "
        "100%, NaN policy drop) is never routed, the SLM answers it, and it costs what the method spent on "
        "it; so a method's curve ends at its scored share, and no frontier point rests on a subset.</p>"
    )
    if ca["stale"]:
        out.append(
            f"<p class='na'>{ca['stale']} setting(s) were priced in MLflow with another table (or before "
            "the cost axis existed); the numbers here are re-priced from the records with the table above.</p>"
        )
    out.append(img_html(png, "accuracy vs cost, every UQ method, with the Pareto frontier"))
    for g in ca["groups"]:
        out.append(f"<h3>{html.escape(g['slm'])} → {html.escape(g['llm'])} on {html.escape(g['dataset'])}</h3>")
        out.append(f"<p><b>{html.escape(g['verdict'])}</b></p>")
        out.append(
            f"<p class='na'>SLM priced at {html.escape(g['slm_rate'])}; LLM at {html.escape(g['llm_rate'])}.</p>"
        )
        out.append(table_html(g["rows"], TABLE_COLS, "cost"))
    if ca["skipped"]:
        out.append(
            "<p class='na'>Not priced: "
            + "; ".join(html.escape(f"{x['setting']}: {x['reason']}") for x in ca["skipped"][:20])
            + "</p>"
        )
    return out


def report_metrics(ca: dict) -> dict[str, float]:
    """Headline numbers for the grid's parent MLflow run: per UQ method, the mean over groups of
    its cost to reach 80% of the gap relative to the LLM alone."""
    by: dict[str, list[float]] = {}
    for g in ca["groups"]:
        for row in g["rows"]:
            x = row.get("cost_ratio_80_vs_llm")
            if x is not None and math.isfinite(x):
                by.setdefault(row["uq"], []).append(float(x))
    return {f"cost_ratio_80_vs_llm__{uq}": float(np.mean(v)) for uq, v in sorted(by.items())}
