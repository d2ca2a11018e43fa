"""Config errors, grid expansion and the factored plan: pure functions, no model, no Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import ConfigError, load_grid
from orchestrator.grid import expand
from orchestrator.plan import make_plan

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"


def write_grid(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "grid.yaml"
    p.write_text(body)
    return p


BASE = """name: t
output_dir: {out}
slms: [smollm2-135m]
llms: [smollm2-135m]
uq: [perplexity, jaccard, probe, ood_probe]
datasets: [addsub, strategyqa]
"""


def load(tmp_path, body=BASE, overrides=()):
    return load_grid(write_grid(tmp_path, body.replace("{out}", str(tmp_path / "out"))), list(overrides), conf_dir=CONF)


def test_unknown_top_level_key_names_file_and_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, BASE + "bogus_key: 1\n")
    assert "bogus_key" in str(e.value) and "grid.yaml" in str(e.value) and "datasets" in str(e.value)


def test_wrong_type_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, overrides=["dataset.limit=many"])
    assert "limit" in str(e.value)


def test_unknown_dataset_suggests_close_name(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, BASE.replace("addsub", "adsub"))
    msg = str(e.value)
    assert "adsub" in msg and "did you mean 'addsub'" in msg.lower() and "gsm8k" in msg


def test_unknown_choice_lists_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, overrides=["metrics.ties=random"])
    assert "ties='random'" in str(e.value) and "expected, stable" in str(e.value)


def test_inline_model_with_typo_key(tmp_path):
    body = BASE.replace("llms: [smollm2-135m]", "llms: [{name: x, backend: openai, base_url: u, modelname: m}]")
    with pytest.raises(ConfigError) as e:
        load(tmp_path, body)
    assert "modelname" in str(e.value) and "model_name" in str(e.value)


def test_exclusion_rule_must_name_grid_values(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, BASE + "exclude: [{dataset: gsm8k}]\n")
    assert "gsm8k" in str(e.value) and "addsub" in str(e.value)


def test_overrides_apply(tmp_path):
    r = load(tmp_path, overrides=["dataset.limit=7", "decoding.num_samples=3"])
    assert r.grid.dataset.limit == 7 and r.grid.decoding.num_samples == 3


def test_expand_order_hashes_and_exclusion(tmp_path):
    r = load(tmp_path, BASE + "exclude: [{uq: jaccard, dataset: strategyqa}]\n")
    names = [s.name for s in expand(r)]
    assert names == [
        "smollm2-135m__perplexity__addsub__smollm2-135m",
        "smollm2-135m__jaccard__addsub__smollm2-135m",
        "smollm2-135m__probe__addsub__smollm2-135m",
        "smollm2-135m__ood_probe__addsub__smollm2-135m",
        "smollm2-135m__perplexity__strategyqa__smollm2-135m",
        "smollm2-135m__probe__strategyqa__smollm2-135m",
        "smollm2-135m__ood_probe__strategyqa__smollm2-135m",
    ]
    hashes = [s.hash for s in expand(r)]
    assert len(set(hashes)) == len(hashes)
    # identity: same config -> same hashes; a decoding change -> all hashes change
    assert hashes == [s.hash for s in expand(load(tmp_path, BASE + "exclude: [{uq: jaccard, dataset: strategyqa}]\n"))]
    r2 = load(tmp_path, BASE + "exclude: [{uq: jaccard, dataset: strategyqa}]\n", ["decoding.num_samples=4"])
    assert not set(hashes) & {s.hash for s in expand(r2)}


def test_plan_factors_expensive_work(tmp_path):
    r = load(tmp_path)
    plan = make_plan(r)
    c = plan.counts()
    assert len(plan.settings) == 8
    # one greedy pass per (SLM, dataset, role): eval for both, fit for both (probe in-domain, OOD uses the other)
    assert c["gen:greedy"] == 4
    assert c["gen:samples"] == 2  # jaccard only, eval role only
    assert c["gen:llm"] == 2  # one LLM pass per dataset, shared by all 4 UQ methods
    assert c["score"] == 8 and c["setting"] == 8
    # every dependency precedes its dependent (topological insertion order)
    seen = set()
    for k, u in plan.units.items():
        assert all(d in seen for d in u.deps), u.label
        seen.add(k)


def test_plan_is_shared_across_uq_methods_and_llms(tmp_path):
    body = BASE.replace("llms: [smollm2-135m]", "llms: [smollm2-135m, gemma3-270m]")
    plan = make_plan(load(tmp_path, body))
    c = plan.counts()
    assert len(plan.settings) == 16
    assert c["gen:greedy"] == 4 and c["gen:llm"] == 4 and c["score"] == 8


def test_ood_probe_fits_on_other_datasets(tmp_path):
    plan = make_plan(load(tmp_path))
    ood = [u for u in plan.by_kind("score") if u.spec.uq == "ood_probe"]
    assert {u.spec.dataset: [f.dataset for f in u.spec.fit] for u in ood} == {
        "addsub": ["strategyqa"],
        "strategyqa": ["addsub"],
    }
    probe = [u for u in plan.by_kind("score") if u.spec.uq == "probe"]
    assert all([f.dataset for f in u.spec.fit] == [u.spec.dataset] for u in probe)


def test_paper_grid_expands_to_1792_settings():
    r = load_grid(CONF / "grid" / "paper.yaml")
    assert len(expand(r)) == 8 * 8 * 14 * 2 == 1792


def test_missing_local_dataset_file_is_a_config_error(tmp_path):
    body = BASE.replace(
        "datasets: [addsub, strategyqa]",
        "datasets: [{name: mine, adapter: local, task: mc, local_path: /nope/x.jsonl}]",
    )
    with pytest.raises(ConfigError) as e:
        load(tmp_path, body)
    assert "/nope/x.jsonl" in str(e.value) and "mine" in str(e.value)


def test_local_dataset_needs_a_valid_task(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("{}\n")
    body = BASE.replace(
        "datasets: [addsub, strategyqa]", f"datasets: [{{name: mine, adapter: local, task: essay, local_path: {f}}}]"
    )
    with pytest.raises(ConfigError) as e:
        load(tmp_path, body)
    assert "essay" in str(e.value) and "numeric, mc, yesno, freeform" in str(e.value)


def test_calibration_adds_fit_role_units_without_touching_eval_keys(tmp_path):
    off = make_plan(load(tmp_path))
    on = make_plan(load(tmp_path, overrides=["calibration.enabled=true"]))
    # eval-role work keeps its keys, so turning calibration on reuses every finished unit
    assert set(off.units) <= set(on.units)
    assert not off.fit_scores and not off.fit_llm
    assert set(on.fit_scores) == {(s.slm, s.uq, s.dataset) for s in on.settings}
    assert set(on.fit_llm) == {("smollm2-135m", "addsub"), ("smollm2-135m", "strategyqa")}
    for (_slm, uq, ds), keys in on.fit_scores.items():
        u = on.units[keys.score]
        assert u.spec.role == "fit" and u.spec.dataset == ds
        gens = [on.units[k] for k in u.spec.stages.values()]
        assert all(g.spec.role == "fit" and g.spec.dataset == ds for g in gens)
        # in-domain probes score their own training rows out-of-fold; OOD probes train elsewhere
        assert u.spec.crossfit == (5 if uq == "probe" else 0)
        if uq == "probe":
            assert u.spec.fit == ()
        if uq == "ood_probe":
            assert [f.dataset for f in u.spec.fit] == [d for d in ("addsub", "strategyqa") if d != ds]
    for (_llm, ds), key in on.fit_llm.items():
        g = on.units[key]
        assert g.spec.role == "fit" and g.spec.stage == "llm" and g.spec.dataset == ds
    c_on, c_off = on.counts(), off.counts()
    assert c_on["gen:llm"] == 2 * c_off["gen:llm"] and c_on["score"] == 2 * c_off["score"]


@pytest.mark.parametrize(
    "override, needle",
    [
        ("calibration.binning=quantile", "equal_width, equal_freq"),
        ("calibration.frac=0", "calibration.frac=0"),
        ("calibration.targets=[0.3,1.5]", "1.5"),
        ("calibration.crossfit_folds=1", "crossfit_folds=1"),
        ("calibration.fixed_threshold.nope=0.5", "nope"),
    ],
)
def test_bad_calibration_settings_are_named(tmp_path, override, needle):
    with pytest.raises(ConfigError, match="calibration") as e:
        load(tmp_path, overrides=[override])
    assert needle in str(e.value)


PER_DATASET = """name: t
output_dir: {out}
slms: [smollm2-135m]
llms: [smollm2-135m]
uq: [perplexity]
datasets: [addsub, {name: strategyqa, limit: 7, fit_limit: 3}]
dataset: {limit: 20, fit_limit: 10}
calibration: {enabled: true}
"""


def test_a_dataset_may_set_its_own_row_counts_without_moving_the_others_keys(tmp_path):
    grid_wide = make_plan(load(tmp_path, PER_DATASET.replace(", limit: 7, fit_limit: 3", "")))
    own = make_plan(load(tmp_path, PER_DATASET))
    gens = {(u.spec.dataset, u.spec.role, u.spec.stage): u for u in own.units.values() if u.kind == "gen"}
    assert gens[("strategyqa", "eval", "greedy")].spec.row_limit == 7
    assert gens[("strategyqa", "fit", "greedy")].spec.row_limit == 3
    assert gens[("addsub", "eval", "greedy")].spec.row_limit == 20
    assert gens[("addsub", "fit", "greedy")].spec.row_limit == 10
    addsub = {k for k, u in own.units.items() if u.kind == "gen" and u.spec.dataset == "addsub"}
    assert addsub and addsub <= set(grid_wide.units)  # the other dataset's work is the same work
    sqa = {k for k, u in own.units.items() if u.kind == "gen" and u.spec.dataset == "strategyqa"}
    assert not sqa & set(grid_wide.units)  # other rows: other keys
    changed = {s.dataset for s in own.settings} - {
        s.dataset for s in own.settings if s.hash in {t.hash for t in grid_wide.settings}
    }
    assert changed == {"strategyqa"}


@pytest.mark.parametrize("entry, needle", [("limit: 0", "limit=0 must be >= 1"), ("fit_limit: -2", "fit_limit=-2")])
def test_a_bad_per_dataset_row_count_is_named(tmp_path, entry, needle):
    with pytest.raises(ConfigError, match="strategyqa") as e:
        load(tmp_path, PER_DATASET.replace("limit: 7, fit_limit: 3", entry))
    assert needle in str(e.value)
