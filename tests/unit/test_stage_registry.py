"""The stage registry (issue 9, item 4): a stage is one declaration, and declaring the stages did not
move one unit key of the shipped grids (``tests/fixtures/plan_keys.json``, dumped at the commit
before the registry by ``tests/fixtures/dump_plan_keys.py``)."""
from __future__ import annotations

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
