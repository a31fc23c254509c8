"""Backups in an S3-compatible store (a moto server on loopback): the same records as from
local files, clear errors, retries that resume exactly, and objects changed mid-read."""

from __future__ import annotations

import gzip
import io
import itertools
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dcs_migration.client.endpoint import Endpoint
from dcs_migration.config import Settings
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import KeyRecord, Record
from dcs_migration.importer import resolve_inputs, run_import
from dcs_migration.reading import read_input
from dcs_migration.sources import (
    Input,
    InputKind,
    RetryPolicy,
    S3Settings,
    S3SourceError,
    SourceError,
    find_inputs,
    find_s3_inputs,
    is_s3_url,
    make_s3_client,
    parse_s3_url,
    s3,
)
from dcs_migration.writer.options import WriteOptions
from tests.support.corpus import CORPUS
from tests.support.flavours import RedisServerFactory
from tests.support.s3server import ACCESS_KEY, REGION, SECRET_KEY, DroppingProxy, MotoServer
from tests.support.servers import RedisServer

FIXTURE_MARKERS = {"moto": "s3", "client": "s3", "bucket": "s3"}

pytest.importorskip("moto")
pytest.importorskip("boto3")

RANGE = 16 << 10  # small ranges, so that the corpus files span several GETs
FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)

RDB = CORPUS / "native" / "redis-7.4.1" / "dump.rdb"
AOF = CORPUS / "native" / "redis-6.2.16" / "aof-resp.aof"
PREAMBLE = CORPUS / "native" / "redis-6.2.16" / "aof-preamble.aof"
MULTIPART = CORPUS / "native" / "redis-7.4.1" / "aof-multipart-preamble"

needs_corpus = pytest.mark.skipif(not RDB.exists(), reason="corpus not found")


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def settings(endpoint: str) -> S3Settings:
    return S3Settings(endpoint=endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)


@pytest.fixture(scope="module")
def client(moto: MotoServer) -> Any:
    return make_s3_client(settings(moto.endpoint))


@pytest.fixture
def bucket(client: Any) -> str:
    name = f"dcs-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return name


def put(client: Any, bucket: str, key: str, data: bytes) -> None:
    client.put_object(Bucket=bucket, Key=key, Body=data)


def records(source: Input) -> list[Record]:
    return list(read_input(source, chunk_size=7_000))


def local(path: Path) -> Input:
    [found] = find_inputs(path)
    return found


def find(bucket: str, key: str, client: Any, **kwargs: Any) -> list[Input]:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("range_bytes", RANGE)
    return find_s3_inputs(bucket, key, client=client, **kwargs)


# -- addresses and settings ------------------------------------------------------------


def test_s3_addresses() -> None:
    assert is_s3_url("s3://b/k") and is_s3_url("S3://b/k")
    assert not is_s3_url("/data/s3://b") and not is_s3_url("dump.rdb")
    assert parse_s3_url("s3://bucket/dir/dump.rdb") == ("bucket", "dir/dump.rdb")
    assert parse_s3_url("s3://bucket/dir/") == ("bucket", "dir/")
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a?b#c") == ("bucket", "a?b#c")
    with pytest.raises(S3SourceError, match="names no bucket"):
        parse_s3_url("s3:///key")


def test_settings_from_env() -> None:
    env = {
        "DCS_MIGRATION_OBS_ENDPOINT": "http://127.0.0.1:9000",
        "DCS_MIGRATION_OBS_ACCESS_KEY": "ak",
        "DCS_MIGRATION_OBS_SECRET_KEY": "sk",
    }
    got = Settings.from_env(env).s3
    assert got == S3Settings("http://127.0.0.1:9000", "ak", "sk", "us-east-1")
    assert "sk" not in repr(got)
    assert Settings.from_env({**env, "DCS_MIGRATION_OBS_REGION": "cn-north-4"}).s3.region == (
        "cn-north-4"
    )
    assert Settings.from_env({}).s3 == S3Settings()
    half = Settings.from_env({"DCS_MIGRATION_OBS_ACCESS_KEY": "ak"}).s3
    with pytest.raises(S3SourceError, match="DCS_MIGRATION_OBS_SECRET_KEY is not"):
        make_s3_client(half)


def test_client_uses_path_style(moto: MotoServer) -> None:
    client = make_s3_client(settings(moto.endpoint))
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.meta.endpoint_url == moto.endpoint
    assert client.meta.region_name == REGION


# -- the same records as from local files -----------------------------------------------


@needs_corpus
@pytest.mark.parametrize("path", [RDB, AOF, PREAMBLE], ids=["rdb", "aof", "aof-preamble"])
def test_single_object_reads_like_the_local_file(
    client: Any, bucket: str, path: Path, tmp_path: Path
) -> None:
    put(client, bucket, f"backups/{path.name}", path.read_bytes())
    [found] = find(bucket, f"backups/{path.name}", client)
    expected = local(path)
    assert found.name == f"s3://{bucket}/backups/{path.name}"
    assert found.kind is expected.kind
    assert found.size == path.stat().st_size and found.size_exact
    assert records(found) == records(expected)


@needs_corpus
def test_gzip_object_is_decompressed_on_the_fly(client: Any, bucket: str, tmp_path: Path) -> None:
    packed = gzip.compress(RDB.read_bytes())
    put(client, bucket, "dump.rdb.gz", packed)
    [found] = find(bucket, "dump.rdb.gz", client)
    assert found.kind is InputKind.RDB
    assert not found.size_exact and found.size == RDB.stat().st_size  # from the gzip trailer
    assert records(found) == records(local(RDB))


@needs_corpus
@pytest.mark.parametrize("key", ["mp/", "mp", "mp/appendonly.aof.manifest"])
def test_multipart_aof_under_a_prefix(client: Any, bucket: str, key: str) -> None:
    for file in sorted(MULTIPART.iterdir()):
        put(client, bucket, f"mp/{file.name}", file.read_bytes())
    put(client, bucket, "mp/appendonly.aof.1.base.rdb", b"an old file the manifest no longer names")
    [found] = find(bucket, key, client)
    expected = local(MULTIPART)
    assert found.kind is InputKind.AOF_MULTIPART
    assert found.name == f"s3://{bucket}/mp/"
    assert [p.name.rsplit("/", 1)[1] for p in found.parts] == [
        p.name.rsplit("/", 1)[1] for p in expected.parts
    ]
    assert records(found) == records(expected)


@needs_corpus
def test_prefix_with_several_backups(client: Any, bucket: str) -> None:
    put(client, bucket, "many/a/dump.rdb", RDB.read_bytes())
    put(client, bucket, "many/b/aof-resp.aof", AOF.read_bytes())
    put(client, bucket, "many/README.txt", b"notes, not a backup\n")
    put(client, bucket, "many/", b"")  # a folder marker
    for file in sorted(MULTIPART.iterdir()):
        put(client, bucket, f"many/c/{file.name}", file.read_bytes())
    put(client, bucket, "other/dump.rdb", RDB.read_bytes())
    found = find(bucket, "many/", client)
    assert [(i.name, i.kind) for i in found] == [
        (f"s3://{bucket}/many/a/dump.rdb", InputKind.RDB),
        (f"s3://{bucket}/many/b/aof-resp.aof", InputKind.AOF),
        (f"s3://{bucket}/many/c/", InputKind.AOF_MULTIPART),
    ]
    assert records(found[1]) == records(local(AOF))
    assert len(find(bucket, "", client)) == 4  # the whole bucket


@needs_corpus
def test_reads_are_ranged_and_pinned_to_the_etag(client: Any, bucket: str) -> None:
    put(client, bucket, "dump.rdb", RDB.read_bytes())
    recorder = Recording(client)
    [found] = find(bucket, "dump.rdb", recorder)
    recorder.gets.clear()
    assert records(found) == records(local(RDB))
    etag = client.head_object(Bucket=bucket, Key="dump.rdb")["ETag"]
    spans = []
    for call in recorder.gets:
        assert call["IfMatch"] == etag
        first, last = map(int, call["Range"].removeprefix("bytes=").split("-"))
        assert last - first + 1 <= RANGE
        spans.append((first, last))
    size = RDB.stat().st_size
    assert spans == [(s, min(s + RANGE, size) - 1) for s in range(0, size, RANGE)]


@needs_corpus
def test_stream_seeks(client: Any, bucket: str) -> None:
    data = RDB.read_bytes()
    put(client, bucket, "dump.rdb", data)
    [found] = find(bucket, "dump.rdb", client)
    with found.parts[0].open() as stream:
        seekable: Any = stream
        assert seekable.read(10) == data[:10]
        assert seekable.seek(RANGE - 5) == RANGE - 5
        assert seekable.read(10) == data[RANGE - 5 : RANGE + 5]  # across two ranges
        assert seekable.seek(-3, io.SEEK_END) == len(data) - 3
        assert seekable.read() == data[-3:]
        assert seekable.read(1) == b""


# -- clear errors -----------------------------------------------------------------------


def test_missing_key(client: Any, bucket: str) -> None:
    with pytest.raises(S3SourceError) as info:
        find(bucket, "backups/nope.rdb", client)
    message = str(info.value)
    assert f"no object 'backups/nope.rdb' in the bucket '{bucket}'" in message
    assert f"s3://{bucket}/backups/nope.rdb" in message
    # The backup's bytes were never reached: a source's error, not a format error.
    assert isinstance(info.value, SourceError) and not isinstance(info.value, FormatError)


def test_missing_bucket(client: Any) -> None:
    for key in ("dump.rdb", "backups/", ""):
        with pytest.raises(S3SourceError, match="the bucket 'dcs-no-such-bucket' does not exist"):
            find("dcs-no-such-bucket", key, client)


def test_empty_prefix_and_no_backup(client: Any, bucket: str) -> None:
    put(client, bucket, "notes/README.txt", b"nothing to import\n")
    with pytest.raises(S3SourceError, match="no RDB or AOF backup under the prefix"):
        find(bucket, "notes/", client)
    with pytest.raises(S3SourceError, match="no RDB or AOF backup under the prefix"):
        find(bucket, "elsewhere/", client)
    with pytest.raises(S3SourceError, match="not an RDB or AOF file"):
        find(bucket, "notes/README.txt", client)


def test_archives_must_be_local(client: Any, bucket: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("dump.rdb", b"REDIS0009\xff" + bytes(8))
    put(client, bucket, "backup.zip", buffer.getvalue())
    with pytest.raises(S3SourceError, match="archives are read from local files only") as info:
        find(bucket, "backup.zip", client)
    assert f"s3://{bucket}/backup.zip" in str(info.value)


def test_unreachable_endpoint(bucket: str) -> None:
    bad = make_s3_client(settings("http://127.0.0.1:1"))
    with pytest.raises(S3SourceError, match="failed 4 times in a row") as info:
        find(bucket, "dump.rdb", bad)
    assert f"s3://{bucket}/dump.rdb" in str(info.value)


# -- retries and resumption ---------------------------------------------------------------


@needs_corpus
@pytest.mark.parametrize("reset", [True, False], ids=["reset", "end-of-stream"])
def test_dropped_connections_resume_where_they_stopped(
    moto: MotoServer, bucket: str, reset: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = retried_errors(monkeypatch)
    put(make_s3_client(settings(moto.endpoint)), bucket, "dump.rdb", RDB.read_bytes())
    with DroppingProxy(moto.port) as proxy:
        client = Recording(make_s3_client(settings(proxy.endpoint)))
        [found] = find(bucket, "dump.rdb", client)
        client.gets.clear()
        # mid-body of the first 16 KiB ranges; fewer drops than attempts, so that a drop
        # that cost the client its unread bytes cannot end the read
        proxy.arm(drop_after=10_000, drops=FAST.attempts - 1, reset=reset)
        got = records(found)
        assert proxy.dropped == FAST.attempts - 1
    assert got == records(local(RDB))
    starts = [int(g["Range"].removeprefix("bytes=").split("-")[0]) for g in client.gets]
    assert len(starts) > RDB.stat().st_size // RANGE + 1  # the dropped ranges were asked again
    if not reset:  # every byte before the cut was read: the GETs resumed mid-range
        assert any(start % RANGE for start in starts)
    causes = {type(c).__name__ for exc in seen for c in chain(exc)}
    assert ("ConnectionResetError" in causes) is reset, causes
    assert causes & {"ResponseStreamingError", "IncompleteReadError"}, causes


def retried_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """The errors the S3 source judges, from now on."""
    seen: list[BaseException] = []
    judge = s3.is_transient

    def recording(exc: BaseException) -> bool:
        seen.append(exc)
        return judge(exc)

    monkeypatch.setattr(s3, "is_transient", recording)
    return seen


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


@needs_corpus
def test_dropped_connections_in_a_gzip_object(moto: MotoServer, bucket: str) -> None:
    put(make_s3_client(settings(moto.endpoint)), bucket, "d.gz", gzip.compress(RDB.read_bytes()))
    with DroppingProxy(moto.port) as proxy:
        client = make_s3_client(settings(proxy.endpoint))
        [found] = find(bucket, "d.gz", client, range_bytes=4096)
        proxy.arm(drop_after=2_000, drops=FAST.attempts - 1, reset=False)
        got = records(found)
        assert proxy.dropped == FAST.attempts - 1
    assert got == records(local(RDB))


@needs_corpus
def test_a_read_that_keeps_failing_names_bucket_key_and_offset(
    moto: MotoServer, bucket: str
) -> None:
    put(make_s3_client(settings(moto.endpoint)), bucket, "dump.rdb", RDB.read_bytes())
    with DroppingProxy(moto.port) as proxy:
        client = make_s3_client(settings(proxy.endpoint))
        [found] = find(bucket, "dump.rdb", client)
        delivered = 0
        with pytest.raises(S3SourceError) as info, found.parts[0].open() as stream:
            delivered += len(stream.read(1000))
            proxy.arm(drop_after=0, drops=1_000)
            while data := stream.read(1000):
                delivered += len(data)
        assert proxy.dropped >= FAST.attempts
    error = info.value
    assert 1000 <= delivered <= RANGE
    assert error.offset == delivered
    assert f"s3://{bucket}/dump.rdb" in str(error)
    assert f"offset {delivered}" in str(error)
    assert f"{FAST.attempts} times in a row" in str(error)


@needs_corpus
def test_server_errors_and_throttling_are_retried(client: Any, bucket: str) -> None:
    put(client, bucket, "dump.rdb", RDB.read_bytes())
    [found] = find(bucket, "dump.rdb", client)
    failures = itertools.cycle([("SlowDown", 503), ("InternalError", 500), None, None])
    failed = []

    def fail_some(**_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        failure = next(failures)
        if failure is None:
            return None
        failed.append(failure)
        code, status = failure
        http = AWSResponse("http://127.0.0.1/", status, {}, None)
        return http, {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {}}

    client.meta.events.register("before-call.s3.GetObject", fail_some)
    try:
        assert records(found) == records(local(RDB))
    finally:
        client.meta.events.unregister("before-call.s3.GetObject", fail_some)
    assert len(failed) >= 4


# -- objects changed while read ---------------------------------------------------------


@needs_corpus
def test_an_object_changed_between_ranges_is_refused(client: Any, bucket: str) -> None:
    data = RDB.read_bytes()
    put(client, bucket, "dump.rdb", data)
    [found] = find(bucket, "dump.rdb", client)
    changed = pytest.raises(S3SourceError, match="changed while it was being read")
    with changed as info, found.parts[0].open() as stream:
        assert stream.read(RANGE) == data[:RANGE]
        put(client, bucket, "dump.rdb", data[:-1] + b"\x00")
        stream.read(RANGE)
    assert info.value.offset == RANGE
    assert f"s3://{bucket}/dump.rdb" in str(info.value)


@needs_corpus
def test_an_object_changed_after_it_was_found_is_refused(client: Any, bucket: str) -> None:
    put(client, bucket, "dump.rdb", RDB.read_bytes())
    [found] = find(bucket, "dump.rdb", client)
    put(client, bucket, "dump.rdb", AOF.read_bytes())
    with pytest.raises(S3SourceError, match="changed while it was being read"):
        records(found)


class Recording:
    """A client that remembers the arguments of its GETs."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.gets: list[dict[str, Any]] = []

    def get_object(self, **kwargs: Any) -> Any:
        self.gets.append(kwargs)
        return self._client.get_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


# -- end to end -------------------------------------------------------------------------


@needs_corpus
def test_import_from_s3_into_redis(
    moto: MotoServer,
    client: Any,
    bucket: str,
    redis_server: RedisServerFactory,
    tmp_path: Path,
) -> None:
    put(client, bucket, "dump.rdb", RDB.read_bytes())
    env = {
        "DCS_MIGRATION_OBS_ENDPOINT": moto.endpoint,
        "DCS_MIGRATION_OBS_ACCESS_KEY": ACCESS_KEY,
        "DCS_MIGRATION_OBS_SECRET_KEY": SECRET_KEY,
        "DCS_MIGRATION_OBS_REGION": REGION,
    }
    with_s3 = Settings.from_env(env, data_dir=tmp_path)
    keys = sum(isinstance(r, KeyRecord) for r in read_input(local(RDB)))

    from_s3 = redis_server("--enable-debug-command", "yes")
    result = run_import(
        resolve_inputs([f"s3://{bucket}/dump.rdb"], with_s3),
        Endpoint("127.0.0.1", from_s3.port),
        WriteOptions(),
    )
    assert result.status == "SUCCESS", result.error
    assert result.inputs == [f"s3://{bucket}/dump.rdb"]
    assert result.bytes_read == result.bytes_total == RDB.stat().st_size
    assert result.stats.keys_written > 0
    assert (
        result.stats.keys_written
        + result.stats.keys_skipped_expired
        + result.stats.keys_skipped_module
        == keys
    )

    from_disk = redis_server("--enable-debug-command", "yes")
    expected = run_import(
        resolve_inputs([str(RDB)]), Endpoint("127.0.0.1", from_disk.port), WriteOptions()
    )
    assert expected.status == "SUCCESS", expected.error
    assert result.stats.keys_written == expected.stats.keys_written
    assert keyspace(from_s3) == keyspace(from_disk)
    assert sum(keyspace(from_s3).values()) == result.stats.keys_written
    assert from_s3.cli("DEBUG", "DIGEST") == from_disk.cli("DEBUG", "DIGEST")

    missing = run_import(
        lambda: resolve_inputs([f"s3://{bucket}/nope.rdb"], with_s3),
        Endpoint("127.0.0.1", from_s3.port),
        WriteOptions(),
    )
    assert missing.status == "FAILED"
    assert missing.error is not None and f"s3://{bucket}/nope.rdb" in missing.error


def keyspace(server: RedisServer) -> dict[str, int]:
    """Keys per db (avg_ttl, an estimate, left out)."""
    found = {}
    for line in server.cli("INFO", "keyspace").splitlines():
        db, _, fields = line.partition(":")
        if db.startswith("db"):
            found[db] = int(fields.split(",")[0].removeprefix("keys="))
    return found


def test_resolve_inputs_keeps_local_paths(tmp_path: Path) -> None:
    path = tmp_path / "x.aof"
    path.write_bytes(b"*1\r\n$4\r\nPING\r\n")
    assert [i.name for i in resolve_inputs([str(path)])] == [str(path)]
