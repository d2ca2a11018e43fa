"""What a new user sees at the MLflow links uqroute prints, in a real headless Chromium with a
fresh profile (no saved MLflow view state): the landing opens on one (SLM, dataset, LLM) group's
routing curves overlaid, one line per method named by its method, and the four first metrics after
them (issue 19); the grid run opens on its sortable table of every setting; and the grid's runs,
flat, in the chart view (``runs_url``). Screenshots are kept under the test's tmp dir (the test
prints where)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest

from orchestrator.mlflow_sink import run_name
from tests.browser import _free_port, chromium, devtools, find_chromium

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_chromium() is None, reason="needs Chromium: apt-get install chromium"),
]


async def _session(
    port: int,
    url: str,
    until: str,
    expressions: dict,
    screenshot: Path,
    timeout: float,
    then: tuple[str, dict, Path] | None = None,
    size: tuple[int, int] = (1400, 900),
) -> dict:
    deadline = time.time() + timeout
    async with devtools(port, timeout) as call:

        async def value(expr: str):
            r = await call("Runtime.evaluate", expression=expr, returnByValue=True)
            return r["result"].get("value")

        await call("Page.enable")
        await call(
            "Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1, mobile=False
        )
        await call("Page.navigate", url=url)
        # MLflow's UI is a single-page app: wait for what it renders, not for the document
        while not await value(until):
            if time.time() > deadline:
                raise TimeoutError(
                    f"{url}: {until} never became true; page says: {await value('document.body.innerText')!r:.2000}"
                )
            await asyncio.sleep(0.3)
        await asyncio.sleep(1.5)  # let the charts draw
        out = {name: await value(expr) for name, expr in expressions.items()}
        shot = await call("Page.captureScreenshot", format="png")
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        if then is not None:  # one user action (JavaScript), then look again
            action, more, screenshot2 = then
            await value(action)
            await asyncio.sleep(2.0)
            out |= {name: await value(expr) for name, expr in more.items()}
            shot = await call("Page.captureScreenshot", format="png")
            screenshot2.write_bytes(base64.b64decode(shot["data"]))
        return out


def browse(
    url: str, until: str, expressions: dict, screenshot: Path, timeout: float = 90.0, then=None, size=(1400, 900)
) -> dict:
    port = _free_port()
    with chromium(port):
        return asyncio.run(_session(port, url, until, expressions, screenshot, timeout, then, size))


# what a user does: type into "Search metric charts" (React reads the value through the input event)
TYPE_IN_CHART_SEARCH = """(() => {
  const box = document.querySelector('input[placeholder="Search metric charts"]');
  const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
  set.call(box, 'WHAT');
  box.dispatchEvent(new Event('input', {bubbles: true}));
  return true;
})()"""


def test_printed_link_lists_the_settings_and_draws_their_routing_curves(tiny_run, tmp_path):
    sink, plan = tiny_run["sink"], tiny_run["plan"]
    url = sink.runs_url()
    assert url.startswith(f"{sink.uri}/#/experiments/{sink.experiment_id}/runs?")
    names = [run_name({"uq": s.uq, "dataset": s.dataset, "slm": s.slm, "llm": s.llm}) for s in plan.settings]
    shot, shot2 = tmp_path / "mlflow-runs.png", tmp_path / "mlflow-routing-charts.png"
    page = browse(
        url,
        f"document.body.innerText.includes({json.dumps(names[0])})",
        {
            "text": "document.body.innerText",
            "href": "location.href",
            "charts": "Array.from(document.querySelectorAll('svg')).length",
        },
        shot,
        then=(TYPE_IN_CHART_SEARCH.replace("WHAT", "routing_accuracy"), {"after": "document.body.innerText"}, shot2),
    )
    text = page["text"]
    # the table lists the setting runs themselves, without expanding the parent
    listed = [n for n in names if n in text]
    assert len(listed) >= min(10, len(names)), (listed, text[:2000])
    assert f"{len(plan.settings) + 1} matching runs" in text  # the settings and their grid run
    # the chart view drew a chart per metric on its own (no "Add chart" by hand) ...
    assert "Model metrics" in text and "No charts in this section" not in text.split("System metrics")[0]
    assert page["charts"] > 0
    # ... the routing curves among them: typing "routing" in the chart search shows the three
    after = page["after"]
    assert "routing_accuracy" in after and "routing_accuracy_oracle" in after and "routing_accuracy_random" in after
    assert "Step" in after  # line charts over the percent routed, not bars
    assert "Training runs" in text and "No data available" not in text  # not the GenAI overview
    assert shot.stat().st_size > 20_000


# the chart cards' titles (the metric keys) in page order, with whether each is on the first screen
CARD_TITLES = """(() => {
  const keys = new Set(KEYS);
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const t = walk.currentNode.textContent.trim();
    const el = walk.currentNode.parentElement;
    if (!keys.has(t) || !el || el.closest('svg')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    out.push({t, top: Math.round(r.top), left: Math.round(r.left), first_screen: r.top < window.innerHeight});
  }
  return out;
})()"""


def test_the_landing_is_one_groups_routing_curves_then_its_first_metrics(tiny_run, tmp_path):
    from mlflow.tracking import MlflowClient

    from jobs.metrics import summary_keys
    from orchestrator.mlflow_sink import group_filter, landing_metrics
    from orchestrator.runner import settings_table

    sink, plan = tiny_run["sink"], tiny_run["plan"]
    links = sink.ui_links(settings_table(tiny_run["resolved"], plan))  # as `uqroute run` prints them
    slm, dataset, llm = sink.landing_group(settings_table(tiny_run["resolved"], plan))
    assert len(links) == 1 + len(sink.groups) + 1 and links[0][1] == sink.group_url(slm, dataset, llm)
    # the methods of the group with a routing curve (a method that scored no query has none), per MLflow
    runs = MlflowClient(sink.uri).search_runs([sink.experiment_id], group_filter(sink.grid_hash, slm, dataset, llm))
    methods = sorted(r.data.tags["uq"] for r in runs)
    with_curve = [r for r in runs if "routing_accuracy" in r.data.metrics]  # a method that scored no query has none
    assert len(with_curve) >= 5
    keys = ["routing_accuracy", *summary_keys()]
    shot = tmp_path / "landing.png"
    page = browse(
        links[0][1],
        "document.body.innerText.includes('routing curves') && document.body.innerText.includes('unscored_share')",
        {
            "text": "document.body.innerText",
            "cards": CARD_TITLES.replace("KEYS", json.dumps(keys)),
            "lines": "document.querySelectorAll('.scatterlayer .trace path.js-line').length",
        },
        shot,
        size=(1600, 1000),  # the user's window
    )
    print(f"screenshots: {shot}")
    text, cards = page["text"], page["cards"]
    # MLflow applied the stored view (no "share key does not exist" error), on the group's runs only
    assert "shared view" in text and "Error loading shared view" not in text
    assert f"{slm} -> {llm} on {dataset}: routing curves" in text
    # what comes first: the routing curve, then AUROC, unscored share, area and APGR, all on the first screen
    assert [c["t"] for c in cards[:5]] == ["routing_accuracy", *landing_metrics()], cards
    assert all(c["first_screen"] for c in cards[:5]), cards
    assert cards[0]["top"] == cards[1]["top"] and cards[0]["left"] < cards[1]["left"]  # the metrics beside the curves
    # (the same five in every group: a metric the group does not define is an empty chart, not a gap)
    # bounds, counts, costs: in collapsed sections, so not drawn at all
    assert [c["t"] for c in cards[5:]] == [], cards
    assert "Model metrics" in text
    # one line per method of the group with a curve, and every method named in the chart's legend,
    # method first ("<uq> | <dataset> | <slm> -> <llm> (routing_accuracy)")
    assert page["lines"] >= len(with_curve)
    legend = [ln for ln in text.splitlines() if ln.endswith("(routing_accuracy)")]
    assert sorted(ln.split(" | ")[0] for ln in legend) == methods, legend
    assert all(f" | {dataset} | {slm} -> {llm}" in ln for ln in legend)
    assert shot.stat().st_size > 20_000

    # another group: its own link, one line per method of that group
    others = [(i, g) for i, g in enumerate(sink.groups) if g != (slm, dataset, llm)]
    if others:
        i, (slm2, ds2, llm2) = others[0]
        page2 = browse(
            links[1 + i][1],
            "document.body.innerText.includes('routing curves') && document.body.innerText.includes('(routing_accuracy)')",
            {"text": "document.body.innerText"},
            tmp_path / "group2.png",
        )
        legend2 = [ln for ln in page2["text"].splitlines() if ln.endswith("(routing_accuracy)")]
        assert legend2 and all(f" | {ds2} | {slm2} -> {llm2}" in ln for ln in legend2)


# click the table's AUROC header, as a user sorts it
SORT_BY_AUROC = """(() => {
  const h = Array.from(document.querySelectorAll('[role=columnheader]')).find(e => e.innerText.trim() === 'auroc');
  h.querySelector('[role=button]').click();  // the header's own sort button
  return h.getAttribute('aria-sort');
})()"""
TABLE = """(() => {
  const heads = Array.from(document.querySelectorAll('[role=columnheader]')).map(e => e.innerText.trim());
  const rows = Array.from(document.querySelectorAll('[role=row]')).slice(1)
    .map(r => Array.from(r.querySelectorAll('[role=cell]')).map(c => c.innerText.trim()));
  const sort = Array.from(document.querySelectorAll('[role=columnheader]')).map(e => e.getAttribute('aria-sort'));
  return {heads, rows, sort};
})()"""


def test_the_grid_run_opens_on_a_sortable_table_of_every_setting(tiny_run, tmp_path):
    sink, plan, r = tiny_run["sink"], tiny_run["plan"], tiny_run["resolved"]
    from orchestrator.runner import settings_table

    rows = settings_table(r, plan)
    assert len(rows) == len(plan.settings)
    url = sink.ui_links()[-1][1]
    shot, shot2 = tmp_path / "grid-run-table.png", tmp_path / "grid-run-table-sorted.png"
    page = browse(
        url,
        "document.body.innerText.includes('View as table') && document.querySelectorAll('[role=row]').length > 3",
        {"table": TABLE, "text": "document.body.innerText"},
        shot,
        then=(SORT_BY_AUROC, {"sorted": TABLE}, shot2),
    )
    print(f"screenshots: {shot}, {shot2}")
    t = page["table"]
    assert t["heads"][:5] == ["uq", "dataset", "slm", "llm", "auroc"]
    # every setting is a row (the tiny grid fits on the first page of 20)
    shown = {(row[0], row[1]) for row in t["rows"]}
    assert shown == {(s.uq, s.dataset) for s in plan.settings}
    # the grid run also holds the overlays and the report
    listed = page["text"]
    assert "summary.csv" in listed and "report" in listed and any(f"__{s.dataset}__" in listed for s in plan.settings)
    # sortable: one click on "auroc" orders the rows by it
    after = page["sorted"]
    col = after["heads"].index("auroc")
    assert after["sort"][col] in ("ascending", "descending"), after["sort"]
    vals = [float(row[col]) for row in after["rows"] if row[col] not in ("", "null", "NaN")]
    assert vals == sorted(vals, reverse=after["sort"][col] == "descending") and len(vals) >= 2


def test_the_grid_run_is_refreshed_from_the_store_while_a_grid_runs(tiny_run, monkeypatch):
    """What the background writer calls while settings finish (``runner.grid_refresher``): the table,
    the overlays of groups with new settings, and -- when due -- the report with its findings."""
    from mlflow.tracking import MlflowClient

    from orchestrator import runner

    sink, plan, r = tiny_run["sink"], tiny_run["plan"], tiny_run["resolved"]
    monkeypatch.setattr(runner, "REPORT_EVERY_S", 0.0)  # the report is due at once
    logged = []
    real = sink.log_grid_artifact
    monkeypatch.setattr(sink, "log_grid_artifact", lambda p, a=None: (logged.append(Path(p).name), real(p, a)))
    refresh = runner.grid_refresher(r, plan)
    refresh(sink)
    groups = {(s.slm, s.dataset, s.llm) for s in plan.settings}
    assert {f"{s}__{d}__{m}.png" for s, d, m in groups} <= set(logged)
    assert "settings.json" in logged and "index.html" in logged
    logged.clear()
    refresh(sink)  # nothing new in the store: the table again, no overlay redrawn
    assert "settings.json" in logged and not any(n.endswith("__" + next(iter(groups))[2] + ".png") for n in logged)
    tags = MlflowClient(sink.uri).get_run(sink.parent_id).data.tags
    assert any(k.startswith("finding_") for k in tags)
