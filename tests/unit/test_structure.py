"""The house's structure, checked from the source: no import circle anywhere in ``jobs/``,
``orchestrator/``, ``cluster/`` and ``uqroute/`` (imports inside functions count: a lazy import is
still an arrow), and the layering rules between the halves of ``jobs/``.

Layering (CONTRIBUTING.md, "Where things live"): the work of a unit (``jobs/`` outside
``jobs/analysis``) never imports the grid-level analysis (``jobs/analysis``); ``jobs/`` never imports
the driver; the driver (``orchestrator/``) reaches Ray only through ``cluster/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("jobs", "orchestrator", "cluster", "uqroute")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def module_imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at module level or inside a function: ``from a.b import c``
    gives ``a.b.c`` when that is a module of the repo, else ``a.b``."""
    tree = ast.parse(path.read_text())
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out += [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:  # relative
                pkg = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
                up = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                base = ".".join([*up, base] if base else up)
            for a in n.names:
                sub = f"{base}.{a.name}"
                out.append(sub if _is_module(sub) else base)
    return out


def _is_module(name: str) -> bool:
    p = REPO.joinpath(*name.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def import_graph() -> dict[str, set[str]]:
    """module -> the repo modules it imports (a ``from pkg import x`` of a package's attribute is an
    arrow to the package's ``__init__``)."""
    files = [f for p in PACKAGES for f in sorted((REPO / p).rglob("*.py"))]
    mods = {module_name(f): f for f in files}
    graph: dict[str, set[str]] = {}
    for m, f in mods.items():
        targets = set()
        for imp in module_imports(f):
            while imp and imp not in mods:  # a name inside a module: its module
                imp = imp.rpartition(".")[0]
            if imp and imp != m:
                targets.add(imp)
        graph[m] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_finds_a_circle_and_a_lazy_import(tmp_path):
    """The check can fail: a two-module circle (one side importing inside a function) is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from jobs.store import Store\n    import jobs.engine\n")
    assert set(module_imports(f)) == {"jobs.store", "jobs.engine"}


def test_no_import_circle_in_the_house():
    graph = import_graph()
    assert {"jobs.engine", "jobs.stages", "jobs.store", "jobs.scoring", "orchestrator.plan"} <= set(graph)
    assert "jobs.stages" in graph["jobs.engine"]  # the walker sees real arrows
    assert cycles(graph) == []


def test_unit_work_never_imports_the_grid_level_analysis():
    graph = import_graph()
    bad = {
        m: sorted(t for t in ts if t == "jobs.analysis" or t.startswith("jobs.analysis."))
        for m, ts in graph.items()
        if m.startswith("jobs.") and not m.startswith("jobs.analysis")
    }
    assert {m: t for m, t in bad.items() if t} == {}


def test_only_cluster_touches_ray():
    graph_files = [f for p in ("jobs", "orchestrator", "uqroute") for f in (REPO / p).rglob("*.py")]
    bad = [str(f.relative_to(REPO)) for f in graph_files if any(m.split(".")[0] == "ray" for m in module_imports(f))]
    assert bad == []


#: the longest a function of the house may be (issue 18: "no function over 60 lines that does more
#: than one job"); a docstring counts, so a long one is a reason to split too
MAX_FUNCTION_LINES = 60


def long_functions(limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """file:line:name -> lines of every function (or method) of the house longer than ``limit``."""
    out = {}
    for f in [f for p in PACKAGES for f in sorted((REPO / p).rglob("*.py"))]:
        for n in ast.walk(ast.parse(f.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno is not None:
                length = n.end_lineno - n.lineno + 1
                if length > limit:
                    out[f"{f.relative_to(REPO)}:{n.lineno}:{n.name}"] = length
    return out


def test_no_function_over_60_lines():
    assert long_functions(limit=40), "the walker sees functions (some are over 40 lines)"
    assert long_functions() == {}
