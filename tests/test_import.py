"""Import behaviour against real redis-server processes: logins, conflict policies, flush,
expiry, chunked big keys, clusters, and a target that dies or drops the connection."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lzf
import pytest
import redis

from dcs_migration.client.cluster import ClusterRouter
from dcs_migration.client.endpoint import Endpoint, parse_target_url
from dcs_migration.client.slots import key_slot
from dcs_migration.formats import KeyRecord, RdbReader
from dcs_migration.importer import ImportHooks, resolve_inputs, run_import
from dcs_migration.writer.options import Conflict, Strategy, WriteOptions
from dcs_migration.writer.writer import Writer
from tests.support import rdbgen as g
from tests.support.aofgen import aof
from tests.support.cluster import RedisCluster, emptied
from tests.support.corpus import (
    CORPUS,
    comparable,
    flavour_case_params,
    load_oracle,
)
from tests.support.expected_outcomes import KNOWN_FAILURES, expected_failure
from tests.support.flavours import RedisServerFactory, every_flavour
from tests.support.live import dump_cluster_oracle

FUTURE = 4_102_444_800_000


def write_rdb(tmp_path: Path, *body: bytes, name: str = "dump.rdb") -> Path:
    path = tmp_path / name
    path.write_bytes(g.rdb(*body, version=9))
    return path


def populated_rdb(tmp_path: Path, redis_server: RedisServerFactory, keys: int) -> Path:
    """A real RDB of `keys` small strings, written by redis-server itself."""
    server = redis_server("--enable-debug-command", "yes")
    server.cli("DEBUG", "POPULATE", str(keys), "key", "32")
    server.cli("SAVE")
    out = tmp_path / "populated.rdb"
    out.write_bytes((server.dir / "dump.rdb").read_bytes())
    return out


def endpoint(server: Any, **kwargs: Any) -> Endpoint:
    return Endpoint("127.0.0.1", server.port, **kwargs)


def test_password_login(tmp_path: Path, redis_server: RedisServerFactory) -> None:
    server = redis_server("--requirepass", "s3cret")
    rdb = write_rdb(tmp_path, g.key(b"k", g.string(b"v")))
    bad = run_import(resolve_inputs([str(rdb)]), endpoint(server, password="wrong"), WriteOptions())
    assert bad.status == "FAILED" and "refused the login" in (bad.error or "")
    good = run_import(
        resolve_inputs([str(rdb)]), endpoint(server, password="s3cret"), WriteOptions()
    )
    assert good.status == "SUCCESS", good.error
    assert redis.Redis(port=server.port, password="s3cret").get(b"k") == b"v"


def test_acl_user_login(tmp_path: Path, redis_server: RedisServerFactory) -> None:
    server = redis_server("--user", "importer", "on", ">pw", "~*", "&*", "+@all")
    rdb = write_rdb(tmp_path, g.key(b"k", g.string(b"v")))
    url = f"redis://importer:pw@127.0.0.1:{server.port}"
    result = run_import(resolve_inputs([str(rdb)]), parse_target_url(url), WriteOptions())
    assert result.status == "SUCCESS", result.error
    assert redis.Redis(port=server.port).get(b"k") == b"v"


@pytest.mark.parametrize("strategy", [Strategy.RESTORE, Strategy.REWRITE])
def test_conflict_policies(
    tmp_path: Path, redis_server: RedisServerFactory, strategy: Strategy
) -> None:
    rdb = write_rdb(
        tmp_path,
        g.key(b"taken", g.length(2) + g.string(b"a") + g.string(b"b"), rdb_type=1),
        g.key(b"free", g.string(b"new")),
    )
    server = redis_server()
    r = redis.Redis(port=server.port)

    def run(conflict: Conflict) -> Any:
        r.flushall()
        r.rpush(b"taken", b"old")
        return run_import(
            resolve_inputs([str(rdb)]),
            endpoint(server),
            WriteOptions(conflict=conflict, strategy=strategy),
        )

    replaced = run(Conflict.REPLACE)
    assert replaced.status == "SUCCESS" and replaced.stats.keys_written == 2
    assert r.lrange(b"taken", 0, -1) == [b"a", b"b"]  # replaced whole, never merged

    skipped = run(Conflict.SKIP)
    assert skipped.status == "SUCCESS"
    assert (skipped.stats.keys_written, skipped.stats.keys_skipped_existing) == (1, 1)
    assert r.lrange(b"taken", 0, -1) == [b"old"]
    assert r.get(b"free") == b"new"

    failed = run(Conflict.FAIL)
    assert failed.status == "FAILED"
    assert "b'taken' already exists" in (failed.error or "")
    assert r.lrange(b"taken", 0, -1) == [b"old"]
    assert not r.keys(b"*dcs-migration:tmp*")


def test_every_string_encoding_lands_exact_over_keys_of_any_type(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """Short plain strings go as SET (PXAT for an expiry), the others as RESTORE: either
    way a key ends as a native load leaves it, over whatever the target held."""
    lzf_raw = b"compressible " * 20
    packed = lzf.compress(lzf_raw, len(lzf_raw))
    strings = {
        b"tiny": g.string(b"v"),
        b"fourteen-bit": g.string(b"x" * 100),
        b"long": g.string(b"y" * 5_000),
        b"huge": g.string(b"z" * 70_000),
        b"int8": b"\xc0\x7b",
        b"int32": b"\xc2" + (-2_000_000_000).to_bytes(4, "little", signed=True),
        b"lzf": b"\xc3" + g.length(len(packed)) + g.length(len(lzf_raw)) + packed,
        b"empty": g.string(b""),
    }
    body = [g.key(k, v) for k, v in strings.items()]
    body += [g.key(b"ttl:" + k, v, expire_ms=FUTURE) for k, v in strings.items()]
    rdb = write_rdb(tmp_path, *body)
    server = redis_server("--enable-debug-command", "yes")
    r = redis.Redis(port=server.port)
    for k in strings:
        r.rpush(k, b"old")  # another type, replaced
        r.set(b"ttl:" + k, b"old", px=60_000)  # a TTL, replaced by the file's
    result = run_import(
        resolve_inputs([str(rdb)]), endpoint(server), WriteOptions(strategy=Strategy.RESTORE)
    )
    assert result.status == "SUCCESS", result.error
    assert result.stats.keys_written == 2 * len(strings)
    calls = r.info("commandstats")
    assert calls["cmdstat_set"]["calls"] == len(strings) + 8  # the test's own, then 4 x 2
    assert calls["cmdstat_restore"]["calls"] == 8
    native = redis_server("--enable-debug-command", "yes", rdb=rdb)
    assert server.cli("DEBUG", "DIGEST") == native.cli("DEBUG", "DIGEST")
    n = redis.Redis(port=native.port)
    for k in strings:
        assert r.pttl(k) == -1
        assert r.pexpiretime(b"ttl:" + k) == FUTURE
        for name in (k, b"ttl:" + k):
            assert r.object("encoding", name) == n.object("encoding", name), name


def test_flush_empties_the_target_first(tmp_path: Path, redis_server: RedisServerFactory) -> None:
    server = redis_server()
    r = redis.Redis(port=server.port)
    r.set(b"stale", b"1")
    r.execute_command("SELECT", 3)
    rdb = write_rdb(tmp_path, g.key(b"k", g.string(b"v")))
    result = run_import(resolve_inputs([str(rdb)]), endpoint(server), WriteOptions(flush=True))
    assert result.status == "SUCCESS"
    assert redis.Redis(port=server.port).keys() == [b"k"]


def test_expired_keys_are_skipped_and_counted(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    rdb = write_rdb(
        tmp_path,
        g.key(b"past", g.string(b"x"), expire_ms=1_000),
        g.key(b"future", g.string(b"y"), expire_ms=FUTURE),
    )
    server = redis_server()
    result = run_import(resolve_inputs([str(rdb)]), endpoint(server), WriteOptions())
    assert (result.stats.keys_written, result.stats.keys_skipped_expired) == (1, 1)
    r = redis.Redis(port=server.port)
    assert r.keys() == [b"future"]
    assert r.pexpiretime(b"future") == FUTURE


def test_empty_keys_are_left_out_and_reported(redis_server: RedisServerFactory) -> None:
    """Redis drops the empty keys of an RDB it loads: so does the import, and it says how
    many, in the summary and on the command line."""
    case = CORPUS / "thirdparty/redis/corrupt_empty_keys.rdb"
    if not case.exists():
        pytest.skip("corpus not found")
    server = redis_server()
    result = run_import(resolve_inputs([str(case)]), endpoint(server), WriteOptions())
    assert result.status == "SUCCESS", result.error
    assert (result.stats.keys_written, result.empty_keys_dropped) == (0, 9)
    assert result.as_json()["empty_keys_dropped"] == 9
    assert int(server.cli("DBSIZE")) == 0


def test_db_mapping(tmp_path: Path, redis_server: RedisServerFactory) -> None:
    rdb = write_rdb(
        tmp_path,
        b"\xfe\x02" + g.key(b"two", g.string(b"2")),
        b"\xfe\x07" + g.key(b"seven", g.string(b"7")),
    )
    server = redis_server()
    assert (
        run_import(resolve_inputs([str(rdb)]), endpoint(server), WriteOptions()).status == "SUCCESS"
    )
    assert redis.Redis(port=server.port, db=2).get(b"two") == b"2"
    assert redis.Redis(port=server.port, db=7).get(b"seven") == b"7"
    assert (
        run_import(resolve_inputs([str(rdb)]), endpoint(server), WriteOptions(db=4)).status
        == "SUCCESS"
    )
    assert sorted(redis.Redis(port=server.port, db=4).keys()) == [b"seven", b"two"]
    too_far = run_import(resolve_inputs([str(rdb)]), endpoint(server), WriteOptions(db=99))
    assert too_far.status == "FAILED" and "--db 99" in (too_far.error or "")


def test_big_keys_go_through_the_chunked_rewrite(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    members = [b"member-%06d" % i for i in range(20_000)]
    fields = [(b"f%d" % i, b"v" * 50) for i in range(5_000)]
    rdb = write_rdb(
        tmp_path,
        g.key(b"set", g.length(len(members)) + b"".join(map(g.string, members)), rdb_type=2),
        g.key(
            b"hash",
            g.length(len(fields)) + b"".join(g.string(f) + g.string(v) for f, v in fields),
            rdb_type=4,
            expire_ms=FUTURE,
        ),
        g.key(b"str", g.string(b"s" * 300_000)),
    )
    server = redis_server()
    server.cli("RPUSH", "set", "stale")  # replaced, not merged
    options = WriteOptions(big_key_bytes=10_000, chunk_bytes=8_192)
    monitor = subprocess.Popen(
        ["redis-cli", "-p", str(server.port), "MONITOR"], stdout=subprocess.PIPE, text=True
    )
    try:
        result = run_import(resolve_inputs([str(rdb)]), endpoint(server), options)
    finally:
        monitor.terminate()
        log = monitor.communicate()[0]
    assert result.status == "SUCCESS", result.error
    assert result.stats.keys_rewritten == 3
    r = redis.Redis(port=server.port)
    assert sorted(r.smembers(b"set")) == members
    assert r.hgetall(b"hash") == dict(fields)
    assert r.pexpiretime(b"hash") == FUTURE
    assert r.get(b"str") == b"s" * 300_000
    assert r.pttl(b"str") == r.pttl(b"set") == -1  # the safety TTL of the build is gone
    longest = max(len(line) for line in log.splitlines())
    assert longest < 3 * 8_192 + 1_000, "a rewrite command exceeded the chunk size"


def stream_rdb(tmp_path: Path, redis_server: RedisServerFactory) -> Path:
    """A real RDB holding stream `s` (50 entries, a group with 10 pending) and a string."""
    server = redis_server()
    r = redis.Redis(port=server.port)
    for i in range(50):
        r.xadd(b"s", {b"f": b"%d" % i})
    r.xgroup_create(b"s", b"g", id=b"0")
    r.xreadgroup(b"g", b"c", {b"s": b">"}, count=10)
    r.set(b"plain", b"v")
    server.cli("SAVE")
    out = tmp_path / "stream.rdb"
    out.write_bytes((server.dir / "dump.rdb").read_bytes())
    return out


@pytest.mark.parametrize("conflict", [Conflict.REPLACE, Conflict.SKIP])
def test_a_value_of_several_commands_is_rewritten_whole_or_not_at_all(
    tmp_path: Path, redis_server: RedisServerFactory, conflict: Conflict
) -> None:
    rdb = stream_rdb(tmp_path, redis_server)
    # The importer may not run XCLAIM: the stream's last commands are refused.
    server = redis_server("--user", "importer", "on", ">pw", "~*", "&*", "+@all", "-xclaim")
    r = redis.Redis(port=server.port)
    r.set(b"s", b"before")
    target = parse_target_url(f"redis://importer:pw@127.0.0.1:{server.port}")
    options = WriteOptions(strategy=Strategy.REWRITE, conflict=conflict)
    result = run_import(resolve_inputs([str(rdb)]), target, options)
    assert result.status == "FAILED"
    assert "b's'" in (result.error or "") and "NOPERM" in (result.error or ""), result.error
    assert r.get(b"s") == b"before"
    assert not r.keys(b"*dcs-migration:tmp*")

    r.delete(b"plain")  # written or not, depending on where the import stopped
    if conflict is Conflict.SKIP:
        kept = run_import(resolve_inputs([str(rdb)]), endpoint(server), options)
        assert kept.status == "SUCCESS", kept.error
        assert (kept.stats.keys_written, kept.stats.keys_skipped_existing) == (1, 1)
        assert r.get(b"s") == b"before"
    r.delete(b"s", b"plain")
    allowed = run_import(resolve_inputs([str(rdb)]), endpoint(server), options)
    assert allowed.status == "SUCCESS", allowed.error
    assert (allowed.stats.keys_written, allowed.stats.keys_rewritten) == (2, 2)
    assert r.xlen(b"s") == 50
    assert r.xpending(b"s", b"g")["pending"] == 10
    assert not r.keys(b"*dcs-migration:tmp*")


def test_a_big_rewrite_refused_half_way_is_not_renamed_into_place(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    rdb = write_rdb(tmp_path, g.key(b"str", g.string(b"s" * 300_000)))
    server = redis_server("--user", "importer", "on", ">pw", "~*", "&*", "+@all", "-append")
    server.cli("SET", "str", "before")
    target = parse_target_url(f"redis://importer:pw@127.0.0.1:{server.port}")
    options = WriteOptions(big_key_bytes=10_000, chunk_bytes=8_192)
    result = run_import(resolve_inputs([str(rdb)]), target, options)
    assert result.status == "FAILED" and "NOPERM" in (result.error or ""), result.error
    assert "b'str'" in (result.error or "")
    assert redis.Redis(port=server.port).get(b"str") == b"before"


def test_a_rewrite_refused_half_way_does_not_replace_the_key(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    # The target runs out of memory half-way through building a big string.
    rdb = tmp_path / "big.rdb"
    rdb.write_bytes(g.rdb(g.key(b"str", g.string(b"s" * 8_000_000)), version=9))
    server = redis_server("--maxmemory", "6mb", "--maxmemory-policy", "noeviction")
    server.cli("SET", "str", "before")
    options = WriteOptions(big_key_bytes=10_000, chunk_bytes=65_536)
    result = run_import(resolve_inputs([str(rdb)]), endpoint(server), options)
    assert result.status == "FAILED" and "OOM" in (result.error or ""), result.error
    assert redis.Redis(port=server.port).get(b"str") == b"before"


def test_dropped_connection_reconnects_and_the_result_is_exact(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    rdb = populated_rdb(tmp_path, redis_server, 300_000)
    server = redis_server("--enable-debug-command", "yes")
    killer_done = threading.Event()

    def kill_clients() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not killer_done.is_set():
            if int(server.cli("DBSIZE")) > 1000:
                server.cli("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_clients)
    killer.start()
    try:
        result = run_import(
            resolve_inputs([str(rdb)]), endpoint(server), WriteOptions(window_bytes=1 << 20)
        )
    finally:
        killer_done.set()
        killer.join()
    assert result.status == "SUCCESS", result.error
    assert result.stats.reconnects >= 1
    assert result.stats.keys_written == 300_000
    assert int(server.cli("DBSIZE")) == 300_000
    source = redis_server("--enable-debug-command", "yes", rdb=rdb)
    assert server.cli("DEBUG", "DIGEST") == source.cli("DEBUG", "DIGEST")


def test_target_killed_mid_import_fails_with_counts(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    rdb = populated_rdb(tmp_path, redis_server, 300_000)
    server = redis_server()

    def kill_target() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if int(server.cli("DBSIZE")) > 50_000:  # well past the first window of replies
                assert server.process is not None
                server.process.kill()
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_target)
    killer.start()
    started = time.monotonic()
    options = WriteOptions(retries=2, window_bytes=1 << 20)
    result = run_import(resolve_inputs([str(rdb)]), endpoint(server), options)
    killer.join()
    assert result.status == "FAILED"
    assert "could not reconnect" in (result.error or "")
    # Only what the target acknowledged counts as written; it had more when it died.
    assert 0 < result.stats.keys_written < 300_000
    assert 0 < result.bytes_read <= result.bytes_total
    assert time.monotonic() - started < 30


def test_cli_import_json_summary(tmp_path: Path, redis_server: RedisServerFactory) -> None:
    server = redis_server()
    rdb = write_rdb(tmp_path, g.key(b"k", g.string(b"v")))
    target = f"redis://127.0.0.1:{server.port}"
    cmd = [sys.executable, "-m", "dcs_migration", "import", str(rdb), "--target", target]
    done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "SUCCESS" and summary["keys_written"] == 1
    for key in ("keys_skipped_expired", "bytes_read", "seconds"):
        assert key in summary
    bad = subprocess.run([*cmd[:-2], "--target", "http://x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "redis://" in bad.stderr
    missing = subprocess.run(
        [*cmd[:4], str(tmp_path / "nope.rdb"), "--target", target, "--json"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1
    assert json.loads(missing.stdout.strip().splitlines()[-1])["status"] == "FAILED"


# -- Redis Cluster ------------------------------------------------------------------------


def test_multi_db_file_into_a_cluster_fails_before_writing(shared_cluster: RedisCluster) -> None:
    redis_cluster = emptied(shared_cluster)
    case = CORPUS / "native/redis-7.0.15/dump.rdb"
    if not case.exists():
        pytest.skip("corpus not found")
    host, port = redis_cluster.nodes[0]
    result = run_import(
        resolve_inputs([str(case)]), Endpoint(host, port), WriteOptions(), cluster=True
    )
    assert result.status == "FAILED" and "--db 0" in (result.error or "")
    assert result.stats.keys_written == 0
    assert all(redis_cluster.node_client(p).dbsize() == 0 for _, p in redis_cluster.nodes)


@pytest.mark.parametrize("flavour", every_flavour(), indirect=True)
def test_a_cluster_node_is_told_apart_from_a_standalone_server(
    tmp_path: Path, shared_cluster: RedisCluster, redis_server: RedisServerFactory
) -> None:
    """Valkey says `server_mode:cluster` where Redis says `redis_mode:cluster`: either way
    a cluster node imported into as a standalone server (or the reverse) is refused
    before anything is written."""
    rdb = write_rdb(tmp_path, g.key(b"k", g.string(b"v")))
    host, port = emptied(shared_cluster).nodes[0]
    as_standalone = run_import(resolve_inputs([str(rdb)]), Endpoint(host, port), WriteOptions())
    assert as_standalone.status == "FAILED"
    assert "is a Redis Cluster node: import with --cluster" in (as_standalone.error or "")
    server = redis_server()
    as_cluster = run_import(
        resolve_inputs([str(rdb)]), endpoint(server), WriteOptions(), cluster=True
    )
    assert as_cluster.status == "FAILED"
    assert "is not a Redis Cluster node" in (as_cluster.error or "")
    assert sum(shared_cluster.node_client(p).dbsize() for _, p in shared_cluster.nodes) == 0
    assert server.cli("DBSIZE") == "0"


NATIVE = {"where": lambda c: bool(c["oracle"]) and c["id"].startswith("native/")}


@pytest.mark.parametrize(
    ("flavour", "case"),
    flavour_case_params(
        "rdb", "aof", "aof-preamble", "aof-multipart", known_failures=KNOWN_FAILURES, **NATIVE
    ),
    indirect=["flavour"],
)
def test_corpus_into_a_cluster(case: dict[str, Any], shared_cluster: RedisCluster) -> None:
    corpus_case_into_a_cluster(case, shared_cluster, Strategy.AUTO)


@pytest.mark.parametrize(
    ("flavour", "case"), flavour_case_params("rdb", **NATIVE), indirect=["flavour"]
)
def test_corpus_rewritten_into_a_cluster(
    case: dict[str, Any], shared_cluster: RedisCluster
) -> None:
    corpus_case_into_a_cluster(case, shared_cluster, Strategy.REWRITE)


def corpus_case_into_a_cluster(
    case: dict[str, Any], shared_cluster: RedisCluster, strategy: Strategy
) -> None:
    redis_cluster = emptied(shared_cluster)
    host, port = redis_cluster.nodes[0]
    options = WriteOptions(db=0, strategy=strategy)
    result = run_import(
        resolve_inputs([str(CORPUS / case["path"])]), Endpoint(host, port), options, cluster=True
    )
    client = redis_cluster.node_client(port)
    redis_version = client.info("server")["redis_version"]
    version = tuple(int(p) for p in redis_version.split("."))
    failure = expected_failure(redis_cluster.flavour.id, case["id"])
    if failure is not None:
        assert result.status == "FAILED", f"expected to fail with {failure!r}"
        assert failure in (result.error or ""), result.error
        return
    assert result.status == "SUCCESS", result.error
    oracle = load_oracle(case)
    merged: dict[str, Any] = {}
    for db in sorted(oracle["databases"], key=int):
        merged.update(oracle["databases"][db])
    oracle["databases"] = {"0": merged} if merged else {}
    got, want = comparable(
        dump_cluster_oracle(redis_cluster.nodes),
        oracle,
        got_version=version,
        now_ms=int(time.time() * 1000),
    )
    assert got == want


def test_aof_commands_into_a_cluster_are_refused_skipped_or_unknown_as_on_one_server(
    tmp_path: Path, shared_cluster: RedisCluster
) -> None:
    """A cluster routes each command by its keys (COMMAND); an unknown one stops the import
    before it is routed, a refused one is skipped and counted once, even when it has no
    keys and goes to every master."""
    cluster = emptied(shared_cluster)
    host, port = cluster.nodes[0]
    commands = [
        (b"SET", b"s", b"text"),
        (b"INCR", b"s"),
        (b"FUNCTION", b"LOAD", b"LUA", b"lib", b"return 1"),  # a refused option, no keys
        (b"NOSUCHCOMMAND", b"k"),
        (b"SET", b"end", b"1"),
    ]
    data, offsets = aof(*commands)
    unknown_at = offsets[3]
    (tmp_path / "cluster.aof").write_bytes(data)
    source = [str(tmp_path / "cluster.aof")]
    failed = run_import(resolve_inputs(source), Endpoint(host, port), WriteOptions(), cluster=True)
    assert failed.status == "FAILED"
    where = f"NOSUCHCOMMAND at offset {unknown_at} of cluster.aof: unknown command"
    assert where in (failed.error or "")
    assert failed.stats.commands_refused == 2
    cluster = emptied(shared_cluster)
    options = WriteOptions(skip_unknown_commands=True)
    done = run_import(resolve_inputs(source), Endpoint(host, port), options, cluster=True)
    assert done.status == "SUCCESS", done.error
    assert (done.stats.commands_refused, done.stats.commands_skipped_unknown) == (2, 1)
    assert len(done.stats.skipped_command_log()) == 3
    got = dump_cluster_oracle(cluster.nodes)["databases"]["0"]
    assert {k: v["value"] for k, v in got.items()} == {"s": "text", "end": "1"}


def test_a_stop_request_ends_the_import_terminated_with_exact_counts(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    rdb = populated_rdb(tmp_path, redis_server, 200_000)
    server = redis_server()
    asked = 0

    def should_stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3

    result = run_import(
        resolve_inputs([str(rdb)]),
        endpoint(server),
        WriteOptions(),
        hooks=ImportHooks(should_stop=should_stop),
    )
    assert result.status == "TERMINATED"
    assert 0 < result.stats.keys_written < 200_000
    assert result.stats.keys_written == int(server.cli("DBSIZE"))


def _slot_owner(client: redis.Redis, slot: int) -> int:
    for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return int(master[1])
    raise AssertionError(f"slot {slot} has no master")


@pytest.mark.parametrize("flavour", every_flavour(), indirect=True)
def test_moved_and_ask_are_followed(tmp_path: Path, redis_cluster: RedisCluster) -> None:
    """The router learns the slots, then one slot moves to another master (MOVED) and
    another is half-way through a migration (ASK) before the keys are written."""
    host, port = redis_cluster.nodes[0]
    clients = {p: redis_cluster.node_client(p) for _, p in redis_cluster.nodes}
    ids = {p: c.execute_command("CLUSTER", "MYID").decode() for p, c in clients.items()}
    moved_key, asked_key = b"moved-key", b"asked-key"
    moved_slot, asked_slot = key_slot(moved_key), key_slot(asked_key)
    source = _slot_owner(clients[port], moved_slot)
    rdb = write_rdb(
        tmp_path,
        g.key(moved_key, g.string(b"m")),
        g.key(asked_key, g.string(b"a" * 200)),
        g.key(b"plain-key", g.string(b"p")),
    )
    reader = RdbReader()
    records = [r for r in reader.feed(rdb.read_bytes()) + reader.close() if type(r) is KeyRecord]

    writer = Writer(WriteOptions(strategy=Strategy.RESTORE))
    router = ClusterRouter(Endpoint(host, port), writer.on_reply, writer.options.limits)
    try:
        writer.attach(router)
        # The first slot moves for good; the second is left migrating.
        for slot, finish in ((moved_slot, True), (asked_slot, False)):
            owner = _slot_owner(clients[port], slot)
            other = next(p for p in clients if p != owner)
            clients[other].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[owner])
            clients[owner].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[other])
            if finish:
                for c in clients.values():
                    c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[other])
        writer.write_records(records)
        writer.finish()
    finally:
        router.close()
    assert writer.keys_written == 3
    new_owner = _slot_owner(clients[port], moved_slot)
    assert new_owner != source
    assert clients[new_owner].get(moved_key) == b"m"
    asked_owner = _slot_owner(clients[port], asked_slot)
    importing = next(
        p for p, c in clients.items() if p != asked_owner and _importing(c, asked_slot)
    )
    conn = redis.Redis(port=importing, single_connection_client=True)
    conn.execute_command("ASKING")
    assert conn.get(asked_key) == b"a" * 200
    conn.close()


def _importing(client: redis.Redis, slot: int) -> bool:
    myself = next(
        line
        for line in client.execute_command("CLUSTER", "NODES").decode().splitlines()
        if "myself" in line
    )
    return f"[{slot}-<-" in myself


def test_key_slots_agree_with_the_cluster(shared_cluster: RedisCluster) -> None:
    client = shared_cluster.node_client(shared_cluster.nodes[0][1])
    keys = [b"", b"a", b"123456789", b"{user1000}.following", b"{}x", b"x{}y{z}", b"\xff" * 40]
    keys += [b"key:%d" % i for i in range(200)]
    for key in keys:
        assert key_slot(key) == client.execute_command("CLUSTER", "KEYSLOT", key), key
