"""The stage registry (issue 9, item 4): a stage is one declaration, and declaring the stages did not
move one unit key of the shipped grids (``tests/fixtures/plan_keys.json``, dumped at the commit
before the registry by ``tests/fixtures/dump_plan_keys.py``)."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest

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
    from jobs.cost import overhead_stages
    from orchestrator import plan

    # what the module-level literals were before the registry (the one-file jobs/stages.py of then, plan.py, cost.py)
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
    assert overhead_stages() == ("samples", "ptrue", "verbal_1s", "verbal_2s")
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
    reg.add("untyped", Stage(name="untyped", run=lambda *a: [], params=lambda ctx: {"scale": 1}))  # type: ignore[arg-type,return-value]
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


# A new stage, declared in a module of its own and registered by one line, goes through the plan,
# the engine, scoring, the cost axis and the report with no other edit: tests/unit/test_extensions.py.


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
