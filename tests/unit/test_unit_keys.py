"""Unit keys go stale exactly when what they read or apply changes (issue 8, item 6), and the OOD
probe's calibration scores for a held-out target come from models that never saw it (item 10).

Plan-level: no model, no Ray. A store is faked by writing the manifests of one plan's units; the
plan of a changed configuration then says which units are not done."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs import answers, prompts
from jobs.records import finish_unit, unit_dir
from orchestrator.config import load_grid
from orchestrator.plan import KIND_DIRS, make_plan

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "conf" / "grid" / "tiny.yaml"
CONF = REPO / "conf"


def tiny(tmp_path, overrides=()):
    return load_grid(TINY, [f"output_dir={tmp_path / 'out'}", *overrides])


def fake_store(plan, store: Path) -> None:
    """Mark every unit of ``plan`` done (its manifest), as a finished run leaves them."""
    for k, u in plan.units.items():
        finish_unit(unit_dir(store, KIND_DIRS[u.kind], k), {"key": k})


def not_done(plan, store: Path) -> set[str]:
    return set(plan.units) - plan.done(store)


def labels(plan, keys) -> set[str]:
    return {plan.units[k].label for k in keys}


def stale_after(tmp_path, monkeypatch, target, name: str, value):
    """Plan the tiny grid and fake its store done, then set ``target.name = value`` and plan again:
    (the new plan, its keys that are not done)."""
    r = tiny(tmp_path)
    fake_store(make_plan(r), r.store_dir)
    monkeypatch.setattr(target, name, value)
    bumped = make_plan(r)
    return bumped, not_done(bumped, r.store_dir)


def test_a_ptrue_prompt_bump_invalidates_exactly_ptrue_passes_scores_and_settings(tmp_path, monkeypatch):
    r = tiny(tmp_path)
    base = make_plan(r)
    fake_store(base, r.store_dir)
    assert not not_done(base, r.store_dir)
    monkeypatch.setattr(prompts, "STAGE_PROMPT_VERSIONS", prompts.STAGE_PROMPT_VERSIONS | {"ptrue": "bumped"})
    bumped = make_plan(r)
    stale = not_done(bumped, r.store_dir)
    # expected, from the axes (not from the dependency graph the plan built)
    want = {
        k
        for k, u in bumped.units.items()
        if (u.kind == "gen" and u.stage == "ptrue")
        or (u.kind == "score" and u.spec.uq == "ptrue")
        or (u.kind == "setting" and u.spec.axes["uq"] == "ptrue")
    }
    assert stale == want, (sorted(labels(bumped, stale - want)), sorted(labels(bumped, want - stale)))
    kinds = sorted(bumped.units[k].kind for k in stale)
    # ptrue: eval + fit role per dataset (2); score: eval + fit (2 datasets); settings: 2
    assert kinds.count("gen") == 4 and kinds.count("score") == 4 and kinds.count("setting") == 2
    # the setting's identity (MLflow run name / tag) is unchanged; only its unit key moved
    assert [s.hash for s in bumped.settings] == [s.hash for s in base.settings]
    changed = {s.hash for s in bumped.settings if bumped.setting_keys[s.hash] != base.setting_keys[s.hash]}
    assert changed == {s.hash for s in bumped.settings if s.uq == "ptrue"}
    # the explicit argument does the same as the module-level table
    table = dict(prompts.STAGE_PROMPT_VERSIONS)
    monkeypatch.setattr(prompts, "STAGE_PROMPT_VERSIONS", {})
    assert set(make_plan(r, prompt_versions=table).units) == set(bumped.units)


def test_an_llm_prompt_bump_reaches_every_setting_but_no_score(tmp_path, monkeypatch):
    """Setting units read the LLM pass: before, they were keyed by the setting hash alone and
    stayed "done" (with the old LLM answers) when the LLM's pass changed."""
    bumped, stale = stale_after(
        tmp_path, monkeypatch, prompts, "STAGE_PROMPT_VERSIONS", prompts.STAGE_PROMPT_VERSIONS | {"llm": "bumped"}
    )
    assert {bumped.units[k].kind for k in stale} == {"gen", "setting"}
    assert {bumped.units[k].stage for k in stale if bumped.units[k].kind == "gen"} == {"llm"}
    assert {k for k in stale if bumped.units[k].kind == "setting"} == set(bumped.setting_keys.values())


def test_the_global_prompt_version_reaches_everything(tmp_path, monkeypatch):
    bumped, stale = stale_after(tmp_path, monkeypatch, prompts, "PROMPT_VERSION", prompts.PROMPT_VERSION + "-bumped")
    assert stale == set(bumped.units)


def test_an_extraction_bump_reruns_no_model_and_only_scores_that_read_answers(tmp_path, monkeypatch):
    """EXTRACTION_VERSION was documented as part of result keys but used nowhere: a new extractor
    left every score and setting "done" with the old answers."""
    bumped, stale = stale_after(
        tmp_path, monkeypatch, answers, "EXTRACTION_VERSION", answers.EXTRACTION_VERSION + "-bumped"
    )
    assert not {k for k in stale if bumped.units[k].kind == "gen"}  # no model work
    assert {k for k in stale if bumped.units[k].kind == "setting"} == set(bumped.setting_keys.values())
    stale_uq = {bumped.units[k].spec.uq for k in stale if bumped.units[k].kind == "score"}
    # avg_token_prob reads the answer letter's probability; trained methods read correctness labels
    assert stale_uq == {"avg_token_prob", "probe", "ood_probe"}


def test_a_scoring_version_bump_reruns_every_score_and_setting_and_no_model(tmp_path, monkeypatch):
    import orchestrator.plan as P

    bumped, stale = stale_after(tmp_path, monkeypatch, P, "SCORING_VERSION", P.SCORING_VERSION + "-bumped")
    assert stale == {k for k, u in bumped.units.items() if u.kind in ("score", "setting")}


def test_unit_key_is_one_function_and_gen_keys_keep_their_old_formula():
    from orchestrator.grid import stable_hash
    from orchestrator.plan import unit_key

    ident, deps = {"stage": "greedy", "params": {"seed": 0}}, {"greedy": "abc"}
    assert unit_key("gen", ident, deps) == stable_hash(ident | {"deps": deps})  # stores of generations stay valid
    assert len({unit_key(k, ident, deps) for k in ("gen", "score", "setting")}) == 3
    with pytest.raises(ValueError, match="unknown unit kind 'sample'.*gen, score, setting"):
        unit_key("sample", ident, deps)
    with pytest.raises(ValueError, match="'deps'"):
        unit_key("score", {"deps": 1}, deps)


def test_setting_results_are_read_through_the_plan(tmp_path):
    r = tiny(tmp_path)
    plan = make_plan(r)
    s = plan.settings[0]
    assert plan.setting_dir(r.store_dir, s) == r.store_dir / "settings" / plan.setting_keys[s.hash]
    assert plan.setting_unit(s.hash).spec.setting_hash == s.hash
    assert plan.setting_keys[s.hash] != s.hash
    with pytest.raises(KeyError, match="not part of this plan"):
        plan.setting_unit("0" * 16)


# ---- item 10: the OOD probe's leave-out ----------------------------------------------------------

BASE3 = """name: t
output_dir: {out}
slms: [smollm2-135m]
llms: [smollm2-135m]
uq: [perplexity, probe, ood_probe]
datasets: [addsub, strategyqa, arc_easy]
"""


def load3(tmp_path, overrides=()):
    p = tmp_path / "grid.yaml"
    p.write_text(BASE3.replace("{out}", str(tmp_path / "out")))
    return load_grid(p, list(overrides), conf_dir=CONF)


def _gen_datasets(plan, score_key: str) -> set[str]:
    """Datasets of every generation pass a score unit reads (the rows its model saw or scored)."""
    return {plan.units[d].spec.dataset for d in plan.units[score_key].deps}


@pytest.mark.parametrize("calibration, role", [(True, "fit"), (False, "eval")])
def test_calibration_scores_for_a_heldout_target_come_from_models_that_never_saw_it(tmp_path, calibration, role):
    r = load3(tmp_path, [f"calibration.enabled={str(calibration).lower()}"])
    plan = make_plan(r)
    ds = list(r.datasets)
    # one leave-out unit per (dataset, held-out target), for methods trained on other datasets only
    assert set(plan.leave_out) == {("smollm2-135m", "ood_probe", d, t) for d in ds for t in ds if d != t}
    for (_slm, _uq, d, t), lo in plan.leave_out.items():
        u = plan.units[lo.score]
        assert lo.role == role and u.spec.role == role and u.spec.dataset == d
        assert [f.dataset for f in u.spec.fit] == [x for x in ds if x not in (d, t)]
        assert t not in _gen_datasets(plan, u.key)  # nothing of the target was read
        assert lo.slm_greedy == u.spec.stages["greedy"]
    # the ordinary OOD scores of D did see T's fit rows: that is what the leave-out replaces
    if calibration:
        for (_slm, uq, _d), fs in plan.fit_scores.items():
            if uq == "ood_probe":
                assert _gen_datasets(plan, fs.score) == set(ds)
    # no model work is added: every generation the leave-outs read is read by another unit too
    lo_keys = {lo.score for lo in plan.leave_out.values()}
    read_elsewhere = {d for k, u in plan.units.items() if k not in lo_keys for d in u.deps}
    assert {d for k in lo_keys for d in plan.units[k].deps} <= read_elsewhere


def test_two_datasets_leave_no_dataset_to_train_a_leave_out_probe(tmp_path):
    plan = make_plan(tiny(tmp_path))
    assert plan.leave_out == {}
