"""The package's layers hold: import-linter's contracts (pyproject.toml ``[tool.importlinter]``,
also run by ``make lint``) are kept, and no module of spikelight takes part in an import cycle,
imports inside functions included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of the module graph that are cycles (two or more
    modules, or one importing itself), each sorted; Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or graph.direct_import_exists(importer=node, imported=node):
                    cycles.append(sorted(component))
    return sorted(cycles)


def _describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    """Each import inside the cycle, with its line: what to cut."""
    members = set(cycle)
    lines = []
    for importer in cycle:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(f"  {importer}:{detail['line_number']}: {detail['line_contents']}")
    return "\n".join(lines)


def test_import_linter_contracts_are_kept():
    run = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
         "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, f"lint-imports failed:\n{run.stdout}\n{run.stderr}"
    assert "0 broken" in run.stdout and "Contracts: 0 kept" not in run.stdout, run.stdout


def test_no_import_cycles_in_spikelight():
    # grimp reads every import statement, those inside functions and under TYPE_CHECKING too
    graph = grimp.build_graph("spikelight", cache_dir=None)
    assert "spikelight.train.module" in graph.modules  # the graph is the package, not an empty one
    cycles = import_cycles(graph)
    assert not cycles, "import cycles in spikelight:\n" + "\n\n".join(_describe(graph, c) for c in cycles)


def test_cycle_finder_finds_cycles():
    graph = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.e", "p.e"),
                               ("p.d", "p.f"), ("p.f", "p.d")]:
        graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="import")
    assert import_cycles(graph) == [["p.a", "p.b", "p.c"], ["p.d", "p.f"], ["p.e"]]
