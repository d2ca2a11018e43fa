"""Browsing a grid: ``uqroute ui`` / ``status`` print the MLflow links whole (an 80-column terminal, a
file), and ``uqroute.open`` reads the tiny grid's results as DataFrames."""

from __future__ import annotations

import json
import math
import os
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, TINY
from tests.helpers import offline_env
from tests.integration.test_two_node_cluster import _free_port

pytestmark = pytest.mark.integration
UQROUTE = [sys.executable, "-m", "orchestrator.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def in_file(args: list[str], path: Path, timeout: float = 300) -> tuple[int, str]:
    """The command with stdout and stderr going to a file (not a terminal)."""
    with open(path, "w") as f:
        rc = subprocess.run(
            UQROUTE + args, cwd=REPO, env=offline_env(), stdout=f, stderr=subprocess.STDOUT, timeout=timeout
        ).returncode
    return rc, path.read_text()


def in_terminal(args: list[str], columns: int = 80, timeout: float = 300) -> tuple[int, str]:
    """The command in a pseudo-terminal ``columns`` wide; its output with colours and CRs removed."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = offline_env(COLUMNS=str(columns), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(UQROUTE + args, cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    try:
        while select.select([master], [], [], timeout)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        rc = proc.wait(timeout)
    finally:
        os.close(master)
    return rc, ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r", "")


def assert_whole(links: list[tuple[str, str]], text: str) -> None:
    """Each (label, url) stands on one line of ``text``: the label, a colon, the url whole to the end."""
    lines = text.splitlines()
    for label, url in links:
        hits = [x for x in lines if re.fullmatch(rf"\s*{re.escape(label)}\s+: {re.escape(url)}", x)]
        assert hits, f"{label} : {url} is not printed whole on one line in:\n{text}"


@pytest.fixture
def folder(tmp_path):
    """An output folder of the tiny grid whose MLflow is its own local server (not started)."""
    from orchestrator.config import load_grid
    from orchestrator.runner import bind_output

    out = tmp_path / "out"
    r = load_grid(TINY, [f"output_dir={out}", "mlflow.enabled=true", f"mlflow.port={_free_port()}"])
    bind_output(r)
    yield out
    from orchestrator.mlflow_sink import stop_server

    stop_server(out / "mlflow")


def test_ui_starts_then_reuses_the_server_and_every_output_prints_the_links_whole(folder, tmp_path):
    from orchestrator.mlflow_sink import PID_FILE, healthy
    from orchestrator.runner import serve_ui

    # status before any server: no link, and the command that brings it
    rc, text = in_file(["status", str(folder)], tmp_path / "status0.txt")
    assert rc == 0 and re.search(rf"MLflow UI : not running; `uqroute ui {re.escape(str(folder))}` starts it", text)
    # ui starts the folder's server; output to a file
    rc, text = in_file(["ui", str(folder)], tmp_path / "ui1.txt")
    assert rc == 0, text
    info = json.loads((folder / "mlflow" / PID_FILE).read_text())
    assert healthy(info["uri"]) and f"{info['uri']} (started;" in text
    uri, links = serve_ui(folder, start=False)  # what the commands print, asked here of the same server
    assert uri == info["uri"] and links and all(url.startswith(uri + "/#/experiments/") for _, url in links)
    assert any(len(f"  {label} : {url}") > 120 for label, url in links)  # longer than the console's 120 columns
    assert_whole(links, text)
    # again, in an 80-column terminal: the same server, reused
    rc, text = in_terminal(["ui", str(folder)])
    assert rc == 0, text
    assert f"{uri} (already running;" in text
    assert json.loads((folder / "mlflow" / PID_FILE).read_text())["pid"] == info["pid"]
    assert_whole(links, text)
    # status prints them too, in a file and in an 80-column terminal; it starts nothing
    rc, text = in_file(["status", str(folder)], tmp_path / "status1.txt")
    assert rc == 0 and "MLflow server" not in text
    assert_whole(links, text)
    rc, text = in_terminal(["status", str(folder)])
    assert rc == 0
    assert_whole(links, text)
    # after mlflow-stop, ui brings it back with its links
    assert in_file(["mlflow-stop", str(folder)], tmp_path / "stop.txt")[0] == 0
    assert not healthy(uri)
    rc, text = in_file(["ui", str(folder)], tmp_path / "ui2.txt")
    assert rc == 0 and "(started;" in text
    _, again = serve_ui(folder, start=False)
    assert_whole(again, text)


def test_ui_refuses_a_folder_without_mlflow(tmp_path):
    from orchestrator.config import load_grid
    from orchestrator.runner import bind_output

    out = tmp_path / "nomlflow"
    bind_output(load_grid(TINY, [f"output_dir={out}", "mlflow.enabled=false"]))
    rc, text = in_file(["ui", str(out)], tmp_path / "ui.txt")
    assert rc == 2 and "MLflow is disabled for" in text and "mlflow.enabled: false" in text
    assert not (out / "mlflow").exists()  # no server started


# ------------------------------------------------------------------------------------ uqroute.open
def _nan_eq(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b or (isinstance(a, float) and isinstance(b, float) and a == pytest.approx(b))


def test_open_gives_settings_curves_records_and_calibration_of_the_tiny_grid(tiny_run):
    import pyarrow.dataset as ds

    import uqroute

    r, plan, out = tiny_run["resolved"], tiny_run["plan"], tiny_run["out"]
    res = uqroute.open(out)
    assert "14 settings" in repr(res)
    # the settings table: one row per setting, the metrics of its manifest
    st = res.settings()
    assert len(st) == 14 and set(st["setting"]) == {s.name for s in plan.settings}
    for s in plan.settings:
        m = json.loads((plan.setting_dir(r.store_dir, s) / "manifest.json").read_text())
        row = st[st["setting"] == s.name].iloc[0]
        assert (row["slm"], row["uq"], row["dataset"], row["llm"]) == (s.slm, s.uq, s.dataset, s.llm)
        assert row["method"] == r.uq[s.uq].method
        for k in ("auroc", "area", "slm_acc", "llm_acc", "n"):
            assert _nan_eq(float(row[k]), float(m["metrics"][k])), (s.name, k)
    assert list(res.settings(dataset="addsub", uq=["ptrue", "probe"])["uq"]) == ["ptrue", "probe"]
    # curves: curve.json's points, long
    c = res.curves(dataset="strategyqa")
    for s in plan.settings:
        got = c[c["setting"] == s.name]
        if s.dataset != "strategyqa":
            assert got.empty
            continue
        curve = json.loads((plan.setting_dir(r.store_dir, s) / "curve.json").read_text())
        for line in ("curve", "random", "oracle"):
            g = got[got["line"] == line]
            assert list(g["ratio"]) == [p["ratio"] for p in curve[line]]
            assert list(g["accuracy"]) == [p["accuracy"] for p in curve[line]]
    # records of the settings selected, with their axes; a row filter and a column choice
    s = next(x for x in plan.settings if x.dataset == "strategyqa" and x.uq == "perplexity")
    want = pq.read_table(plan.setting_dir(r.store_dir, s) / "records.parquet").to_pylist()
    rec = res.records(dataset="strategyqa", method="perplexity")
    assert list(rec["sample_id"]) == [x["sample_id"] for x in want]
    assert list(rec["uncertainty"]) == pytest.approx([x["uncertainty"] for x in want])
    assert set(rec["setting"]) == {s.name} and set(rec["uq"]) == {"perplexity"} and set(rec["llm"]) == {s.llm}
    wrong = res.records(columns=["sample_id", "slm_correct"], where=~ds.field("slm_correct"), dataset="strategyqa")
    assert list(wrong.columns) == ["sample_id", "slm_correct", "slm", "uq", "method", "dataset", "llm"]
    n_wrong = sum(
        pq.read_table(plan.setting_dir(r.store_dir, x) / "records.parquet").to_pydict()["slm_correct"].count(False)
        for x in plan.settings
        if x.dataset == "strategyqa"
    )
    assert len(wrong) == n_wrong > 0 and not wrong["slm_correct"].any()
    assert len(res.records(dataset="strategyqa")) == 6 * sum(1 for x in plan.settings if x.dataset == "strategyqa")
    # calibration transfer as the report wrote it
    cal = res.calibration(uq="perplexity", dataset="strategyqa")
    a = json.loads((out / "report" / "analysis.json").read_text())["transfer"]["call_rate"]
    assert len(cal) == sum(1 for x in a if x["uq"] == "perplexity" and x["heldout"] == "strategyqa") > 0
    # bad names are refused with the valid ones
    with pytest.raises(ValueError, match=r"dataset='arc_easy' is not in grid 'tiny'; valid: addsub, strategyqa"):
        res.records(dataset="arc_easy")
    with pytest.raises(ValueError, match=r"unknown filter 'model'; valid: slm, uq, method, dataset, llm, setting"):
        res.settings(model="x")
    with pytest.raises(ValueError, match=r"calibration table 'thresholds'; valid: call_rate"):
        res.calibration("thresholds")


def test_open_refuses_a_damaged_setting_and_reads_only_what_is_asked(tiny_run, tmp_path):
    import uqroute
    from orchestrator.verify import DamagedStore

    out = tmp_path / "copy"
    out.mkdir()
    shutil.copy(tiny_run["out"] / "resolved_config.yaml", out)
    shutil.copytree(tiny_run["store_after_run"], out / "store")
    res = uqroute.open(out)
    bad = res.select(dataset="addsub", uq="ptrue")[0]
    f = bad.unit.records_path
    f.write_bytes(f.read_bytes()[:-100])  # cut short
    assert len(res.records(dataset="strategyqa")) == 42  # the damaged unit is not read
    for call in (lambda: res.records(dataset="addsub"), lambda: res.settings(), lambda: res.curves(uq="ptrue")):
        with pytest.raises(DamagedStore, match=r"damaged and will not be read(.|\n)*uqroute verify .* --repair"):
            call()


def readme_example() -> str:
    """The Python block of the README's "Results in Python" section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Results in Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_draws_the_reports_routing_overlay(tiny_run, tmp_path, monkeypatch):
    """The README's example, on the tiny grid, draws what the report's overlay of a group draws:
    one line per UQ method with the points of its curve.json, random and oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, plan = tiny_run["resolved"], tiny_run["plan"]
    code = readme_example().replace('"runs/default"', repr(str(tiny_run["out"])))
    monkeypatch.chdir(tmp_path)
    plt.close("all")
    exec(compile(code, "README.md", "exec"), {})
    ax = plt.gcf().axes[0]
    drawn = {ln.get_label(): ln for ln in ax.get_lines()}
    group = [s for s in plan.settings if s.dataset == "strategyqa"]
    curves = {s.uq: json.loads((plan.setting_dir(r.store_dir, s) / "curve.json").read_text()) for s in group}
    # the report's figure: every method that scored a query, random and oracle (jobs.analysis.report.routing_figures)
    assert set(drawn) == {uq for uq, c in curves.items() if c["curve"]} | {"random", "oracle"}
    for uq, c in curves.items():
        if c["curve"]:
            assert list(drawn[uq].get_xdata()) == pytest.approx([100 * p["ratio"] for p in c["curve"]])
            assert list(drawn[uq].get_ydata()) == pytest.approx([p["accuracy"] for p in c["curve"]])
    ref = curves[group[0].uq]
    assert list(drawn["oracle"].get_ydata()) == pytest.approx([p["accuracy"] for p in ref["oracle"]])
    assert (tmp_path / "strategyqa.png").stat().st_size > 1000
    plt.close("all")
