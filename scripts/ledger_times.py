"""Print per-unit wall times from an output folder's ledger (for tuning a grid)."""

import json
import sys
from pathlib import Path

ev = [json.loads(x) for x in (Path(sys.argv[1]) / "ledger.jsonl").read_text().splitlines() if x.strip()]
t0, started = ev[0]["ts"], {}
for e in ev:
    if e["event"] == "started":
        started[e["key"]] = e["ts"]
    elif e["kind"] == "gen" or e["event"] != "done":
        print(
            f"{e['ts'] - t0:7.1f}s {e['ts'] - started.get(e['key'], e['ts']):6.1f}s {e['event']:6s} {e['label']} "
            f"{e.get('reason', '')} {e.get('detail', '')[:150]}"
        )
