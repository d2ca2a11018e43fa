"""The output-folder lock: a second driver is refused with who holds it; a dead holder's lock is
taken over (real processes, real flock)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.lock import FolderLocked, OutputLock
from tests.conftest import REPO

HOLD = (
    "import sys, time; sys.path.insert(0, {repo!r}); from orchestrator.lock import OutputLock; "
    "l = OutputLock({out!r}).acquire(); print('held', flush=True); time.sleep(60)"
)


def _holder(out):
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(repo=str(REPO), out=str(out))], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_driver_is_refused_naming_the_holder(tmp_path):
    p = _holder(tmp_path)
    try:
        with pytest.raises(FolderLocked, match=rf"in use by pid {p.pid} on .* since "):
            OutputLock(tmp_path).acquire()
    finally:
        p.kill()
        p.wait()


def test_lock_of_a_killed_driver_is_taken_over(tmp_path):
    p = _holder(tmp_path)
    p.kill()  # SIGKILL: no cleanup ran
    p.wait()
    with OutputLock(tmp_path) as lock:
        assert lock.previous and lock.previous["pid"] == p.pid  # the dead holder's line, taken over
        with pytest.raises(FolderLocked):
            OutputLock(tmp_path).acquire()  # held again, now by us
    OutputLock(tmp_path).acquire().release()  # released on exit


def test_a_second_driver_on_the_folder_stops_before_any_work(tmp_path, capsys):
    """`uqroute resume` on a folder another driver holds: exit 2, the holder named, no Ray started."""
    from orchestrator.cli import main
    from orchestrator.config import load_grid
    from orchestrator.runner import bind_output

    out = tmp_path / "out"
    bind_output(load_grid(REPO / "tests" / "conf" / "grid" / "micro.yaml", [f"output_dir={out}"]))
    p = _holder(out)
    try:
        assert main(["resume", str(out)]) == 2
    finally:
        p.kill()
        p.wait()
    text = " ".join(capsys.readouterr().out.split())
    assert f"is in use by pid {p.pid}" in text
    assert not (out / "ledger.jsonl").exists() and not (out / "store").exists()  # no unit was started
