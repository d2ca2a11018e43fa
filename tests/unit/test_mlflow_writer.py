"""The background MLflow writer against an in-process fake sink: the producer never blocks,
an outage is waited out with backoff and caught up, nothing is logged twice, and what is
left is named."""

from __future__ import annotations

import threading
import time

import pytest

from orchestrator.mlflow_sink import batches
from orchestrator.mlflow_writer import MlflowWriter


class FakeSink:
    """Runs by setting hash; ``down`` makes every call fail, ``delay_s`` makes writes slow,
    ``half`` leaves a RUNNING run behind before failing (a crash mid-write)."""

    def __init__(self, runs: dict | None = None, delay_s: float = 0.0):
        self.runs: dict[str, list[str]] = {k: list(v) for k, v in (runs or {}).items()}
        self.down = False
        self.delay_s = delay_s
        self.half: set[str] = set()
        self.refuse: set[str] = set()
        self.writes: list[str] = []
        self.checks: list[str] = []
        self.lock = threading.Lock()

    def _fail_if_down(self):
        if self.down:
            raise ConnectionError("connection refused")

    def ping(self) -> bool:
        return not self.down

    def setting_runs(self) -> dict:
        self._fail_if_down()
        with self.lock:
            return {k: list(v) for k, v in self.runs.items()}

    def write_setting(self, item: dict, check: bool = True):
        self._fail_if_down()
        time.sleep(self.delay_s)
        k = item["key"]
        if k in self.refuse:
            raise ValueError(f"INVALID_PARAMETER_VALUE for {k}")
        with self.lock:
            if check:
                self.checks.append(k)
                if "FINISHED" in self.runs.get(k, []):
                    return
                self.runs.pop(k, None)  # half-logged runs replaced
            if k in self.half:
                self.half.discard(k)
                self.runs.setdefault(k, []).append("RUNNING")
                raise ConnectionError("server went away mid-write")
            self.runs.setdefault(k, []).append("FINISHED")
            self.writes.append(k)


def prepare(key, manifest):
    if key.startswith("missing"):
        raise FileNotFoundError(f"no manifest for {key}")
    return manifest or {"key": key}


def wait_until(pred, timeout=5.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.01)
    return False


def finished(sink):
    return {k for k, v in sink.runs.items() if v == ["FINISHED"]}


def make(sink, **kw):
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("max_backoff_s", 0.05)
    return MlflowWriter(lambda: sink, prepare, **kw)


@pytest.mark.parametrize("lanes", [1, 4])
def test_logs_everything_once(lanes):
    sink = FakeSink()
    w = make(sink, lanes=lanes)
    for i in range(50):
        w.submit({"key": f"s{i}"})
    stats = w.close(wait_s=1)
    assert sorted(sink.writes) == sorted(f"s{i}" for i in range(50))
    assert stats.logged == 50 and stats.pending == [] and stats.failures == 0
    assert sink.checks == []  # nothing was known to be half-logged: no look-ups


def test_submit_never_blocks_on_a_slow_server_and_overflow_is_caught_up():
    sink = FakeSink(delay_s=0.01)
    w = make(sink, maxsize=5, lanes=2)
    t0 = time.perf_counter()
    for i in range(200):
        w.submit({"key": f"s{i}"})
    assert time.perf_counter() - t0 < 0.2  # 200 writes take >= 1 s here
    assert w.stats.spilled > 100
    stats = w.close(wait_s=1)
    assert finished(sink) == {f"s{i}" for i in range(200)} and len(sink.writes) == 200
    assert stats.pending == []


def test_outage_is_waited_out_and_caught_up_without_duplicates():
    sink = FakeSink()
    notes = []
    w = make(sink, lanes=3, notify=notes.append)
    for i in range(10):
        w.submit({"key": f"a{i}"})
    assert wait_until(lambda: len(sink.writes) == 10)
    sink.down = True
    for i in range(10):
        w.submit({"key": f"b{i}"})
    time.sleep(0.2)
    assert not w.up and w.stats.failures >= 1
    sink.down = False
    stats = w.close(wait_s=2)
    assert finished(sink) == {f"a{i}" for i in range(10)} | {f"b{i}" for i in range(10)}
    assert all(v == ["FINISHED"] for v in sink.runs.values())
    assert stats.pending == [] and stats.outages == 1
    assert any("does not answer" in n for n in notes) and any("answers again" in n for n in notes)


def test_half_logged_run_is_looked_up_and_replaced():
    sink = FakeSink()
    sink.half.add("s1")
    w = make(sink, lanes=1)
    for k in ("s0", "s1", "s2"):
        w.submit({"key": k})
    stats = w.close(wait_s=2)
    assert sink.runs == {"s0": ["FINISHED"], "s1": ["FINISHED"], "s2": ["FINISHED"]}
    assert "s1" in sink.checks and "s0" not in sink.checks
    assert stats.pending == []


def test_resume_skips_finished_and_replaces_unfinished_runs():
    sink = FakeSink(runs={"s0": ["FINISHED"], "s1": ["RUNNING"]})
    w = make(sink)
    w.add_missing(["s0", "s1", "s2"])
    stats = w.close(wait_s=1)
    assert sink.runs == {"s0": ["FINISHED"], "s1": ["FINISHED"], "s2": ["FINISHED"]}
    assert sorted(sink.writes) == ["s1", "s2"] and sink.checks == ["s1"]
    assert stats.skipped == 1 and stats.logged == 2


def test_server_that_never_comes_back_gives_up_after_wait_and_names_what_is_left():
    sink = FakeSink()
    sink.down = True
    w = make(sink)
    for i in range(5):
        w.submit({"key": f"s{i}"})
    t0 = time.time()
    stats = w.close(wait_s=0.3)
    assert 0.25 < time.time() - t0 < 2.5
    assert sorted(stats.pending) == [f"s{i}" for i in range(5)]


def test_connect_failing_at_first_then_succeeding():
    sink, calls = FakeSink(), []

    def connect():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not up yet")
        return sink

    w = MlflowWriter(connect, prepare, backoff_s=0.01, max_backoff_s=0.02)
    w.submit({"key": "s0"})
    stats = w.close(wait_s=2)
    assert sink.writes == ["s0"] and stats.pending == [] and len(calls) == 3


def test_abort_returns_quickly_with_what_is_not_logged():
    sink = FakeSink(delay_s=0.5)
    w = make(sink, lanes=1)
    for i in range(20):
        w.submit({"key": f"s{i}"})
    time.sleep(0.1)
    t0 = time.time()
    stats = w.abort(timeout_s=1.0)
    assert time.time() - t0 < 1.5
    # pending is conservative: the one write in flight may still land after abort returned
    assert len(stats.pending) >= 18 and set(stats.pending) | set(sink.writes) == {f"s{i}" for i in range(20)}


def test_a_setting_the_server_keeps_refusing_is_set_aside_and_the_rest_goes_on():
    sink = FakeSink()
    sink.refuse.add("bad")
    notes = []
    w = make(sink, lanes=1, max_attempts=3, notify=notes.append)
    for k in ("s0", "bad", "s1"):
        w.submit({"key": k})
    stats = w.close(wait_s=2)
    assert finished(sink) == {"s0", "s1"}
    assert stats.pending == ["bad"] and "bad" in stats.given_up
    assert any("refused setting bad 3 times" in n for n in notes)


def test_setting_missing_from_store_is_reported_not_retried():
    sink = FakeSink()
    w = make(sink)
    w.add_missing(["missing1", "s0"])
    stats = w.close(wait_s=1)
    assert sink.writes == ["s0"] and "missing1" in stats.unloggable and stats.pending == []


def test_batches_respect_mlflow_limits():
    got = batches(list(range(323)), list(range(150)), ["t"] * 5)
    assert [(len(m), len(p), len(t)) for m, p, t in got] == [(323, 100, 0), (0, 50, 5)]
    for m, p, t in batches(list(range(2500)), list(range(30))):
        assert len(m) <= 1000 and len(p) + len(t) <= 100 and len(m) + len(p) + len(t) <= 1000


def test_the_grid_view_is_refreshed_while_settings_finish_throttled_and_not_at_close():
    """``grid_update`` runs after rounds that logged settings, at most once per ``grid_every_s``
    (and never more often than ten times its own duration), not for rounds that logged nothing,
    and not once ``stop_grid_updates`` or ``close`` began; a failing refresh is said once and the
    settings are still all logged."""
    sink = FakeSink()
    seen: list[int] = []  # how many settings the sink held at each refresh

    def refresh(s):
        seen.append(len(s.writes))

    w = make(sink, lanes=1, batch=5, grid_update=refresh, grid_every_s=0.3)
    for i in range(5):
        w.submit({"key": f"a{i}"})
    assert wait_until(lambda: len(seen) == 1)  # the first round that logged: refreshed at once
    time.sleep(0.6)
    assert len(seen) == 1  # nothing new logged since: no refresh, however long it waits
    for i in range(5):
        w.submit({"key": f"b{i}"})
    assert wait_until(lambda: len(sink.writes) == 10)
    assert wait_until(lambda: len(seen) == 2)  # once the interval has passed
    assert seen == [5, 10]
    w.stop_grid_updates()
    for i in range(5):
        w.submit({"key": f"c{i}"})
    stats = w.close(wait_s=1)
    assert seen == [5, 10] and stats.grid_updates == 2 and stats.logged == 15

    notes: list[str] = []

    def broken(s):
        raise RuntimeError("disk full")

    sink2 = FakeSink()
    w2 = make(sink2, lanes=1, batch=2, grid_update=broken, grid_every_s=0.0, notify=notes.append)
    for i in range(6):
        w2.submit({"key": f"k{i}"})
        time.sleep(0.05)
    stats2 = w2.close(wait_s=1)
    assert stats2.logged == 6 and sorted(sink2.writes) == [f"k{i}" for i in range(6)]
    assert len([n for n in notes if "disk full" in n]) == 1


def test_a_slow_grid_refresh_is_spaced_by_ten_times_its_duration():
    sink = FakeSink()
    times: list[float] = []

    def slow(s):
        times.append(time.monotonic())
        time.sleep(0.1)  # ten times: at least 1 s to the next refresh, though grid_every_s is 0

    w = make(sink, lanes=1, batch=1, grid_update=slow, grid_every_s=0.0)
    for i in range(60):
        w.submit({"key": f"s{i}"})
        time.sleep(0.04)
    w.close(wait_s=1)
    assert len(times) >= 2
    assert all(b - a >= 1.0 for a, b in zip(times, times[1:]))
