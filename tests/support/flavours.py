"""Choosing the server builds a test runs: parameters for the `flavour` fixture, and a
flavour or a skip when its binaries are not installed (a failure when the run requires
everything, see `tests.support.required`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.support.servers import (
    FLAVOUR_IDS,
    FlavourMissing,
    RedisServer,
    ServerFlavour,
    server_flavour,
)


class RedisServerFactory(Protocol):
    """The `redis_server` fixture: starts a server of the test's flavour."""

    def __call__(
        self,
        *args: str,
        rdb: Path | None = None,
        dbfilename: str = "dump.rdb",
        build: str | None = None,
    ) -> RedisServer: ...


def every_flavour(*ids: str) -> list[Any]:
    """Parameters for an indirect `flavour`: the given flavour ids, or all of them."""
    return [pytest.param(i, id=i) for i in ids or FLAVOUR_IDS]


def flavour_or_skip(flavour_id: str = FLAVOUR_IDS[0]) -> ServerFlavour:
    try:
        return server_flavour(flavour_id)
    except FlavourMissing as exc:
        pytest.skip(str(exc))
