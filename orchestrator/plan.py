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

Every unit is keyed by one function, ``unit_key(kind, identity, deps)``: the hash of what the
unit is and computes (its config, and the version of each rule it applies: the stage's prompt
version for a gen unit, ``jobs.scoring.SCORING_VERSION``, and ``EXTRACTION_VERSION`` where the extracted
answer is read) together with the keys of the units it reads. So a change anywhere upstream
reaches exactly the units downstream of it: bumping the p(True) prompt reruns the ptrue passes,
the score units of methods that read them and their settings, and nothing else.

A setting's *identity* stays its setting hash (``orchestrator.grid``): it names the setting's
MLflow run (tag ``uqroute.setting_hash``), whose content is replaced when the setting's unit key
changes. Its results live under ``settings/<unit key>``; read them through
``Plan.setting_dir``, never by the setting hash.

A unit whose manifest and files verify (``jobs.store.UnitDir.check``) is done: nothing is computed twice, in one run or
across runs that share a store. The driver-side plan imports no torch.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from jobs import answers, cloze, prompts
from jobs import stages as gen_stages
from jobs.prompts import ANSWER_PREFIX, AnswerModes
from jobs.scoring import SCORING_VERSION  # beside what it versions
from jobs.store import KIND_DIRS, Store
from jobs.units import CHUNK_SIZE, FitRows, GenSpec, ScoreSpec, SettingSpec, Spec
from orchestrator.config import DatasetConf, ResolvedGrid, dataset_task, grid_prices, nan_policy_of
from orchestrator.grid import Setting, dataset_identity, expand, model_identity, stable_hash

#: Stats of ``jobs.scoring.load_stats`` that come from the extracted answer: a score unit of a
#: method that reads one (``requires``, or ``correct`` for every trained method) is keyed by
#: ``EXTRACTION_VERSION`` and the extraction policy; the others are not.
EXTRACTION_STATS = ("answer_logprob", "correct")


def __getattr__(name: str):
    """Views of the stage declarations (``jobs.stages``), kept for callers that predate them:
    GEN_STAGES_READING_EXTRACTION, the stages whose prompt shows an *extracted* answer (their keys
    carry ``EXTRACTION_VERSION`` too; none today: p(True) and verbal 2-stage show the raw output);
    CONSTRAINED_STAGES, the stages whose work changes with decoding.answer_mode (ptrue and verbal_2s
    read the greedy answer, so their keys follow through their deps)."""
    if name == "GEN_STAGES_READING_EXTRACTION":
        return frozenset(st.name for st in gen_stages.declared() if st.reads_extraction)
    if name == "CONSTRAINED_STAGES":
        return tuple(st.name for st in gen_stages.declared() if st.constrained)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Unit:
    """A node of the plan: its key, what it reads (``deps``), which resident model serves it, and
    its ``spec`` (``jobs.units``), the whole of what the worker is handed."""

    kind: str  # gen | score | setting
    key: str
    label: str  # readable: "greedy smollm2-135m gsm8k eval"
    spec: Spec = field(hash=False, compare=False)
    deps: tuple[str, ...] = ()
    model: str | None = None  # "slm:<name>" / "llm:<name>": which resident model serves it

    def __post_init__(self) -> None:
        if self.spec.kind != self.kind or self.spec.key != self.key:
            raise ValueError(f"unit {self.label!r}: its spec is a {self.spec.kind} unit keyed {self.spec.key}")

    @property
    def stage(self) -> str:
        return self.spec.stage if isinstance(self.spec, GenSpec) else self.kind


def unit_key(kind: str, identity: dict, deps: dict) -> str:
    """The content key of a work unit, the one function that makes keys.

    identity: what the unit is and how it computes (configs, parameters, and the version of every
    rule it applies); deps: the keys of the units it reads, by name (nested dicts / lists of keys
    allowed). A gen unit's key is ``stable_hash(identity | {"deps": deps})``, what it was before
    this function existed (stores of generations stay valid); score and setting keys add the kind."""
    if kind not in KIND_DIRS:
        raise ValueError(f"unknown unit kind {kind!r}; valid: {', '.join(KIND_DIRS)}")
    if "deps" in identity or "kind" in identity:
        raise ValueError(f"a {kind} unit's identity may not hold 'deps' or 'kind' (they are added here)")
    ident = dict(identity, deps=deps)
    if kind != "gen":
        ident["kind"] = kind
    return stable_hash(ident)


def stage_prompt_version(stage: str, overrides: dict[str, str] | None = None) -> str:
    """The prompt version a gen unit of ``stage`` is keyed by: ``jobs.prompts.PROMPT_VERSION`` (every
    template), plus the stage's own version when its template changed on its own
    (``jobs.prompts.STAGE_PROMPT_VERSIONS``, or ``overrides``): a p(True) wording change reruns
    only the ptrue passes. A stage without its own version keeps the key it always had."""
    own = (prompts.STAGE_PROMPT_VERSIONS if overrides is None else overrides).get(stage)
    return prompts.PROMPT_VERSION if own is None else f"{prompts.PROMPT_VERSION}+{stage}:{own}"


def reads_extraction(method) -> bool:
    """Whether a UQ method's scores depend on the extracted answer (see ``EXTRACTION_STATS``)."""
    return bool((set(method.requires) | set(method.fit_requires)) & set(EXTRACTION_STATS))


@dataclass(frozen=True)
class ScoreRef:
    """Where a planned score's inputs are: its key, the greedy pass it scored, every SLM pass it read
    and, for a leave-out score, the role of the rows it scored."""

    score: str
    slm_greedy: str
    slm_stages: dict
    role: str = "eval"

    @classmethod
    def of(cls, u: Unit) -> ScoreRef:
        sp = u.spec
        assert isinstance(sp, ScoreSpec)
        return cls(sp.key, sp.greedy, dict(sp.stages), sp.role)


@dataclass
class Plan:
    settings: list[Setting]
    units: dict[str, Unit]  # topological order (a unit comes after its deps)
    # calibration (fit-role) units, when the grid enables calibration:
    #   fit_scores[(slm, uq, dataset)] = ScoreRef of the fit-role score
    #   fit_llm[(llm, dataset)] = key of the LLM pass on the fit role
    fit_scores: dict = field(default_factory=dict)
    fit_llm: dict = field(default_factory=dict)
    # setting hash -> key of its setting unit (where its results are: ``setting_dir``)
    setting_keys: dict = field(default_factory=dict)
    # leave-one-dataset-out scores of methods trained on other datasets (fit="other_datasets"):
    #   leave_out[(slm, uq, dataset, heldout)] = ScoreRef (its role: the calibration source's)
    # the scores of ``dataset``'s calibration-source rows (fit role when calibration is enabled,
    # else eval) by a model trained on neither ``dataset`` nor ``heldout``: what the calibration
    # set of ``heldout``'s transfer must use (no model that produced its scores saw ``heldout``)
    leave_out: dict = field(default_factory=dict)
    # the same for the cross-group split (``calibration.splits: [cross_group]``):
    #   leave_group_out[(slm, uq, dataset, group)] = same value as leave_out's
    # ``dataset``'s calibration-source rows scored by a model trained on neither ``dataset`` nor any
    # dataset of ``group`` (a target group other than ``dataset``'s own)
    leave_group_out: dict = field(default_factory=dict)

    def setting_unit(self, s: Setting | str) -> Unit:
        """The setting unit of a setting (or of a setting hash)."""
        h = s if isinstance(s, str) else s.hash
        if h not in self.setting_keys:
            raise KeyError(f"setting {h!r} is not part of this plan")
        return self.units[self.setting_keys[h]]

    def setting_dir(self, store: Path | Store, s: Setting | str) -> Path:
        """Where a setting's results (manifest, records, curve) are in the store: the one lookup."""
        return self.setting_store(store, s).path

    def setting_store(self, store: Path | Store, s: Setting | str):
        """A setting's ``jobs.store.UnitDir`` (its manifest, records and curve)."""
        st = store if isinstance(store, Store) else Store(store)
        return st.setting(self.setting_unit(s).key)

    def spec(self, key: str) -> Spec:
        return self.units[key].spec

    def by_kind(self, kind: str) -> list[Unit]:
        return [u for u in self.units.values() if u.kind == kind]

    def counts(self) -> Counter:
        c: Counter = Counter()
        for u in self.units.values():
            c[f"{u.kind}:{u.stage}" if u.kind == "gen" else u.kind] += 1
        return c

    def done(self, store: Path | Store) -> set[str]:
        st = store if isinstance(store, Store) else Store(store)
        return {k for k, u in self.units.items() if st.done(u)}


def answer_mode_params(modes: AnswerModes, dc: DatasetConf, task: str) -> dict:
    """The params a constrained stage's unit adds for its dataset's answer modes (``AnswerModes``,
    resolved from the dataset's conf and the grid's ``decoding.answer_mode``): none when every
    sample generates (keys as before answer modes existed); ``answer_mode`` (``modes.param``) and
    ``answer_prefix`` for constrained; ``answer_mode``, ``cloze_format`` and ``cloze_version`` for
    cloze (both sets for a mixed dataset that uses both)."""
    mode = modes.param(task)
    if mode is None:
        return {}
    used = modes.used(task)
    out: dict = {"answer_mode": mode}
    if "constrained" in used:
        out["answer_prefix"] = ANSWER_PREFIX
    if "cloze" in used:
        out.update(cloze_format=cloze.format_of(dc.adapter, dc.cloze_format), cloze_version=cloze.CLOZE_VERSION)
    return out


def _uq_method(r: ResolvedGrid, uq: str):
    from jobs.uq import UQ_METHODS

    return UQ_METHODS.get(r.uq[uq].method)


def make_plan(r: ResolvedGrid, prompt_versions: dict[str, str] | None = None) -> Plan:
    """The plan of a grid. prompt_versions: stage -> its own prompt version (default
    ``jobs.prompts.STAGE_PROMPT_VERSIONS``; see ``stage_prompt_version``).

    Each setting's own (eval) units are planned before its calibration (fit) units: models serve
    their units in plan order, so the first settings finish (and reach MLflow) early; the
    leave-one-dataset-out and leave-group-out scores come last (they only feed the transfer analysis)."""
    settings = expand(r)
    p = _Planner(r, prompt_versions)
    for s in settings:
        p.setting(s)
    p.leave_one_out()
    if "cross_group" in r.grid.calibration.splits:
        p.leave_group_out()
    return Plan(settings, p.units, p.fit_scores, p.fit_llm, p.setting_keys, p.leave_out, p.leave_group_out_refs)


class _Planner:
    """Builds a grid's units once each (a unit equal to one planned before is shared), in plan order."""

    def __init__(self, r: ResolvedGrid, prompt_versions: dict[str, str] | None) -> None:
        self.r, self.prompt_versions = r, prompt_versions
        g = r.grid
        self.dec, self.seed = g.decoding, g.seed
        self.policy = self.dec.extraction_policy
        self.cal = g.calibration
        self.folds = int(self.cal.crossfit_folds)
        # the rows calibration sets of the transfer analysis are drawn from: fit role when calibration
        # is enabled, else the other datasets' evaluated rows (jobs.analysis.findings.transfer_analysis)
        self.cal_role = "fit" if self.cal.enabled else "eval"
        self.prices = grid_prices(r)
        self.units: dict[str, Unit] = {}
        self.gen_cache: dict[tuple, Unit] = {}
        self.score_cache: dict[tuple, Unit] = {}
        self.fit_scores: dict = {}
        self.fit_llm: dict = {}
        self.setting_keys: dict = {}
        self.leave_out: dict = {}
        self.leave_group_out_refs: dict = {}

    def add(self, u: Unit) -> Unit:
        self.units.setdefault(u.key, u)
        return self.units[u.key]

    # ------------------------------------------------------------ gen units
    def gen(self, model_kind: str, model: str, dataset: str, role: str, stage: str) -> Unit:
        """The pass of ``stage`` of a model over the ``role`` rows of ``dataset`` (its deps first)."""
        ck = (model_kind, model, dataset, role, stage)
        if ck not in self.gen_cache:
            self.gen_cache[ck] = self._new_gen(model_kind, model, dataset, role, stage)
        return self.gen_cache[ck]

    def _new_gen(self, model_kind: str, model: str, dataset: str, role: str, stage: str) -> Unit:
        r = self.r
        st = gen_stages.stage(stage)
        mc = (r.slms if model_kind == "slm" else r.llms)[model]
        dc = r.datasets[dataset]
        run = r.dataset_run(dataset)
        task = dataset_task(dc)
        # generate-mode keys stay what they were: no answer-mode params, no constrained_deps
        mode_params = self._answer_mode_params(st, dc, task)
        params = (
            {"seed": self.seed, "chunk_size": CHUNK_SIZE}
            | gen_stages.stage_params(stage, self.dec, mc, task)
            | mode_params
        )
        dep_names = (*st.deps, *(st.constrained_deps if mode_params else ()))
        deps = {d: self.gen(model_kind, model, dataset, role, d).key for d in dep_names}
        ident = {
            "model": model_identity(mc),
            "dataset": dataset_identity(dc, run),
            "role": role,
            "stage": stage,
            "params": params,
            "prompt_version": stage_prompt_version(stage, self.prompt_versions),
        }
        if st.reads_extraction:
            ident |= {"extraction": answers.EXTRACTION_VERSION, "policy": self.policy}
        key = unit_key("gen", ident, deps)
        spec = GenSpec(
            key=key,
            stage=stage,
            model=model,
            dataset=dataset,
            dataset_conf=dc,
            run=run,
            role=role,
            params=params,
            deps=deps,
            model_kind=model_kind,
        )
        label = f"{stage} {model} {dataset} {role}"
        return self.add(Unit("gen", key, label, spec, tuple(deps.values()), f"{model_kind}:{model}"))

    def _answer_mode_params(self, st, dc: DatasetConf, task: str) -> dict:
        """A constrained stage's answer-mode params for its dataset (``answer_mode_params``); none for
        the other stages and in generate mode."""
        if not st.constrained:
            return {}
        return answer_mode_params(AnswerModes.resolve(dc.answer_mode, self.dec.answer_mode), dc, task)

    # ------------------------------------------------------------ score units
    def score(self, slm: str, uq: str, dataset: str, role: str, leave_out: str | tuple | None = None) -> Unit | None:
        """Uncertainty of ``uq`` on ``slm``'s answers to the ``role`` rows of ``dataset``.

        Trained methods: in_domain ones train on the dataset's fit rows (scoring those same fit
        rows -- the calibration role -- is done out-of-fold, ``crossfit`` folds); other_datasets
        ones train on every other dataset's fit rows, except ``leave_out`` (a held-out target of
        the transfer analysis; a tuple: every dataset of a target group). None when no dataset is
        left to train on."""
        r = self.r
        method = _uq_method(r, uq)
        provider = gen_stages.stat_stages()
        stages = sorted({provider[x] for x in method.requires if x in provider} | {"greedy"})
        ev = {st: self.gen("slm", slm, dataset, role, st).key for st in stages}
        fit_sets, crossfit = self._fit_sets(method, dataset, role, leave_out)
        if fit_sets is None:
            return None
        fit = [FitRows(d, {st: self.gen("slm", slm, d, "fit", st).key for st in stages}) for d in fit_sets]
        ident = {"uq": r.uq[uq], "role": role, "crossfit": crossfit, "version": SCORING_VERSION}
        if crossfit:
            ident["crossfit_seed"] = self.seed
        if reads_extraction(method):  # correctness labels / the answer letter's probability
            ident |= {"extraction": answers.EXTRACTION_VERSION, "policy": self.policy}
        fit_deps = [{"dataset": f.dataset, "stages": dict(f.stages)} for f in fit]
        key = unit_key("score", ident, {"eval": ev, "fit": fit_deps})
        spec = ScoreSpec(
            key=key,
            uq=uq,
            method=r.uq[uq].method,
            params=r.uq[uq].params,
            slm=slm,
            dataset=dataset,
            stages=ev,
            role=role,
            fit=tuple(fit),
            crossfit=crossfit,
            crossfit_seed=self.seed,
            policy=self.policy,
            leave_out=leave_out,
        )
        dep_keys = tuple(ev.values()) + tuple(k for f in fit for k in f.stages.values())
        label = (
            f"score {uq} {slm} {dataset}"
            + ("" if role == "eval" else f" {role}")
            + (f" without {leave_out if isinstance(leave_out, str) else ', '.join(leave_out)}" if leave_out else "")
        )
        return self.add(Unit("score", key, label, spec, dep_keys))

    def _fit_sets(self, method, dataset: str, role: str, leave_out: str | tuple | None) -> tuple[list[str] | None, int]:
        """(the datasets whose fit rows a method trains on -- None when none is left --, crossfit folds)."""
        if method.fit == "in_domain":
            return ([dataset] if role == "eval" else []), (self.folds if role == "fit" else 0)
        if method.fit == "other_datasets":
            left = {leave_out} if isinstance(leave_out, str) else set(leave_out or ())
            fit_sets = [d for d in self.r.datasets if d != dataset and d not in left]
            return (fit_sets or None), 0
        return [], 0

    # ------------------------------------------------------------ settings
    def setting(self, s: Setting) -> None:
        """A setting's score, its LLM pass, its calibration (fit) units when enabled, and its setting unit."""
        r = self.r
        sk = (s.slm, s.uq, s.dataset)
        if sk not in self.score_cache:
            eval_score = self.score(s.slm, s.uq, s.dataset, "eval")
            assert eval_score is not None  # an eval score always has data: its own fit rows, or none needed
            self.score_cache[sk] = eval_score
        sc = self.score_cache[sk]
        llm_unit = self.gen("llm", s.llm, s.dataset, "eval", "llm")
        if self.cal.enabled and sk not in self.fit_scores:
            fu = self.score(s.slm, s.uq, s.dataset, "fit")
            assert fu is not None  # an in-domain or untrained method always has a fit score
            self.fit_scores[sk] = ScoreRef.of(fu)
        if self.cal.enabled and (s.llm, s.dataset) not in self.fit_llm:
            self.fit_llm[(s.llm, s.dataset)] = self.gen("llm", s.llm, s.dataset, "fit", "llm").key
        assert isinstance(sc.spec, ScoreSpec)
        greedy_key = sc.spec.greedy
        ident = {
            "setting": s.hash,
            "version": SCORING_VERSION,
            "extraction": answers.EXTRACTION_VERSION,
            "policy": self.policy,
        }
        deps = {"score": sc.key, "slm_greedy": greedy_key, "llm": llm_unit.key}
        key = unit_key("setting", ident, deps)
        # slm_stages: the SLM passes the score read (a verbal method's own answer and parse status);
        # method / uq_params: which answer is judged (UQMethod.route); nan_policy: nan_policy_of
        spec = SettingSpec(
            key=key,
            setting_hash=s.hash,
            name=s.name,
            axes=s.axes(),
            score=sc.key,
            slm_greedy=greedy_key,
            llm=llm_unit.key,
            slm_stages=sc.spec.stages,
            method=sc.spec.method,
            uq_params=sc.spec.params,
            metrics=dataclasses.replace(r.grid.metrics, nan_policy=nan_policy_of(r, s.uq)),
            policy=self.policy,
            cost=_cost_payload(self.prices, r, s, sc),
        )
        self.add(Unit("setting", key, s.name, spec, (sc.key, llm_unit.key, greedy_key)))
        self.setting_keys[s.hash] = key

    # ------------------------------------------------------------ transfer-analysis scores
    def _trained_elsewhere(self):
        """(slm, uq, dataset) of the planned scores whose method trains on other datasets."""
        return [k for k in self.score_cache if _uq_method(self.r, k[1]).fit == "other_datasets"]

    def leave_one_out(self) -> None:
        """Each such score again without each other dataset (the held-out target of a transfer)."""
        for slm, uq, dataset in self._trained_elsewhere():
            for heldout in self.r.datasets:
                if heldout == dataset or (slm, uq, dataset, heldout) in self.leave_out:
                    continue
                lu = self.score(slm, uq, dataset, self.cal_role, leave_out=heldout)
                if lu is not None:
                    self.leave_out[(slm, uq, dataset, heldout)] = ScoreRef.of(lu)

    def leave_group_out(self) -> None:
        """Each such score again without every dataset of each other group (a unit equal to a
        leave-one-out one is shared)."""
        from orchestrator.config import dataset_groups

        r = self.r
        groups = dataset_groups(r)
        members = {grp: tuple(d for d in r.datasets if groups[d] == grp) for grp in set(groups.values()) if grp}
        for slm, uq, dataset in self._trained_elsewhere():
            if not groups[dataset]:
                continue
            for grp in sorted(members):
                if grp == groups[dataset]:
                    continue
                lu = self.score(slm, uq, dataset, self.cal_role, leave_out=members[grp])
                if lu is not None:
                    self.leave_group_out_refs[(slm, uq, dataset, grp)] = ScoreRef.of(lu)


def _cost_payload(prices, r: ResolvedGrid, s: Setting, sc: Unit) -> dict:
    """What the setting unit prices its queries with: the table, the SLM's and LLM's rates and the gen
    units its UQ method read (not part of the setting's key: prices are applied to the records)."""
    from jobs.cost import cost_payload

    assert isinstance(sc.spec, ScoreSpec)
    return cost_payload(prices, r.slms[s.slm], r.llms[s.llm], sc.spec.stages)
