"""Issue 16, item 4: never pool what is defined differently. A UQ method's statistic on a dataset
has a definition (``jobs.uq.definition``): the answer mode the grid runs the dataset in and, for
statistics over the options, their number. Calibration pools, leave-one-out and cross-group
transfer and finding 2's dataset distances combine only datasets of one definition, and say which
were left out; hand-made pools shaped like the default grid's (a generated math dataset, constrained
yes/no and 4-option ones, a cloze one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jobs.analysis import findings as A
from jobs.analysis import report as R
from jobs.analysis.calibration import Pool
from jobs.prompts import AnswerModes
from jobs.uq import UQ_METHODS
from jobs.uq.base import DEFINITION_PARTS, UQMethod
from jobs.uq.definition import (
    DatasetForm,
    Definition,
    dataset_answer_mode,
    definition_key,
    option_counts,
    split_source_check,
)
from orchestrator.config import ConfigError, load_grid, warnings_of

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "conf" / "grid" / "default.yaml"
CONF1 = {
    "n_bins": 1,
    "frac": 1.0,
    "seed": 50,
    "binning": "equal_width",
    "scale": "uncertainty",
    "n_draws": 1,
    "targets": [0.1, 0.5],
    "fixed_threshold": {},
}
# how the grid ran each dataset: the three modes, two option counts
FORMS = {
    "addsub": DatasetForm("generate"),
    "strategyqa": DatasetForm("constrained", (2,)),
    "arc_easy": DatasetForm("constrained", (4,)),
    "piqa": DatasetForm("cloze", (2,)),
}
GROUPS = {"addsub": "math", "strategyqa": "commonsense", "arc_easy": "commonsense", "piqa": "commonsense"}
RNG = np.random.default_rng(0)


def _pool(u, name):
    u = np.asarray(u, float)
    return Pool(
        sample_id=[f"{name}{i}" for i in range(len(u))],
        uncertainty=u,
        slm_correct=RNG.random(len(u)) < 0.5,
        llm_correct=np.ones(len(u), bool),
    )


def _entropy_pools():
    """Mean token entropy as the default grid measured it: >= 1.5 nats over the vocabulary on
    generated math, <= ln 2 over yes/no options, <= ln 4 over four options, <= ln 2 in cloze."""
    return {
        "addsub": _pool(RNG.uniform(1.6, 3.0, 40), "addsub"),
        "strategyqa": _pool(RNG.uniform(0.05, np.log(2), 40), "strategyqa"),
        "arc_easy": _pool(RNG.uniform(0.2, 1.3, 40), "arc_easy"),
        "piqa": _pool(RNG.uniform(0.3, np.log(2), 40), "piqa"),
    }


def _defs(uqs=("mean_token_entropy", "ptrue", "avg_token_prob")):
    return A.method_definitions({u: u for u in uqs}, FORMS)


# ---- the definition key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, same, different",
    [
        # entropy over the options: mode and K
        ("mean_token_entropy", [], [("addsub", "strategyqa"), ("strategyqa", "arc_easy"), ("strategyqa", "piqa")]),
        ("jaccard", [], [("strategyqa", "arc_easy"), ("addsub", "arc_easy")]),
        # a token log p: the mode only (the option letter's raw log p whatever K is)
        ("avg_token_prob", [("strategyqa", "arc_easy")], [("addsub", "strategyqa"), ("arc_easy", "piqa")]),
        ("probe", [("strategyqa", "arc_easy")], [("addsub", "arc_easy"), ("strategyqa", "piqa")]),
        # a question about the answer, or a stated probability: one definition everywhere
        ("ptrue", [("addsub", "strategyqa"), ("arc_easy", "piqa")], []),
        ("verbal_2s", [("addsub", "piqa")], []),
    ],
)
def test_definition_key_keeps_what_the_method_depends_on(method, same, different):
    m = UQ_METHODS.get(method)
    key = {d: definition_key(m, f, d) for d, f in FORMS.items()}
    for a, b in same:
        assert key[a] == key[b], (method, a, b)
    for a, b in different:
        assert key[a] != key[b], (method, a, b)


def test_a_dataset_whose_option_count_varies_is_its_own_definition():
    ent = UQ_METHODS.get("mean_token_entropy")
    a = definition_key(ent, DatasetForm("constrained", (3, 4, 5)), "arc_challenge")
    b = definition_key(ent, DatasetForm("constrained", (3, 4, 5)), "other")
    assert a != b and a.own == "arc_challenge" and "of its own" in a.label
    # a method that does not depend on K pools it with its mode
    ppl = UQ_METHODS.get("perplexity")
    assert definition_key(ppl, DatasetForm("constrained", (3, 4, 5)), "x") == Definition("constrained")


def test_option_counts_come_from_the_stored_option_labels():
    rows = [{"option_labels": ["A", "B", "C", "D"]}, {"option_labels": ["A", "B", "C"]}, {"option_labels": None}, {}]
    assert option_counts(rows) == (3, 4)
    assert option_counts([{"option_labels": ["yes", "no"]}]) == (2,)
    assert option_counts([{"raw_output": "42"}]) == ()


def test_a_datasets_own_answer_mode_wins_over_the_grids():
    grid_mode = {"mc": "constrained", "yesno": "constrained", "numeric": "generate"}
    assert dataset_answer_mode(AnswerModes.resolve(None, grid_mode), "mc") == "constrained"
    assert dataset_answer_mode(AnswerModes.resolve("cloze", grid_mode), "mc") == "cloze"
    assert dataset_answer_mode(AnswerModes.resolve({"mc": "cloze"}, "constrained"), "yesno") == "generate"
    assert dataset_answer_mode(AnswerModes.resolve(None, "constrained"), "numeric") == "generate"  # no options
    assert dataset_answer_mode(AnswerModes.resolve(None, "generate"), "mixed") == "generate"
    assert dataset_answer_mode(AnswerModes.resolve(None, grid_mode), "mixed") == "mixed"  # its tasks answer two ways


def test_definition_depends_on_is_validated_and_declared_by_every_method():
    with pytest.raises(ValueError, match="definition_depends_on=.*answer_mode, option_count"):
        UQMethod("x", ("token_logprobs",), lambda s: s, definition_depends_on=("dataset",))
    with pytest.raises(ValueError, match="a tuple of"):
        UQMethod("x", ("token_logprobs",), lambda s: s, definition_depends_on="answer_mode")  # type: ignore[arg-type]
    for name in UQ_METHODS.names():
        assert set(UQ_METHODS.get(name).definition_depends_on) <= set(DEFINITION_PARTS), name
    assert UQ_METHODS.get("ptrue").definition_depends_on == ()
    assert UQ_METHODS.get("probe").definition_depends_on == ("answer_mode",)
    assert "option_count" in UQ_METHODS.get("mean_token_entropy").definition_depends_on


# ---- what it must show: pooling a constrained, a cloze and a generated dataset ---------------


def test_pooling_a_constrained_a_cloze_and_a_generated_dataset_is_refused_and_reported():
    """One method, mean token entropy, on a constrained yes/no, a constrained 4-option, a cloze
    and a generated dataset: no calibration set mixes two of them; every held-out dataset is
    skipped with the reason, and each dataset left out is named with both definitions."""
    key = ("s", "mean_token_entropy", "l")
    ev = {key: _entropy_pools()}
    t = A.transfer_analysis(ev, {}, CONF1, "most_uncertain", definitions=_defs())
    assert t["call_rate"] == [] and t["curves"] == [] and t["accuracy"] == []
    skipped = {s["heldout"]: s["reason"] for s in t["skipped"]}
    assert set(skipped) == set(FORMS)
    assert (
        "addsub (generate) not pooled with arc_easy (constrained, 4 options) for mean_token_entropy"
        in (skipped["arc_easy"])
    )
    assert "piqa (cloze, 2 options) not pooled with strategyqa (constrained, 2 options)" in skipped["strategyqa"]
    left = {(n["heldout"], d) for n in t["not_pooled"] for d in n["left_out"]}
    assert left == {(h, d) for h in FORMS for d in FORMS if d != h}

    # the same pools without definitions: one pooled calibration set per held-out dataset (the old way)
    old = A.transfer_analysis(ev, {}, CONF1, "most_uncertain")
    assert {r["heldout"] for r in old["call_rate"]} == set(FORMS) and not old["skipped"]


def test_a_dataset_of_the_same_definition_still_calibrates_and_only_from_it():
    """Two cloze 2-option datasets pool with each other and with nothing else."""
    key = ("s", "mean_token_entropy", "l")
    pools = _entropy_pools() | {"hellaswag": _pool(RNG.uniform(0.3, np.log(2), 40), "hellaswag")}
    forms = FORMS | {"hellaswag": DatasetForm("cloze", (2,))}
    defs = A.method_definitions({"mean_token_entropy": "mean_token_entropy"}, forms)
    t = A.transfer_analysis({key: pools}, {}, CONF1, "most_uncertain", definitions=defs)
    cal = [r for r in t["call_rate"] if r["method"] == "calibration"]
    assert {r["heldout"] for r in cal} == {"piqa", "hellaswag"}
    # the calibration set is the other cloze dataset's 40 rows (one bin, all kept)
    assert {r["n_fit"] for r in cal} == {40}
    # and its threshold is that dataset's own quantile: the generated rows never moved it
    alone = A.transfer_analysis(
        {key: {d: pools[d] for d in ("piqa", "hellaswag")}}, {}, CONF1, "most_uncertain", definitions=defs
    )
    assert [r["threshold"] for r in alone["call_rate"]] == [
        r["threshold"] for r in t["call_rate"] if r["heldout"] in ("piqa", "hellaswag")
    ]


def test_a_method_declaring_no_dependence_pools_across_answer_modes():
    key = ("s", "ptrue", "l")
    pools = {d: _pool(RNG.uniform(0, 1, 30), d) for d in FORMS}
    t = A.transfer_analysis({key: pools}, {}, CONF1, "most_uncertain", definitions=_defs())
    cal = [r for r in t["call_rate"] if r["method"] == "calibration"]
    assert {r["heldout"] for r in cal} == set(FORMS)
    assert {r["n_fit"] for r in cal} == {90}  # the three other datasets, every mode
    assert t["not_pooled"] == [] and t["skipped"] == []
    cross = A.group_transfer_analysis({key: pools}, {}, CONF1, "most_uncertain", GROUPS, definitions=_defs())
    to_cs = [r for r in cross["call_rate"] if r["target_group"] == "commonsense"]
    assert {r["heldout"] for r in to_cs} == {"strategyqa", "arc_easy", "piqa"}
    assert all(r["source_datasets"] == ["addsub"] for r in to_cs)


def test_transfer_from_a_generated_dataset_to_constrained_ones_no_longer_appears():
    """The default grid's failure: thresholds calibrated on generated AddSub and applied to
    constrained StrategyQA / ARC-Easy routed all or nothing (realized call rate 1.000 or 0.000 at
    target 0.1). Those rows no longer appear in the cross-group or leave-one-out tables."""
    pools = _entropy_pools()
    del pools["piqa"]
    ev = {("s", "mean_token_entropy", "l"): pools, ("s", "avg_token_prob", "l"): pools}
    old = A.group_transfer_analysis(ev, {}, CONF1, "most_uncertain", GROUPS)
    at_01 = [r for r in old["call_rate"] if r["target_call_rate"] == 0.1]
    assert at_01 and all(r["realized_call_rate"] in (0.0, 1.0) for r in at_01)  # the old failure, reproduced

    new = A.group_transfer_analysis(ev, {}, CONF1, "most_uncertain", GROUPS, definitions=_defs())
    assert new["call_rate"] == [] and new["summary"] == []
    assert {(s["uq"], s["source_group"], s["heldout"]) for s in new["skipped"]} == {
        (u, g, h)
        for u in ("mean_token_entropy", "avg_token_prob")
        for g, h in (("math", "strategyqa"), ("math", "arc_easy"), ("commonsense", "addsub"))
    }
    assert any(
        "addsub (generate) not pooled with strategyqa (constrained, 2 options) for mean_token_entropy" in x
        for n in new["not_pooled"]
        for x in n["left_out"].values()
    )
    loo = A.transfer_analysis(ev, {}, CONF1, "most_uncertain", definitions=_defs())
    cal = [r for r in loo["call_rate"] if r["method"] == "calibration"]
    # avg_token_prob: the two constrained datasets calibrate each other; AddSub has no source
    assert {(r["uq"], r["heldout"]) for r in cal} == {("avg_token_prob", "strategyqa"), ("avg_token_prob", "arc_easy")}
    assert all(r["n_fit"] == 40 for r in cal)  # the other constrained dataset only, never AddSub's rows


def test_finding_2_compares_only_datasets_of_one_definition():
    pools = _entropy_pools()
    ev = {("s", "mean_token_entropy", "l"): pools}
    old = A.distance_analysis(ev)
    assert old["ks"]["across_datasets"]["n_pairs"] == 6
    # generated vs constrained entropies do not overlap at all: KS 1, a difference of definition
    assert max(max(row) for row in old["by_method"]["s__mean_token_entropy"]["ks"]) == pytest.approx(1.0)

    defs = A.method_definitions({"mean_token_entropy": "mean_token_entropy"}, FORMS | {"arc_easy": FORMS["piqa"]})
    new = A.distance_analysis(ev, None, defs)
    # piqa and arc_easy (here both cloze, 2 options) are the one pair left to compare
    assert new["ks"]["across_datasets"]["n_pairs"] == 1
    assert list(new["by_method"]) == ["s__mean_token_entropy [cloze, 2 options]"]
    assert set(new["by_method"]["s__mean_token_entropy [cloze, 2 options]"]["names"]) == {"arc_easy", "piqa"}
    assert len(new["not_compared"]) == 5
    assert "arc_easy (cloze, 2 options) not pooled with addsub (generate) for mean_token_entropy" in new["not_compared"]
    f2 = A.distribution_finding(new)
    assert any("5 dataset pair(s) are not compared" in e for e in f2["evidence"])


def test_report_names_what_was_left_out_and_why():
    pools = _entropy_pools()
    key = ("s", "mean_token_entropy", "l")
    defs = _defs(("mean_token_entropy",))
    t = A.transfer_analysis({key: pools}, {}, CONF1, "most_uncertain", definitions=defs)
    dist = A.distance_analysis({key: pools}, None, defs)
    summary = A.definitions_summary(
        {"mean_token_entropy": "mean_token_entropy", "ood_probe": "ood_probe"},
        FORMS,
        defs | A.method_definitions({"ood_probe": "ood_probe"}, FORMS),
        t,
        None,
        dist,
        {"ood_probe"},
        list(FORMS),
    )
    assert summary["forms"]["arc_easy"] == "constrained, 4 options"
    assert summary["depends_on"]["mean_token_entropy"] == ["answer_mode", "option_count"]
    assert (
        "addsub (generate) not pooled with arc_easy (constrained, 4 options) for mean_token_entropy"
        in (summary["not_pooled"]["leave_one_out"])
    )
    # the OOD probe for addsub trains on other datasets, none of them generated: said, not hidden
    assert any(
        x.startswith("ood_probe on addsub (generate) is trained only on") for x in summary["trained_across_definitions"]
    )
    html = "".join(R.definitions_section({"definitions": summary}).html)
    assert "Which datasets are combined" in html
    assert "addsub (generate) not pooled with arc_easy (constrained, 4 options) for mean_token_entropy" in html


# ---- config time ------------------------------------------------------------------------------


def test_split_source_check_warns_or_refuses():
    ent = UQ_METHODS.get("mean_token_entropy")
    ptrue = UQ_METHODS.get("ptrue")
    forms = {"addsub": DatasetForm("generate"), "strategyqa": DatasetForm("constrained", (2,))}
    defs = {(u, d): definition_key(m, f, d) for u, m in (("ent", ent), ("ptrue", ptrue)) for d, f in forms.items()}
    groups = {"addsub": "math", "strategyqa": "commonsense"}
    warn, refuse = split_source_check(defs, ["leave_one_out", "cross_group"], groups)
    assert refuse == [] and len(warn) == 2  # ptrue has sources; ent is left out, said per split
    assert "addsub (generate) has no calibration dataset of the same definition for ent" in warn[0]
    only_ent = {k: v for k, v in defs.items() if k[0] == "ent"}
    warn, refuse = split_source_check(only_ent, ["leave_one_out"], groups)
    assert warn == [] and len(refuse) == 1 and "drop leave_one_out" in refuse[0]


def test_the_default_grid_warns_which_datasets_have_no_source_of_their_definition():
    r = load_grid(DEFAULT)
    w = [x for x in warnings_of(r) if x.startswith("calibration.splits")]
    assert any("leave_one_out: addsub (generate) has no calibration dataset of the same definition" in x for x in w)
    assert not any("ptrue" in x for x in w)  # it pools across modes


def test_a_grid_whose_split_could_only_pool_different_definitions_is_refused():
    grid = DEFAULT.with_name("default-constrained.yaml")  # StrategyQA, ARC-Easy (commonsense), AddSub (math)
    with pytest.raises(ConfigError, match="cross_group: no dataset has a calibration source answered the way it is"):
        load_grid(grid, ["uq=[perplexity]"])
    load_grid(grid, ["uq=[perplexity]", "calibration.splits=[leave_one_out]"])  # the constrained pair
    r = load_grid(grid, ["uq=[perplexity]", "calibration.enabled=false"])  # no units wasted: a warning
    assert any("cross_group" in x for x in warnings_of(r))


# ---- the store and `uqroute calibrate` ----------------------------------------------------------


def test_calibrate_build_refuses_a_set_of_two_definitions_and_apply_a_dataset_of_another_mode(tmp_path):
    """A store written by hand (as in test_ood_leave_out): constrained StrategyQA and ARC-Easy,
    generated AddSub. The option counts come from the stored greedy rows; `calibrate build` refuses
    to pool AddSub with the others for perplexity, builds the constrained set with --exclude addsub
    and records its definition; `calibrate apply` refuses AddSub against that set."""
    from jobs.datasets.roles import load_role
    from jobs.records import finish_unit, unit_dir, write_table
    from orchestrator.calibrate import _check_answer_mode, build
    from orchestrator.grid_view import grid_view
    from orchestrator.plan import make_plan
    from orchestrator.runner import bind_output

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "name: t\noutput_dir: " + str(tmp_path / "out") + "\nslms: [smollm2-135m]\nllms: [smollm2-135m]\n"
        "uq: [perplexity, mean_token_entropy]\ndatasets: [addsub, strategyqa, arc_easy]\n"
        "decoding: {answer_mode: {mc: constrained, yesno: constrained}}\n"
    )
    r = load_grid(
        grid,
        ["calibration.enabled=true", "calibration.pool=fit", "calibration.n_bins=1", "calibration.frac=1"]
        + ["dataset.fit_limit=6", "dataset.limit=4"],
        conf_dir=REPO / "conf",
    )
    bind_output(r)
    plan = make_plan(r)
    store = r.store_dir
    fit = {d: load_role(r.datasets[d], r.grid.dataset, "fit")[0] for d in r.datasets}

    def write(kind, key, rows):
        write_table(unit_dir(store, kind, key) / "part-00000.parquet", rows)
        finish_unit(unit_dir(store, kind, key), {"key": key})

    def gen_rows(d):
        return [
            {
                "sample_id": s.id,
                "raw_output": f"The answer is {s.gold}.",
                "gold": s.gold,
                "task": s.task,
                "choices": list(s.choices),
                "aliases": list(s.aliases),
                "error": None,
                "option_labels": None
                if d == "addsub"
                else (["yes", "no"] if s.task == "yesno" else list(s.choice_labels())),
            }
            for s in fit[d]
        ]

    for (_slm, _uq, d), fs in plan.fit_scores.items():
        write("gen", fs.slm_greedy, gen_rows(d))
        write("score", fs.score, [{"sample_id": s.id, "uncertainty": 1.5} for s in fit[d]])
    for (_llm, d), key in plan.fit_llm.items():
        write("gen", key, gen_rows(d))

    forms = A.dataset_forms(grid_view(r, plan))
    k_arc = tuple(sorted({len(s.choices) for s in fit["arc_easy"]}))
    assert forms["addsub"] == DatasetForm("generate")
    assert forms["strategyqa"] == DatasetForm("constrained", (2,))
    assert forms["arc_easy"] == DatasetForm("constrained", k_arc)

    with pytest.raises(ConfigError, match=r"generate: addsub; constrained: arc_easy, strategyqa.*--exclude addsub"):
        build(r.output_dir, uq="perplexity")
    res = build(r.output_dir, uq="perplexity", exclude=["addsub"])
    assert res["record"]["definition"] == {
        "answer_mode": "constrained",
        "option_count": None,
        "own": None,
        "label": "constrained",
    }
    # entropy over the options: 2 options (yes/no) and ARC's are two definitions
    with pytest.raises(ConfigError, match="constrained, 2 options: strategyqa"):
        build(r.output_dir, uq="mean_token_entropy", exclude=["addsub"])
    with pytest.raises(ConfigError, match="dataset 'addsub' would be answered in mode 'generate'"):
        _check_answer_mode(res["record"], r, r.datasets["addsub"])
    _check_answer_mode(res["record"], r, r.datasets["arc_easy"])  # the set's own mode: fine
    # `calibrate apply <grid> <dataset>` builds from the datasets answered like the one given
    like = build(r.output_dir, uq="perplexity", exclude=["arc_easy"], like="arc_easy", name="like-arc")
    assert like["record"]["datasets"] == ["strategyqa"]
    new = build(r.output_dir, uq="perplexity", like="gsm8k", name="like-gsm8k")  # not in the grid: generated
    assert new["record"]["datasets"] == ["addsub"] and new["record"]["definition"]["answer_mode"] == "generate"


def test_two_datasets_each_a_definition_of_its_own_are_not_compared_with_each_other():
    ent = ("s", "mean_token_entropy", "l")
    pools = {d: _pool(RNG.uniform(0.1, 1.5, 30), d) for d in ("arc_challenge", "mmlu", "arc_easy")}
    forms = {
        "arc_challenge": DatasetForm("constrained", (3, 4, 5)),
        "mmlu": DatasetForm("constrained", (2, 4)),
        "arc_easy": DatasetForm("constrained", (4,)),
    }
    defs = A.method_definitions({"mean_token_entropy": "mean_token_entropy"}, forms)
    dist = A.distance_analysis({ent: pools}, None, defs)
    assert dist["ks"]["across_datasets"]["n_pairs"] == 0 and len(dist["not_compared"]) == 3
    t = A.transfer_analysis({ent: pools}, {}, CONF1, "most_uncertain", definitions=defs)
    assert t["call_rate"] == [] and len(t["skipped"]) == 3
