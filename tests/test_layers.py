"""The direction data walks in, held by the imports: `client/` talks to Redis and knows
nothing of the writer; a live source (the replica handshake) uses the client, not the
writer; the importer reaches the writer through its one facade."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dcs_migration

PACKAGE = Path(dcs_migration.__file__).parent


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def imported_from(module: str) -> list[str]:
    """The dcs_migration modules a module's own import lines name."""
    path = PACKAGE.joinpath(*module.split(".")).with_suffix(".py")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        line.split()[1]
        for line in lines
        if line.startswith(("from dcs_migration", "import dcs_migration"))
    ]


def test_the_client_never_loads_the_writer() -> None:
    modules = modules_after(
        "import dcs_migration.client.cluster, dcs_migration.client.standalone, "
        "dcs_migration.client.pipeline, dcs_migration.client.probe"
    )
    assert sorted(m for m in modules if m.startswith("dcs_migration.writer")) == []


def test_a_live_source_uses_the_client_not_the_writer() -> None:
    names = imported_from("sources.replication")
    assert "dcs_migration.client.resp" in names
    assert [n for n in names if n.startswith("dcs_migration.writer")] == []


def test_the_importer_reaches_the_writer_through_its_facade() -> None:
    names = imported_from("importer")
    assert [n for n in names if n.startswith("dcs_migration.writer")] == [
        "dcs_migration.writer.facade"
    ]
