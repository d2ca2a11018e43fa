"""The background MLflow writer: the scheduler loop hands it finished settings and never waits.

``submit(manifest)`` is a non-blocking put into a bounded queue; one daemon thread logs what
it takes from there (several settings at once, ``lanes`` of them in parallel, each in one
``log_batch`` plus its artifacts: ``MlflowSink.write_setting``). Nothing here is the source of
truth: every setting is in the Parquet store, so what cannot be logged now is kept as its hash
in ``pending`` and logged later from the store.

* **Queue full** (a slow server): the setting's hash goes to ``pending``; its manifest is read
  back from the store when the writer gets to it.
* **Server down**: the failed setting and everything after it stay in ``pending``; the writer
  waits ``backoff_s``, doubling up to ``max_backoff_s``, asks ``/health``, and when the server
  answers it re-reads which settings MLflow has (one search) and catches up, oldest first.
  A setting whose write failed half-way is looked up before it is written again, and a
  half-logged run replaced, so nothing is duplicated. A setting that fails ``max_attempts``
  times while the server answers ``/health`` (a bad value, say) is set aside, still pending.
* **End of a grid**: ``close(wait_s)`` keeps logging while the server answers and gives up
  once it has been unreachable for ``wait_s``; ``abort(timeout_s)`` (Ctrl-C) stops after the
  call in flight, waiting at most ``timeout_s``. Both return a ``WriterStats`` whose
  ``pending`` names the settings MLflow still lacks (``uqroute sync <out>`` logs them).

* **The grid's own view** (issue 19): ``grid_update(sink)``, when given, refreshes what the grid's
  parent run shows (its settings table, the per-group overlays, the report and findings) while
  settings finish, on this thread, throttled: after a round that logged new settings, at most once
  every ``grid_every_s`` and never more often than ten times its own last duration (at 1,792
  settings a refresh that takes 20 s runs every 200 s at most, so the writer spends at most a tenth
  of its time on it). A failed refresh is said once and never stops the writer. ``close`` does not
  refresh: the end of the grid logs its final view itself.

The writer only needs three things of its sink (``MlflowSink`` has them; unit tests use an
in-process fake): ``setting_runs() -> {key: [status, ...]}`` (a setting's unit key), ``write_setting(item, check=)``
and ``ping() -> bool``. ``connect()`` makes the sink (``None`` or an exception: not yet), and
``prepare(key, manifest_or_None)`` turns a hash into the item ``write_setting`` takes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WriterStats:
    """What the writer did. Times in seconds."""

    submitted: int = 0  # settings handed over by the scheduler
    logged: int = 0  # runs written
    skipped: int = 0  # already finished in MLflow (a resume, a retry)
    unloggable: dict = field(default_factory=dict)  # hash -> why it cannot be logged (e.g. not in the store)
    given_up: dict = field(default_factory=dict)  # hash -> last error, after max_attempts with the server up
    spilled: int = 0  # submits that found the queue full (kept as a hash in pending)
    failures: int = 0  # failed attempts (each followed by a backoff)
    outages: int = 0  # times the server went from answering to not answering
    submit_s: float = 0.0  # total time the producer spent in submit()
    pending: list = field(default_factory=list)  # hashes not in MLflow when the writer stopped
    grid_updates: int = 0  # refreshes of the grid's own view (``grid_update``)
    grid_update_s: float = 0.0  # time spent in them

    def as_dict(self) -> dict:
        return {k: (len(v) if isinstance(v, (list, dict)) else v) for k, v in self.__dict__.items()}


class MlflowWriter:
    def __init__(
        self,
        connect: Callable[[], Any],
        prepare: Callable[[str, dict | None], Any],
        *,
        maxsize: int = 1000,
        lanes: int = 4,
        batch: int = 64,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_attempts: int = 5,
        notify: Callable[[str], None] | None = None,
        grid_update: Callable[[Any], None] | None = None,
        grid_every_s: float = 60.0,
    ):
        self._connect, self._prepare = connect, prepare
        self.sink = None
        self.lanes, self.batch = max(1, lanes), max(1, batch)
        self.backoff_s, self.max_backoff_s, self.max_attempts = backoff_s, max_backoff_s, max_attempts
        self.notify = notify or (lambda msg: None)
        self.stats = WriterStats()
        self._grid_update, self.grid_every_s = grid_update, grid_every_s
        self._grid_lock = threading.Lock()  # held while a refresh runs (``stop_grid_updates`` waits on it)
        self._next_grid = 0.0  # the first refresh follows the first round that logs a setting
        self._logged_at_grid = 0
        self._grid_failed = False
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self._lock = threading.Lock()
        self._overflow: list[str] = []  # hashes that found the queue full (producer side)
        self._pending: OrderedDict[str, dict | None] = OrderedDict()  # writer side: hash -> manifest or None
        self._finished: set[str] = set()  # in MLflow, finished
        self._dirty: set[str] = set()  # may have a half-logged run: look before writing
        self._attempts: dict[str, int] = {}  # failed writes while the server answered
        self._failing = threading.Event()  # a write of this round failed: fail the rest fast
        self._up = False
        self._next_try = 0.0
        self._delay = backoff_s
        self._down_since: float | None = None
        self._last_ok = time.monotonic()
        self._stop = threading.Event()  # stop after the call in flight
        self._draining = threading.Event()  # close(): finish what is pending, then stop
        self._wake = threading.Event()  # something was handed over, or stop
        self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="mlflow-lane") if self.lanes > 1 else None
        self._thread = threading.Thread(target=self._loop, name="mlflow-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ producer side
    def submit(self, manifest: dict) -> None:
        """Hand over a finished setting; returns at once, whatever the server does."""
        t0 = time.perf_counter()
        self.stats.submitted += 1
        try:
            self._q.put_nowait(manifest)
        except queue.Full:
            with self._lock:
                self._overflow.append(manifest["key"])
            self.stats.spilled += 1
        self._wake.set()
        self.stats.submit_s += time.perf_counter() - t0

    def add_missing(self, keys) -> None:
        """Settings the store has finished: log those MLflow lacks (the end-of-grid catch-up)."""
        with self._lock:
            self._overflow.extend(keys)
        self._wake.set()

    def stop_grid_updates(self) -> None:
        """No more refreshes of the grid's view; waits for one in progress (the end of the grid
        builds and logs the final view itself)."""
        self._grid_update = None
        with self._grid_lock:
            pass

    def _maybe_grid_update(self) -> None:
        fn = self._grid_update
        if fn is None or not self._up or self._draining.is_set() or self._stop.is_set():
            return
        if self.stats.logged == self._logged_at_grid or time.monotonic() < self._next_grid:
            return
        with self._grid_lock:
            if self._grid_update is None:
                return
            t0 = time.monotonic()
            logged = self.stats.logged
            try:
                fn(self.sink)
                self.stats.grid_updates += 1
            except Exception as exc:  # noqa: BLE001 - a view of the store; the end of the grid logs it again
                if not self._grid_failed:
                    self.notify(f"MLflow: refreshing the grid run's table and report failed ({str(exc)[:160]})")
                self._grid_failed = True
            took = time.monotonic() - t0
            self.stats.grid_update_s += took
            self._logged_at_grid = logged
            self._next_grid = time.monotonic() + max(self.grid_every_s, 10 * took)

    @property
    def up(self) -> bool:
        return self._up

    def close(self, wait_s: float = 30.0, poll_s: float = 0.1) -> WriterStats:
        """Log everything still queued; give up once the server has not answered for ``wait_s``."""
        self._draining.set()
        self._wake.set()
        t0 = time.monotonic()
        while self._thread.is_alive():
            with self._lock:  # the writer moves queue -> pending under this lock: nothing falls between
                if self._q.empty() and not self._overflow and not self._pending:
                    break
            time.sleep(poll_s)
            down_for = time.monotonic() - max(t0, self._last_ok)
            if not self._up and down_for >= wait_s:
                break
        return self._finish(timeout_s=max(1.0, poll_s * 10))

    def abort(self, timeout_s: float = 3.0) -> WriterStats:
        """Stop after the call in flight (at most ``timeout_s``); what is left stays pending."""
        return self._finish(timeout_s)

    def _finish(self, timeout_s: float) -> WriterStats:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._take_queued()
        with self._lock:
            left = list(self._pending)
        self.stats.pending = [k for k in left if k not in self._finished and k not in self.stats.unloggable]
        self.stats.pending += [k for k in self.stats.given_up if k not in self._finished]
        return self.stats

    # -------------------------------------------------------------- writer side
    def _take_queued(self) -> None:
        with self._lock:
            while True:
                try:
                    m = self._q.get_nowait()
                except queue.Empty:
                    break
                self._pending.setdefault(m["key"], m)
            over, self._overflow = self._overflow, []
            for k in over:
                self._pending.setdefault(k, None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._take_queued()
            if not self._up:
                if time.monotonic() < self._next_try:
                    self._wake.wait(min(0.5, self._next_try - time.monotonic()))
                    self._wake.clear()
                    continue
                if not self._reconnect():
                    continue
            with self._lock:
                todo = [(k, self._pending[k]) for k in list(self._pending)[: self.batch]]
            if not todo:
                self._maybe_grid_update()
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            self._write(todo)
            self._maybe_grid_update()

    def _reconnect(self) -> bool:
        try:
            if self.sink is None:
                self.sink = self._connect()
                if self.sink is None:
                    raise ConnectionError("no sink")
            elif not self.sink.ping():
                raise ConnectionError("no answer on /health")
            runs = self.sink.setting_runs()
        except Exception as exc:  # noqa: BLE001 - any failure here means "not yet"; the store keeps everything
            self._down(exc, count=False)
            return False
        self._finished = {h for h, st in runs.items() if "FINISHED" in st}
        self._dirty |= {h for h, st in runs.items() if "FINISHED" not in st}
        was_down = self._down_since is not None
        self._up, self._delay, self._down_since = True, self.backoff_s, None
        if was_down:
            self.notify(f"MLflow answers again; catching up {len(self._pending)} settings")
        return True

    def _down(self, exc: Exception, count: bool = True) -> None:
        if count:
            self.stats.failures += 1
        if self._up or self._down_since is None:
            if self._up:
                self.stats.outages += 1
            self._down_since = time.monotonic()
            self.notify(
                f"MLflow does not answer ({type(exc).__name__}: {str(exc)[:120]}); the grid goes on, "
                f"its settings wait and are logged when MLflow is back (retrying with backoff)"
            )
        self._up = False
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self.max_backoff_s, self._delay * 2)

    def _write_one(self, key: str, manifest: dict | None) -> str:
        """'logged' | 'skipped' | 'stopped' | 'unloggable:<why>'; raises when the server fails."""
        if key in self._finished:
            return "skipped"
        if self._stop.is_set():
            return "stopped"
        if self._failing.is_set():
            raise ConnectionError("an earlier write of this round failed")
        try:
            item = self._prepare(key, manifest)
        except Exception as exc:  # noqa: BLE001 - e.g. its manifest is not in the store: nothing to log
            return f"unloggable:{type(exc).__name__}: {exc}"
        try:
            self.sink.write_setting(item, check=key in self._dirty)
        except Exception:
            self._failing.set()
            raise
        return "logged"

    def _write(self, todo: list[tuple[str, dict | None]]) -> None:
        self._failing.clear()
        if self._pool is None:
            results = []
            for k, m in todo:
                if self._stop.is_set():
                    break
                try:
                    results.append((k, self._write_one(k, m), None))
                except Exception as exc:  # noqa: BLE001
                    results.append((k, None, exc))
                    break
        else:
            futs = [(k, self._pool.submit(self._write_one, k, m)) for k, m in todo]
            results = []
            for k, f in futs:
                try:
                    results.append((k, f.result(), None))
                except Exception as exc:  # noqa: BLE001
                    results.append((k, None, exc))
        failed = [(k, exc) for k, _, exc in results if exc is not None]
        for k, outcome, exc in results:
            if exc is not None:
                self._dirty.add(k)  # the run may exist half-logged
                continue
            with self._lock:
                self._pending.pop(k, None)
            if outcome == "logged":
                self._finished.add(k)
                self._dirty.discard(k)
                self.stats.logged += 1
                self._last_ok = time.monotonic()
            elif outcome == "skipped":
                self.stats.skipped += 1
            elif outcome == "stopped":
                with self._lock:
                    self._pending.setdefault(k, None)
            else:
                self.stats.unloggable[k] = outcome.split(":", 1)[1]
        if failed:
            first = next((e for _, e in failed if "earlier write" not in str(e)), failed[0][1])
            try:
                server_ok = self.sink.ping()
            except Exception:  # noqa: BLE001
                server_ok = False
            if server_ok:  # the server answers: count it against the settings themselves
                for k, exc in failed:
                    if "earlier write" in str(exc):
                        continue
                    self._attempts[k] = self._attempts.get(k, 0) + 1
                    if self._attempts[k] >= self.max_attempts:
                        with self._lock:
                            self._pending.pop(k, None)
                        self.stats.given_up[k] = f"{type(exc).__name__}: {str(exc)[:300]}"
                        self.notify(
                            f"MLflow refused setting {k} {self.max_attempts} times ({str(exc)[:120]}); "
                            f"left for `uqroute sync`"
                        )
            self._down(first)
