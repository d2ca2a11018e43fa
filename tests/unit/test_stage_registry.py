"""The stage registry (issue 9, item 4): a stage is one declaration, and declaring the stages did not
move one unit key of the shipped grids (``tests/fixtures/plan_keys.json``, dumped at the commit
before the registry by ``tests/fixtures/dump_plan_keys.py``)."""

from __future__ import annotations

import ast
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs.stages.base import StageParams

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "plan_keys.json"


def _dumper():
    spec = importlib.util.spec_from_file_location("dump_plan_keys", REPO / "tests" / "fixtures" / "dump_plan_keys.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("grid", sorted(json.loads(FIXTURE.read_text())))
def test_unit_keys_of_the_shipped_grids_are_unchanged(grid):
    want = json.loads(FIXTURE.read_text())[grid]
    got = _dumper().fixture(grid)
    if "units" in want:  # name the units that moved
        assert got["units"] == want["units"]
    assert (got["n_units"], got["digest"]) == (want["n_units"], want["digest"])


# ---------------------------------------------------------------- the declarations and their views


def test_the_views_the_plan_and_scoring_read_are_the_declarations():
    from jobs import stages
    from jobs.cost import OVERHEAD_STAGES
    from orchestrator import plan

    # what the module-level literals were before the registry (jobs/stages.py, plan.py, cost.py)
    assert {st.name: st.deps for st in stages.declared()} == {
        "greedy": (),
        "samples": (),
        "ptrue": ("greedy",),
        "verbal_1s": (),
        "verbal_2s": ("greedy",),
        "llm": (),
    }
    old_stat_stage = {
        "token_logprobs": "greedy",
        "token_entropy": "greedy",
        "answer_logprob": "greedy",
        "hidden_state": "greedy",
        "prompt_hidden_state": "greedy",
        "prompt": "greedy",
        "sampled_texts": "samples",
        "ptrue_prob": "ptrue",
        "verbal_1s_conf": "verbal_1s",
        "verbal_2s_conf": "verbal_2s",
    }
    # the greedy pass also gives the label, and the scored options' distribution (option_max_prob)
    assert stages.stat_stages() == old_stat_stage | {"correct": "greedy", "option_logprobs": "greedy"}
    assert set(plan.CONSTRAINED_STAGES) == {"greedy", "llm", "samples"}
    assert plan.GEN_STAGES_READING_EXTRACTION == frozenset()
    assert OVERHEAD_STAGES == ("samples", "ptrue", "verbal_1s", "verbal_2s")
    from jobs.stages.greedy import greedy

    assert stages.stage("greedy").run is greedy


def test_an_unknown_stage_is_named_with_the_valid_ones():
    from jobs.registry import UnknownNameError
    from jobs.stages import stage

    with pytest.raises(
        UnknownNameError,
        match=r"unknown stage 'verbal_2'\. Did you mean 'verbal_2s'.*"
        r"Available: greedy, llm, ptrue, samples",
    ):
        stage("verbal_2")


def test_a_bad_declaration_is_refused_by_name():
    from jobs.stages.base import Stage

    with pytest.raises(TypeError, match="stage 'x': deps must be a tuple of names; got 'greedy'"):
        Stage(name="x", run=lambda *a: [], deps="greedy")
    with pytest.raises(ValueError, match="stage 'x' depends on itself"):
        Stage(name="x", run=lambda *a: [], deps=("x",))
    with pytest.raises(ValueError, match="stage 'x' returned stats \\['y'\\] it does not declare"):
        Stage(name="x", run=lambda *a: [], stats=lambda rows, policy: {"y": 1}).load([], "flexible")


def test_a_stage_declares_typed_params_whose_key_is_the_hashed_dict(monkeypatch):
    """Each stage's params are a frozen StageParams; the unit's params are its key(); a stage whose
    params(ctx) returns a plain dict is refused with the type to use."""
    from jobs import stages
    from jobs.backends.hf_conf import HFConf
    from jobs.stages.base import Stage
    from orchestrator.config import DecodingConf

    dec, m = DecodingConf(), HFConf(name="m", id="i", max_new_tokens=40)
    assert stages.stage_params("samples", dec, m, "mc") == {"num_samples": 5, "temperature": 1.0, "max_new_tokens": 40}
    assert stages.stage_params("verbal_2s", dec, m, "mc") == {"max_new_tokens": dec.verbal_max_new_tokens}
    assert stages.stage_params("ptrue", dec, m, "mc") == {}
    reg = stages.STAGES.copy()
    reg.add("untyped", Stage(name="untyped", run=_answer_length, params=lambda ctx: {"scale": 1}))  # type: ignore[arg-type,return-value]
    monkeypatch.setattr(stages, "STAGES", reg)
    with pytest.raises(TypeError, match=r"stage 'untyped': params\(ctx\) returned a dict; .*base\.StageParams"):
        stages.stage_params("untyped", dec, m, "mc")


def test_check_stages_refuses_an_unknown_dependency_and_a_stat_provided_twice(monkeypatch):
    from jobs import stages
    from jobs.stages.base import Stage

    shipped = stages.STAGES
    reg = shipped.copy()
    reg.add("late", Stage(name="late", run=lambda *a: [], deps=("nowhere",)))
    monkeypatch.setattr(stages, "STAGES", reg)
    with pytest.raises(ValueError, match="stage 'late' depends on 'nowhere', which is not a stage declared"):
        stages.stat_stages()
    reg = shipped.copy()
    reg.add("twice", Stage(name="twice", run=lambda *a: [], provides=("ptrue_prob",)))
    monkeypatch.setattr(stages, "STAGES", reg)
    with pytest.raises(ValueError, match="stat 'ptrue_prob' is provided by both stage 'ptrue' and stage 'twice'"):
        stages.stat_stages()


# ---------------------------------------------------------------- a new stage is one declaration


class WordBackend:
    """Deterministic: the answer is the question's word count."""

    identity = "words"

    def render(self, messages):
        return " ".join(m["content"] for m in messages)

    def token_strings(self, ids):
        return [f" {i}" for i in ids]

    def generate(self, prompts, *, max_new_tokens, seed=0, **kw):
        from jobs.backends.base import Generation

        out = []
        for m in prompts:
            n = len(m[-1]["content"].split())
            out.append(
                Generation(
                    text=f"The answer is {n}.",
                    n_prompt_tokens=n,
                    n_new_tokens=2,
                    token_logprobs=np.array([-0.5, -0.25]),
                    token_entropy=np.array([1.0, 0.5]),
                    token_ids=[n, 0],
                )
            )
        return out


@dataclass(frozen=True)
class _ScaleParams(StageParams):
    """The toy stage's typed params (keyed on: ``scale``)."""

    scale: int


def _answer_length(backend, samples, deps, p):
    """The toy stage's pass: reads the greedy answer (its dep) and its own param."""
    return [{"answer_chars": float(len(deps["greedy"][s.id])) / p["scale"], "n_new_tokens": 0} for s in samples]


def test_a_new_stage_and_a_method_reading_it_need_no_edit_of_plan_scoring_or_runner(tmp_path, monkeypatch):
    """Register a stage (one declaration) and a UQ method that requires its stat: the plan keys its
    units on its params and deps, run_gen_unit runs it, load_stats reads it, the score uses it."""
    from jobs import engine, stages, uq
    from jobs.records import read_unit, unit_dir
    from jobs.scoring import load_stats, run_score_unit
    from jobs.stages.base import Stage
    from jobs.types import Sample
    from jobs.uq.base import UQMethod
    from orchestrator.config import load_grid
    from orchestrator.plan import make_plan

    toy = Stage(
        name="answer_length",
        run=_answer_length,
        provides=("answer_chars",),
        deps=("greedy",),
        params=lambda ctx: _ScaleParams(scale=ctx.decoding.verbal_max_new_tokens),
        overhead=True,
        columns={"answer_chars": pa.float64()},
    )
    reg = stages.STAGES.copy()
    reg.add("answer_length", toy)
    monkeypatch.setattr(stages, "STAGES", reg)
    methods = uq.UQ_METHODS.copy()
    methods.add(
        "answer_length",
        UQMethod(name="answer_length", requires=("answer_chars",), fn=lambda stats: np.asarray(stats["answer_chars"])),
    )
    monkeypatch.setattr(uq, "UQ_METHODS", methods)
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "name: toy\nslms: [smollm2-135m]\nllms: [smollm2-135m]\nuq: [answer_length]\n"
        "datasets: [addsub]\ndataset: {limit: 3}\ndecoding: {verbal_max_new_tokens: 4}\n"
        "mlflow: {enabled: false}\n"
    )
    (tmp_path / "uq").mkdir()
    (tmp_path / "uq" / "answer_length.yaml").write_text("name: answer_length\n")
    r = load_grid(grid, [f"output_dir={tmp_path / 'out'}"], conf_dir=tmp_path)
    plan = make_plan(r)
    (score,) = plan.by_kind("score")
    assert set(score.spec.stages) == {"greedy", "answer_length"}
    toy_unit = plan.units[score.spec.stages["answer_length"]]
    greedy_unit = plan.units[score.spec.stages["greedy"]]
    assert toy_unit.spec.params == {"seed": 0, "chunk_size": 32, "scale": 4}
    assert toy_unit.spec.deps == {"greedy": greedy_unit.key} and toy_unit.deps == (greedy_unit.key,)

    samples = [
        Sample(id=f"q{i}", question=" ".join(["w"] * (i + 3)), task="numeric", gold=str(i + 3)) for i in range(3)
    ]
    monkeypatch.setattr(engine, "load_role", lambda dc, run, role: (samples, []))
    store = r.store_dir
    for u in (greedy_unit, toy_unit):
        engine.run_gen_unit(WordBackend(), u.spec, store)
    rows = read_unit(unit_dir(store, "gen", toy_unit.key)).to_pylist()
    greedy_rows = read_unit(unit_dir(store, "gen", greedy_unit.key)).to_pylist()
    want = [len(g["raw_output"]) / 4 for g in greedy_rows]
    assert [x["answer_chars"] for x in rows] == want
    ids, stats = load_stats(store, score.spec.stages, "flexible")
    assert ids == ["q0", "q1", "q2"] and stats["answer_chars"].tolist() == want
    run_score_unit(score.spec, store)
    got = read_unit(unit_dir(store, "score", score.key)).to_pylist()
    assert [x["uncertainty"] for x in got] == want


# ---------------------------------------------------------------- the backend protocol


def _calls_on_backend(path: Path) -> set[str]:
    """Attributes a module reads on a name ``backend``: ``backend.x``, ``hasattr/getattr(backend, "x")``."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "backend":
            out.add(node.attr)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("hasattr", "getattr")
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == "backend"
            and isinstance(node.args[1], ast.Constant)
        ):
            out.add(node.args[1].value)
    return out


def _members(cls) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")} | set(getattr(cls, "__annotations__", {}))


def test_the_backend_protocol_lists_every_method_a_stage_calls():
    from jobs.backends.base import Backend, CountsTokens, ScoresContinuations, ScoresOptions

    called = set().union(
        *(_calls_on_backend(p) for p in [*sorted((REPO / "jobs" / "stages").glob("*.py")), REPO / "jobs" / "engine.py"])
    )
    assert {
        "generate",
        "render",
        "true_false_prob",
        "token_strings",
        "choice_logprobs",
        "continuation_logprobs",
        "prompt_tokens",
        "context_length",
        "identity",
    } <= called  # the scan sees them
    declared = _members(Backend) | _members(CountsTokens) | _members(ScoresOptions) | _members(ScoresContinuations)
    assert called - declared == set()


def _class_members(path: Path, name: str) -> set[str]:
    cls = next(n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef) and n.name == name)
    out = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    for n in ast.walk(cls):  # self.identity = ... / identity: str
        if (
            isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "self"
            and isinstance(n.ctx, ast.Store)
        ):
            out.add(n.attr)
    return out


@pytest.mark.parametrize(
    "path,cls,protocols",
    [
        ("jobs/backends/hf.py", "HFBackend", ("Backend", "CountsTokens", "ScoresOptions", "ScoresContinuations")),
        ("jobs/backends/openai_http.py", "OpenAIBackend", ("Backend", "ScoresContinuations")),
    ],
)
def test_each_backend_has_the_protocols_it_claims(path, cls, protocols):
    from jobs.backends import base

    have = _class_members(REPO / path, cls)
    want = set().union(*(_members(getattr(base, p)) for p in protocols))
    assert want - have == set()
