"""The hand-off: the target loads the backup itself, as a replica of the importer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from dcs_migration.client.addresses import AddressPolicy
from dcs_migration.client.capabilities import Capabilities
from dcs_migration.client.connection import Connection
from dcs_migration.client.endpoint import Endpoint
from dcs_migration.formats import KeyRecord, RdbReader
from dcs_migration.formats.rdb_writer import RdbWriter
from dcs_migration.importer import resolve_inputs, run_import
from dcs_migration.networks import AllowedNetworks
from dcs_migration.writer import handoff
from dcs_migration.writer.options import Strategy, WriteOptions
from tests.support import rdbgen as g
from tests.support.corpus import (
    CORPUS,
    case_params,
    flavour_case_params,
    loadable_by_target,
    readable_by_target,
)
from tests.support.flavours import RedisServerFactory, every_flavour
from tests.support.live import assert_holds_oracle

FUTURE = 4_102_444_800_000
HANDOFF = WriteOptions(strategy=Strategy.HANDOFF, flush=True)
AUTO_FLUSH = WriteOptions(flush=True)


def target_of(server: Any) -> Endpoint:
    return Endpoint("127.0.0.1", server.port)


def role(server: Any) -> str:
    return redis.Redis(port=server.port).info("replication")["role"]


@pytest.mark.parametrize(
    ("flavour", "case"),
    flavour_case_params("rdb", "aof-preamble", where=readable_by_target),
    indirect=["flavour"],
)
def test_corpus_case_through_the_handoff_equals_its_oracle(
    case: dict[str, Any], redis_server: RedisServerFactory
) -> None:
    """`auto` hands a file off when the target reads its RDB version, and restores it
    key by key, saying why, when the target is older than the file (Redis 6.2 reads RDB
    up to 9) or the file older than Redis 3.2."""
    server = redis_server()
    server.cli("SET", "stale", "replaced")
    client = redis.Redis(port=server.port)
    readable = Capabilities.from_info(client.info("server")).rdb_version
    result = run_import(resolve_inputs([str(CORPUS / case["path"])]), target_of(server), AUTO_FLUSH)
    assert result.status == "SUCCESS", result.error
    if (case.get("rdb_version") or 0) < handoff.MIN_RDB_VERSION:
        assert result.strategy == "restore"  # files older than Redis 3.2 are restored
    elif case["rdb_version"] > readable:
        assert result.strategy == "restore"
        assert any(f"reads RDB up to version {readable}" in w for w in result.stats.warnings)
    else:
        assert result.strategy == "handoff"
    assert client.info("replication")["role"] == "master"
    assert_holds_oracle(client, case)


@pytest.mark.parametrize("case", case_params("rdb", where=loadable_by_target))
def test_every_corpus_rdb_rewritten_by_the_rdb_writer_loads_as_its_oracle(
    case: dict[str, Any], redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    data = (CORPUS / case["path"]).read_bytes()
    reader = RdbReader()
    records = [*reader.feed(data), *reader.close()]
    writer = RdbWriter(reader.rdb_version)
    out = writer.header() + writer.keys([r for r in records if isinstance(r, KeyRecord)])
    for r in records:
        if type(r).__name__ == "FunctionLibrary":
            out += writer.function(r.code)  # type: ignore[union-attr]
    out += writer.end()
    (tmp_path / "rewritten.rdb").write_bytes(out)
    server = redis_server(rdb=tmp_path / "rewritten.rdb")
    client = redis.Redis(port=server.port)
    assert_holds_oracle(client, case)


def test_several_files_merge_into_one_stream_with_db_mapping_and_expiry(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    one = tmp_path / "one.rdb"
    one.write_bytes(
        g.rdb(
            b"\xfe\x03" + g.key(b"a", g.string(b"1")),
            g.key(b"gone", g.string(b"x"), expire_ms=1000),
            version=9,
        )
    )
    two = tmp_path / "two.rdb"
    two.write_bytes(g.rdb(g.key(b"b", g.string(b"2"), expire_ms=FUTURE), version=9))
    server = redis_server()
    options = WriteOptions(strategy=Strategy.HANDOFF, flush=True, db=5)
    result = run_import(resolve_inputs([str(one), str(two)]), target_of(server), options)
    assert result.status == "SUCCESS", result.error
    assert result.strategy == "handoff"
    assert (result.stats.keys_written, result.stats.keys_skipped_expired) == (2, 1)
    client = redis.Redis(port=server.port, db=5)
    assert sorted(client.keys()) == [b"a", b"b"]
    assert client.pexpiretime(b"b") == FUTURE
    assert role(server) == "master"


def test_a_single_image_keeps_expired_keys_invisible(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(
        g.rdb(
            g.key(b"gone", g.string(b"x"), expire_ms=1000), g.key(b"k", g.string(b"v")), version=9
        )
    )
    server = redis_server()
    result = run_import(resolve_inputs([str(path)]), target_of(server), HANDOFF)
    assert result.status == "SUCCESS", result.error
    assert (result.stats.keys_written, result.stats.keys_skipped_expired) == (1, 1)
    client = redis.Redis(port=server.port)
    assert client.get(b"gone") is None and client.get(b"k") == b"v"


def test_an_aof_tail_after_a_big_last_value_is_not_lost(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    # The image's last value spans several reads, so the reader only knows where the
    # image ends once the file does: the commands after it must still be applied.
    path = tmp_path / "preamble.aof"
    big = os.urandom(1_500_000).hex().encode()
    tail = b"*3\r\n$3\r\nSET\r\n$4\r\ntail\r\n$2\r\nok\r\n"
    path.write_bytes(g.rdb(g.key(b"big", g.string(big)), version=9) + tail)
    server = redis_server()
    result = run_import(resolve_inputs([str(path)]), target_of(server), HANDOFF)
    assert result.status == "SUCCESS", result.error
    assert result.strategy == "handoff"
    client = redis.Redis(port=server.port)
    assert client.get(b"big") == big
    assert client.get(b"tail") == b"ok"
    assert role(server) == "master"


def test_auto_needs_flush_and_says_why_it_did_not_hand_off(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(g.rdb(g.key(b"k", g.string(b"v")), version=9))
    server = redis_server()
    server.cli("SET", "kept", "1")
    result = run_import(resolve_inputs([str(path)]), target_of(server), WriteOptions())
    assert result.status == "SUCCESS" and result.strategy == "restore"
    assert redis.Redis(port=server.port).get(b"kept") == b"1"
    auto = run_import(resolve_inputs([str(path)]), target_of(server), WriteOptions(flush=True))
    assert auto.strategy == "handoff"
    refused = run_import(
        resolve_inputs([str(path)]), target_of(server), WriteOptions(strategy=Strategy.HANDOFF)
    )
    assert refused.status == "FAILED" and "--flush" in (refused.error or "")


@pytest.mark.parametrize("flavour", every_flavour(), indirect=True)
def test_a_backup_newer_than_the_target_is_restored_and_never_handed_off(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """A target's own loader refuses an RDB version newer than its own (Redis 6.2 reads
    up to 9): `handoff` refuses before touching it, `auto` restores key by key."""
    server = redis_server()
    server.cli("SET", "kept", "1")
    client = redis.Redis(port=server.port)
    readable = Capabilities.from_info(client.info("server")).rdb_version
    path = tmp_path / "dump.rdb"
    path.write_bytes(g.rdb(g.key(b"k", g.string(b"v")), version=readable + 1))
    refused = run_import(resolve_inputs([str(path)]), target_of(server), HANDOFF)
    assert refused.status == "FAILED"
    assert f"reads RDB up to version {readable}, the backup is {readable + 1}" in (
        refused.error or ""
    )
    assert client.get(b"kept") == b"1" and role(server) == "master"
    auto = run_import(resolve_inputs([str(path)]), target_of(server), AUTO_FLUSH)
    assert auto.status == "SUCCESS" and auto.strategy == "restore", auto.error
    assert any(f"reads RDB up to version {readable}" in w for w in auto.stats.warnings)
    assert client.keys() == [b"k"]


def test_falls_back_when_replicaof_is_renamed(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(g.rdb(g.key(b"k", g.string(b"v")), version=9))
    server = redis_server("--rename-command", "REPLICAOF", "", "--rename-command", "SLAVEOF", "")
    result = run_import(resolve_inputs([str(path)]), target_of(server), WriteOptions(flush=True))
    assert result.status == "SUCCESS" and result.strategy == "restore"
    assert any("REPLICAOF" in w for w in result.stats.warnings)
    assert redis.Redis(port=server.port).get(b"k") == b"v"


def test_falls_back_when_the_target_cannot_connect_back(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(g.rdb(g.key(b"k", g.string(b"v")), version=9))
    server = redis_server()
    # The target is told an address where nothing listens; the listener is elsewhere.
    options = WriteOptions(flush=True, handoff_addr="127.0.0.3", handoff_bind="127.0.0.1")
    started = time.monotonic()
    result = run_import(resolve_inputs([str(path)]), target_of(server), options)
    assert result.status == "SUCCESS", result.error
    assert result.strategy == "restore"
    assert any("did not connect back" in w for w in result.stats.warnings)
    assert "Connecting to MASTER 127.0.0.3" in server.log()
    assert time.monotonic() - started < 20
    assert role(server) == "master"
    assert redis.Redis(port=server.port).get(b"k") == b"v"


def test_a_hand_off_address_outside_the_allowed_networks_is_never_handed_out(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(g.rdb(g.key(b"k", g.string(b"v")), version=9))
    server = redis_server()
    options = WriteOptions(flush=True, handoff_addr="127.0.0.3", handoff_bind="127.0.0.1")
    target = Endpoint(
        "127.0.0.1", server.port, policy=AddressPolicy(AllowedNetworks.parse("127.0.0.1/32"))
    )
    result = run_import(resolve_inputs([str(path)]), target, options)
    assert result.status == "SUCCESS", result.error
    assert result.strategy == "restore"
    assert any("127.0.0.3 does not lie in the allowed networks" in w for w in result.stats.warnings)
    assert "MASTER" not in server.log()  # never told REPLICAOF
    assert redis.Redis(port=server.port).get(b"k") == b"v"


def test_a_replica_target_is_refused(tmp_path: Path, redis_server: RedisServerFactory) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(g.rdb(g.key(b"k", g.string(b"v")), version=9))
    primary = redis_server()
    replica = redis_server("--replicaof", "127.0.0.1", str(primary.port))
    result = run_import(resolve_inputs([str(path)]), target_of(replica), HANDOFF)
    assert result.status == "FAILED" and "replicates from" in (result.error or "")
    assert role(replica) == "slave"


def test_a_cluster_node_is_not_handed_off(shared_cluster: Any, tmp_path: Path) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(g.rdb(g.key(b"k", g.string(b"v")), version=9))
    host, port = shared_cluster.nodes[0]
    result = run_import(
        resolve_inputs([str(path)]),
        Endpoint(host, port),
        WriteOptions(flush=True, db=0),
        cluster=True,
    )
    assert result.status == "SUCCESS", result.error
    assert result.strategy == "restore"
    refused = run_import(resolve_inputs([str(path)]), Endpoint(host, port), HANDOFF)
    assert refused.status == "FAILED" and "Cluster" in (refused.error or "")


def test_killing_the_importer_mid_stream_leaves_the_target_a_master(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    source = redis_server("--enable-debug-command", "yes")
    source.cli("DEBUG", "POPULATE", "2000000", "key", "200")
    source.cli("SAVE")
    rdb = tmp_path / "big.rdb"
    rdb.write_bytes((source.dir / "dump.rdb").read_bytes())
    source.stop()
    target = redis_server()
    target.cli("SET", "before", "1")
    importer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dcs_migration",
            "import",
            str(rdb),
            "--target",
            f"redis://127.0.0.1:{target.port}",
            "--strategy",
            "handoff",
            "--flush",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while role(target) != "slave":
            assert time.monotonic() < deadline, "the hand-off never started"
            assert importer.poll() is None, "the importer ended before the hand-off"
            time.sleep(0.01)
        time.sleep(0.05)
        os.killpg(importer.pid, signal.SIGKILL)
        importer.wait()
        deadline = time.monotonic() + 15
        while role(target) != "master":
            assert time.monotonic() < deadline, "the target is still a replica"
            time.sleep(0.05)
        assert redis.Redis(port=target.port).ping()
    finally:
        if importer.poll() is None:
            os.killpg(importer.pid, signal.SIGKILL)


def test_the_guard_acts_even_if_the_importer_dies_while_it_starts(
    redis_server: RedisServerFactory,
) -> None:
    """The importer does not wait for its guard to start: it dies here right after
    REPLICAOF, when the guard can hardly have imported anything, and the target still
    ends a master."""
    target = redis_server()
    endpoint = target_of(target)
    conn = Connection(endpoint)
    conn.connect()
    listen_host = handoff.listen_host_for(endpoint)
    assert listen_host is not None
    session = handoff.Handoff(endpoint, conn, listen_host)
    session.start()
    guard, session._guard = session._guard, None
    assert guard is not None and guard.stdin is not None
    try:
        assert role(target) == "slave"
        guard.stdin.close()  # what the importer's death does to the pipe
        assert session._replica is not None
        session._replica.close()
        session._replica = None
        deadline = time.monotonic() + 15
        while role(target) != "master":
            assert time.monotonic() < deadline, "the target is still a replica"
            time.sleep(0.05)
        assert guard.wait(10) == 0
    finally:
        if guard.poll() is None:
            guard.kill()
        conn.close()
