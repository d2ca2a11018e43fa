"""The store notices damaged files and repairs by recomputing only what was lost (no model, no Ray).

A hand-made store of five units with the plan's edges (greedy G in three chunks, p(True) P reading
G, an LLM pass L, a score S reading G and P, a setting T reading S, L and G) is damaged the ways a
failed copy, a full disk or a flaky filesystem damages files; each test asserts what ``check``
sees, what the repair removes and that every healthy file is left as it was (same inode, same
mtime). The last tests drive the CLI on the micro grid's plan with a synthetic store.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import records as R
from jobs.errors import StoreFull
from jobs.store import Store
from jobs.units import GenSpec, ScoreSpec, SettingSpec
from orchestrator.plan import Plan, Unit
from orchestrator.verify import check_plan, invalidate, plan_repair, start_counts
from tests.conftest import REPO

MICRO = REPO / "tests" / "conf" / "grid" / "micro.yaml"


def _gen(key, stage, deps=()):
    spec = GenSpec(key, stage, "m", "d", {}, {}, "eval", {}, deps={f"dep{i}": d for i, d in enumerate(deps)})
    return Unit("gen", key, f"{stage} m d eval", spec, tuple(deps), "slm:m")


def small_plan() -> Plan:
    units = {
        "G": _gen("G", "greedy"),
        "P": _gen("P", "ptrue", ("G",)),
        "L": _gen("L", "llm"),
    }
    units["S"] = Unit(
        "score", "S", "score x m d", ScoreSpec("S", "x", "x", {}, "m", "d", {"greedy": "G", "ptrue": "P"}), ("G", "P")
    )
    units["T"] = Unit(
        "setting", "T", "m__x__d__l", SettingSpec("T", "h", "m__x__d__l", {}, "S", "G", "L"), ("S", "L", "G")
    )
    return Plan([], units)


def _rows(i: int, n: int = 4) -> list[dict]:
    return [{"sample_id": f"s{i}-{j}", "value": float(i * 10 + j), "text": "x" * 50} for j in range(n)]


def build_store(root: Path) -> Store:
    st = Store(root)
    for key, kind, n_parts in (("G", "gen", 3), ("P", "gen", 3), ("L", "gen", 3), ("S", "score", 1)):
        d = st.unit(kind, key)
        for i in range(n_parts):
            R.write_table(d.part_path(i), _rows(i))
        d.finish({"key": key, "n_chunks": n_parts} if kind == "gen" else {"key": key})
    d = st.setting("T")
    R.write_table(d.records_path, _rows(0))
    R.write_json(d.curve_path, {"curve": []})
    d.plot_path.write_bytes(b"\x89PNG fake")
    d.finish({"key": "T", "metrics": {"auroc": 0.7}})
    return st


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file of the store -> (inode, mtime_ns, size): what 'left untouched' means."""
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def store(tmp_path):
    return build_store(tmp_path / "store")


def test_manifest_lists_every_file_with_size_hash_rows_and_footer(store):
    m = store.gen("G").manifest_json()
    assert sorted(m["files"]) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    rec = m["files"]["part-00001.parquet"]
    data = store.gen("G").part_path(1).read_bytes()
    import hashlib

    import pyarrow.parquet as pq

    assert rec["size"] == len(data) and rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["rows"] == pq.read_metadata(store.gen("G").part_path(1)).num_rows == 4
    assert m["hash"] == "sha256" and m["checksum"] == R.manifest_checksum(m)
    assert sorted(store.setting("T").manifest_json()["files"]) == ["curve.json", "curve.png", "records.parquet"]
    assert check_plan(small_plan(), store).damaged == []


def test_truncated_part_is_damaged_and_repair_removes_only_that_chunk_and_what_reads_it(store):
    plan = small_plan()
    part = store.gen("G").part_path(1)
    with open(part, "r+b") as f:
        f.truncate(100)  # what a failed copy or a full disk leaves
    h = check_plan(plan, store)
    assert h.damaged == ["G"]
    (prob,) = h.checks["G"].problems
    assert prob.file == "part-00001.parquet" and "100 bytes" in prob.what and "cut short" in prob.what
    assert not store.gen("G").done and store.gen("L").done
    rep = plan_repair(plan, h)
    assert rep.damaged == ["G"] and sorted(rep.dependents) == ["P", "S", "T"]
    assert rep.chunks == {"G": {1}, "P": {1}}
    before = snapshot(store.root)
    invalidate(plan, store, rep)
    after = snapshot(store.root)
    removed = sorted(set(before) - set(after))
    assert removed == sorted(
        [
            "gen/G/manifest.json",
            "gen/G/part-00001.parquet",
            "gen/P/manifest.json",
            "gen/P/part-00001.parquet",
            "score/S/manifest.json",
            "score/S/part-00000.parquet",
            "settings/T/manifest.json",
            "settings/T/records.parquet",
            "settings/T/curve.json",
            "settings/T/curve.png",
        ]
    )
    assert all(after[f] == before[f] for f in after)  # every other file: same inode, same mtime
    assert store.gen("G").parts() == {0, 2} and store.gen("P").parts() == {0, 2}


def test_deleted_part_is_missing(store):
    plan = small_plan()
    store.gen("L").part_path(2).unlink()
    h = check_plan(plan, store)
    assert h.damaged == ["L"] and str(h.checks["L"].problems[0]) == "part-00002.parquet: missing"
    rep = plan_repair(plan, h)
    assert rep.chunks == {"L": {2}} and rep.dependents == ["T"]  # the setting reads L; nothing else does


def test_corrupted_manifest_keeps_the_parts_and_recomputes_what_reads_them(store):
    plan = small_plan()
    store.gen("G").manifest_path.write_bytes(b'{"key": "G", "files": {"part-0')
    h = check_plan(plan, store)
    assert h.damaged == ["G"] and "manifest.json: does not parse" in str(h.checks["G"].problems[0])
    rep = plan_repair(plan, h)
    # no chunk is lost: P keeps its result; the light units downstream are recomputed
    assert rep.chunks == {"G": set()} and sorted(rep.dependents) == ["S", "T"]
    invalidate(plan, store, rep)
    assert store.gen("G").parts() == {0, 1, 2} and store.gen("P").done


def test_an_edited_manifest_fails_its_checksum(store):
    p = store.setting("T").manifest_path
    m = json.loads(p.read_text())
    m["metrics"]["auroc"] = 0.99
    p.write_text(json.dumps(m))
    h = store.setting("T").check()
    assert h.damaged and "does not match its own checksum" in str(h.problems[0])


def test_a_flipped_byte_is_found_by_deep_only(store):
    plan = small_plan()
    part = store.score("S").part_path(0)
    data = bytearray(part.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    data[4 + (len(data) - footer - 4) // 2] ^= 0xFF  # inside the data pages: size and footer unchanged
    part.write_bytes(bytes(data))
    assert check_plan(plan, store).damaged == []
    deep = check_plan(plan, store, deep=True)
    assert deep.damaged == ["S"]
    assert (
        str(deep.checks["S"].problems[0])
        == "part-00000.parquet: content differs from what was written (sha256 mismatch)"
    )
    assert plan_repair(plan, deep).dependents == ["T"]


def test_a_changed_footer_is_found_by_the_shallow_check(store):
    """Same size, one byte of the footer (row count, schema, chunk offsets) changed."""
    part = store.gen("G").part_path(1)
    data = bytearray(part.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    data[len(data) - 8 - footer // 2] ^= 0x01
    part.write_bytes(bytes(data))
    (prob,) = store.gen("G").check().problems
    assert prob.file == "part-00001.parquet" and prob.what == "its Parquet footer differs from the one written"


def test_legacy_manifest_counts_done_is_checked_for_structure_and_rehash_records_it(store):
    from orchestrator.verify import rehash

    plan = small_plan()
    for k, kind in (("G", "gen"), ("T", "setting")):
        p = store.unit(kind, k).manifest_path
        m = json.loads(p.read_text())
        for f in ("files", "checksum", "hash"):
            m.pop(f)
        p.write_text(json.dumps(m))  # as a store written before manifests listed files
    h = check_plan(plan, store)
    assert sorted(h.legacy) == ["G", "T"] and h.damaged == []
    assert store.gen("G").done
    with open(store.gen("G").part_path(2), "r+b") as f:
        f.truncate(50)
    h = check_plan(plan, store)
    assert h.damaged == ["G"] and "not a readable Parquet file" in str(h.checks["G"].problems[0])
    store.gen("G").part_path(2).unlink()
    assert "part-00002.parquet: missing" in str(store.gen("G").check().problems[0])  # n_chunks says 3
    R.write_table(store.gen("G").part_path(2), _rows(2))
    assert rehash(plan, store, check_plan(plan, store)) == 2
    assert check_plan(plan, store).legacy == [] and store.gen("G").check().state == "ok"


def test_a_full_disk_names_the_folder_and_free_space_and_leaves_nothing(tmp_path, monkeypatch):
    def full(tmp, data):
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(R, "_write_synced", full)
    target = tmp_path / "store" / "gen" / "K" / "part-00000.parquet"
    with pytest.raises(StoreFull) as e:
        R.write_table(target, _rows(0))
    msg = str(e.value)
    assert f"in {target.parent} (" in msg and "free of" in msg and "uqroute resume" in msg
    assert e.value.kind == "disk_full" and e.value.errno == errno.ENOSPC
    assert list(target.parent.iterdir()) == []  # neither the part nor its temp file


def test_a_full_disk_in_a_worker_is_classified_disk_full_and_stops_the_scheduler():
    from jobs.errors import classified, failure_kind

    with pytest.raises(StoreFull) as e, classified():
        raise StoreFull("no space left writing x in /s (0 B free of 1.0 MiB; No space left on device): ...")
    assert failure_kind(e.value) == "disk_full"
    from orchestrator.scheduler import NON_RETRYABLE

    assert "disk_full" in NON_RETRYABLE


KILL_MID_WRITE = r"""
import os, signal, sys
from pathlib import Path
from jobs import records as R

def half_then_die(tmp, data):
    with open(tmp, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

R.write_table(R.part_path(Path(sys.argv[1]), 0), [{"sample_id": "a", "v": 1.0}])   # whole
R._write_synced = half_then_die
R.write_table(R.part_path(Path(sys.argv[1]), 1), [{"sample_id": "b", "v": 2.0}] * 100)  # killed halfway
"""


def test_a_worker_killed_mid_write_leaves_no_half_file_counted(tmp_path):
    """SIGKILL while the bytes of a part are being written: the part's name never appears (only a
    hidden temp file), the unit is not done, its chunk is not counted, and finishing the unit later
    removes the temp file."""
    udir = tmp_path / "store" / "gen" / "K"
    proc = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(udir)], cwd=REPO, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    names = sorted(p.name for p in udir.iterdir())
    assert names[-1] == "part-00000.parquet" and len(names) == 2
    assert names[0].startswith(".part-00001.parquet.") and names[0].endswith(".tmp")
    d = Store(tmp_path / "store").gen("K")
    h = d.check()
    assert h.state == "absent" and h.leftovers == (names[0],)
    assert d.parts() == {0}
    R.write_table(d.part_path(1), _rows(1))  # the chunk runs again
    d.finish({"key": "K", "n_chunks": 2})
    assert sorted(p.name for p in udir.iterdir()) == ["manifest.json", "part-00000.parquet", "part-00001.parquet"]
    assert d.check().state == "ok"


def test_existing_parts_skip_an_unreadable_part(tmp_path):
    d = Store(tmp_path).gen("K")
    for i in range(2):
        R.write_table(d.part_path(i), _rows(i))
    with open(d.part_path(1), "r+b") as f:
        f.truncate(30)
    assert d.parts() == {0}


# ------------------------------------------------------------------------- the CLI on a real plan


def _synthetic_output(tmp_path, done_settings=None):
    """The micro grid's output folder with every unit (or those of the first ``done_settings``
    settings and their inputs) finished with one small part each; no model involved."""
    from orchestrator.config import load_grid
    from orchestrator.plan import make_plan
    from orchestrator.runner import bind_output

    r = load_grid(MICRO, [f"output_dir={tmp_path / 'out'}"])
    bind_output(r)
    plan = make_plan(r)
    keys = set(plan.units)
    if done_settings is not None:
        keys = set()
        todo = [plan.setting_keys[s.hash] for s in plan.settings[:done_settings]]
        while todo:
            k = todo.pop()
            if k not in keys:
                keys.add(k)
                todo += list(plan.units[k].deps)
    st = Store(r.store_dir)
    for k in keys:
        u = plan.units[k]
        d = st.unit(u.kind, k)
        R.write_table(d.records_path if u.kind == "setting" else d.part_path(0), _rows(0))
        d.finish({"key": k, "n_chunks": 1} if u.kind == "gen" else {"key": k})
    return r, plan


def _text(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())


def test_verify_status_report_rescore_sync_name_the_damaged_unit_and_the_fix(tmp_path, capsys):
    from orchestrator.cli import main

    r, plan = _synthetic_output(tmp_path)
    out = str(r.output_dir)
    assert main(["verify", out]) == 0
    assert "no damaged unit" in _text(capsys)
    ptrue = next(u for u in plan.by_kind("gen") if u.spec.stage == "ptrue" and u.spec.role == "eval")
    part = Store(r.store_dir).gen(ptrue.key).part_path(0)
    with open(part, "r+b") as f:
        f.truncate(100)
    assert main(["verify", out]) == 1
    text = _text(capsys)
    assert f"damaged: gen ptrue of slm smollm2-test on strategyqa (eval rows) [{ptrue.key[:12]}]" in text
    assert "part-00000.parquet: 100 bytes, the manifest says" in text
    assert "settings depending on them: smollm2-test__ptrue__strategyqa__smollm2-test" in text
    assert "recomputes 3 units and nothing else: 1 model passes" in text and "1 score units, 1 settings" in text
    assert main(["status", out]) == 1
    text = _text(capsys)
    assert "damaged: gen ptrue" in text and f"uqroute verify {out} --repair" in text
    for cmd in (["report", out, "--no-mlflow"], ["rescore", out, "--local"]):
        assert main(cmd) == 2, cmd
        text = _text(capsys)
        assert "1 unit(s) of the store are damaged and will not be read" in text, cmd
        assert "gen ptrue of slm smollm2-test on strategyqa (eval rows): part-00000.parquet: 100 bytes" in text
        assert f"uqroute verify {out} --repair" in text
    # sync reads setting units only: it refuses a damaged one (a damaged input leaves a setting valid)
    s = plan.settings[0]
    Store(r.store_dir).setting(plan.setting_keys[s.hash]).records_path.unlink()
    assert main(["sync", out]) == 2
    text = _text(capsys)
    assert f"setting {s.name}: records.parquet: missing" in text and f"uqroute verify {out} --repair" in text


def test_header_counts_agree_with_status(tmp_path, capsys, monkeypatch):
    """After 2 of the micro grid's 3 settings finished: the run's header and `status` print the same
    settings / units / already-done counts, and the settings count is the finished settings."""
    import orchestrator.runner as runner
    from orchestrator.cli import main

    r, plan = _synthetic_output(tmp_path, done_settings=2)

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_grid", stop)
    assert main(["resume", str(r.output_dir)]) == 130
    header = _text(capsys)
    assert main(["status", str(r.output_dir)]) == 0
    status = _text(capsys)
    line = start_counts(plan, check_plan(plan, r.store_dir)).line
    assert line.startswith(f"{len(plan.settings)} settings (2 already done), {len(plan.units)} work units (")
    assert line in header and line in status
    n_done = int(line.split("(")[2].split()[0])
    assert 0 < n_done < len(plan.units) and n_done == len(plan.done(r.store_dir))


def test_a_copied_store_verifies_and_a_partial_copy_is_found(tmp_path, capsys):
    """``cp -a`` of a finished folder to another path: the copy verifies (deep) with no path to
    rewrite; a copy cut short (a part missing, another truncated) is found, by unit."""
    import shutil

    from orchestrator.cli import main

    r, plan = _synthetic_output(tmp_path)
    dst = tmp_path / "elsewhere" / "copy"
    shutil.copytree(r.output_dir, dst, symlinks=True)
    assert main(["verify", str(dst), "--deep"]) == 0
    assert "0 damaged" in _text(capsys)
    gens = [u for u in plan.by_kind("gen")][:2]
    (dst / "store" / "gen" / gens[0].key / "part-00000.parquet").unlink()
    with open(dst / "store" / "gen" / gens[1].key / "part-00000.parquet", "r+b") as f:
        f.truncate(10)
    assert main(["verify", str(dst)]) == 1
    text = _text(capsys)
    assert "2 damaged" in text and "part-00000.parquet: missing" in text and "10 bytes" in text
    assert os.path.samefile(r.output_dir, tmp_path / "out")  # the original is untouched
    assert main(["verify", str(r.output_dir)]) == 0


def test_typed_manifest_reads_the_file_records(tmp_path):
    from jobs.units import FileRecord, GenManifest

    d = Store(tmp_path).gen("K")
    R.write_table(d.part_path(0), _rows(0))
    d.finish(GenManifest("K", "greedy", "m", "d", "eval", n_chunks=1))
    rec = d.manifest().files["part-00000.parquet"]
    assert isinstance(rec, FileRecord) and rec.rows == 4 and rec.size == d.part_path(0).stat().st_size


def test_heal_before_a_run_invalidates_the_damaged_unit_and_its_dependents_only(tmp_path):
    from orchestrator.ledger import Ledger
    from orchestrator.runner import heal

    r, plan = _synthetic_output(tmp_path)
    ptrue = next(u for u in plan.by_kind("gen") if u.spec.stage == "ptrue" and u.spec.role == "eval")
    st = Store(r.store_dir)
    st.gen(ptrue.key).part_path(0).unlink()
    before = snapshot(r.store_dir)
    repaired, done = heal(r, plan)
    downstream = {k for k, u in plan.units.items() if ptrue.key in u.deps}
    downstream |= {k for k, u in plan.units.items() if downstream & set(u.deps)}
    assert set(repaired) == {ptrue.key} | downstream and len(repaired) == 3
    assert done == set(plan.units) - set(repaired) == plan.done(r.store_dir)
    after = snapshot(r.store_dir)
    assert all(after[f] == before[f] for f in after)  # what is left is untouched
    assert {f.split("/")[1] for f in set(before) - set(after)} == set(repaired)
    ev = [e for e in Ledger(r.output_dir / "ledger.jsonl").events() if e["event"] == "invalidated"]
    assert {e["key"] for e in ev} == set(repaired) and [e["key"] for e in ev if e["damaged"]] == [ptrue.key]
    assert heal(r, plan) == ([], done)  # nothing left to repair
