"""Open a page in a real headless Chromium and ask it questions over the DevTools protocol.

No Selenium or Playwright: Chromium's own remote-debugging WebSocket, driven with aiohttp (which
Ray already installs). ``inspect_page`` loads a URL, evaluates JavaScript expressions in the
page and takes a full-page screenshot.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    return next((p for p in (shutil.which(c) for c in CANDIDATES) if p), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@asynccontextmanager
async def devtools(port: int, timeout: float):
    """The first page target of the Chromium listening on ``port``: yields ``call(method, **params)``."""
    import aiohttp

    async with aiohttp.ClientSession() as http:
        deadline = time.time() + timeout
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = [t for t in await resp.json() if t.get("type") == "page"]
                if targets:
                    break
            except aiohttp.ClientError:
                pass
            if time.time() > deadline:
                raise TimeoutError("Chromium did not open its DevTools endpoint")
            await asyncio.sleep(0.2)
        ws = await http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0)
        counter = 0

        async def call(method: str, **params):
            nonlocal counter
            counter += 1
            my_id = counter
            await ws.send_str(json.dumps({"id": my_id, "method": method, "params": params}))
            while True:
                msg = json.loads((await ws.receive(timeout=timeout)).data)
                if msg.get("id") == my_id:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg["result"]

        try:
            yield call
        finally:
            await ws.close()


@contextmanager
def chromium(port: int):
    """A headless Chromium with a fresh profile and its DevTools endpoint on ``port``."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found; install it (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _session(
    port: int, url: str, expressions: dict[str, str], screenshot: Path | None, width: int, timeout: float
) -> dict:
    deadline = time.time() + timeout
    async with devtools(port, timeout) as call:
        await call("Page.enable")
        await call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", url=url)
        # wait until the document and every image have finished loading
        while True:
            r = await call(
                "Runtime.evaluate",
                expression="document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)",
                returnByValue=True,
            )
            if r["result"].get("value"):
                break
            if time.time() > deadline:
                raise TimeoutError(f"{url} did not finish loading")
            await asyncio.sleep(0.2)
        out = {}
        for name, expr in expressions.items():
            r = await call("Runtime.evaluate", expression=expr, returnByValue=True)
            if "exceptionDetails" in r:
                raise RuntimeError(f"{name}: {r['exceptionDetails'].get('text')}")
            out[name] = r["result"].get("value")
        if screenshot is not None:
            shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        return out


def inspect_page(
    url: str, expressions: dict[str, str], screenshot: Path | None = None, *, width: int = 1280, timeout: float = 60.0
) -> dict:
    """Evaluate ``expressions`` (name -> JavaScript) in ``url`` in headless Chromium; values are
    returned by name. Network access other than the page itself is not needed."""
    port = _free_port()
    with chromium(port):
        return asyncio.run(_session(port, url, expressions, screenshot, width, timeout))
