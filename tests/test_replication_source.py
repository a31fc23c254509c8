"""A live Redis as a source: its snapshot taken as a replica takes it, checked as it comes."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import redis

from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.formats import FormatError
from dcs_migration.sources.replication import take_snapshot
from tests.support.corpus import CORPUS, comparable, manifest
from tests.support.flavours import RedisServerFactory
from tests.support.live import dump_oracle


@pytest.mark.parametrize("diskless", ["yes", "no"])
def test_the_snapshot_is_the_servers_data(
    redis_server: RedisServerFactory, tmp_path: Path, diskless: str
) -> None:
    case = next((c for c in manifest()["cases"] if c["id"] == "native/redis-7.0.15/rdb"), None)
    if case is None:
        pytest.skip("corpus not found")
    source = redis_server(
        "--repl-diskless-sync",
        diskless,
        "--repl-diskless-sync-delay",
        "0",
        rdb=CORPUS / case["path"],
    )
    sink = io.BytesIO()
    snapshot = take_snapshot(Endpoint("127.0.0.1", source.port), sink.write)
    assert snapshot.size == len(sink.getvalue()) > 0
    assert sum(snapshot.key_counts.values()) == sum(
        int(v.split(",")[0].split("=")[1])
        for v in [
            line.split(":", 1)[1]
            for line in source.cli("INFO", "keyspace").splitlines()
            if line.startswith("db")
        ]
    )
    (tmp_path / "snapshot.rdb").write_bytes(sink.getvalue())
    copy = redis_server(rdb=tmp_path / "snapshot.rdb")
    got, want = comparable(
        dump_oracle(redis.Redis(port=copy.port)),
        dump_oracle(redis.Redis(port=source.port)),
        got_version=(7, 0),
    )
    assert got == want
    assert redis.Redis(port=source.port).info("replication")["connected_slaves"] == 0


def test_a_source_that_dies_mid_snapshot_is_an_error(
    redis_server: RedisServerFactory,
) -> None:
    source = redis_server(
        "--enable-debug-command",
        "yes",
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
        "--rdbcompression",
        "no",
    )
    source.cli("DEBUG", "POPULATE", "300000", "key", "200")

    def kill_once_started(received: int, keys: int) -> None:
        if received > 1 << 20 and source.process is not None and source.process.poll() is None:
            source.process.kill()

    started = time.monotonic()
    with pytest.raises((TargetError, FormatError)):
        take_snapshot(
            Endpoint("127.0.0.1", source.port), lambda data: None, on_progress=kill_once_started
        )
    assert time.monotonic() - started < 30


def test_a_password_is_needed_and_used(redis_server: RedisServerFactory) -> None:
    source = redis_server("--requirepass", "pw")
    source.cli("SET", "k", "v")
    with pytest.raises(TargetError):
        take_snapshot(Endpoint("127.0.0.1", source.port), lambda data: None)
    sink = io.BytesIO()
    snapshot = take_snapshot(Endpoint("127.0.0.1", source.port, password="pw"), sink.write)
    assert snapshot.key_counts == {0: 1}
