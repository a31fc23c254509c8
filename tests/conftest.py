"""Fixtures starting real redis-server processes (skipped when the machine has none).

Every server fixture runs the flavour that the `flavour` fixture gives: the system's
redis-server unless a test parametrizes it (indirectly) with flavour ids, e.g.
`@pytest.mark.parametrize("flavour", every_flavour(), indirect=True)` or
`@pytest.mark.parametrize("flavour", ["redis-6.2"], indirect=True)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest
import redis

from tests.support.servers import (
    FLAVOUR_IDS,
    FlavourMissing,
    RedisServer,
    ServerFlavour,
    server_flavour,
)

if TYPE_CHECKING:
    from tests.support.cluster import RedisCluster


class RedisServerFactory(Protocol):
    def __call__(
        self, *args: str, rdb: Path | None = None, dbfilename: str = "dump.rdb"
    ) -> RedisServer: ...


def every_flavour(*ids: str) -> list[Any]:
    """Parameters for an indirect `flavour`: the given flavour ids, or all of them."""
    return [pytest.param(i, id=i) for i in ids or FLAVOUR_IDS]


def flavour_or_skip(flavour_id: str = FLAVOUR_IDS[0]) -> ServerFlavour:
    try:
        return server_flavour(flavour_id)
    except FlavourMissing as exc:
        pytest.skip(str(exc))


@pytest.fixture
def flavour(request: pytest.FixtureRequest) -> ServerFlavour:
    """The server build the server fixtures run (a flavour id as an indirect parameter;
    the system's redis-server by default); skipped when it is not installed."""
    return flavour_or_skip(getattr(request, "param", FLAVOUR_IDS[0]))


@pytest.fixture
def redis_server(flavour: ServerFlavour) -> Iterator[RedisServerFactory]:
    """`redis_server(*args, rdb=None)`: a started RedisServer of the test's flavour; all
    are stopped at teardown.

    `args` are extra redis-server arguments; `rdb` is a file the server loads at start.
    """
    started: list[RedisServer] = []

    def start(*args: str, rdb: Path | None = None, dbfilename: str = "dump.rdb") -> RedisServer:
        server = RedisServer(*args, rdb=rdb, dbfilename=dbfilename, flavour=flavour)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def redis_cluster(flavour: ServerFlavour) -> Iterator[RedisCluster]:
    """A started three-master cluster of the test's flavour, stopped at teardown."""
    from tests.support.cluster import RedisCluster

    with RedisCluster(flavour=flavour) as cluster:
        yield cluster


class SharedServers:
    """Servers and clusters started once per flavour and shared by a module's tests."""

    def __init__(self) -> None:
        self._servers: dict[ServerFlavour, RedisServer] = {}
        self._clusters: dict[ServerFlavour, RedisCluster] = {}

    def server(self, flavour: ServerFlavour) -> RedisServer:
        if flavour not in self._servers:
            self._servers[flavour] = RedisServer(flavour=flavour).start()
        return self._servers[flavour]

    def cluster(self, flavour: ServerFlavour) -> RedisCluster:
        from tests.support.cluster import RedisCluster

        if flavour not in self._clusters:
            self._clusters[flavour] = RedisCluster(flavour=flavour).start()
        return self._clusters[flavour]

    def stop(self) -> None:
        for server in self._servers.values():
            server.stop()
        for cluster in self._clusters.values():
            cluster.stop()


@pytest.fixture(scope="module")
def _shared() -> Iterator[SharedServers]:
    shared = SharedServers()
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def shared_cluster(flavour: ServerFlavour, _shared: SharedServers) -> RedisCluster:
    """One three-master cluster per flavour for a module's tests; each test empties it
    first with `emptied(cluster)`."""
    return _shared.cluster(flavour)


@pytest.fixture
def shared_server(flavour: ServerFlavour, _shared: SharedServers) -> RedisServer:
    """One server per flavour for a module's tests, emptied (keys and functions) for
    each test."""
    server = _shared.server(flavour)
    client = redis.Redis(port=server.port)
    try:
        # A failed import may have left commands unread in its connection, which the
        # server would run before it notices the close: end every other connection first.
        client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # type: ignore[no-untyped-call]
        client.flushall()
        if flavour.version >= (7,):
            client.execute_command("FUNCTION", "FLUSH")  # type: ignore[no-untyped-call]
    finally:
        client.close()
    return server


def emptied(cluster: RedisCluster) -> RedisCluster:
    for _, port in cluster.nodes:
        client = cluster.node_client(port)
        client.flushall()
        if cluster.flavour.version >= (7,):
            client.execute_command("FUNCTION", "FLUSH")
        client.close()
    return cluster


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the session (Debian's binaries, 127.0.0.1, a free
    port), as a SQLAlchemy URL; skipped only when the server binaries are not installed."""
    from tests.support.postgres import PostgresCluster, PostgresUnavailable

    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL is not installed: {exc}")
    with cluster as url:
        yield url
