"""The plan: a pure function from (settings, store) to content-keyed work units.

Expensive work depends on fewer axes than the grid, so the plan factors it:

  gen units      one per (SLM, dataset, role, stage) and one per (LLM, dataset): the
                 model passes. Keyed by model identity, dataset identity and sampling,
                 prompt template version, decoding parameters, seed and the keys of the
                 units they read. Shared by every UQ method and every LLM that needs them.
  score units    one per (SLM, UQ method, dataset): uncertainty per sample (cheap; probes
                 train here).
  setting units  one per setting: the join of a score unit with an LLM unit, the routing
                 metrics, the records and the plot (cheap).

A unit whose manifest is in the store is done: nothing is computed twice, in one run or
across runs that share a store. The driver-side plan imports no torch.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from jobs.prompts import ANSWER_PREFIX, CONSTRAINED_TASKS, PROMPT_VERSION, answer_mode
from jobs.records import is_complete, unit_dir
from jobs.stages import STAGE_DEPS, STAT_STAGE
from orchestrator.config import ResolvedGrid
from orchestrator.grid import Setting, dataset_identity, expand, model_identity, stable_hash

KIND_DIRS = {"gen": "gen", "score": "score", "setting": "settings"}
SCORING_VERSION = "1"
CHUNK_SIZE = 32
#: Stages whose work changes with decoding.answer_mode (the others generate in both modes; ptrue and
#: verbal_2s read the greedy answer, so their keys follow through their deps).
CONSTRAINED_STAGES = ("greedy", "llm", "samples")


@dataclass(frozen=True)
class Unit:
    kind: str  # gen | score | setting
    key: str
    label: str  # readable: "greedy smollm2-135m gsm8k eval"
    payload: dict = field(hash=False, compare=False)
    deps: tuple[str, ...] = ()
    model: str | None = None  # "slm:<name>" / "llm:<name>": which resident model serves it

    @property
    def stage(self) -> str:
        return self.payload.get("stage", self.kind)


@dataclass
class Plan:
    settings: list[Setting]
    units: dict[str, Unit]  # topological order (a unit comes after its deps)
    # calibration (fit-role) units, when the grid enables calibration:
    #   fit_scores[(slm, uq, dataset)] = {"score": key, "slm_greedy": key}
    #   fit_llm[(llm, dataset)] = key of the LLM pass on the fit role
    fit_scores: dict = field(default_factory=dict)
    fit_llm: dict = field(default_factory=dict)

    def by_kind(self, kind: str) -> list[Unit]:
        return [u for u in self.units.values() if u.kind == kind]

    def counts(self) -> Counter:
        c = Counter()
        for u in self.units.values():
            c[f"{u.kind}:{u.stage}" if u.kind == "gen" else u.kind] += 1
        return c

    def done(self, store: Path) -> set[str]:
        return {k for k, u in self.units.items() if is_complete(unit_dir(store, KIND_DIRS[u.kind], k))}


def dataset_task(dc: dict) -> str:
    """The dataset's task; "mixed" for a questions file whose rows carry their own tasks."""
    if dc["adapter"] == "questions":
        return dc["task"] or "mixed"
    if dc["adapter"] in ("hub", "local"):
        return dc["task"]
    from jobs.datasets import DATASETS

    return DATASETS.get(dc["adapter"]).task


def _answer_mode_param(setting, task: str):
    """What a gen unit's params record of ``decoding.answer_mode`` for a dataset of ``task``: None
    when every sample generates (no param: keys as before answer modes existed), "constrained" for
    a constrained single-task dataset, the mapping of constrained tasks for a mixed one."""
    if task == "mixed":
        cons = {t: "constrained" for t in CONSTRAINED_TASKS if answer_mode(setting, t) == "constrained"}
        return cons or None
    return "constrained" if answer_mode(setting, task) == "constrained" else None


def _uq_method(r: ResolvedGrid, uq: str):
    from jobs.uq import UQ_METHODS

    return UQ_METHODS.get(r.uq[uq]["method"] or uq)


def make_plan(r: ResolvedGrid) -> Plan:
    settings = expand(r)
    g = r.grid
    dec, run, seed = g["decoding"], g["dataset"], g["seed"]
    units: dict[str, Unit] = {}

    def add(u: Unit) -> Unit:
        units.setdefault(u.key, u)
        return units[u.key]

    gen_cache: dict[tuple, Unit] = {}

    def gen(model_kind: str, model: str, dataset: str, role: str, stage: str) -> Unit:
        ck = (model_kind, model, dataset, role, stage)
        if ck in gen_cache:
            return gen_cache[ck]
        mc = (r.slms if model_kind == "slm" else r.llms)[model]
        dc = r.datasets[dataset]
        task = dataset_task(dc)
        if task == "mixed":
            greedy_tokens = max(int(v) for v in dec["max_new_tokens"].values())
        else:
            greedy_tokens = int(dec["max_new_tokens"].get(task, 64))
        if mc.get("max_new_tokens"):
            greedy_tokens = min(greedy_tokens, int(mc["max_new_tokens"]))
        params = {"seed": seed, "chunk_size": CHUNK_SIZE}
        if stage in ("greedy", "llm"):
            params["max_new_tokens"] = greedy_tokens
        elif stage == "samples":
            params.update(num_samples=dec["num_samples"], temperature=dec["sample_temperature"],
                          max_new_tokens=dec["sample_max_new_tokens"] or greedy_tokens)
        elif stage == "verbal_1s":
            params["max_new_tokens"] = greedy_tokens + dec["verbal_max_new_tokens"]
        elif stage == "verbal_2s":
            params["max_new_tokens"] = dec["verbal_max_new_tokens"]
        mode = _answer_mode_param(dec.get("answer_mode", "generate"), task)
        if mode is not None and stage in CONSTRAINED_STAGES:  # generate-mode keys stay what they were
            params.update(answer_mode=mode, answer_prefix=ANSWER_PREFIX)
        deps = {d: gen(model_kind, model, dataset, role, d).key for d in STAGE_DEPS[stage]}
        ident = {"model": model_identity(mc), "dataset": dataset_identity(dc, run), "role": role,
                 "stage": stage, "params": params, "prompt_version": PROMPT_VERSION, "deps": deps}
        key = stable_hash(ident)
        payload = {"key": key, "stage": stage, "model": model, "model_kind": model_kind, "dataset": dataset,
                   "dataset_conf": dc, "run": run, "role": role, "params": params, "deps": deps}
        u = add(Unit("gen", key, f"{stage} {model} {dataset} {role}", payload, tuple(deps.values()),
                     f"{model_kind}:{model}"))
        gen_cache[ck] = u
        return u

    cal = g["calibration"]
    folds = int(cal["crossfit_folds"])

    def score(slm: str, uq: str, dataset: str, role: str) -> Unit:
        """Uncertainty of ``uq`` on ``slm``'s answers to the ``role`` rows of ``dataset``.

        Trained methods: in_domain ones train on the dataset's fit rows (scoring those same fit
        rows -- the calibration role -- is done out-of-fold, ``crossfit`` folds); other_datasets
        ones train on every other dataset's fit rows."""
        method = _uq_method(r, uq)
        stages = sorted({STAT_STAGE[st] for st in method.requires if st in STAT_STAGE} | {"greedy"})
        ev = {st: gen("slm", slm, dataset, role, st).key for st in stages}
        fit, crossfit = [], 0
        if method.fit == "in_domain":
            fit_sets = [dataset] if role == "eval" else []
            crossfit = folds if role == "fit" else 0
        elif method.fit == "other_datasets":
            fit_sets = [d for d in r.datasets if d != dataset]
        else:
            fit_sets = []
        for d in fit_sets:
            fit.append({"dataset": d, "stages": {st: gen("slm", slm, d, "fit", st).key for st in stages}})
        ident = {"uq": r.uq[uq], "eval": ev, "fit": fit, "policy": dec["extraction_policy"],
                 "version": SCORING_VERSION}
        if role != "eval":  # eval-role keys stay what they were before calibration existed
            ident |= {"role": role, "crossfit": crossfit, "crossfit_seed": seed}
        key = stable_hash(ident)
        payload = {"key": key, "uq": uq, "method": r.uq[uq]["method"] or uq, "params": r.uq[uq]["params"],
                   "slm": slm, "dataset": dataset, "role": role, "eval": ev, "fit": fit,
                   "crossfit": crossfit, "crossfit_seed": seed, "policy": dec["extraction_policy"]}
        dep_keys = tuple(ev.values()) + tuple(k for f in fit for k in f["stages"].values())
        label = f"score {uq} {slm} {dataset}" + ("" if role == "eval" else f" {role}")
        return add(Unit("score", key, label, payload, dep_keys))

    fit_scores: dict = {}
    fit_llm: dict = {}
    score_cache: dict[tuple, Unit] = {}
    prices = grid_prices(r)
    for s in settings:
        # a setting's own (eval) units are planned before its calibration (fit) units: models serve
        # their units in plan order, so the first settings finish (and reach MLflow) early
        sk = (s.slm, s.uq, s.dataset)
        if sk not in score_cache:
            score_cache[sk] = score(s.slm, s.uq, s.dataset, "eval")
        sc = score_cache[sk]
        llm_unit = gen("llm", s.llm, s.dataset, "eval", "llm")
        if cal["enabled"] and sk not in fit_scores:
            fu = score(s.slm, s.uq, s.dataset, "fit")
            fit_scores[sk] = {"score": fu.key, "slm_greedy": fu.payload["eval"]["greedy"]}
        if cal["enabled"] and (s.llm, s.dataset) not in fit_llm:
            fit_llm[(s.llm, s.dataset)] = gen("llm", s.llm, s.dataset, "fit", "llm").key
        greedy_key = sc.payload["eval"]["greedy"]
        payload = {"key": s.hash, "name": s.name, "axes": s.axes(), "score": sc.key, "slm_greedy": greedy_key,
                   "llm": llm_unit.key, "metrics": g["metrics"], "policy": dec["extraction_policy"],
                   "cost": _cost_payload(prices, r, s, sc)}
        add(Unit("setting", s.hash, s.name, payload, (sc.key, llm_unit.key, greedy_key)))
    return Plan(settings, units, fit_scores, fit_llm)


def grid_prices(r: ResolvedGrid):
    """The grid's price table (``cost.prices``: a name in the grid's ``conf/prices/`` or the
    repository's, or a YAML path), as ``jobs.cost.PriceTable``."""
    from jobs.cost import load_prices
    from orchestrator.config import find_conf_dir

    conf_dirs = [find_conf_dir(Path(r.source))] if r.source else []
    return load_prices((r.grid.get("cost") or {}).get("prices", "default"), conf_dirs)


def _cost_payload(prices, r: ResolvedGrid, s: Setting, sc: Unit) -> dict:
    """What the setting unit prices its queries with: the table, the SLM's and LLM's rates and the gen
    units its UQ method read (not part of the setting's key: prices are applied to the records)."""
    from jobs.cost import cost_payload

    return cost_payload(prices, r.slms[s.slm], r.llms[s.llm], sc.payload["eval"])
