"""Files that a released Redis loads are read and imported as that Redis loads them.

Each input is made here from a real file of the corpus or with the project's own RDB
writer, and proved with a real server: the server loads the file itself, and what our
import leaves in a fresh server equals what the server that loaded the file holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from dcs_migration.cli import app
from dcs_migration.client.endpoint import Endpoint
from dcs_migration.client.resp import encode_command
from dcs_migration.formats import FormatError, FunctionLibrary, KeyRecord
from dcs_migration.formats.crc64 import crc64
from dcs_migration.formats.functions_pre_ga import (
    ga_dump_payload,
    ga_function_command,
    ga_library_code,
)
from dcs_migration.formats.primitives import Cursor
from dcs_migration.formats.rdb import RdbReader
from dcs_migration.formats.rdb_writer import encode_length, encode_string
from dcs_migration.formats.types.streams import StreamValue
from dcs_migration.formats.values import decode_value
from dcs_migration.importer import resolve_inputs, run_import
from dcs_migration.writer.options import Strategy, WriteOptions
from tests.support import rdbgen as g
from tests.support.corpus import CORPUS, comparable
from tests.support.flavours import RedisServerFactory
from tests.support.live import dump_oracle
from tests.support.servers import RedisServer

REDIS_5_DUMP = CORPUS / "native" / "redis-5.0.14" / "dump.rdb"
EXTRA = 2  # recorded length over the entries: "130 recorded, 128 in the nodes"

LIB_CODE = b"redis.register_function('pre_ga_f', function() return 1 end)\n"
LIB2_CODE = b"redis.register_function{function_name='pre_ga_g', callback=function() return 2 end}"


def _records(data: bytes) -> list[Any]:
    reader = RdbReader()
    return [*reader.feed(data), *reader.close()]


def _with_crc(data: bytes) -> bytes:
    return data[:-8] + crc64(data[:-8]).to_bytes(8, "little")


# -- streams whose recorded length disagrees with their nodes --------------------------


def _length_at(payload: bytes) -> int:
    """Where a stream's recorded length starts in its payload: after its nodes."""
    c = Cursor(payload)
    for _ in range(c.length()):
        c.string()
        c.string()
    return c.pos


def stream_with_longer_length(extra: int = EXTRA) -> tuple[bytes, bytes, int, int]:
    """The Redis 5 corpus dump with one stream's recorded length raised by `extra`, as
    early Redis 5 wrote after XTRIM/XDEL: (file, key, recorded length, entries)."""
    data = REDIS_5_DUMP.read_bytes()
    for r in _records(data):
        if type(r) is not KeyRecord or r.type_name != "stream":
            continue
        value = decode_value(r)
        assert isinstance(value, StreamValue)
        if value.groups and value.entries and value.length + extra < 64:
            break
    else:
        pytest.skip("no stream with consumer groups in the corpus")
    payload = r.payload
    at = _length_at(payload)
    assert payload[at] == value.length  # a one-byte length
    patched = payload[:at] + encode_length(value.length + extra) + payload[at + 1 :]
    start = data.index(payload, r.offset)
    data = data[:start] + patched + data[start + len(payload) :]
    return _with_crc(data), r.key, value.length + extra, len(value.entries)


def test_a_stream_keeps_its_recorded_length() -> None:
    data, key, recorded, entries = stream_with_longer_length()
    record = next(r for r in _records(data) if type(r) is KeyRecord and r.key == key)
    value = decode_value(record)
    assert isinstance(value, StreamValue)
    assert (value.length, len(value.entries)) == (recorded, entries)


def test_a_stream_with_a_length_and_no_node_is_refused_as_redis_does() -> None:
    # rdb.c: "Stream length inconsistent with rax entries".
    value = g.length(0) + g.length(3) + g.length(5) + g.length(0) + g.length(0)
    data = g.rdb(g.key(b"s", value, rdb_type=15), version=9)
    record = next(r for r in _records(data) if type(r) is KeyRecord)
    with pytest.raises(FormatError, match="holds 3 entries but has no node"):
        _ = decode_value(record)


def test_a_stream_whose_length_disagrees_loads_inspects_and_imports_as_in_redis(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    data, key, recorded, entries = stream_with_longer_length()
    path = tmp_path / "dump.rdb"
    path.write_bytes(data)
    native = redis_server(rdb=path)
    native_client = redis.Redis(port=native.port)
    assert native_client.xlen(key) == recorded
    assert len(native_client.xrange(key)) == entries
    oracle = dump_oracle(native_client)

    inspected = CliRunner().invoke(app, ["inspect", "--json", str(path)])
    assert inspected.exit_code == 0, inspected.output
    got, expected = comparable(json.loads(inspected.stdout), oracle, got_version=(7, 0))
    assert got == expected

    target = redis_server()
    result = run_import(
        resolve_inputs([str(path)]),
        Endpoint("127.0.0.1", target.port),
        WriteOptions(strategy=Strategy.RESTORE),
    )
    assert result.status == "SUCCESS", result.error
    assert dump_oracle(redis.Redis(port=target.port)) == oracle


def test_a_rewritten_stream_holds_its_entries_and_says_its_length_changed(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    data, key, recorded, entries = stream_with_longer_length()
    path = tmp_path / "dump.rdb"
    path.write_bytes(data)
    native = redis.Redis(port=redis_server(rdb=path).port)
    target = redis_server()
    client = redis.Redis(port=target.port)
    result = run_import(
        resolve_inputs([str(path)]),
        Endpoint("127.0.0.1", target.port),
        WriteOptions(strategy=Strategy.REWRITE),
    )
    assert result.status == "SUCCESS", result.error
    assert client.xrange(key) == native.xrange(key)
    assert client.xlen(key) == entries
    assert any(
        f"records a length of {recorded} but holds {entries} entries" in w
        for w in result.stats.warnings
    )


# -- function libraries in the pre-release 7.0 layout ----------------------------------


def pre_ga_library(name: bytes, code: bytes, description: bytes | None = None) -> bytes:
    """Opcode 246 and its operands, as Redis 7.0 release candidates wrote a library."""
    described = g.length(0) if description is None else g.length(1) + g.string(description)
    return b"\xf6" + g.string(name) + g.string(b"LUA") + described + g.string(code)


def pre_ga_dump_payload(*libraries: bytes) -> bytes:
    body = b"".join(libraries) + (10).to_bytes(2, "little")
    return body + crc64(body).to_bytes(8, "little")


def pre_ga_rdb() -> bytes:
    return g.rdb(
        g.key(b"k", g.string(b"v")),
        pre_ga_library(b"prega", LIB_CODE, b"a description 7.0.x drops"),
        pre_ga_library(b"prega2", LIB2_CODE),
        version=10,
    )


def test_opcode_246_reads_as_the_ga_library_7_0_makes_of_it() -> None:
    libraries = [r for r in _records(pre_ga_rdb()) if type(r) is FunctionLibrary]
    assert [lib.code for lib in libraries] == [
        b"#!LUA name=prega\n" + LIB_CODE,
        b"#!LUA name=prega2\n" + LIB2_CODE,
    ]


def test_opcode_246_cut_short_is_a_truncated_file() -> None:
    data = g.rdb(pre_ga_library(b"prega", LIB_CODE), version=10)
    cut = data[: data.index(LIB_CODE) + 4]
    with pytest.raises(FormatError, match="inside a function library"):
        _records(cut)


def test_ga_code_stops_at_a_nul_byte_as_7_0_formats_it() -> None:
    assert ga_library_code(b"LUA", b"lib", b"body\0rest") == b"#!LUA name=lib\nbody"


def test_a_pre_ga_rdb_loads_inspects_and_imports_as_redis_7_0_loads_it(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(pre_ga_rdb())
    native = redis_server(rdb=path)
    if native.cli("INFO", "server").find("redis_version:7.0.") < 0:
        pytest.skip("only Redis 7.0.x loads the pre-release function layout")
    oracle = dump_oracle(redis.Redis(port=native.port))
    assert len(oracle["functions"]) == 2

    inspected = CliRunner().invoke(app, ["inspect", "--json", str(path)])
    assert inspected.exit_code == 0, inspected.output
    got, expected = comparable(json.loads(inspected.stdout), oracle)
    assert got == expected

    for strategy in (Strategy.RESTORE, Strategy.HANDOFF):
        target = redis_server()
        result = run_import(
            resolve_inputs([str(path)]),
            Endpoint("127.0.0.1", target.port),
            WriteOptions(strategy=strategy, flush=strategy is Strategy.HANDOFF),
        )
        assert result.status == "SUCCESS", result.error
        assert dump_oracle(redis.Redis(port=target.port)) == oracle


def pre_ga_aof() -> bytes:
    payload = pre_ga_dump_payload(pre_ga_library(b"prega2", LIB2_CODE, b"described"))
    return b"".join(
        encode_command(args)
        for args in (
            [b"SELECT", b"0"],
            [b"SET", b"k", b"v"],
            [b"FUNCTION", b"LOAD", b"LUA", b"prega", b"DESCRIPTION", b"d", LIB_CODE],
            [b"FUNCTION", b"LOAD", b"lua", b"prega", b"REPLACE", LIB_CODE],
            [b"FUNCTION", b"RESTORE", payload],
        )
    )


def test_redis_7_0_loads_an_aof_without_its_pre_ga_function_load(
    redis_server: RedisServerFactory,
) -> None:
    """What 7.0.x itself does: the command fails, it says so in its log and loads on."""
    server = RedisServer("--appendonly", "yes")
    (server.dir / "appendonly.aof").write_bytes(pre_ga_aof())
    try:
        server.start()
        client = redis.Redis(port=server.port)
        if not client.info("server")["redis_version"].startswith("7.0."):
            pytest.skip("the check is of Redis 7.0.x")
        assert client.get(b"k") == b"v"
        names = {lib[b"library_name"] for lib in client.execute_command("FUNCTION", "LIST")}
        assert names == {b"prega2"}  # FUNCTION RESTORE of the old layout: 7.0.x takes it
        assert "Unknown option given: LUA" in server.log()
    finally:
        server.stop()


def test_an_aof_with_pre_ga_functions_imports_them_in_the_ga_form(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    path = tmp_path / "appendonly.aof"
    path.write_bytes(pre_ga_aof())
    target = redis_server()
    client = redis.Redis(port=target.port)
    result = run_import(
        resolve_inputs([str(path)]), Endpoint("127.0.0.1", target.port), WriteOptions()
    )
    assert result.status == "SUCCESS", result.error
    assert any("pre-release 7.0" in w for w in result.stats.warnings)
    libraries = {
        lib[b"library_name"]: lib[b"library_code"]
        for lib in client.execute_command("FUNCTION", "LIST", "WITHCODE")
    }
    assert libraries == {
        b"prega": b"#!lua name=prega\n" + LIB_CODE,
        b"prega2": b"#!LUA name=prega2\n" + LIB2_CODE,
    }
    assert client.fcall("pre_ga_f", 0) == 1


@pytest.mark.parametrize(
    "args",
    [
        [b"FUNCTION", b"LOAD", b"#!lua name=x\nreturn"],
        [b"FUNCTION", b"LOAD", b"REPLACE", b"#!lua name=x\nreturn"],
        [b"function", b"load", b"replace", b"REPLACE", b"#!lua name=x\nreturn"],
        [b"FUNCTION", b"LOAD", b"LUA", b"x", b"BOGUS", b"code"],  # refused by rc2 as well
        [b"FUNCTION", b"LOAD", b"LUA", b"x", b"DESCRIPTION", b"code"],  # no code left
        [b"FUNCTION", b"DELETE", b"x"],
        [b"FUNCTION", b"RESTORE", b"not a payload"],
        [b"SET", b"k", b"v"],
    ],
)
def test_other_commands_are_left_as_they_are(args: list[bytes]) -> None:
    assert ga_function_command(args) is None


def test_a_pre_ga_function_load_takes_its_options_in_any_order() -> None:
    args = [b"FUNCTION", b"LOAD", b"LUA", b"x", b"desc", b"d", b"replace", b"code"]
    assert ga_function_command(args) == [
        b"FUNCTION",
        b"LOAD",
        b"REPLACE",
        b"#!LUA name=x\ncode",
    ]


def test_a_pre_ga_dump_payload_becomes_the_ga_payload_7_0_would_dump() -> None:
    mixed = pre_ga_dump_payload(
        b"\xf5" + encode_string(b"#!lua name=ga\nreturn"), pre_ga_library(b"old", b"code")
    )
    assert ga_dump_payload(mixed) == pre_ga_dump_payload(
        b"\xf5" + encode_string(b"#!lua name=ga\nreturn"),
        b"\xf5" + encode_string(b"#!LUA name=old\ncode"),
    )
    assert ga_dump_payload(pre_ga_dump_payload(b"\xf5" + encode_string(b"x"))) is None
    bad_crc = mixed[:-1] + bytes([mixed[-1] ^ 1])
    assert ga_dump_payload(bad_crc) is None


def test_functions_of_every_form_show_in_the_ga_form_in_inspect(tmp_path: Path) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(pre_ga_rdb())
    shown = CliRunner().invoke(app, ["inspect", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "#!LUA name=prega" in shown.stdout


# -- an AOF whose last file ends inside a command ----------------------------------------


def test_a_truncated_aof_loads_and_imports_as_redis_loads_it(
    tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    """Redis loads the commands before the cut (`aof-load-truncated`, on by default)."""
    data = (CORPUS / "native" / "redis-6.2.16" / "aof-resp.aof").read_bytes()
    cut = data[: len(data) - 7]
    path = tmp_path / "appendonly.aof"
    path.write_bytes(cut)
    native = RedisServer("--appendonly", "yes")
    (native.dir / "appendonly.aof").write_bytes(cut)
    try:
        native.start()
        assert "Truncating the AOF" in native.log() or "short read" in native.log()
        oracle = dump_oracle(redis.Redis(port=native.port))
    finally:
        native.stop()

    inspected = CliRunner().invoke(app, ["inspect", "--json", str(path)])
    assert inspected.exit_code == 0, inspected.output
    [truncated] = json.loads(inspected.stdout)["aof"]["truncated"]
    assert truncated["offset"] + truncated["bytes_left_out"] == len(cut)

    target = redis_server()
    result = run_import(
        resolve_inputs([str(path)]), Endpoint("127.0.0.1", target.port), WriteOptions()
    )
    assert result.status == "SUCCESS", result.error
    assert any("ends inside a command" in w for w in result.stats.warnings)
    assert dump_oracle(redis.Redis(port=target.port)) == oracle


# -- library names as Redis takes them ---------------------------------------------------


def test_library_names_are_taken_as_redis_takes_them(redis_server: RedisServerFactory) -> None:
    """`name=` in any case, and a quoted name, are what FUNCTION LOAD accepts."""
    from dcs_migration.formats.functions import describe_library

    codes = [
        b"#!lua NAME=upper\nredis.register_function('fu', function() return 1 end)",
        b"#!lua name=\"quoted\"\nredis.register_function('fq', function() return 1 end)",
        b"#!LUA Name='single'\nredis.register_function('fs', function() return 1 end)",
    ]
    client = redis.Redis(port=redis_server().port)
    loaded = [client.execute_command("FUNCTION", "LOAD", code) for code in codes]
    assert [describe_library(code).name for code in codes] == loaded
