"""``uqroute verify``: which units of an output folder are damaged, what depends on them, and the repair.

A unit is done when its manifest and every file it lists verify (``jobs.store.UnitDir.check``).
Here the plan's units are checked together (``check_plan``), a damaged unit's dependents are
found through the plan's edges (``affected``), and the repair (``invalidate``) removes exactly
what must be recomputed, so that the next run (``resume``, or ``verify --repair``) recomputes it
and nothing else:

* a damaged generation unit loses its manifest and its damaged parts only: its healthy parts
  stay and only the lost chunks run again (the chunk is the unit of resume);
* a generation unit that reads it (p(True), verbal 2-stage read the greedy answer) loses the same
  chunks (a chunk covers the same samples in every pass of one model, dataset and role);
* every score and setting unit downstream is recomputed whole (no model: seconds);
* a damaged score or setting unit is recomputed whole, with what depends on it.

Every healthy unit is left untouched. ``status``, ``rescore``, ``report`` and ``sync`` refuse to
read a damaged unit (``require_healthy``): the error names it and the command that repairs it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from jobs.store import DAMAGED, LEGACY, Health, Store
from jobs.units import GenSpec
from orchestrator.plan import Plan, Unit

#: folders checked at once (I/O-bound: a network filesystem answers stats in parallel)
CHECK_THREADS = 8


class DamagedStore(ValueError):
    """A command was asked to read units whose files do not verify; the message names them and the
    command that recomputes them."""


@dataclass
class StoreHealth:
    """Every planned unit's ``Health`` (``checks``: unit key -> Health), and how it was checked."""

    checks: dict[str, Health]
    deep: bool = False
    seconds: float = 0.0
    files: int = 0

    @property
    def damaged(self) -> list[str]:
        return [k for k, h in self.checks.items() if h.state == DAMAGED]

    @property
    def legacy(self) -> list[str]:
        return [k for k, h in self.checks.items() if h.state == LEGACY]

    def done(self) -> set[str]:
        """Units that verify (ok or legacy)."""
        return {k for k, h in self.checks.items() if h.done}


@dataclass
class Repair:
    """What the repair of a store does: ``damaged`` units and their ``dependents`` (keys), the gen
    chunks it removes per unit (``chunks``: key -> indices; None: the whole unit)."""

    damaged: list[str]
    dependents: list[str]
    chunks: dict[str, set[int] | None] = field(default_factory=dict)

    @property
    def units(self) -> list[str]:
        return self.damaged + self.dependents


def check_plan(
    plan: Plan,
    store: Path | Store,
    deep: bool = False,
    threads: int = CHECK_THREADS,
    keys: Iterable[str] | None = None,
) -> StoreHealth:
    """The health of every unit of the plan, or of the units ``keys`` only (shallow: a stat and the
    footer per file; ``deep``: every byte hashed)."""
    st = store if isinstance(store, Store) else Store(store)
    t0 = time.perf_counter()
    units = list(plan.units.values()) if keys is None else [plan.units[k] for k in keys]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        res = list(pool.map(lambda u: st.unit(u.kind, u.key).check(deep), units))
    return StoreHealth({u.key: h for u, h in zip(units, res)}, deep, time.perf_counter() - t0)


def dependents_of(plan: Plan, keys: set[str]) -> set[str]:
    """Every unit that reads one of ``keys``, directly or through others (``keys`` excluded)."""
    readers: dict[str, list[str]] = {}
    for k, u in plan.units.items():
        for d in u.deps:
            readers.setdefault(d, []).append(k)
    out: set[str] = set()
    todo = list(keys)
    while todo:
        for r in readers.get(todo.pop(), ()):
            if r not in out and r not in keys:
                out.add(r)
                todo.append(r)
    return out


def plan_repair(plan: Plan, health: StoreHealth) -> Repair:
    """What must be recomputed: the damaged units and every unit downstream of them that is done
    (a unit not done yet runs anyway). Gen chunks: a damaged gen unit's damaged parts (all of it
    when its manifest is what is damaged: its readable parts are kept, only unreadable ones go),
    passed on to the gen units that read it, chunk for chunk."""
    damaged = set(health.damaged)
    deps = dependents_of(plan, damaged)
    done = health.done()
    chunks: dict[str, set[int] | None] = {}
    for k in plan.units:  # topological order: a gen unit's deps come first
        u = plan.units[k]
        if u.kind != "gen":
            continue
        if k in damaged:
            chunks[k] = health.checks[k].bad_parts()
        elif k in deps:
            inherited: set[int] = set()
            for d in u.deps:
                inherited |= chunks.get(d) or set()
            if inherited:
                chunks[k] = inherited
    # a gen dependent none of whose chunks is lost keeps its result (its inputs did not change)
    dependents = [k for k in plan.units if k in deps and k in done and (plan.units[k].kind != "gen" or chunks.get(k))]
    return Repair([k for k in plan.units if k in damaged], dependents, chunks)


def invalidate(plan: Plan, store: Path | Store, repair: Repair) -> None:
    """Remove what ``repair`` recomputes: the manifests of its units, the lost chunks of gen units
    (unreadable parts too) and the whole folder of score and setting units. Healthy units are not
    touched."""
    st = store if isinstance(store, Store) else Store(store)
    for k in repair.units:
        u = plan.units[k]
        d = st.unit(u.kind, k)
        if u.kind != "gen":
            shutil.rmtree(d.path, ignore_errors=True)
            continue
        d.manifest_path.unlink(missing_ok=True)
        from jobs.records import readable_parquet

        for ci in repair.chunks.get(k) or ():
            d.part_path(ci).unlink(missing_ok=True)
        for p in d.path.glob("part-*.parquet"):  # a part that does not even parse goes too
            if not readable_parquet(p):
                p.unlink(missing_ok=True)


def unit_where(u: Unit) -> str:
    """A unit as a person finds it: kind, stage, model, dataset (and role)."""
    sp = u.spec
    if isinstance(sp, GenSpec):
        return f"gen {sp.stage} of {sp.model_kind} {sp.model} on {sp.dataset} ({sp.role} rows)"
    return f"{u.kind} {u.label}"


def settings_depending(plan: Plan, keys: set[str]) -> list[str]:
    """Names of the settings whose results read one of ``keys`` (directly or not)."""
    downstream = dependents_of(plan, keys) | keys
    return [s.name for s in plan.settings if plan.setting_keys[s.hash] in downstream]


def describe(plan: Plan, health: StoreHealth, repair: Repair, out: Path | str, limit: int = 20) -> list[str]:
    """Lines for a person: each damaged unit (where, which files, what is wrong), the settings that
    depend on them and what the repair does."""
    lines = []
    for k in repair.damaged[:limit]:
        u = plan.units[k]
        lines.append(f"damaged: {unit_where(u)} [{k[:12]}]")
        lines += [f"    {p}" for p in health.checks[k].problems[:10]]
    if len(repair.damaged) > limit:
        lines.append(f"... and {len(repair.damaged) - limit} more damaged units")
    names = settings_depending(plan, set(repair.damaged))
    if names:
        shown = ", ".join(names[:10]) + (f" ... ({len(names)} in all)" if len(names) > 10 else "")
        lines.append(f"settings depending on them: {shown}")
    lines.append(repair_summary(plan, repair, out))
    return lines


def repair_summary(plan: Plan, repair: Repair, out: Path | str) -> str:
    gens = [k for k in repair.units if plan.units[k].kind == "gen"]
    chunk_txt = []
    for k in gens:
        c = repair.chunks.get(k)
        chunk_txt.append(f"{plan.units[k].label} ({'chunks ' + ', '.join(map(str, sorted(c))) if c else 'manifest'})")
    n = {kind: sum(1 for k in repair.units if plan.units[k].kind == kind) for kind in ("gen", "score", "setting")}
    return (
        f"--repair (and `uqroute resume {out}`) recomputes {len(repair.units)} units and nothing else: "
        f"{n['gen']} model passes{': ' + '; '.join(chunk_txt) if chunk_txt else ''}, {n['score']} score "
        f"units, {n['setting']} settings"
    )


def require_healthy(
    plan: Plan,
    store: Path | Store,
    out: Path | str,
    kinds: tuple[str, ...] | None = None,
    keys: Iterable[str] | None = None,
) -> None:
    """Raise ``DamagedStore`` naming every damaged unit of ``kinds`` (all when None) and the command
    that repairs them; ``keys``: check only these units (a reader of a few settings' results)."""
    health = check_plan(plan, store, keys=keys)
    bad = [k for k in health.damaged if kinds is None or plan.units[k].kind in kinds]
    if not bad:
        return
    lines = [f"  {unit_where(plan.units[k])}: " + "; ".join(map(str, health.checks[k].problems[:3])) for k in bad[:10]]
    more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
    raise DamagedStore(
        f"{out}: {len(bad)} unit(s) of the store are damaged and will not be read:\n"
        + "\n".join(lines)
        + more
        + f"\nRun `uqroute verify {out} --repair` (or `uqroute resume {out}`) to recompute them and what depends on them."
    )


@dataclass(frozen=True)
class Counts:
    """What a run of the plan starts from: settings and units, and how many of each are done and stay
    done (a damaged unit and what depends on it are not done: they will be recomputed). The header of
    ``run`` / ``resume`` and ``status`` print these same numbers (``line``)."""

    settings: int
    settings_done: int
    units: int
    units_done: int

    @property
    def line(self) -> str:
        return (
            f"{self.settings} settings ({self.settings_done} already done), "
            f"{self.units} work units ({self.units_done} already done)"
        )


def start_counts(plan: Plan, health: StoreHealth, repair: Repair | None = None) -> Counts:
    repair = repair or plan_repair(plan, health)
    done = health.done() - set(repair.units)
    return Counts(
        len(plan.settings),
        sum(1 for s in plan.settings if plan.setting_keys[s.hash] in done),
        len(plan.units),
        len(done),
    )


def rehash(plan: Plan, store: Path | Store, health: StoreHealth) -> int:
    """Record the files of every legacy unit (a manifest without a file list) in its manifest, after
    decoding each of its Parquet files in full: from then on they verify like any other. Returns
    how many were recorded."""
    from jobs.records import finish_unit, read_json

    st = store if isinstance(store, Store) else Store(store)
    n = 0
    for k in health.legacy:
        u = plan.units[k]
        d = st.unit(u.kind, k)
        if d.check(deep=True).state != LEGACY:
            continue
        finish_unit(d.path, read_json(d.manifest_path))
        n += 1
    return n
