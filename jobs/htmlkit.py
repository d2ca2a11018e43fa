"""HTML pieces of the report (``jobs/report.py``, ``jobs/cost_report.py``): numbers, tables, inline images."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def num_html(x: Any, nd: int = 3) -> str:
    """A table cell's text: "–" for missing / non-finite, yes / no, integers, floats to ``nd`` places."""
    if x is None:
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return "–" if not np.isfinite(x) else f"{x:.{nd}f}"
    return html.escape(str(x))


def table_html(rows: list[dict], cols: Iterable[tuple[str, str]], cls: str = "") -> str:
    """An HTML table of ``rows`` with ``cols`` = (key, header label)."""
    cols = list(cols)
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in cols)
    body = "".join("<tr>" + "".join(f"<td>{num_html(r.get(k))}</td>" for k, _ in cols) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def img_html(path: Path | None, alt: str) -> str:
    """A PNG inlined as a data URI in a figure with its caption (a note when there is none)."""
    if path is None:
        return f'<p class="na">({html.escape(alt)}: nothing to show)</p>'
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'
