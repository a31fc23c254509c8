"""The AOF writer: what it writes is what a real redis-server loads as its own AOF."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from dcs_migration.client.capabilities import Capabilities
from dcs_migration.formats import AofCommand, FormatError, RdbReader, Record
from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.aof import AofReader
from dcs_migration.formats.aof_writer import AofWriter
from dcs_migration.formats.resp import RespReader
from tests.support import rdbgen as g
from tests.support.corpus import CORPUS, case_params, loadable_by_target
from tests.support.flavours import flavour_or_skip
from tests.support.live import assert_holds_oracle
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis  # each written AOF is loaded by redis-server

FUTURE = 4_102_444_800_000
MANIFEST = b"file base.aof seq 1 type b\n"

AofServer = Callable[[bytes], RedisServer]


def read_rdb(data: bytes) -> list[Record]:
    reader = RdbReader()
    return [*reader.feed(data), *reader.close()]


def commands(aof: bytes) -> list[AofCommand]:
    reader = RespReader()
    return [*reader.feed(aof), *reader.close()]


def local_caps() -> Capabilities:
    """What the local redis-server supports: the server every test here loads into."""
    version = ".".join(map(str, flavour_or_skip().version))
    return Capabilities.from_info({"redis_version": version})


@pytest.fixture
def aof_server() -> Iterator[AofServer]:
    """`aof_server(base)`: a started redis-server that loaded `base` as its base AOF."""
    flavour_or_skip()
    started: list[RedisServer] = []

    def start(base: bytes) -> RedisServer:
        server = RedisServer(
            "--appendonly", "yes", "--appenddirname", "appendonlydir", "--aof-load-truncated", "no"
        )
        started.append(server)
        folder = server.dir / "appendonlydir"
        folder.mkdir()
        (folder / "base.aof").write_bytes(base)
        (folder / "appendonly.aof.manifest").write_bytes(MANIFEST)
        server.start()
        # Without our manifest the server would have started empty and made its own base.
        assert "Creating AOF base file" not in server.log(), server.log()[-2000:]
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.mark.parametrize("case", case_params("rdb", where=loadable_by_target))
def test_every_corpus_rdb_written_as_an_aof_loads_as_its_oracle(
    case: dict[str, Any], aof_server: AofServer
) -> None:
    records = read_rdb((CORPUS / case["path"]).read_bytes())
    writer = AofWriter(local_caps())
    server = aof_server(writer.records(records))
    client = redis.Redis(port=server.port)
    assert_holds_oracle(client, case)


def newer_than_target(case: dict[str, Any]) -> bool:
    """RDB files the local redis-server cannot load itself, but whose data it can hold."""
    return bool(case["oracle"]) and not case.get("expect_error") and not loadable_by_target(case)


@pytest.mark.parametrize("case", case_params("rdb", where=newer_than_target))
def test_an_rdb_of_a_newer_redis_written_for_the_local_server_loads_as_its_oracle(
    case: dict[str, Any], aof_server: AofServer
) -> None:
    """Commands carry the data where the RDB encoding cannot: what the older server cannot
    hold (hash field TTLs before 7.4) is left out, as `comparable` leaves it out."""
    records = read_rdb((CORPUS / case["path"]).read_bytes())
    server = aof_server(AofWriter(local_caps()).records(records))
    client = redis.Redis(port=server.port)
    assert_holds_oracle(client, case)


def test_a_module_key_stops_the_writer_naming_its_module() -> None:
    path = CORPUS / "thirdparty/redis-rdb-tools/redis_40_with_module.rdb"
    if not path.exists():
        pytest.skip("corpus not found")
    writer = AofWriter(local_caps())
    with pytest.raises(FormatError, match=r"'ReJSON-RL'.*AOF backup cannot hold module") as exc:
        writer.records(read_rdb(path.read_bytes()))
    assert exc.value.key == b"foo" and "RDB backup" in str(exc.value)


def test_module_aux_data_stops_the_writer_naming_its_module() -> None:
    path = CORPUS / "thirdparty/redis-rdb-tools/redis_60_with_module_aux.rdb"
    if not path.exists():
        pytest.skip("corpus not found")
    with pytest.raises(FormatError, match=r"'test__rdb'.*AOF backup cannot hold module"):
        AofWriter(local_caps()).records(read_rdb(path.read_bytes()))


def test_keys_land_in_their_own_databases(aof_server: AofServer) -> None:
    first = read_rdb(
        g.rdb(g.key(b"a", g.string(b"in 0")), b"\xfe\x03" + g.key(b"b", g.string(b"in 3")))
    )
    second = read_rdb(g.rdb(g.key(b"c", g.string(b"in 0 again"))))
    writer = AofWriter(local_caps())
    aof = writer.records(first) + writer.records(second)
    assert [c.args for c in commands(aof) if c.name == b"SELECT"] == [
        [b"SELECT", b"0"],
        [b"SELECT", b"3"],
        [b"SELECT", b"0"],
    ]
    assert writer.keys_written == 3
    server = aof_server(aof)
    assert redis.Redis(port=server.port, db=0).mget(b"a", b"b", b"c") == [
        b"in 0",
        None,
        b"in 0 again",
    ]
    assert redis.Redis(port=server.port, db=3).mget(b"a", b"b", b"c") == [None, b"in 3", None]


def test_values_above_chunk_bytes_become_several_commands_and_load_exactly(
    aof_server: AofServer,
) -> None:
    big = bytes(range(256)) * 40  # 10 KiB, every byte value
    elements = [b"element-%d" % i for i in range(2000)]
    data = g.rdb(
        g.key(b"big-string", g.string(big), expire_ms=FUTURE),
        g.key(
            b"big-list",
            g.length(len(elements)) + b"".join(g.string(e) for e in elements),
            rdb_type=T.RDB_TYPE_LIST,
        ),
    )
    aof = AofWriter(local_caps(), chunk_bytes=1024).records(read_rdb(data))
    names = [c.name for c in commands(aof)]
    assert names.count(b"SET") == 1 and names.count(b"APPEND") == 9
    assert names.count(b"RPUSH") > 1
    server = aof_server(aof)
    client = redis.Redis(port=server.port)
    assert client.get(b"big-string") == big
    assert client.pexpiretime("big-string") == FUTURE
    assert client.lrange(b"big-list", 0, -1) == elements


def test_a_key_already_expired_is_written_and_dropped_by_the_server(
    aof_server: AofServer,
) -> None:
    data = g.rdb(
        g.key(b"gone", g.string(b"x"), expire_ms=1000),
        g.key(b"kept", g.string(b"y"), expire_ms=FUTURE),
    )
    writer = AofWriter(local_caps())
    aof = writer.records(read_rdb(data))
    assert [b"PEXPIREAT", b"gone", b"1000"] in [c.args for c in commands(aof)]
    assert writer.keys_written == 2
    client = redis.Redis(port=aof_server(aof).port)
    assert client.keys() == [b"kept"]
    assert client.pexpiretime("kept") == FUTURE


def test_header_aux_and_end_records_write_nothing() -> None:
    aux = b"\xfa" + g.string(b"redis-ver") + g.string(b"7.0.15")
    resize = b"\xfe\x00\xfb\x00\x00"
    writer = AofWriter(local_caps())
    assert writer.records(read_rdb(g.rdb(aux, resize))) == b""
    assert writer.keys_written == 0


def test_aof_commands_pass_through_with_their_databases() -> None:
    log = b"".join(
        b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
        for args in ([b"SET", b"k", b"v"], [b"SELECT", b"2"], [b"SELECT", b"2"], [b"DEL", b"k"])
    )
    reader = AofReader()
    records = [*reader.feed(log), *reader.close()]
    aof = AofWriter(local_caps()).records(records)
    assert [c.args for c in commands(aof)] == [
        [b"SELECT", b"0"],
        [b"SET", b"k", b"v"],
        [b"SELECT", b"2"],
        [b"DEL", b"k"],
    ]
