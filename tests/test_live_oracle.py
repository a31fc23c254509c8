"""The live-server dumper (tests/support/live.py) reads servers into exactly the corpus oracle form.

Each RDB case that the local redis-server can load is loaded by it, read back with
`dump_oracle`, and compared with the case's oracle by the corpus README's rules.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis

from tests.support.cluster import RedisCluster
from tests.support.corpus import CORPUS, case_params, comparable, load_oracle
from tests.support.live import dump_cluster_oracle, dump_oracle
from tests.support.servers import FlavourMissing, server_flavour

pytestmark = pytest.mark.redis

if TYPE_CHECKING:
    from tests.support.flavours import RedisServerFactory


def local_server_version() -> tuple[int, ...] | None:
    """The version of the redis-server on PATH, or None when there is none."""
    try:
        return server_flavour().version
    except FlavourMissing:
        return None


def readable_rdb_version(version: tuple[int, ...]) -> int:
    """The newest RDB format version a Redis server of `version` loads."""
    for since, rdb_version in (((7, 4), 12), ((7, 2), 11), ((7, 0), 10), ((5, 0), 9), ((4, 0), 8)):
        if version >= since:
            return rdb_version
    return 7


LOCAL_VERSION = local_server_version()


def _loads_here(case: dict[str, Any]) -> bool:
    """An RDB case with an oracle whose file the local redis-server loads."""
    if not case["oracle"] or case.get("rdb_magic") or case["rdb_version"] is None:
        return False
    if LOCAL_VERSION is None:  # the fixture skips these
        return True
    if case["rdb_version"] > readable_rdb_version(LOCAL_VERSION):
        return False
    local_name = "redis-server " + ".".join(map(str, LOCAL_VERSION))
    return local_name not in (case.get("load_errors") or {})


def check_against_oracle(got: dict[str, Any], case: dict[str, Any]) -> None:
    assert LOCAL_VERSION is not None
    # the README's rules: what the local server cannot hold, or what the oracle server
    # could not, is left out; so are oracle keys whose expire time has passed since
    g, o = comparable(
        got, load_oracle(case), got_version=LOCAL_VERSION, now_ms=int(time.time() * 1000)
    )
    if g != o:  # name the differing keys first: the whole documents are large
        for db in sorted(set(g["databases"]) | set(o["databases"])):
            gk, ok = g["databases"].get(db, {}), o["databases"].get(db, {})
            assert gk.keys() == ok.keys(), f"db {db}"
            for name in gk:
                assert gk[name] == ok[name], f"db {db} key {name!r}"
    assert g == o


@pytest.mark.parametrize("case", case_params("rdb", where=_loads_here))
def test_live_dump_equals_oracle(case: dict[str, Any], redis_server: RedisServerFactory) -> None:
    server = redis_server(rdb=CORPUS / case["path"])
    client = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        got = dump_oracle(client)
    finally:
        client.close()
    assert got["redis_version"] == ".".join(map(str, LOCAL_VERSION or ()))
    assert got["server"] == f"redis {got['redis_version']}"
    check_against_oracle(got, case)


NATIVE_CASE = "native/redis-7.0.15/rdb"


@pytest.mark.parametrize("case", case_params("rdb", where=lambda c: c["id"] == NATIVE_CASE))
def test_small_pages_read_the_same(case: dict[str, Any], redis_server: RedisServerFactory) -> None:
    """Pages of 3 elements make every paged read (SCAN, LRANGE, SSCAN, ZSCAN, HSCAN,
    XRANGE, XPENDING) take many steps; the result is the same. A client that decodes
    replies does not change what is read."""
    if not _loads_here(case):
        pytest.skip("the local redis-server cannot load this case")
    server = redis_server(rdb=CORPUS / case["path"])
    client = redis.Redis(host="127.0.0.1", port=server.port, decode_responses=True)
    try:
        small = dump_oracle(client, page_size=3)
        default = dump_oracle(client)
    finally:
        client.close()
    assert small == default
    check_against_oracle(small, case)


def test_large_values_and_expire_times(redis_server: RedisServerFactory) -> None:
    server = redis_server()
    client = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        big = bytes(range(256)) * (5 << 12)  # 5 MiB: read in GETRANGE pieces
        client.set(b"big", big)
        client.rpush(b"list", *[b"%d" % i for i in range(2500)])
        client.sadd(b"set", *[b"\xff%d" % i for i in range(2500)])
        client.zadd(b"zset", {b"m%d" % i: i / 7 for i in range(2500)})
        client.hset(b"hash", mapping={b"f%d" % i: b"v%d" % i for i in range(2500)})
        client.set(b"ttl", b"x", pxat=4102444800123)
        client.select(3)
        client.set(b"\x00in-db-3", b"")
        got = dump_oracle(client)
    finally:
        client.close()
    db0 = got["databases"]["0"]
    assert db0["big"]["value"].startswith("b64:")
    assert len(db0["big"]["value"]) == 4 + (len(big) + 2) // 3 * 4
    assert db0["list"]["value"] == [str(i) for i in range(2500)]
    assert len(db0["set"]["value"]) == 2500
    assert [s for _, s in db0["zset"]["value"]] == [
        repr(i / 7) if i else "0.0" for i in range(2500)
    ]
    assert len(db0["hash"]["value"]) == 2500
    assert db0["ttl"] == {"type": "string", "value": "x", "expire_at_ms": 4102444800123}
    assert got["databases"]["3"] == {
        "\x00in-db-3": {"type": "string", "value": "", "expire_at_ms": None}
    }
    assert "functions" in got


def _write_across_slots(client: redis.cluster.RedisCluster) -> dict[str, Any]:
    """Keys of every type spread over the three masters; their expected oracle entries."""
    expected: dict[str, Any] = {}
    for i in range(30):
        client.set(f"str:{i}", f"v{i}")
        expected[f"str:{i}"] = {"type": "string", "value": f"v{i}", "expire_at_ms": None}
    client.rpush("list", "a", "b")
    expected["list"] = {"type": "list", "value": ["a", "b"], "expire_at_ms": None}
    client.sadd("set", "b", "a")
    expected["set"] = {"type": "set", "value": ["a", "b"], "expire_at_ms": None}
    client.zadd("zset", {"x": 2.5, "y": -1})
    expected["zset"] = {
        "type": "zset",
        "value": [["y", "-1.0"], ["x", "2.5"]],
        "expire_at_ms": None,
    }
    client.hset("hash", "f", "v")
    expected["hash"] = {"type": "hash", "value": {"f": "v"}, "expire_at_ms": None}
    client.set(b"bin:\xff", b"\x00\xfe", pxat=4102444800000)
    expected["b64:YmluOv8="] = {
        "type": "string",
        "value": "b64:AP4=",
        "expire_at_ms": 4102444800000,
    }
    client.xadd("stream", {"f": "v"}, id="1-1")
    client.xgroup_create("stream", "grp", id="0")
    client.xreadgroup("grp", "alice", {"stream": ">"})
    expected["stream"] = {
        "type": "stream",
        "value": {
            "entries": [["1-1", [["f", "v"]]]],
            "length": 1,
            "last_generated_id": "1-1",
            "max_deleted_entry_id": "0-0",
            "entries_added": 1,
            "recorded_first_entry_id": "1-1",
            "groups": [
                {
                    "name": "grp",
                    "last_delivered_id": "1-1",
                    "entries_read": 1,
                    "lag": 0,
                    "pel": [["1-1", "alice", 1]],
                    "consumers": [{"name": "alice", "pel_count": 1}],
                }
            ],
        },
        "expire_at_ms": None,
    }
    return expected


def test_cluster_dump_merges_every_master(redis_cluster: RedisCluster) -> None:
    client = redis_cluster.client()
    try:
        expected = _write_across_slots(client)
        per_master = [redis_cluster.node_client(port).dbsize() for _, port in redis_cluster.nodes]
    finally:
        client.close()
    assert all(per_master) and sum(per_master) == len(expected)
    got = dump_cluster_oracle(redis_cluster.nodes)
    assert got["databases"] == {"0": expected}
    assert got["functions"] == []


def test_cluster_with_password() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    with RedisCluster("--requirepass", "s3cret") as cluster:
        client = cluster.client()
        try:
            client.set("a", "1")
            client.set("b", "2")
        finally:
            client.close()
        got = dump_cluster_oracle(cluster.nodes, password="s3cret")
    assert got["databases"] == {
        "0": {
            "a": {"type": "string", "value": "1", "expire_at_ms": None},
            "b": {"type": "string", "value": "2", "expire_at_ms": None},
        }
    }


@pytest.mark.parametrize("case", case_params("rdb", where=_loads_here))
def test_inspect_equals_live_dump_in_full(
    case: dict[str, Any], redis_server: RedisServerFactory
) -> None:
    """`inspect --json` gives what a 7.x server holds after loading the file, fields an
    older oracle server lacks included (a 7.x server derives them for older files)."""
    if LOCAL_VERSION is None or not (7,) <= LOCAL_VERSION < (7, 9):
        pytest.skip("inspect models the stream fields as Redis 7.0-7.4 does")
    from typer.testing import CliRunner

    from dcs_migration.cli import app

    result = CliRunner().invoke(app, ["inspect", "--json", str(CORPUS / case["path"])])
    assert result.exit_code == 0, result.output
    server = redis_server(rdb=CORPUS / case["path"])
    client = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        got = dump_oracle(client)
    finally:
        client.close()
    ignored = ("format", "redis_version", "server")
    inspected = {k: v for k, v in json.loads(result.stdout).items() if k not in ignored}
    assert {k: v for k, v in got.items() if k not in ignored} == inspected
