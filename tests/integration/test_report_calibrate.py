"""Generalization on the tiny grid run (real SmolLM2, real data, Ray, MLflow): the report seen in
a real headless Chromium, calibration drawn only from train/dev (fit-role) rows, transfer
numbers that can be recomputed from the per-sample records, and `uqroute calibrate build|apply`."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from jobs.analysis.calibration import Strata, Threshold, expected_call_rate, threshold_for_call_rate
from jobs.analysis.findings import eval_pools, fit_pools
from orchestrator.cli import main
from orchestrator.grid_view import grid_view
from tests.browser import find_chromium, inspect_page

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def analysis(tiny_run):
    return json.loads((tiny_run["out"] / "report" / "analysis.json").read_text())


def test_calibration_rows_never_include_an_evaluated_row(tiny_run):
    view = grid_view(tiny_run["resolved"], tiny_run["plan"])
    ev = eval_pools(view.settings)
    fp = fit_pools(view.store, view.settings, view.extraction_policy)
    assert set(fp) == set(ev) and len(fp) == 7
    for key in ev:
        assert set(fp[key]) == {"addsub", "strategyqa"}
        for ds in ev[key]:
            assert len(fp[key][ds].sample_id) == 6
            assert not set(fp[key][ds].sample_id) & set(ev[key][ds].sample_id), (key, ds)


def test_transfer_rows_recompute_from_the_heldout_records(tiny_run, analysis):
    """Every calibration-threshold row: applying its threshold to the held-out dataset's evaluated
    records (read back from Parquet) gives the realized call rate the report shows."""
    r, plan = tiny_run["resolved"], tiny_run["plan"]
    rows = [x for x in analysis["transfer"]["call_rate"] if x["method"] == "calibration"]
    assert {x["source"] for x in rows} == {"fit"}
    # methods x held-out datasets x targets, less the pairs skipped with a reason (e.g. a method
    # that could score no calibration row of the other dataset: all NaN)
    skipped = analysis["transfer"]["skipped"]
    # the OOD probe's calibration rows for a held-out target must be scored by a probe that never saw it
    # (issue 8, item 10): with two datasets none is left to train one, so both held-outs are skipped
    assert {x["heldout"] for x in skipped if x["uq"] == "ood_probe"} == {"addsub", "strategyqa"}
    # (a "drop" method -- the verbal ones -- may also have no scored row left on a held-out dataset)
    assert all(x["reason"] for x in skipped)
    assert len([x for x in skipped if x["uq"] != "ood_probe" and analysis["nan_policies"][x["uq"]] != "drop"]) <= 2
    assert len(rows) == (7 * 2 - len(skipped)) * 9
    by_axes = {(s.uq, s.dataset): s for s in plan.settings}
    for x in rows:
        s = by_axes[(x["uq"], x["heldout"])]
        rec = pq.read_table(plan.setting_dir(r.store_dir, s) / "records.parquet").to_pydict()
        u = np.asarray([np.nan if v is None else v for v in rec["uncertainty"]], dtype=float)
        # the setting's NaN policy: unscored rows go to the LLM first, or are left out ("drop")
        u = u[~np.isnan(u)] if analysis["nan_policies"][x["uq"]] == "drop" else np.where(np.isnan(u), np.inf, u)
        thr = np.inf if x["threshold"] is None else x["threshold"]  # JSON null: only unscored rows routed
        rate = expected_call_rate(u, Threshold(thr, x["tie_frac"]))  # threshold, tie_frac: the first draw's
        assert rate == pytest.approx(x["realized_call_rate_draws"][0], abs=1e-12)
        assert x["call_rate_error_draws"][0] == pytest.approx(rate - x["target_call_rate"], abs=1e-12)
        # the row reports the mean over the calibration draws
        assert x["n_draws"] == 3 and x["realized_call_rate"] == pytest.approx(np.mean(x["realized_call_rate_draws"]))
        assert x["n_eval"] == len(u)


def test_cross_group_split_on_two_datasets_equals_leave_one_out(tiny_run, analysis):
    """Issue 10, item 3: the tiny grid's groups are addsub (math) and strategyqa (commonsense), so
    calibrating on math and applying on commonsense is leave-one-out with strategyqa held out (and
    the reverse); the OOD probe has no model that saw neither group and is skipped in both."""
    cross = analysis["cross_group"]
    assert cross["groups"] == {"addsub": "math", "strategyqa": "commonsense"}
    loo = {
        (x["uq"], x["heldout"], x["target_call_rate"]): x
        for x in analysis["transfer"]["call_rate"]
        if x["method"] == "calibration"
    }
    pairs = {("math", "commonsense"): "strategyqa", ("commonsense", "math"): "addsub"}
    assert cross["call_rate"]
    for x in cross["call_rate"]:
        assert x["heldout"] == pairs[(x["source_group"], x["target_group"])] and x["source"] == "fit"
        want = loo[(x["uq"], x["heldout"], x["target_call_rate"])]
        for k in ("threshold", "tie_frac", "realized_call_rate", "call_rate_error", "accuracy_error", "n_fit"):
            assert x[k] == pytest.approx(want[k], abs=1e-12, nan_ok=True), (x["uq"], x["heldout"], k)
    assert {(s["uq"], s["source_group"]) for s in cross["skipped"] if s["uq"] == "ood_probe"} == {
        ("ood_probe", "math"),
        ("ood_probe", "commonsense"),
    }
    assert [s["source_group"] for s in cross["sentences"]] == ["commonsense", "math"]
    page = (tiny_run["out"] / "report" / "index.html").read_text()
    assert 'id="cross-group"' in page and page.count("<li>Calibrated on ") == 2


@pytest.mark.skipif(find_chromium() is None, reason="needs Chromium: apt-get install chromium (scripts/test.sh does)")
def test_report_renders_in_headless_chromium(tiny_run, analysis, tmp_path):
    html = tiny_run["out"] / "report" / "index.html"
    shot = tmp_path / "report.png"
    page = inspect_page(
        html.as_uri(),
        {
            "title": "document.title",
            "images": "document.images.length",
            "broken": "Array.from(document.images).filter(i => !(i.naturalWidth > 100 && i.naturalHeight > 100)).length",
            "external": "Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || "
            "e.getAttribute('href')).filter(u => !u.startsWith('data:') && !u.startsWith('#')).length",
            "findings": "Array.from(document.querySelectorAll('.finding')).map(e => [e.dataset.finding, "
            "e.querySelector('.verdict').textContent])",
            "err_head": "Array.from(document.querySelectorAll('table.transfer-error th')).map(e => e.textContent)",
            "err_rows": "Array.from(document.querySelectorAll('table.transfer-error tbody tr')).map(r => "
            "Array.from(r.cells).map(c => c.textContent))",
            "too_wide": "Array.from(document.querySelectorAll('img, table')).filter(i => i.getBoundingClientRect().right > "
            "document.documentElement.clientWidth + 1).length",
            "height": "document.documentElement.scrollHeight",
        },
        shot,
    )
    assert page["title"] == "uqroute report: tiny"
    # routing curves (2 datasets) + AUROC + histograms + 2 heatmaps + transfer + the cost section's
    # accuracy-vs-cost plot (empty before issue 9: it looked for settings by hash), all decoded by the browser
    assert page["images"] == 8 and page["broken"] == 0 and page["too_wide"] == 0
    assert page["external"] == 0  # self-contained: opens offline, can be mailed as one file
    verdicts = {"holds", "partly", "does not hold", "not testable"}
    assert [f[0] for f in page["findings"]] == ["1", "2", "3"]
    assert all(f[1].removeprefix("Here: ") in verdicts for f in page["findings"])
    assert [f[1].removeprefix("Here: ") for f in page["findings"]] == [f["verdict"] for f in analysis["findings"]]
    # the transfer-error table: one row per (UQ method, held-out dataset), one column per target
    assert page["err_head"] == ["UQ method", "held-out dataset"] + [f"{t}0%" for t in range(1, 10)] + ["mean |err|"]
    assert len(page["err_rows"]) == 14 - len(analysis["transfer"]["skipped"])
    want = {
        (x["uq"], x["heldout"], round(x["target_call_rate"], 2)): x["call_rate_error"]
        for x in analysis["transfer"]["call_rate"]
        if x["method"] == "calibration"
    }
    for cells in page["err_rows"]:
        for j, t in enumerate(np.arange(1, 10) / 10):
            assert float(cells[2 + j]) == pytest.approx(want[(cells[0], cells[1], round(t, 2))], abs=6e-4)
    # what a person sees: a long page, not a blank one
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] == page["height"] > 3000 and 1200 <= img.shape[1] <= 1280  # less a scrollbar
    assert float(img[..., :3].std()) > 0.05
    assert float((img[..., :3] < 0.5).mean()) > 0.01  # text and lines, not just white


def test_report_is_on_the_parent_mlflow_run(tiny_run):
    sink = tiny_run["sink"]
    c = MlflowClient(tiny_run["uri"])
    run = c.get_run(sink.parent_id)
    arts = {a.path for a in c.list_artifacts(sink.parent_id, "report")}
    assert {"report/index.html", "report/analysis.json", "report/transfer.png", "report/distributions.png"} <= arts
    assert {run.data.tags[f"finding_{i}"] for i in (1, 2, 3)} <= {"holds", "partly", "does not hold", "not testable"}
    assert "transfer_calibration_mean_abs_call_rate_error" in run.data.metrics


def test_report_command_rebuilds_from_the_store(tiny_run, capsys):
    html = tiny_run["out"] / "report" / "index.html"
    before = html.stat().st_mtime_ns
    assert main(["report", str(tiny_run["out"]), "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert "Finding 1" in out and "Finding 3" in out and str(html) in out.replace("\n", "")
    assert html.stat().st_mtime_ns > before


def test_calibrate_build_writes_a_dataset_of_fit_rows(tiny_run, capsys, tmp_path):
    from jobs.datasets.roles import load_role
    from orchestrator.config import load_grid

    out = tiny_run["out"]
    assert main(["calibrate", "build", str(out), "--uq", "perplexity", "--n-bins", "4", "--frac", "0.5"]) == 0
    printed = capsys.readouterr().out
    folder = out / "calibration" / "smollm2-test__perplexity__smollm2-test"
    assert "thresholds" in printed and str(folder.name) in printed
    rec = json.loads((folder / "record.json").read_text())
    rows = [json.loads(x) for x in (folder / "calibration.jsonl").read_text().splitlines()]
    assert rec["n_selected"] == len(rows) and rec["n_pooled"] == 12 and (rec["n_bins"], rec["frac"]) == (4, 0.5)
    assert rec["source_splits"] == {"addsub": "eval-disjoint", "strategyqa": "eval-disjoint"}
    ev = eval_pools(grid_view(tiny_run["resolved"], tiny_run["plan"]).settings)[
        ("smollm2-test", "perplexity", "smollm2-test")
    ]
    for row in rows:  # every row is a fit row, with the score and correctness it had in the grid
        assert row["source_id"] not in ev[row["source_dataset"]].sample_id
        assert {"question", "task", "gold", "uncertainty", "slm_correct", "llm_correct"} <= set(row)
    assert {row["task"] for row in rows} <= {"numeric", "yesno"}
    # thresholds in the record cut inside their stratum (issue 17.1): the rows' stored strata give
    # them back, within one stratum's weight of the weighted quantile's rate (weight: inverse
    # sampling fraction)
    u = np.asarray([row["uncertainty"] for row in rows])
    w = np.asarray([row["weight"] for row in rows])
    assert w.sum() == pytest.approx(rec["n_pooled"])
    strata = Strata.from_record(rec, [row["stratum"] for row in rows])
    for t in rec["thresholds"]:
        thr = threshold_for_call_rate(u, t["target_call_rate"], strata=strata)
        assert (t["threshold"], t["tie_frac"]) == pytest.approx((thr.value, thr.tie_frac))
        rate = expected_call_rate(u, Threshold(t["threshold"], t["tie_frac"]), weights=w)
        assert abs(rate - t["target_call_rate"]) <= w.max() / w.sum() + 1e-12
    # the set is a dataset a grid can use like any other
    grid = tmp_path / "g.yaml"
    grid.write_text(
        f"name: c\noutput_dir: {tmp_path}/o\nslms: [smollm2-135m]\nllms: [smollm2-135m]\nuq: [perplexity]\n"
        f"datasets: [{(folder / 'dataset.yaml').read_text().split('name: ')[1].splitlines()[0]}]\n"
        f"dataset: {{limit: null}}\n"
    )
    conf = tmp_path / "conf" / "dataset"
    conf.mkdir(parents=True)
    (conf / f"{folder.name}.yaml").write_text((folder / "dataset.yaml").read_text())
    (tmp_path / "conf" / "grid").mkdir()
    grid = grid.rename(tmp_path / "conf" / "grid" / "g.yaml")
    r = load_grid(grid)
    samples, bad = load_role(r.datasets[folder.name], r.grid.dataset, "eval")
    assert not bad and sorted(s.id for s in samples) == sorted(row["id"] for row in rows)


def test_calibrate_errors_name_the_bad_value(tiny_run, capsys):
    out = str(tiny_run["out"])
    assert main(["calibrate", "build", out, "--uq", "perplxity"]) == 2
    assert "Did you mean 'perplexity'" in capsys.readouterr().out
    assert main(["calibrate", "build", out, "--uq", "ptrue", "--exclude", "gsm8k"]) == 2
    assert "gsm8k" in capsys.readouterr().out
    folder = str(tiny_run["out"] / "calibration" / "smollm2-test__perplexity__smollm2-test")
    assert main(["calibrate", "apply", folder, "--target-call-rate", "1.5"]) == 2
    assert "must be in [0, 1]" in capsys.readouterr().out
    assert main(["calibrate", "apply", folder]) == 2
    assert "exactly one of --target-call-rate and --target-accuracy" in capsys.readouterr().out


def test_calibrate_apply_on_scores_and_on_unlabelled_questions(tiny_run, capsys, tmp_path):
    out = tiny_run["out"]
    assert main(["calibrate", "build", str(out), "--uq", "avg_token_prob"]) == 0
    folder = out / "calibration" / "smollm2-test__avg_token_prob__smollm2-test"
    capsys.readouterr()
    # threshold + expected accuracy alone
    assert main(["calibrate", "apply", str(folder), "--target-call-rate", "0.3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    rows = [json.loads(x) for x in (folder / "calibration.jsonl").read_text().splitlines()]
    u = np.asarray([x["uncertainty"] for x in rows])
    w = np.asarray([x["weight"] for x in rows])  # rows weigh their bin's m / take (issue 8.4)
    # thresholds cut inside their stratum (issue 17.1): the stored strata give the same threshold
    strata = Strata.from_record(json.loads((folder / "record.json").read_text()), [x["stratum"] for x in rows])
    thr = threshold_for_call_rate(u, 0.3, strata=strata)
    assert (res["threshold"], res["tie_frac"]) == pytest.approx((thr.value, thr.tie_frac))
    # within the stratum's share of the set's weight of the weighted quantile's rate
    assert abs(expected_call_rate(u, thr, weights=w) - 0.3) <= w.max() / w.sum()
    assert 0.0 <= res["expected_accuracy"] <= 1.0
    # with a scores file: 200 scores spread like the pool the set stands for -> about 30% routed
    import pyarrow as pa

    rng = np.random.default_rng(0)
    scores = rng.choice(u, 200, p=w / w.sum()) + rng.normal(0, 1e-6, 200)
    pq.write_table(
        pa.table({"sample_id": [f"q{i}" for i in range(200)], "uncertainty": scores}), tmp_path / "s.parquet"
    )
    assert (
        main(
            [
                "calibrate",
                "apply",
                str(folder),
                "--target-call-rate",
                "0.3",
                "--scores",
                str(tmp_path / "s.parquet"),
                "--out",
                str(tmp_path / "routes.parquet"),
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    routes = pq.read_table(tmp_path / "routes.parquet").to_pydict()
    assert routes["sample_id"][:3] == ["q0", "q1", "q2"] and res["n"] == 200
    assert np.mean(routes["to_llm"]) == pytest.approx(0.3, abs=0.15)
    assert all(
        (p > 0) == (s > res["threshold"] or (s == res["threshold"] and res["tie_frac"] > 0))
        for s, p in zip(routes["uncertainty"], routes["route_prob"])
    )
    # with questions and no labels: the SLM and the UQ method run on Ray, nothing reads a label
    q = tmp_path / "mine.jsonl"
    q.write_text(
        "".join(
            json.dumps(x) + "\n"
            for x in (
                {"id": "m1", "question": "Tom has 3 apples and buys 4 more. How many apples does he have?"},
                {"id": "m2", "question": "A box holds 12 pens. 5 are taken out. How many pens are left?"},
                {"id": "y1", "question": "Is the Pacific an ocean?", "task": "yesno"},
            )
        )
    )
    assert (
        main(
            [
                "calibrate",
                "apply",
                str(folder),
                str(q),
                "--task",
                "numeric",
                "--target-call-rate",
                "0.5",
                "--out",
                str(tmp_path / "mine_routes.parquet"),
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    routes = pq.read_table(tmp_path / "mine_routes.parquet").to_pydict()
    assert routes["sample_id"] == ["m1", "m2", "y1"] and res["n"] == 3
    assert all(0 < x < 1 for x in routes["uncertainty"])  # 1 - mean token probability
    # an in-domain trained method cannot score data without labels
    assert main(["calibrate", "build", str(out), "--uq", "probe"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "calibrate",
                "apply",
                str(out / "calibration" / "smollm2-test__probe__smollm2-test"),
                str(q),
                "--task",
                "numeric",
                "--target-call-rate",
                "0.5",
            ]
        )
        == 2
    )
    assert "trains on labelled rows" in capsys.readouterr().out


def test_calibrate_apply_from_the_grid_folder_matches_the_leave_one_out_row(tiny_run, analysis, capsys):
    """`calibrate apply <grid> --uq U --target-call-rate r <grid dataset>` builds the calibration set
    without that dataset, scores it (already in the store: nothing recomputed) and predicts the
    same call rate the report's leave-one-out row realized."""
    out = tiny_run["out"]
    assert (
        main(["calibrate", "apply", str(out), "--uq", "perplexity", "--target-call-rate", "0.3", "addsub", "--json"])
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    row = next(
        x
        for x in analysis["transfer"]["call_rate"]
        if x["method"] == "calibration"
        and x["uq"] == "perplexity"
        and x["heldout"] == "addsub"
        and x["target_call_rate"] == pytest.approx(0.3)
    )
    assert res["threshold"] == pytest.approx(np.inf if row["threshold"] is None else row["threshold"])
    assert res["tie_frac"] == pytest.approx(row["tie_frac"])
    # the folder is one draw, seed calibration.seed: the row's first draw
    assert row["seeds"][0] == 50
    assert res["expected_call_rate_on_data"] == pytest.approx(row["realized_call_rate_draws"][0])
    assert res["expected_accuracy"] == pytest.approx(row["predicted_accuracy_draws"][0])
    assert res["n"] == 6
    rec = json.loads(
        (out / "calibration" / "smollm2-test__perplexity__smollm2-test__without-addsub" / "record.json").read_text()
    )
    assert rec["datasets"] == ["strategyqa"] and rec["excluded"] == []
