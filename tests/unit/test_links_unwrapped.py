"""Printed links are never wrapped: whole on their line, at any terminal width and in a file."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from orchestrator import cli

URL = (
    "http://127.0.0.1:5000/#/experiments/1/runs?searchFilter=tags.%60uqroute.grid_hash%60%20%3D%20"
    "%271cb08c4cebf256fa%27&orderByKey=metrics.%60auroc%60&orderByAsc=false&compareRunsMode=CHART"
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize(
    "console",
    [
        lambda f: Console(file=f, width=80, force_terminal=True),  # an 80-column terminal, colours on
        lambda f: Console(file=f, width=120),  # a file or a pipe, as cli.console is then
        lambda f: Console(file=f, width=20, force_terminal=True),  # narrower than the label
    ],
    ids=["terminal-80", "file", "terminal-20"],
)
def test_links_stand_whole_on_their_line(console, monkeypatch):
    f = io.StringIO()
    monkeypatch.setattr(cli, "console", console(f))
    cli.print_links([("MLflow UI", URL), ("Parquet store", "/a/b/" + "x" * 150 + "/store")], header="Where to look:")
    lines = ANSI.sub("", f.getvalue()).splitlines()
    assert lines == [
        "Where to look:",
        f"  MLflow UI     : {URL}",
        "  Parquet store : /a/b/" + "x" * 150 + "/store",
    ]


def test_plain_progress_lines_are_whole_and_flushed(monkeypatch):
    class File(io.StringIO):
        flushed = 0

        def flush(self):
            File.flushed += 1

    f = File()
    monkeypatch.setattr(cli, "console", Console(file=f, width=120))
    line = (
        "progress 1s | model work 0/10 (0%) | settings 0/3 done, 0 failed | actors: "
        + ", ".join(f"slm:model{i} (greedy model{i} gsm8k eval)" for i in range(5))
        + " | ETA unknown"
    )
    cli._plain(line)
    assert f.getvalue() == line + "\n" and File.flushed


def test_the_cli_console_breaks_no_line():
    """Every message of the CLI, not only the link lists: a path or a command stays on its line."""
    f = io.StringIO()
    console = Console(file=f, width=80, soft_wrap=cli.console.soft_wrap)
    console.print(f"[yellow]MLflow unavailable at {URL}: refused; run `uqroute sync /a/b/{'y' * 80}` later.[/]")
    assert ANSI.sub("", f.getvalue()).splitlines() == [
        f"MLflow unavailable at {URL}: refused; run `uqroute sync /a/b/{'y' * 80}` later."
    ]


def test_printed_links_cap_the_groups_and_say_how_many_more():
    from orchestrator.runner import MAX_GROUP_LINKS, ui_links

    class Sink:
        def ui_links(self, rows=None):
            groups = [(f"group s / d{i} / l", f"http://x/{i}") for i in range(MAX_GROUP_LINKS + 5)]
            return [("landing", "http://x/l"), *groups, ("grid run (settings table, overlays, report)", "http://x/p")]

    capped = ui_links(Sink())
    assert capped[0] == ("landing", "http://x/l") and capped[-1][1] == "http://x/p"
    assert sum(label.startswith("group ") for label, _ in capped) == MAX_GROUP_LINKS
    assert ("5 more groups" in [label for label, _ in capped]) and "uqroute ui" in capped[-2][1]
    assert ui_links(Sink(), max_groups=None) == Sink().ui_links()  # `uqroute ui` prints every one
