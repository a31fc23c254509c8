"""What the command line loads before it does anything: each command runs in a fresh
process, so a module imported at the top of the CLI is paid by every `--help`, `inspect`
and `import`. The service's stack (database, web framework, cloud SDK) belongs to the
commands that use it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.service  # each check starts a Python process

# The service's stack: none of it may load for a command that touches no database.
SERVICE_STACK = (
    "sqlalchemy",
    "alembic",
    "mako",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "boto3",
    "botocore",
    "cryptography",
    "psycopg",
    "dcs_migration.store",
    "dcs_migration.api",
    "dcs_migration.tasks",
)
# What a bare import of the CLI (`--help`) leaves for the command that needs it.
COMMAND_MODULES = ("rich", "dcs_migration.formats", "dcs_migration.importer", "hiredis")


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_importing_the_cli_loads_no_service_stack_and_no_command() -> None:
    modules = modules_after("import dcs_migration.cli")
    assert loaded(modules, SERVICE_STACK) == []
    assert loaded(modules, COMMAND_MODULES) == []
    assert "typer" in modules  # the probe did import the CLI


def test_the_import_and_inspect_commands_load_no_service_stack() -> None:
    """What `import` and `inspect` import when they run (the modules of their bodies)."""
    modules = modules_after(
        "import dcs_migration.cli, dcs_migration.importer, dcs_migration.progress, "
        "dcs_migration.inspect_backup, dcs_migration.oracle, dcs_migration.reading, "
        "dcs_migration.sources, dcs_migration.client.endpoint, rich.console, rich.table"
    )
    assert loaded(modules, SERVICE_STACK) == []
    assert "dcs_migration.importer" in modules
