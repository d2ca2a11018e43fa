"""The store's faults on a real run (the micro grid: real SmolLM2 through Ray): a damaged generation
part repaired by recomputing one model pass and what reads it, nothing else; a finished folder
copied to another path (``cp -a``) resumed, rescored and reported there; a disk that fills up
during a run (a small tmpfs; needs root to mount, skipped otherwise), then resumed after space is
freed. Each ends with records equal to an uninterrupted run's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_faults import _results

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MICRO = REPO / "tests" / "conf" / "grid" / "micro.yaml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, ray_local):
    """The micro grid run once, without faults: its folder and its records."""
    from orchestrator.config import load_grid
    from orchestrator.runner import run_grid

    out = tmp_path_factory.mktemp("micro-store") / "out"
    r = load_grid(MICRO, [f"output_dir={out}"])
    plan, report, _ = run_grid(r)
    assert report.ok
    return {"out": out, "records": _results(r, plan)}


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)  # as a user moves a folder between machines
    return dst


def _manifests(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.glob("*/*/manifest.json")}


def _started_since(out: Path, n_before: int) -> set[str]:
    from orchestrator.ledger import Ledger

    return {e["key"] for e in Ledger(out / "ledger.jsonl").events()[n_before:] if e["event"] == "started"}


def _text(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())


def test_a_truncated_part_is_repaired_by_recomputing_one_pass_and_what_reads_it(tmp_path, finished, capsys):
    from orchestrator.cli import main
    from orchestrator.ledger import Ledger
    from orchestrator.plan import make_plan
    from orchestrator.runner import load_output

    out = _copy(finished["out"], tmp_path / "copy" / "out")
    r = load_output(out)
    plan = make_plan(r)
    ptrue = next(u for u in plan.by_kind("gen") if u.spec.stage == "ptrue" and u.spec.role == "eval")
    part = r.store_dir / "gen" / ptrue.key / "part-00000.parquet"
    with open(part, "r+b") as f:
        f.truncate(100)
    assert main(["status", str(out)]) == 1
    text = _text(capsys)
    assert "damaged: gen ptrue of slm smollm2-test on strategyqa (eval rows)" in text
    assert main(["verify", str(out)]) == 1
    text = _text(capsys)
    assert "part-00000.parquet: 100 bytes, the manifest says" in text
    assert "recomputes 3 units and nothing else" in text
    before = _manifests(r.store_dir)
    n_events = len(Ledger(out / "ledger.jsonl").events())
    assert main(["verify", str(out), "--repair"]) == 0
    after = _manifests(r.store_dir)
    changed = {k for k in after if after[k] != before.get(k)}
    expect = {ptrue.key} | {k for k, u in plan.units.items() if ptrue.key in u.deps}
    expect |= {k for k, u in plan.units.items() if expect & set(u.deps)}
    assert len(expect) == 3  # the pass, the p(True) score, its setting
    assert {Path(k).parent.name for k in changed} == expect
    assert _started_since(out, n_events) == expect  # nothing healthy ran again
    assert _results(r, plan) == finished["records"]
    assert main(["verify", str(out), "--deep"]) == 0


def test_a_copied_folder_resumes_rescores_and_reports_where_it_is(tmp_path, finished, capsys):
    from orchestrator.cli import main
    from orchestrator.ledger import Ledger
    from orchestrator.plan import make_plan
    from orchestrator.runner import load_output

    out = _copy(finished["out"], tmp_path / "other-machine" / "results")
    assert main(["verify", str(out), "--deep"]) == 0
    n_events = len(Ledger(out / "ledger.jsonl").events())
    assert main(["resume", str(out)]) == 0
    text = _text(capsys)
    r = load_output(out)
    plan = make_plan(r)
    assert f"{len(plan.settings)} settings ({len(plan.settings)} already done)" in text
    assert _started_since(out, n_events) == set()
    assert main(["rescore", str(out), "--local"]) == 0
    assert "0 score units and 0 settings recomputed" in _text(capsys)
    assert main(["report", str(out), "--no-mlflow"]) == 0
    assert str((out / "report" / "index.html").resolve()) in _text(capsys)
    assert _results(r, plan) == finished["records"]
    # a copy cut short: one unit folder lacks its parts
    part = next((r.store_dir / "gen").glob("*/part-00000.parquet"))
    part.unlink()
    assert main(["verify", str(out)]) == 1
    assert f"[{part.parent.name[:12]}] part-00000.parquet: missing" in _text(capsys)


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.skipif(not _can_mount(), reason="mounting a small tmpfs needs root")
def test_a_full_disk_stops_the_run_naming_the_folder_and_resume_completes(tmp_path, finished, capsys):
    from orchestrator.cli import main
    from orchestrator.config import load_grid
    from orchestrator.plan import make_plan
    from orchestrator.runner import load_output

    need = _du(finished["out"] / "store")
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    size_kib = max(64, need // 2 // 1024)  # half of what the store needs
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mnt)], check=True)
    except subprocess.CalledProcessError:
        pytest.skip("this sandbox cannot mount a tmpfs")
    try:
        # the store on the small disk (a shared store_dir elsewhere than the output folder)
        out, store = tmp_path / "out", mnt / "store"
        r = load_grid(MICRO, [f"output_dir={out}", f"store_dir={store}"])
        rc = main(["run", str(MICRO), f"output_dir={out}", f"store_dir={store}"])
        text = _text(capsys)
        assert rc == 2
        assert "error: the run stopped: no space left writing" in text and f" in {store}/" in text
        assert "free of" in text and "uqroute resume" in text
        plan = make_plan(load_output(out))
        assert main(["verify", str(out), "--deep"]) == 0  # nothing half-written counts as done
        assert "0 damaged" in _text(capsys)
        assert len(plan.done(r.store_dir)) < len(plan.units)
        subprocess.run(["mount", "-o", f"remount,size={need * 4 // 1024 + 4096}k", str(mnt)], check=True)
        assert main(["resume", str(out)]) == 0
        assert len(plan.done(r.store_dir)) == len(plan.units)
        assert _results(r, plan) == finished["records"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
