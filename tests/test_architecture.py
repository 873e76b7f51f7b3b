"""The layout's rules, checked on the source: one namespace, layering, no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"recworld": ROOT / "recworld", "recworld.simulator": ROOT / "simulator",
           "recworld.agents": ROOT / "agents", "recworld.recommenders": ROOT / "recommenders"}
#: the core: what a world needs to run; studies and the CLI sit on top of it
CORE = ("recworld.simulator.engine", "recworld.simulator.data", "recworld.simulator.llm", "recworld.simulator.gym",
        "recworld.simulator.output", "recworld.simulator.protocols", "recworld.simulator.registry",
        "recworld.simulator.scenario", "recworld.simulator.build", "recworld.simulator.run")
PLUGINS = ("recworld.agents", "recworld.recommenders")


def _modules() -> dict[str, Path]:
    found = {}
    for pkg, folder in FOLDERS.items():
        for f in folder.rglob("*.py"):
            rel = f.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([pkg, *parts])] = f
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of ours that ``name`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _under(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_nothing_is_imported_under_the_old_top_level_names():
    for m, p in MODULES.items():
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for n in names:
                assert n.split(".")[0] not in ("simulator", "agents", "recommenders"), f"{m} imports {n}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, CORE)))
def test_the_core_imports_no_study_and_no_plugin(module):
    bad = sorted(t for t in GRAPH[module] if _under(t, ("recworld.simulator.studies", "recworld.simulator.cli")
                                                      + PLUGINS))
    assert not bad, f"{module} (core) imports {bad}: the core finds plug-ins through the registry"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _under(m, PLUGINS)))
def test_plugins_import_no_study(module):
    bad = sorted(t for t in GRAPH[module] if _under(t, ("recworld.simulator.studies", "recworld.simulator.cli")))
    assert not bad, f"plug-in {module} imports {bad}"


def test_no_import_cycles():
    """Between modules (package __init__ files re-export lazily, so they are left out)."""
    nodes = {m for m, p in MODULES.items() if p.name != "__init__.py"}
    edges = {m: {t for t in GRAPH[m] if t in nodes} for m in nodes}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(nodes):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
