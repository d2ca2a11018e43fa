"""The extension paths of CONTRIBUTING.md ("Extending uqroute"), each done here as a contributor
would: its one file is a module written to a temporary folder on ``sys.path``, its one registry
line is added through the registry's API (``Registry.copy().add``, the shipped registry left as it
is), its conf (where it needs one) is a file in the grid's own ``conf/`` folder. No shipped file is
edited. Each new thing then goes through the plan (``orchestrator.plan.make_plan``), its units
(run in this process on a deterministic backend: ``tests.helpers.run_plan``) and the report
(``jobs.analysis.report.build_report``).

The metric row's test is ``tests/unit/test_metric_registry.py``."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

from jobs.records import read_unit, unit_dir
from jobs.store import Store
from tests.helpers import run_plan


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """``plugin(name, source)``: write module ``name`` to a folder on ``sys.path`` (removed, with the
    module, after the test)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    written = []

    def write(name: str, source: str) -> None:
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        written.append(name)

    yield write
    for name in written:
        sys.modules.pop(name, None)


def register(monkeypatch, module, attr: str, key: str, target: str) -> None:
    """The one registry line: ``key -> target`` in ``module.attr``, on a copy of the shipped registry."""
    reg = getattr(module, attr).copy()
    reg.add(key, target)
    monkeypatch.setattr(module, attr, reg)


def grid(tmp_path: Path, body: str, *overrides: str):
    """Load a grid whose own ``conf/`` folder is ``tmp_path / "conf"`` (names not there come from the
    repository's conf/), output under ``tmp_path / "out"``, no MLflow."""
    from orchestrator.config import load_grid

    (tmp_path / "conf" / "grid").mkdir(parents=True, exist_ok=True)
    f = tmp_path / "conf" / "grid" / "g.yaml"
    f.write_text("name: ext\nmlflow: {enabled: false}\n" + textwrap.dedent(body))
    return load_grid(f, [f"output_dir={tmp_path / 'out'}", *overrides])


def conf_file(tmp_path: Path, kind: str, name: str, text: str) -> None:
    folder = tmp_path / "conf" / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(textwrap.dedent(text))


def settings_of(report: dict) -> list[dict]:
    return json.loads(Path(report["analysis"]).read_text())["settings"]


def records(store: Path, kind: str, key: str) -> list[dict]:
    return read_unit(unit_dir(store, kind, key)).to_pylist()


# ---------------------------------------------------------------- a UQ method: 1 file + 1 line + 1 conf


MAX_TOKEN_ENTROPY = '''
    """max_token_entropy: the largest entropy over the answer's tokens, times ``scale``."""
    import numpy as np

    from jobs.uq.base import UQMethod, per_sequence


    def max_token_entropy(stats, *, scale=1.0):
        return per_sequence(stats["token_entropy"], lambda h: scale * float(np.max(h)))


    # an entropy is unbounded: its confidence (the calibration bins' scale, the report's histograms) is exp(-u)
    METHOD = UQMethod(name="max_token_entropy", requires=("token_entropy",), fn=max_token_entropy, confidence="exp_neg")
'''


def test_a_new_uq_method_is_one_file_one_registry_line_and_its_conf(tmp_path, monkeypatch, plugin):
    import jobs.uq as uq
    from orchestrator.plan import make_plan

    plugin("ext_max_token_entropy", MAX_TOKEN_ENTROPY)
    register(monkeypatch, uq, "UQ_METHODS", "max_token_entropy", "ext_max_token_entropy:METHOD")
    conf_file(tmp_path, "uq", "max_token_entropy", "name: max_token_entropy\nparams: {scale: 2.0}\n")
    r = grid(
        tmp_path,
        """
        slms: [smollm2-135m]
        llms: [smollm2-135m]
        uq: [max_token_entropy, perplexity]
        datasets: [strategyqa]
        dataset: {limit: 12}
        """,
    )
    plan = make_plan(r)
    scores = {u.spec.method: u for u in plan.by_kind("score")}
    ours = scores["max_token_entropy"]
    # the plan found the stage the method requires, and keyed the score on its params
    assert ours.spec.params == {"scale": 2.0} and set(ours.spec.stages) == {"greedy"}
    assert ours.spec.stages == scores["perplexity"].spec.stages  # the greedy pass is shared

    report = run_plan(r, plan)
    greedy = records(r.store_dir, "gen", ours.spec.stages["greedy"])
    got = {x["sample_id"]: x["uncertainty"] for x in records(r.store_dir, "score", ours.key)}
    assert got == {g["sample_id"]: 2.0 * max(g["token_entropy"]) for g in greedy}
    assert len(set(got.values())) > 1  # the stat varies with the question
    row = next(s for s in settings_of(report) if s["uq"] == "max_token_entropy")
    assert row["n"] == 12 and 0.0 <= row["auroc"] <= 1.0
    assert "max_token_entropy" in Path(report["html"]).read_text()


# ---------------------------------------------------------------- a dataset: 1 file + 1 line (+ a conf)


TOY_YESNO = '''
    """toy_yesno: yes/no questions in ``<root>/toy_yesno/test.jsonl`` (``id``, ``question``, ``answer``
    true / false), the whole file evaluated."""
    from jobs.datasets.base import DatasetAdapter, build_samples, make_sample, read_jsonl, yes_no

    FILE = "toy_yesno/test.jsonl"


    def toy_sample(index, row):
        return make_sample(id=row["id"], question=row["question"], task="yesno", gold=yes_no(row["answer"]))


    def parse(root, split):
        path = root / FILE
        return build_samples(read_jsonl(path), str(path), toy_sample)


    ADAPTER = DatasetAdapter(
        name="toy_yesno",
        task="yesno",
        splits={"test": f"{FILE} (the whole set)"},
        eval_split="test",
        train_split=None,
        parse=parse,
        description="toy yes/no questions",
        group="toy",
    )
'''


def test_a_new_dataset_is_one_file_and_one_registry_line(tmp_path, monkeypatch, plugin):
    import jobs.datasets as datasets
    from orchestrator.config import dataset_groups
    from orchestrator.plan import make_plan

    plugin("ext_toy_yesno", TOY_YESNO)
    register(monkeypatch, datasets, "DATASETS", "toy_yesno", "ext_toy_yesno:ADAPTER")
    data = tmp_path / "data" / "toy_yesno"
    data.mkdir(parents=True)
    rows = [{"id": f"t{i}", "question": "is it so " + "and so " * i + "?", "answer": i % 2 == 0} for i in range(10)]
    lines = [json.dumps(x) for x in rows] + [json.dumps({"id": "bad", "question": "?", "answer": "maybe"})]
    (data / "test.jsonl").write_text("\n".join(lines) + "\n")
    # no conf/dataset/toy_yesno.yaml: a registry key gets the default conf
    r = grid(
        tmp_path,
        f"""
        slms: [smollm2-135m]
        llms: [smollm2-135m]
        uq: [perplexity]
        datasets: [toy_yesno]
        dataset: {{limit: null, data_root: {tmp_path / "data"}}}
        """,
    )
    assert r.datasets["toy_yesno"].adapter == "toy_yesno" and dataset_groups(r) == {"toy_yesno": "toy"}
    plan = make_plan(r)
    (greedy,) = [u for u in plan.by_kind("gen") if u.spec.stage == "greedy"]
    assert greedy.spec.dataset == "toy_yesno"

    report = run_plan(r, plan)
    got = records(r.store_dir, "gen", greedy.key)
    assert sorted(x["sample_id"] for x in got) == sorted(x["id"] for x in rows)  # the bad row is not a sample
    assert {x["sample_id"]: x["gold"] for x in got} == {x["id"]: "yes" if x["answer"] else "no" for x in rows}
    manifest = json.loads(Store(r.store_dir).gen(greedy.key).manifest_path.read_text())
    assert manifest["n_malformed"] == 1 and "maybe" in manifest["malformed"][0]["reason"]
    (row,) = settings_of(report)
    assert row["dataset"] == "toy_yesno" and row["n"] == 10
    assert "toy_yesno" in Path(report["html"]).read_text()


# ---------------------------------------------------------------- a stage: 1 file + 1 line


ANSWER_LENGTH_STAGE = '''
    """answer_length: a pass that reads the greedy answer (its dep) and one decoding parameter."""
    from dataclasses import dataclass

    import pyarrow as pa

    from jobs.stages.base import Stage, StageParams


    @dataclass(frozen=True)
    class ScaleParams(StageParams):
        """What the stage's units are keyed on."""

        scale: int


    def answer_length(backend, samples, deps, params):
        return [
            {"answer_chars": len(deps["greedy"][s.id]) / params["scale"], "n_new_tokens": 1, "n_prompt_tokens": 2}
            for s in samples
        ]


    STAGE = Stage(
        name="answer_length",
        run=answer_length,
        provides=("answer_chars",),
        deps=("greedy",),
        params=lambda ctx: ScaleParams(scale=ctx.decoding.verbal_max_new_tokens),
        overhead=True,
        columns={"answer_chars": pa.float64()},
    )
'''

ANSWER_LENGTH_METHOD = '''
    """answer_length: a UQ method reading the stat of the stage above."""
    import numpy as np

    from jobs.uq.base import UQMethod

    METHOD = UQMethod(
        name="answer_length",
        requires=("answer_chars",),
        fn=lambda stats: np.asarray(stats["answer_chars"]),
        confidence="exp_neg",  # an unbounded score
    )
'''


def test_a_new_stage_is_one_file_and_one_registry_line(tmp_path, monkeypatch, plugin):
    """A stage and a UQ method that requires its stat, each one file and one registry line (the
    method with no conf file): the plan keys the stage's units on its params and deps, the engine
    runs it, scoring reads its stat, the cost axis charges its tokens, the report shows the method."""
    import jobs.stages as stages
    import jobs.uq as uq
    from jobs.scoring import load_stats
    from orchestrator.plan import make_plan

    plugin("ext_answer_length", ANSWER_LENGTH_STAGE)
    plugin("ext_answer_length_uq", ANSWER_LENGTH_METHOD)
    register(monkeypatch, stages, "STAGES", "answer_length", "ext_answer_length:STAGE")
    register(monkeypatch, uq, "UQ_METHODS", "answer_length", "ext_answer_length_uq:METHOD")
    r = grid(
        tmp_path,
        """
        slms: [smollm2-135m]
        llms: [smollm2-135m]
        uq: [answer_length]
        datasets: [strategyqa]
        dataset: {limit: 6}
        decoding: {verbal_max_new_tokens: 4}
        """,
    )
    plan = make_plan(r)
    (score,) = plan.by_kind("score")
    assert set(score.spec.stages) == {"greedy", "answer_length"}
    toy_unit = plan.units[score.spec.stages["answer_length"]]
    greedy_unit = plan.units[score.spec.stages["greedy"]]
    assert toy_unit.spec.params == {"seed": 0, "chunk_size": 32, "scale": 4}
    assert toy_unit.spec.deps == {"greedy": greedy_unit.key} and toy_unit.deps == (greedy_unit.key,)

    report = run_plan(r, plan)
    greedy_rows = {g["sample_id"]: g for g in records(r.store_dir, "gen", greedy_unit.key)}
    want = {sid: len(g["raw_output"]) / 4 for sid, g in greedy_rows.items()}
    assert {x["sample_id"]: x["answer_chars"] for x in records(r.store_dir, "gen", toy_unit.key)} == want
    ids, stats = load_stats(r.store_dir, score.spec.stages, "flexible")
    assert dict(zip(ids, stats["answer_chars"].tolist())) == want
    assert {x["sample_id"]: x["uncertainty"] for x in records(r.store_dir, "score", score.key)} == want
    (row,) = settings_of(report)
    assert row["uq"] == "answer_length" and row["n"] == 6
    # the cost axis charges the stage's tokens to the method (it is declared overhead)
    (setting,) = plan.by_kind("setting")
    metrics = Store(r.store_dir).setting(setting.key).manifest_json()["metrics"]
    assert (metrics["tokens_uq_new"], metrics["tokens_uq_prompt"]) == (1.0, 2.0)


# ---------------------------------------------------------------- a backend: 1 file (+ its config class) + 1 line


ECHO_BACKEND = '''
    """echo: a backend that answers every question with the one word of its config (torch-free, so
    its config class sits in this file)."""
    from dataclasses import dataclass
    from typing import ClassVar

    import numpy as np

    from jobs.backends.base import Generation, ModelConf


    @dataclass(frozen=True, eq=False)
    class EchoConf(ModelConf):
        factory: ClassVar[str] = "ext_echo_backend:from_conf"
        no_stats: ClassVar[tuple[str, ...]] = ("hidden_state", "prompt_hidden_state")
        identity_fields: ClassVar[tuple[str, ...]] = ("word",)  # it changes the outputs

        word: str = "yes"

        def check(self, where):
            if self.word not in ("yes", "no"):
                raise ValueError(f"{where}: word={self.word!r} is not valid; valid: yes, no")


    class EchoBackend:
        def __init__(self, conf):
            self.word = conf.word
            self.identity = f"echo:{conf.word}"

        def render(self, messages):
            return " ".join(m["content"] for m in messages)

        def token_strings(self, ids):
            return [self.word for _ in ids]

        def generate(self, prompts, *, max_new_tokens, num_return_sequences=1, with_stats=False, **kw):
            stats = {"token_logprobs": np.array([-0.25]), "token_entropy": np.array([0.5])} if with_stats else {}
            return [
                Generation(text=self.word, n_prompt_tokens=len(self.render(m).split()), n_new_tokens=1, **stats)
                for m in prompts
                for _ in range(num_return_sequences)
            ]

        def true_false_prob(self, prompts):
            return np.full(len(prompts), 0.5)


    def from_conf(m: EchoConf) -> EchoBackend:
        return EchoBackend(m)
'''


def test_a_new_backend_is_one_file_its_config_class_and_one_registry_line(tmp_path, monkeypatch, plugin):
    import jobs.backends as backends
    from jobs.backends import make_backend
    from orchestrator.config import ConfigError
    from orchestrator.grid import model_identity
    from orchestrator.plan import make_plan

    plugin("ext_echo_backend", ECHO_BACKEND)
    register(monkeypatch, backends, "BACKENDS", "echo", "ext_echo_backend:EchoConf")
    conf_file(tmp_path, "slm", "echo-yes", "name: echo-yes\nbackend: echo\nword: 'yes'\n")
    conf_file(tmp_path, "llm", "echo-no", "name: echo-no\nbackend: echo\nword: 'no'\n")
    body = """
        slms: [echo-yes]
        llms: [echo-no]
        uq: [perplexity]
        datasets: [strategyqa]
        dataset: {limit: 8}
        """
    r = grid(tmp_path, body)
    assert type(r.slms["echo-yes"]).__name__ == "EchoConf" and r.llms["echo-no"].word == "no"
    assert model_identity(r.slms["echo-yes"])["word"] == "yes"  # the field keys the model's units
    # the config class checks its fields before any work starts, naming the file and the key
    with pytest.raises(ConfigError, match="word='maybe' is not valid; valid: yes, no"):
        grid(tmp_path, body, "slms=[{name: x, backend: echo, word: maybe}]")
    with pytest.raises(ConfigError, match="bad key 'words'"):
        grid(tmp_path, body, "slms=[{name: x, backend: echo, words: 'no'}]")
    with pytest.raises(ConfigError, match="provides no hidden_state"):
        grid(tmp_path, body, "uq=[probe]")

    plan = make_plan(r)
    # the workers build it as cluster/actors.py does, from the model's typed config
    report = run_plan(r, plan, lambda u: make_backend((r.slms | r.llms)[u.spec.model]))
    gens = {u.spec.model: records(r.store_dir, "gen", u.key) for u in plan.by_kind("gen")}
    assert {m: {x["raw_output"] for x in rows} for m, rows in gens.items()} == {"echo-yes": {"yes"}, "echo-no": {"no"}}
    (row,) = settings_of(report)
    golds = [x["gold"] for x in gens["echo-yes"]]
    assert row["slm_acc"] == pytest.approx(golds.count("yes") / 8) and row["llm_acc"] == pytest.approx(
        golds.count("no") / 8
    )
