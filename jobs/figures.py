"""Figures and HTML pieces shared by a setting unit (its routing-curve PNG) and the grid-level report
(``jobs/analysis``): routing-curve figures from curves computed by ``jobs/metrics.py``, the figure
helpers, and the report's HTML pieces (numbers, tables, inline images).

Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch), so it is safe in
workers and on machines without a display.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jobs.metrics import RoutingCurve


def plot_routing(
    curves: Mapping[str, RoutingCurve],
    path: str | Path,
    *,
    random: RoutingCurve | None = None,
    oracle: RoutingCurve | None = None,
    title: str = "",
) -> Path:
    """Plot accuracy vs % of queries routed to the LLM and write a PNG to ``path``.

    curves: legend label -> curve; put extra facts in the label, e.g.
            ``{"perplexity (AUROC 0.71)": curve}``.
    random: drawn dashed; oracle: drawn dotted (both optional).
    Parent folders are created. Returns the path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6.0, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, curve in curves.items():
        ax.plot(100 * curve.ratio, curve.accuracy, label=label, linewidth=1.6)
    if random is not None:
        ax.plot(100 * random.ratio, random.accuracy, "k--", label="random", linewidth=1.0)
    if oracle is not None:
        ax.plot(100 * oracle.ratio, oracle.accuracy, "k:", label="oracle", linewidth=1.2)
    ax.set_xlabel("% of queries routed to the LLM")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 100)
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    if curves or random is not None or oracle is not None:
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    import io

    from jobs.records import atomic_write

    buf = io.BytesIO()  # written whole or not at all (a store file: its manifest lists it)
    fig.savefig(buf, format="png")
    atomic_write(path, buf.getvalue())
    return path


# ---- shared by the report's figures (jobs/analysis/report.py, jobs/analysis/cost_report.py) ------------------------


def new_figure(w: float, h: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot), w x h inches at 110 dpi."""
    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders made), laid out tight."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def grid_shape(n: int, cols: int = 3) -> tuple[int, int]:
    """(rows, cols) of a grid of ``n`` panels, at most ``cols`` wide."""
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def colors(n: int) -> list:
    """``n`` distinct colours (tab10, or tab20 beyond 10), cycling."""
    from matplotlib import colormaps

    cm = colormaps["tab10" if n <= 10 else "tab20"]
    return [cm(i % cm.N) for i in range(n)]


# ---------------------------------------------------------------- HTML pieces of the report


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
