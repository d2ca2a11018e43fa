"""What a new user sees at the MLflow link uqroute prints: the tiny grid's setting runs listed
(not one collapsed parent), and the routing curve drawn, in a real headless Chromium with a
fresh profile (no saved MLflow view state)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest

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
) -> dict:
    deadline = time.time() + timeout
    async with devtools(port, timeout) as call:

        async def value(expr: str):
            r = await call("Runtime.evaluate", expression=expr, returnByValue=True)
            return r["result"].get("value")

        await call("Page.enable")
        await call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
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


def browse(url: str, until: str, expressions: dict, screenshot: Path, timeout: float = 90.0, then=None) -> dict:
    port = _free_port()
    with chromium(port):
        return asyncio.run(_session(port, url, until, expressions, screenshot, timeout, then))


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
    names = [s.name for s in plan.settings]
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
