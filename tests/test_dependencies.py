"""The installed dependencies are the ones the project declares, and uvicorn still has
what the service's protocol overrides (it subclasses uvicorn's private H11Protocol, which
is why uvicorn is bounded above: a new minor is checked before the bound moves)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement
from uvicorn.protocols.http.h11_impl import H11Protocol

from dcs_migration.api.server import BoundedH11Protocol


def declared(name: str) -> Requirement:
    """The project's own requirement on `name` (from its installed metadata)."""
    for line in metadata.requires("dcs-migration") or []:
        requirement = Requirement(line)
        if requirement.name == name and requirement.marker is None:
            return requirement
    raise AssertionError(f"dcs-migration does not require {name}")


@pytest.mark.parametrize("name", ["uvicorn", "h11", "fastapi", "typer"])
def test_the_installed_version_is_within_the_declared_bounds(name: str) -> None:
    requirement = declared(name)
    assert requirement.specifier.contains(metadata.version(name), prereleases=True), (
        f"{name} {metadata.version(name)} is outside {requirement}"
    )


def test_uvicorn_is_bounded_above() -> None:
    assert any(spec.operator == "<" for spec in declared("uvicorn").specifier)


@pytest.mark.parametrize(
    "method",
    [
        "connection_made",
        "data_received",
        "connection_lost",
        "on_response_complete",
        "send_400_response",
    ],
)
def test_uvicorn_h11_protocol_still_has_what_the_service_overrides(method: str) -> None:
    assert callable(getattr(H11Protocol, method, None)), f"H11Protocol.{method} is gone"
    assert getattr(BoundedH11Protocol, method) is not getattr(H11Protocol, method)


def test_every_file_of_the_console_is_shipped_in_the_package() -> None:
    """The console's files are package data: each one is matched by a pattern of
    pyproject.toml, so that an installed wheel serves the whole console."""
    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["dcs_migration.api"]
    package = root / "src" / "dcs_migration" / "api"
    files = [p for p in (package / "console").rglob("*") if p.is_file()]
    assert files
    for path in files:
        relative = PurePosixPath(path.relative_to(package).as_posix())
        # As setuptools globs: a `*` stays within one folder.
        assert any(
            len(PurePosixPath(p).parts) == len(relative.parts) and relative.match(p)
            for p in patterns
        ), relative
