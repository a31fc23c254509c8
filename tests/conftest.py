"""Fixtures starting real redis-server processes (skipped when the machine has none)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from tests.servers import RedisServer

if TYPE_CHECKING:
    from tests.cluster import RedisCluster


class RedisServerFactory(Protocol):
    def __call__(
        self, *args: str, rdb: Path | None = None, dbfilename: str = "dump.rdb"
    ) -> RedisServer: ...


def _require_redis() -> None:
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH (install Redis, e.g. `make system-deps`)")


@pytest.fixture
def redis_server() -> Iterator[RedisServerFactory]:
    """`redis_server(*args, rdb=None)`: a started RedisServer; all are stopped at teardown.

    `args` are extra redis-server arguments; `rdb` is a file the server loads at start.
    """
    _require_redis()
    started: list[RedisServer] = []

    def start(*args: str, rdb: Path | None = None, dbfilename: str = "dump.rdb") -> RedisServer:
        server = RedisServer(*args, rdb=rdb, dbfilename=dbfilename)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def redis_cluster() -> Iterator[RedisCluster]:
    """A started three-master cluster, stopped at teardown."""
    _require_redis()
    from tests.cluster import RedisCluster

    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[RedisCluster]:
    """One three-master cluster for a module's tests; each test empties it first with
    `emptied(cluster)`."""
    _require_redis()
    from tests.cluster import RedisCluster

    with RedisCluster() as cluster:
        yield cluster


def emptied(cluster: RedisCluster) -> RedisCluster:
    for _, port in cluster.nodes:
        client = cluster.node_client(port)
        client.flushall()
        client.execute_command("FUNCTION", "FLUSH")
        client.close()
    return cluster


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the session (Debian's binaries, 127.0.0.1, a free
    port), as a SQLAlchemy URL; skipped only when the server binaries are not installed."""
    from tests.postgres import PostgresCluster, PostgresUnavailable

    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL is not installed: {exc}")
    with cluster as url:
        yield url
