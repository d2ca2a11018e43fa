"""What the progress bar counts: model work (samples x passes), so its ETA means something early.

Settings finish in bursts at the end of a model's passes, so a bar over settings sits at 0 for
most of a run. Model work is what takes the time: a generation unit costs its samples times its
passes (a Jaccard unit makes ``num_samples`` answers per question). Each unit's samples are
estimated from the grid's ``dataset.limit`` / ``fit_limit`` and corrected when a shard reports
what it really ran.

On a terminal the CLI draws a bar; elsewhere (a log file, ``nohup``, CI, the logs of ``ray job
submit``) ``ProgressLines`` prints one plain line per interval (``--progress-every`` or
``$UQROUTE_PROGRESS_S``, default 30 s) with the same numbers, the model on each actor (the
scheduler's events carry its ``actor_view``) and an ETA.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from jobs.units import GenSpec
from orchestrator.plan import Plan, Unit


def passes(u: Unit) -> int:
    """Model passes per sample of a generation unit: its ``num_samples`` param (a stage that draws
    several sequences per sample, ``samples``), else 1."""
    return int(u.spec.params.get("num_samples", 1)) if isinstance(u.spec, GenSpec) else 1


def estimated_samples(u: Unit) -> int | None:
    return u.spec.row_limit if isinstance(u.spec, GenSpec) else None


@dataclass
class WorkMeter:
    """Totals and completions of model work over the units still to run; light units count 0."""

    total: float = 0.0
    done: float = 0.0
    settings_total: int = 0
    settings: dict = field(default_factory=lambda: {"done": 0, "failed": 0})
    _est: dict = field(default_factory=dict)  # gen unit key -> work counted in total
    _got: dict = field(default_factory=dict)  # gen unit key -> work counted as done

    @classmethod
    def of(cls, plan: Plan, todo: set[str], unknown_samples: int = 100) -> WorkMeter:
        m = cls(settings_total=sum(1 for k in todo if plan.units[k].kind == "setting"))
        for k in todo:
            u = plan.units[k]
            if u.kind == "gen":
                m._est[k] = (estimated_samples(u) or unknown_samples) * passes(u)
        m.total = float(sum(m._est.values()))
        return m

    def event(self, event: str, u: Unit, info: dict) -> bool:
        """Account one scheduler event; True when the numbers changed."""
        if u.kind == "setting" and event in ("done", "failed", "blocked"):
            self.settings["done" if event == "done" else "failed"] += 1
            return True
        if u.kind != "gen" or u.key not in self._est:
            return False
        if event == "shard_done":
            ran = info.get("samples_run")
            n_samples = info.get("n_samples")
            if n_samples is not None and not self._got.get(u.key):  # the real size replaces the estimate
                real = int(n_samples) * passes(u)
                self.total += real - self._est[u.key]
                self._est[u.key] = real
            work = (int(ran) if ran is not None else int(n_samples or 0)) * passes(u)
            self._got[u.key] = self._got.get(u.key, 0) + work
            self.done += work
            return True
        if event == "done":  # whatever the shards did not report (a unit skipped as already done)
            rest = self._est[u.key] - self._got.get(u.key, 0)
            if rest > 0:
                self.done += rest
                self._got[u.key] = self._est[u.key]
            return True
        if event in ("failed", "blocked"):  # it will not run: drop it from the total
            self.total -= self._est[u.key] - self._got.get(u.key, 0)
            self._est[u.key] = self._got.get(u.key, 0)
            return True
        return False

    def describe(self) -> str:
        s = self.settings
        failed = f", {s['failed']} failed" if s["failed"] else ""
        return f"model work (samples x passes) | settings {s['done']}/{self.settings_total}{failed}"


# ------------------------------------------------------------------ plain lines (stdout not a terminal)
PROGRESS_ENV = "UQROUTE_PROGRESS_S"
DEFAULT_PROGRESS_S = 30.0


def progress_interval(flag: float | None = None, env: Mapping[str, str] | None = None) -> float:
    """Seconds between plain progress lines: ``--progress-every`` when given, else ``$UQROUTE_PROGRESS_S``,
    else 30. 0 prints none. A bad value is refused, naming where it came from."""
    env = os.environ if env is None else env
    if flag is not None:
        value, where = flag, "--progress-every"
    elif env.get(PROGRESS_ENV, "").strip():
        value, where = env[PROGRESS_ENV].strip(), PROGRESS_ENV
    else:
        return DEFAULT_PROGRESS_S
    try:
        s = float(value)
    except ValueError:
        s = float("nan")
    if not (s >= 0 and math.isfinite(s)):
        raise ValueError(f"{where}={value!r} is not a number of seconds >= 0 (0: no progress lines; default 30)")
    return s


def fmt_duration(seconds: float) -> str:
    """``42s``, ``4m05s``, ``1h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _actors(actors: list[dict]) -> str:
    """``slm:smollm2 (greedy smollm2 gsm8k eval), llm:gemma (idle)``; nodes named when several."""
    if not actors:
        return "none"
    many = len({a.get("node") for a in actors}) > 1
    return ", ".join(
        a["model"] + (f" on {str(a.get('node'))[:8]}" if many else "") + f" ({a.get('unit') or 'idle'})" for a in actors
    )


class ProgressLines:
    """Progress as plain lines, one every ``every_s`` seconds, for a stdout that is not a terminal (a
    log file, ``nohup``, CI, the logs of ``ray job submit``), where the bar would print nothing until
    the end::

        progress 4m05s | model work 120/340 (35%) | settings 3/14 done, 0 failed | actors: slm:smollm2 (greedy smollm2 gsm8k eval) | ETA 7m30s

    Model work is ``WorkMeter``'s (samples x passes); the ETA is the work left at the mean rate so
    far. ``event`` is the scheduler's progress callback; ``start`` runs a thread that calls ``poll``,
    which writes a line once ``every_s`` has passed since the last one (``clock``: a fake one in tests)."""

    def __init__(
        self,
        meter: WorkMeter,
        every_s: float = DEFAULT_PROGRESS_S,
        write: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.meter, self.every_s, self.write, self.clock = meter, float(every_s), write, clock
        self.t0 = self.last = clock()
        self.actors: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def event(self, event: str, u: Unit, info: dict) -> bool:
        if "actors" in info:
            self.actors = list(info["actors"])
        return self.meter.event(event, u, info)

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        m, s = self.meter, self.meter.settings
        elapsed = now - self.t0
        total, done = max(m.total, 0.0), min(m.done, max(m.total, 0.0))
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        if total and done >= total:
            eta = "0s"
        elif done > 0 and elapsed > 0:
            eta = fmt_duration((total - done) * elapsed / done)
        else:
            eta = "unknown"
        return (
            f"progress {fmt_duration(elapsed)} | model work {done:.0f}/{total:.0f}{pct} | "
            f"settings {s['done']}/{m.settings_total} done, {s['failed']} failed | "
            f"actors: {_actors(self.actors)} | ETA {eta}"
        )

    def poll(self) -> bool:
        """Write a line when ``every_s`` has passed since the last one; True when it did."""
        now = self.clock()
        if self.every_s <= 0 or now - self.last < self.every_s:
            return False
        self.last = now
        self.write(self.line(now))
        return True

    def start(self) -> ProgressLines:
        if self.every_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="uqroute-progress", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(max(0.05, self.last + self.every_s - self.clock())):
            self.poll()

    def stop(self, final: bool = True) -> None:
        """Stop the thread; ``final``: write the last line (the totals as they ended). Only the first
        call does anything."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if final and self.every_s > 0:
            self.write(self.line())
