"""Values too big to hold: read in pieces, written in pieces, exactly.

Most tests lower the size at which a value is handed out in pieces (and the size of a
piece) so that the corpus's ordinary values take the big-value path; one generates a
file of real big values, and one measures a whole `dcs-migration` process's memory.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lzf
import pytest
import redis

from dcs_migration.client.acks import KeyAck
from dcs_migration.client.capabilities import Capabilities
from dcs_migration.client.endpoint import Endpoint
from dcs_migration.client.pipeline import Pipeline
from dcs_migration.formats import rdb_pieces
from dcs_migration.formats.aof_writer import AofWriter
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.lzf import LzfStream
from dcs_migration.formats.rdb import RdbReader
from dcs_migration.formats.rdb_writer import encode_length
from dcs_migration.formats.records import BigKeyRecord, BigValueStart, KeyRecord
from dcs_migration.importer import resolve_inputs, run_import
from dcs_migration.oracle import oracle_from_records
from dcs_migration.reading import BigValues, read_input
from dcs_migration.sources import find_inputs
from dcs_migration.writer.options import Strategy, WriteOptions
from tests.support import rdbgen as g
from tests.support.corpus import CORPUS, case_params
from tests.support.flavours import RedisServerFactory
from tests.support.live import assert_holds_oracle

FIXTURE_MARKERS = {"big_rdb": "redis", "native_digests": "redis"}

FUTURE = 4_102_444_800_000
STRATEGIES = [Strategy.RESTORE, Strategy.REWRITE, Strategy.HANDOFF]


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values of 48 bytes or more are handed out in pieces of about 40 bytes."""
    monkeypatch.setattr(rdb_pieces, "BIG_VALUE_BYTES", 48)
    monkeypatch.setattr(rdb_pieces, "PIECE_BYTES", 40)


def readable(case: dict[str, Any]) -> bool:
    # A file of hand-made empty values: a value handed out in pieces is never empty.
    return bool(case["oracle"]) and not case["path"].endswith("corrupt_empty_keys.rdb")


@pytest.mark.parametrize("case", case_params("rdb", "aof-preamble", where=readable))
def test_corpus_reads_the_same_in_pieces(
    case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(time.time() * 1000)
    source = find_inputs(CORPUS / case["path"])[0]
    whole = oracle_from_records(read_input(source), now)
    monkeypatch.setattr(rdb_pieces, "BIG_VALUE_BYTES", 48)
    monkeypatch.setattr(rdb_pieces, "PIECE_BYTES", 40)
    records = list(read_input(source, chunk_size=97))
    assert any(type(r) is BigKeyRecord for r in records) or not any(
        type(r) is KeyRecord and r.size >= 48 for r in records
    )
    assert oracle_from_records(records, now) == whole


@pytest.mark.parametrize("case", case_params("rdb", where=readable))
def test_counting_steps_over_big_values(case: dict[str, Any]) -> None:
    data = (CORPUS / case["path"]).read_bytes()
    plain = RdbReader(count_keys_only=True)
    plain.feed(data)
    plain.close()
    pieces = RdbReader(count_keys_only=True, big_value_bytes=48, piece_bytes=40)
    for at in range(0, len(data), 61):
        records = pieces.feed(data[at : at + 61])
        assert not any(type(r) in (KeyRecord, BigKeyRecord) for r in records)
    pieces.close()
    assert pieces.key_counts == plain.key_counts
    assert pieces.big_records == 0


def native_rdbs() -> list[Any]:
    return case_params("rdb", where=lambda c: c["origin"] == "native" and c["rdb_version"] <= 10)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", native_rdbs())
def test_corpus_imported_in_pieces_equals_its_oracle(
    case: dict[str, Any],
    strategy: Strategy,
    small_pieces: None,
    redis_server: RedisServerFactory,
) -> None:
    server = redis_server()
    options = WriteOptions(strategy=strategy, flush=strategy is Strategy.HANDOFF)
    result = run_import(
        resolve_inputs([str(CORPUS / case["path"])]), Endpoint("127.0.0.1", server.port), options
    )
    assert result.status == "SUCCESS", result.error
    assert result.strategy == ("handoff" if strategy is Strategy.HANDOFF else "restore")
    assert_holds_oracle(redis.Redis(port=server.port), case)


# -- real big values ------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_rdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An RDB written by redis-server holding values of every aggregate type, each big
    enough to be read in many pieces at the sizes the tests below set: random and
    compressible strings, a hash, list, sorted set, set, and a stream with a consumer
    group whose pending entries point at deleted entries."""
    from tests.support.servers import RedisServer

    rng = random.Random(7)
    with RedisServer("--enable-debug-command", "yes") as server:
        r = redis.Redis(port=server.port)
        r.set("random", rng.randbytes(3 << 20))
        r.set("text", b"".join(b"line %d of some text\n" % i for i in range(200_000)))
        pipe = r.pipeline(transaction=False)
        for start in range(0, 30_000, 1_000):
            members = range(start, start + 1_000)
            pipe.hset(
                "hash", mapping={b"f%d" % i: rng.randbytes(rng.randrange(1, 90)) for i in members}
            )
            pipe.rpush("list", *[rng.randbytes(rng.randrange(0, 70)) for _ in members])
            pipe.zadd("zset", {b"m%d" % i: rng.uniform(-1e9, 1e9) for i in members})
            pipe.sadd("set", *[b"s%d" % rng.getrandbits(60) for _ in members])
        for i in range(20_000):
            pipe.xadd("stream", {"n": str(i), "blob": rng.randbytes(20)}, id=f"{1000 + i}-1")
        pipe.execute()
        r.xgroup_create("stream", "g", id="0")
        r.xreadgroup("g", "alice", {"stream": ">"}, count=300)
        r.xdel("stream", *[f"{1000 + i}-1" for i in range(0, 300, 7)])
        r.pexpireat("hash", FUTURE)
        r.set("small", "x")
        r.save()
        path = tmp_path_factory.mktemp("big") / "big.rdb"
        path.write_bytes((server.dir / "dump.rdb").read_bytes())
    return path


def digests(port: int) -> dict[bytes, Any]:
    r = redis.Redis(port=port)
    return {
        k: (r.execute_command("DEBUG", "DIGEST-VALUE", k), r.pexpiretime(k), r.type(k))
        for k in sorted(r.keys("*"))
    }


@pytest.fixture(scope="module")
def native_digests(big_rdb: Path) -> dict[bytes, Any]:
    from tests.support.servers import RedisServer

    with RedisServer("--enable-debug-command", "yes", rdb=big_rdb) as server:
        held = digests(server.port)
        info = redis.Redis(port=server.port).xinfo_stream("stream", full=True)
        held[b"stream-groups"] = json.dumps(info["groups"], default=repr, sort_keys=True)
        return held


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_big_values_import_exactly(
    strategy: Strategy,
    big_rdb: Path,
    native_digests: dict[bytes, Any],
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServerFactory,
) -> None:
    monkeypatch.setattr(rdb_pieces, "BIG_VALUE_BYTES", 64 << 10)
    monkeypatch.setattr(rdb_pieces, "PIECE_BYTES", 16 << 10)
    server = redis_server("--enable-debug-command", "yes")
    options = WriteOptions(strategy=strategy, flush=True, chunk_bytes=32 << 10)
    result = run_import(resolve_inputs([str(big_rdb)]), Endpoint("127.0.0.1", server.port), options)
    assert result.status == "SUCCESS", result.error
    got = digests(server.port)
    info = redis.Redis(port=server.port).xinfo_stream("stream", full=True)
    groups = json.loads(native_digests[b"stream-groups"])
    got_groups = json.loads(json.dumps(info["groups"], default=repr, sort_keys=True))
    for group in groups + got_groups:  # when a consumer was last seen is not carried
        for consumer in group["consumers"]:
            consumer.pop("seen-time", None)
            consumer.pop("active-time", None)
    assert got_groups == groups
    assert got == {k: v for k, v in native_digests.items() if k != b"stream-groups"}


def test_reading_a_value_in_pieces_holds_one_piece(big_rdb: Path) -> None:
    data = big_rdb.read_bytes()
    reader = RdbReader(big_value_bytes=64 << 10, piece_bytes=16 << 10)
    largest_piece = 0
    for at in range(0, len(data), 1 << 16):
        for r in reader.feed(data[at : at + (1 << 16)]):
            largest_piece = max(largest_piece, len(getattr(r, "data", b"")))
        # What the reader holds: at most a piece, a unit and the chunk just fed.
        assert len(reader._buf) - reader._pos < (16 << 10) + (3 << 16)
    reader.close()
    # A piece ends at the first unit boundary past 16 KiB; a unit here is at most a
    # quicklist node (8 KiB).
    assert 16 << 10 <= largest_piece <= (24 << 10) + 100


def test_a_cut_short_big_value_names_its_key(big_rdb: Path) -> None:
    data = big_rdb.read_bytes()
    start = data.index(b"\x04hash")  # the hash's key record (type 4)
    reader = RdbReader(big_value_bytes=64 << 10, piece_bytes=16 << 10)
    reader.feed(data[: start + 100_000])
    with pytest.raises(FormatError) as caught:
        reader.close()
    assert caught.value.key == b"hash"
    assert "ends inside the value" in str(caught.value)


def test_a_lying_length_inside_a_big_value_is_refused(tmp_path: Path) -> None:
    members = b"".join(g.string(b"m%05d" % i) for i in range(5_000))
    lying = g.key(b"set", g.length(5_000) + members[:-7] + b"\xc5\x00", rdb_type=2)
    reader = RdbReader(big_value_bytes=1 << 10, piece_bytes=512)
    with pytest.raises(FormatError) as caught:
        reader.feed(g.rdb(lying, g.key(b"after", g.string(b"x"))))
        reader.close()
    assert caught.value.key == b"set"
    assert caught.value.offset is not None and caught.value.offset > 20_000


def test_big_values_become_an_aof_that_redis_loads(
    big_rdb: Path,
    native_digests: dict[bytes, Any],
    tmp_path: Path,
    redis_server: RedisServerFactory,
) -> None:
    """A backup kept as an AOF: big values turned into commands a piece at a time."""
    reader = RdbReader(big_value_bytes=64 << 10, piece_bytes=16 << 10)
    joined = BigValues()
    aof = AofWriter(Capabilities.from_info({"redis_version": "7.0.15"}), chunk_bytes=32 << 10)
    out = bytearray()
    data = big_rdb.read_bytes()
    for at in range(0, len(data), 1 << 20):
        out += aof.records(joined.join(reader.feed(data[at : at + (1 << 20)])))
    out += aof.records(joined.join(reader.close()))
    folder = tmp_path / "appendonlydir"
    folder.mkdir()
    (folder / "appendonly.aof.1.base.aof").write_bytes(bytes(out))
    (folder / "appendonly.aof.manifest").write_text("file appendonly.aof.1.base.aof seq 1 type b\n")
    loader = redis_server(
        "--enable-debug-command", "yes", "--appendonly", "yes", "--dir", str(tmp_path)
    )
    loaded = digests(loader.port)
    # Delivery times of pending entries are not carried by commands: compared above.
    skip = (b"stream-groups", b"stream")
    assert {k: v for k, v in loaded.items() if k not in skip} == {
        k: v for k, v in native_digests.items() if k not in skip
    }
    assert loaded[b"stream"][2] == b"stream"


# -- the pieces on the wire -------------------------------------------------------------


def test_a_big_restore_is_sent_again_after_a_dropped_connection(
    redis_server: RedisServerFactory,
) -> None:
    server = redis_server()
    value = os.urandom(2 << 20)
    start = BigValueStart(0, b"big", 0, encode_length(len(value)), None, None, 0, 10)
    chunks = [value[i : i + (256 << 10)] for i in range(0, len(value), 256 << 10)]
    calls = []

    def pieces() -> Iterator[bytes]:
        calls.append(1)
        for n, chunk in enumerate(chunks):
            if len(calls) == 1 and n == 3:  # the first time, the connection drops half-way
                admin = redis.Redis(port=server.port)
                admin.client_kill_filter(_type="normal", skipme=True)
                admin.close()
                time.sleep(0.05)
            yield chunk

    record = BigKeyRecord(start, b"", len(start.head) + len(value), pieces)
    replies: list[Any] = []
    pipe = Pipeline(Endpoint("127.0.0.1", server.port), lambda t, r, c: replies.append(r))
    pipe.open()
    from dcs_migration.writer.commands import restore_pieces

    pipe.push_pieces(lambda: restore_pieces(record, True), KeyAck(b"big"), resendable=True)
    pipe.flush()
    pipe.close()
    assert pipe.reconnects == 1 and len(calls) == 2
    assert replies == [b"OK"]
    assert redis.Redis(port=server.port).get("big") == value


# -- LZF a piece at a time ----------------------------------------------------------------


@pytest.mark.parametrize("piece", [1, 5, 4096, 1 << 20])
def test_lzf_decodes_in_pieces_as_the_c_decoder_does(piece: int) -> None:
    rng = random.Random(piece)
    data = b"".join(
        rng.choice([b"abc" * rng.randrange(1, 200), rng.randbytes(rng.randrange(1, 60))])
        for _ in range(20_000)
    )
    packed = lzf.compress(data)
    stream = LzfStream(len(data))
    out = b"".join(
        b"".join(stream.feed(packed[i : i + piece])) for i in range(0, len(packed), piece)
    )
    stream.close()
    assert out == data


def test_lzf_refuses_what_does_not_decompress() -> None:
    with pytest.raises(FormatError, match="before its start"):
        list(LzfStream(10).feed(b"\x20\x05"))  # a back-reference with no output yet
    stream = LzfStream(10)
    list(stream.feed(b"\x05abc"))  # a literal run cut short
    with pytest.raises(FormatError, match="ends inside"):
        stream.close()
    stream = LzfStream(10)
    list(stream.feed(b"\x02abc"))
    with pytest.raises(FormatError, match="3 bytes, not its stated 10"):
        stream.close()


# -- memory, as a user runs the command -----------------------------------------------------


@pytest.mark.parametrize("strategy", ["restore", "rewrite", "handoff"])
def test_importing_values_bigger_than_the_memory_bound_stays_under_it(
    strategy: str, tmp_path: Path, redis_server: RedisServerFactory
) -> None:
    path = g.huge_rdb(tmp_path / "huge.rdb", 160 << 20, 48 << 20)
    server = redis_server()
    args = ["import", str(path), "--target", f"redis://127.0.0.1:{server.port}", "--json"]
    args += ["--strategy", strategy] + (["--flush"] if strategy == "handoff" else [])
    rss, last = run_measured(args)
    summary = json.loads(last)
    assert summary["status"] == "SUCCESS", summary
    r = redis.Redis(port=server.port)
    assert r.strlen("string") == 160 << 20 and r.hlen("hash") == (48 << 20) // 116
    assert rss < 150, f"{strategy}: peak RSS {rss:.0f} MB for a 160 MB string"


@pytest.mark.service
def test_inspecting_values_bigger_than_the_memory_bound_stays_under_it(tmp_path: Path) -> None:
    path = g.huge_rdb(tmp_path / "huge.rdb", 160 << 20, 48 << 20)
    rss, _ = run_measured(["inspect", str(path)])
    assert rss < 150, f"inspect: peak RSS {rss:.0f} MB for a 160 MB string"


# Run a command from a small launcher and report the command's own peak RSS: a child
# forked straight from this (big) test process would count the parent's memory, which
# Linux carries into the child's peak across fork and exec.
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(args: list[str]) -> tuple[float, str]:
    """Run `dcs-migration args` as its own process; its peak RSS (MB) and last line."""
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "dcs_migration", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return int(done.stderr.strip().splitlines()[-1]) / 1024, done.stdout.strip().splitlines()[-1]
