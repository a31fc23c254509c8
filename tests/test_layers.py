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

# Each layer and the layers it must never reach, directly or through another module
# (DESIGN §1). `config` is the settings' data, which any layer may take: it imports
# only leaves, so it leads nowhere.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "formats": ("client", "writer", "sources", "tasks", "api", "store", "importer", "cli"),
    "store": ("client", "writer", "sources", "tasks", "api", "importer", "cli"),
    "config": ("client", "writer", "sources", "tasks", "api", "store", "importer", "cli"),
    "client": ("writer", "sources", "tasks", "api", "importer", "cli"),
    "writer": ("tasks", "api", "importer", "cli"),
    "sources": ("writer", "tasks", "api", "importer", "cli"),
    "importer": ("tasks", "api", "cli"),
    "tasks": ("cli",),
    "api": ("cli",),
}

# What a layer must not import itself (through the layer between, it may): the API asks
# the task use-cases, never the sources, the writer or the client; the task layer reaches the API
# only for the DCS error codes, which are defined once, in api/errors.py (a leaf), and
# which a failed record keeps.
NOT_DIRECTLY: dict[str, tuple[str, ...]] = {
    "api": ("sources", "importer", "writer", "client"),
    "tasks": ("api",),
    "writer": ("sources",),
}
ALLOWED_DIRECTLY = {
    ("tasks", "api.errors"),
    # The names a request may give a bucket and its objects, defined once for both.
    ("api", "sources.keys"),
    # What the hand-off streams as it is: an input's raw bytes.
    ("writer", "sources.inputs"),
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
def test_a_layer_never_reaches_one_above_it(layer: str) -> None:
    g = graph()
    broken = []
    for above in FORBIDDEN[layer]:
        chains = g.find_shortest_chains(
            importer=f"{PACKAGE}.{layer}", imported=f"{PACKAGE}.{above}"
        )
        broken.extend(" -> ".join(chain) for chain in chains)
    assert broken == [], f"{layer} reaches a layer above it"


@pytest.mark.parametrize("layer", sorted(NOT_DIRECTLY))
def test_a_layer_asks_the_one_below_it(layer: str) -> None:
    g = graph()
    mine = [
        m for m in g.modules if m == f"{PACKAGE}.{layer}" or m.startswith(f"{PACKAGE}.{layer}.")
    ]
    broken = []
    for module in sorted(mine):
        for imported in sorted(g.find_modules_directly_imported_by(module)):
            name = imported.removeprefix(f"{PACKAGE}.")
            if (layer, name) in ALLOWED_DIRECTLY:
                continue
            if any(name == other or name.startswith(f"{other}.") for other in NOT_DIRECTLY[layer]):
                broken.append(f"{module} -> {imported}")
    assert broken == [], f"{layer} imports past the layer below it"


def test_the_importer_reaches_the_writer_through_its_facade() -> None:
    imported = graph().find_modules_directly_imported_by(f"{PACKAGE}.importer")
    assert sorted(m for m in imported if m.startswith(f"{PACKAGE}.writer")) == [
        f"{PACKAGE}.writer.facade"
    ]
