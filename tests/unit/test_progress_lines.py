"""Progress where stdout is not a terminal: one plain line per interval (``orchestrator.progress.ProgressLines``)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from orchestrator.progress import DEFAULT_PROGRESS_S, PROGRESS_ENV, ProgressLines, WorkMeter, progress_interval


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def meter(total=340.0, done=120.0, settings_total=14, settings_done=3, failed=1) -> WorkMeter:
    m = WorkMeter(total=total, done=done, settings_total=settings_total)
    m.settings.update(done=settings_done, failed=failed)
    return m


ACTORS = [
    {"model": "slm:smollm2", "node": "a" * 40, "unit": "greedy smollm2 gsm8k eval"},
    {"model": "llm:gemma", "node": "a" * 40, "unit": None},
]


def test_line_says_work_settings_actors_and_eta():
    clock = Clock()
    p = ProgressLines(meter(), 30, write=lambda s: None, clock=clock)
    p.actors = ACTORS
    clock.t += 245  # 4m05s; 120 of 340 done: 220 left at 120 per 245 s -> 449 s
    assert p.line() == (
        "progress 4m05s | model work 120/340 (35%) | settings 3/14 done, 1 failed | "
        "actors: slm:smollm2 (greedy smollm2 gsm8k eval), llm:gemma (idle) | ETA 7m29s"
    )


def test_line_before_any_work_and_at_the_end():
    clock = Clock()
    p = ProgressLines(meter(done=0, settings_done=0, failed=0), 30, write=lambda s: None, clock=clock)
    clock.t += 3725
    assert p.line() == (
        "progress 1h02m | model work 0/340 (0%) | settings 0/14 done, 0 failed | actors: none | ETA unknown"
    )
    p.meter.done = 340.0
    assert p.line().endswith("model work 340/340 (100%) | settings 0/14 done, 0 failed | actors: none | ETA 0s")


def test_actors_on_several_nodes_are_named_by_node():
    p = ProgressLines(meter(), 30, write=lambda s: None, clock=Clock())
    p.actors = [dict(ACTORS[0], node="node1abcdef"), dict(ACTORS[1], node="node2abcdef")]
    assert "actors: slm:smollm2 on node1abc (greedy smollm2 gsm8k eval), llm:gemma on node2abc (idle)" in p.line()


def test_events_update_the_meter_and_the_actors():
    lines = ProgressLines(WorkMeter(settings_total=2), 30, write=lambda s: None, clock=Clock())
    setting = SimpleNamespace(kind="setting", key="k1")  # what the meter reads of a unit
    assert lines.event("done", setting, {"actors": ACTORS[:1]})
    assert lines.meter.settings == {"done": 1, "failed": 0}
    assert "settings 1/2 done, 0 failed | actors: slm:smollm2 (greedy smollm2 gsm8k eval) |" in lines.line()
    lines.event("failed", SimpleNamespace(kind="setting", key="k2"), {"actors": []})
    assert "settings 1/2 done, 1 failed | actors: none |" in lines.line()


def test_a_line_every_interval_on_a_fake_clock():
    clock, out = Clock(0.0), []
    p = ProgressLines(meter(), 30, write=out.append, clock=clock)
    emitted = []
    for t in range(0, 101, 5):  # polled every 5 s
        clock.t = t
        if p.poll():
            emitted.append(t)
    assert emitted == [30, 60, 90] and len(out) == 3
    assert all(x.startswith("progress ") for x in out)
    # polled irregularly, a line comes at the first poll once the interval has passed since the last line
    clock.t, emitted = 100.0, []
    p.last = 100.0
    for t in (129, 131, 150, 160, 162):
        clock.t = t
        if p.poll():
            emitted.append(t)
    assert emitted == [131, 162]


def test_interval_zero_prints_nothing():
    clock, out = Clock(0.0), []
    p = ProgressLines(meter(), 0, write=out.append, clock=clock)
    clock.t = 1e6
    assert not p.poll()
    p.start().stop()
    assert out == []


def test_the_thread_writes_lines_and_a_last_one_on_stop():
    got = threading.Event()
    out = []

    def write(s):
        out.append(s)
        if len(out) >= 2:
            got.set()

    p = ProgressLines(meter(), 0.05, write=write).start()
    assert got.wait(30)
    p.stop()
    n = len(out)
    p.stop()  # only the first stop writes
    assert len(out) == n and out[-1].startswith("progress ")


def test_interval_from_flag_env_or_default():
    assert progress_interval(None, {}) == DEFAULT_PROGRESS_S == 30.0
    assert progress_interval(None, {PROGRESS_ENV: "5"}) == 5.0
    assert progress_interval(2.5, {PROGRESS_ENV: "5"}) == 2.5  # the flag wins
    assert progress_interval(0, {}) == 0.0
    with pytest.raises(ValueError, match=r"UQROUTE_PROGRESS_S='soon' is not a number of seconds >= 0"):
        progress_interval(None, {PROGRESS_ENV: "soon"})
    with pytest.raises(ValueError, match=r"--progress-every=-1.0 is not a number of seconds >= 0"):
        progress_interval(-1.0, {})
