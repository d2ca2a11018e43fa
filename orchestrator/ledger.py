"""The resume ledger: an append-only JSON-lines log of unit events under the output folder.

Completion itself is a fact in the store (a unit's manifest); the ledger records what
happened on the way: starts, failures with their reason class, retries. ``status`` and
``resume --failed-only`` read it.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path

FAILURE_CLASSES = ("actor_died", "oom", "data_error", "scoring_error", "disk_full", "error", "blocked")


class Ledger:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, unit, **extra) -> None:
        rec = {
            "ts": time.time(),
            "event": event,
            "key": unit.key,
            "kind": unit.kind,
            "stage": unit.stage,
            "label": unit.label,
            **extra,
        }
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec, default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            from jobs.records import NO_SPACE, StoreFull, no_space_message

            if exc.errno in NO_SPACE:
                raise StoreFull(no_space_message(self.path, exc), exc.errno) from exc
            raise

    def events(self) -> list[dict]:
        if not self.path.is_file():
            return []
        out = []
        with open(self.path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut by a crash mid-write
                        continue
        return out

    def last_state(self) -> dict[str, dict]:
        """key -> the last event recorded for that unit."""
        last: dict[str, dict] = {}
        for e in self.events():
            last[e["key"]] = e
        return last

    def failures(self) -> dict[str, list[dict]]:
        out = defaultdict(list)
        for e in self.events():
            if e["event"] in ("failed", "retry"):
                out[e["key"]].append(e)
        return dict(out)
