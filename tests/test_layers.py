"""The package's layers, as DESIGN §1 draws them, checked on its import graph.

Data walks one way (request -> task -> executor -> job -> sources -> reader -> writer ->
client -> Redis), so a layer never imports one above it, and no two modules import each
other, directly or round a circle (imports made only for type checking and imports inside
functions count too: a circle is a circle wherever the import sits).
"""

from __future__ import annotations

from functools import cache

import grimp
import pytest

PACKAGE = "dcs_migration"

# Each layer and the layers it must never import (DESIGN §1).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "formats": ("client", "writer", "sources", "tasks", "api", "store", "importer", "cli"),
    "store": ("client", "writer", "sources", "tasks", "api", "importer", "cli"),
    "client": ("writer", "sources", "tasks", "api", "importer", "cli"),
    "writer": ("sources", "tasks", "api", "importer", "cli"),
    "sources": ("writer", "tasks", "api", "importer", "cli"),
    "importer": ("tasks", "api", "cli"),
    "tasks": ("api", "cli"),
    "api": ("sources", "cli"),
}


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, include_external_packages=False)


def cycles() -> list[list[str]]:
    """The package's strongly connected groups of modules (Tarjan), those of two or more."""
    g = graph()
    edges = {m: sorted(g.find_modules_directly_imported_by(m)) for m in sorted(g.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in edges:
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_round_a_circle() -> None:
    assert cycles() == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_never_imports_one_above_it(layer: str) -> None:
    g = graph()
    broken = []
    for above in FORBIDDEN[layer]:
        chains = g.find_shortest_chains(
            importer=f"{PACKAGE}.{layer}", imported=f"{PACKAGE}.{above}"
        )
        broken.extend(" -> ".join(chain) for chain in chains)
    assert broken == [], f"{layer} reaches a layer above it"
