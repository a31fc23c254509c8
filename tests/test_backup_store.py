"""Where made backups are kept: a folder (atomic files, tidy deletes, clear disk errors) and
a bucket of a real S3 server (moto on loopback: multipart streaming, aborts that leave no
upload behind, retried parts, presigned links), and the choice between them."""

from __future__ import annotations

import os
import random
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dcs_migration.config import (
    BACKUP_BUCKET_ENV,
    DEFAULT_BACKUP_BUCKET,
    OBS_ACCESS_KEY_ENV,
    OBS_ENDPOINT_ENV,
    OBS_SECRET_KEY_ENV,
    Settings,
)
from dcs_migration.sources.backup_store import (
    BackupStoreError,
    LocalBackupStore,
    S3BackupStore,
    backup_location,
    make_backup_store,
)
from dcs_migration.sources.s3 import RetryPolicy, S3Settings, make_s3_client
from dcs_migration.sources.specs import BackupObject, LocalObject, S3Object
from tests.support.s3server import DroppingProxy, MotoServer

FIXTURE_MARKERS = {"moto": "s3", "client": "s3", "bucket": "s3", "s3store": "s3"}

MIB = 1 << 20
PART = 5 * MIB  # S3's smallest part
KEY = "proj/inst/backup-1/127.0.0.1_6379.rdb"
BAD_KEYS = ["", "/etc/passwd", "../outside.rdb", "a/../../b.rdb", "a/\0b.rdb", "a//b.rdb", "a/"]
FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)


def chunks(data: bytes, seed: int = 7) -> Iterator[bytes]:
    """`data` in uneven pieces, from one byte to a little over a part."""
    rng = random.Random(seed)
    at = 0
    while at < len(data):
        size = rng.choice([1, 1000, 64 << 10, MIB + 3, PART + 17])
        yield data[at : at + size]
        at += size


def write(store: Any, key: str, data: bytes) -> int:
    writer = store.writer(key)
    for piece in chunks(data):
        writer.write(piece)
    size: int = writer.commit()
    return size


# -- local folder -------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalBackupStore:
    return LocalBackupStore(tmp_path / "backups")


def test_local_write_in_chunks_then_read_back(local: LocalBackupStore) -> None:
    data = random.Random(1).randbytes(3 * MIB + 5)
    assert write(local, KEY, data) == len(data)
    assert local.size(KEY) == len(data)
    with local.open(KEY) as stream:
        assert stream.read() == data
    assert local.source(KEY) == BackupObject(KEY)
    source = backup_location(Settings(data_dir=local.root.parent), KEY)
    assert isinstance(source, LocalObject) and source.name == f"{local.bucket}/{KEY}"
    assert source.path() == (local.root / KEY).resolve()
    assert source.path().read_bytes() == data
    assert local.bucket == DEFAULT_BACKUP_BUCKET
    assert local.presigned_url(KEY, 60) is None


def test_local_file_appears_only_at_commit(local: LocalBackupStore) -> None:
    writer = local.writer(KEY)
    writer.write(b"REDIS0011")
    target = local.root / KEY
    assert not target.exists()
    (temp,) = target.parent.iterdir()
    assert temp.name.startswith(f".{target.name}.") and temp.name.endswith(".partial")
    assert writer.commit() == 9
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_local_empty_file(local: LocalBackupStore) -> None:
    assert local.writer(KEY).commit() == 0
    assert local.size(KEY) == 0


def test_local_abort_leaves_nothing(local: LocalBackupStore) -> None:
    writer = local.writer(KEY)
    writer.write(b"x" * 1000)
    writer.abort()
    writer.abort()
    assert not local.root.exists() or not any(local.root.rglob("*"))
    with pytest.raises(BackupStoreError, match="already aborted"):
        writer.write(b"more")


def test_local_abort_with_nothing_written(local: LocalBackupStore) -> None:
    local.writer(KEY).abort()
    assert not local.root.exists()


def test_local_abort_after_commit_keeps_the_file(local: LocalBackupStore) -> None:
    writer = local.writer(KEY)
    writer.write(b"data")
    writer.commit()
    writer.abort()
    assert local.size(KEY) == 4


@pytest.mark.parametrize("key", BAD_KEYS)
def test_local_bad_keys_refused(local: LocalBackupStore, key: str) -> None:
    for call in (local.writer, local.source, local.size, local.open):
        with pytest.raises(BackupStoreError, match="invalid backup key"):
            call(key)
    with pytest.raises(BackupStoreError, match="invalid backup key"):
        local.delete([key])


def test_local_missing_file(local: LocalBackupStore) -> None:
    with pytest.raises(BackupStoreError, match="no backup file"):
        local.size(KEY)
    with pytest.raises(BackupStoreError, match="no backup file"):
        local.open(KEY)


def test_local_delete_removes_files_and_empty_folders(local: LocalBackupStore) -> None:
    other = "proj/inst/backup-2/127.0.0.1_6379.rdb"
    write(local, KEY, b"one")
    write(local, KEY.replace("6379", "6380"), b"two")
    write(local, other, b"three")
    local.delete([KEY, "proj/inst/backup-1/never-written.rdb"])
    assert (local.root / "proj/inst/backup-1").is_dir()  # the 6380 file is still there
    local.delete([KEY.replace("6379", "6380")])
    assert not (local.root / "proj/inst/backup-1").exists()
    assert local.size(other) == 5
    local.delete([other])
    assert local.root.is_dir()
    assert list(local.root.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_local_read_only_folder_names_the_key(local: LocalBackupStore) -> None:
    local.root.mkdir()
    local.root.chmod(0o555)
    try:
        writer = local.writer(KEY)
        with pytest.raises(BackupStoreError, match=KEY):
            writer.write(b"data")
        writer.abort()
    finally:
        local.root.chmod(0o755)


def test_local_file_in_the_way_names_the_key(local: LocalBackupStore) -> None:
    local.root.mkdir()
    (local.root / "proj").write_bytes(b"not a folder")
    writer = local.writer(KEY)
    with pytest.raises(BackupStoreError, match=KEY):
        writer.write(b"data")
    writer.abort()
    with pytest.raises(BackupStoreError, match="already aborted"):
        writer.commit()


# -- S3 bucket ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="module")
def client(moto: MotoServer) -> Any:
    return make_s3_client(
        S3Settings(endpoint=moto.endpoint, access_key="testing", secret_key="testing")
    )


@pytest.fixture
def bucket(client: Any) -> str:
    name = f"dcs-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3store(client: Any, bucket: str) -> S3BackupStore:
    return S3BackupStore(client, bucket, part_bytes=PART, retry=FAST)


def pending_uploads(client: Any, bucket: str) -> list[Any]:
    return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def test_s3_multipart_object_reads_back_equal(s3store: S3BackupStore, client: Any) -> None:
    data = random.Random(2).randbytes(12 * MIB + 12345)
    assert write(s3store, KEY, data) == len(data)
    assert s3store.size(KEY) == len(data)
    with s3store.open(KEY) as body:
        assert body.read() == data
    etag = client.head_object(Bucket=s3store.bucket, Key=KEY)["ETag"]
    assert etag.endswith('-3"')  # two full parts and a short last one
    assert pending_uploads(client, s3store.bucket) == []


def test_s3_parts_are_sent_before_commit(s3store: S3BackupStore, client: Any) -> None:
    writer = s3store.writer(KEY)
    writer.write(b"a" * (PART + 1))
    uploads = pending_uploads(client, s3store.bucket)
    assert [u["Key"] for u in uploads] == [KEY]
    parts = client.list_parts(Bucket=s3store.bucket, Key=KEY, UploadId=uploads[0]["UploadId"])
    assert [p["Size"] for p in parts["Parts"]] == [PART]
    assert writer.commit() == PART + 1
    assert s3store.size(KEY) == PART + 1


def test_s3_small_object(s3store: S3BackupStore) -> None:
    writer = s3store.writer(KEY)
    writer.write(b"REDIS")
    writer.write(b"0011")
    assert writer.commit() == 9
    assert s3store.size(KEY) == 9
    with s3store.open(KEY) as body:
        assert body.read() == b"REDIS0011"
    assert s3store.source(KEY) == BackupObject(KEY)
    in_bucket = Settings.from_env(
        {OBS_ENDPOINT_ENV: "http://127.0.0.1:9", BACKUP_BUCKET_ENV: s3store.bucket}, data_dir="."
    )
    placed = backup_location(in_bucket, KEY)
    assert placed == S3Object(s3store.bucket, KEY)
    assert placed.name == f"s3://{s3store.bucket}/{KEY}"


def test_s3_empty_object(s3store: S3BackupStore) -> None:
    assert s3store.writer(KEY).commit() == 0
    assert s3store.size(KEY) == 0


def test_s3_abort_leaves_no_object_and_no_upload(s3store: S3BackupStore, client: Any) -> None:
    writer = s3store.writer(KEY)
    writer.write(b"b" * (PART + 100))
    assert pending_uploads(client, s3store.bucket) != []
    writer.abort()
    writer.abort()
    assert pending_uploads(client, s3store.bucket) == []
    with pytest.raises(BackupStoreError, match="no backup file"):
        s3store.size(KEY)
    s3store.writer(KEY).abort()  # nothing written, nothing started


def test_s3_transient_failure_of_a_part_is_retried(
    moto: MotoServer, client: Any, bucket: str
) -> None:
    data = random.Random(3).randbytes(2 * PART + 10)
    with DroppingProxy(moto.port) as proxy:
        via_proxy = make_s3_client(
            S3Settings(endpoint=proxy.endpoint, access_key="testing", secret_key="testing")
        )
        store = S3BackupStore(via_proxy, bucket, part_bytes=PART, retry=FAST)
        writer = store.writer(KEY)
        writer.write(data[:PART])  # starts the upload, sends part 1
        proxy.arm(drop_after=0, drops=1)  # the answer to part 2 is cut off
        writer.write(data[PART:])
        assert proxy.dropped == 1
        assert writer.commit() == len(data)
    assert client.get_object(Bucket=bucket, Key=KEY)["Body"].read() == data
    assert pending_uploads(client, bucket) == []


def test_s3_missing_object(s3store: S3BackupStore) -> None:
    with pytest.raises(BackupStoreError, match="no backup file"):
        s3store.size("proj/none.rdb")
    with pytest.raises(BackupStoreError, match="no backup file"):
        s3store.open("proj/none.rdb")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_s3_bad_keys_refused(s3store: S3BackupStore, key: str) -> None:
    for call in (s3store.writer, s3store.source, s3store.size, s3store.open):
        with pytest.raises(BackupStoreError, match="invalid backup key"):
            call(key)
    with pytest.raises(BackupStoreError, match="invalid backup key"):
        s3store.presigned_url(key, 60)


def test_s3_presigned_url_serves_the_bytes(s3store: S3BackupStore) -> None:
    write(s3store, KEY, b"REDIS0011-payload")
    url = s3store.presigned_url(KEY, 300)
    assert url is not None and url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"REDIS0011-payload"


def test_s3_delete(s3store: S3BackupStore, client: Any) -> None:
    keep = "proj/inst/backup-2/127.0.0.1_6379.rdb"
    write(s3store, KEY, b"one")
    write(s3store, keep, b"two")
    s3store.delete([KEY, "proj/inst/backup-1/never-written.rdb"])
    with pytest.raises(BackupStoreError, match="no backup file"):
        s3store.size(KEY)
    assert s3store.size(keep) == 3
    s3store.delete([])


# -- choosing the store -------------------------------------------------------------------


def test_make_backup_store_is_local_without_an_endpoint(tmp_path: Path) -> None:
    store = make_backup_store(Settings.from_env({}, data_dir=tmp_path))
    assert isinstance(store, LocalBackupStore)
    assert store.root == tmp_path / "backups"
    assert store.bucket == DEFAULT_BACKUP_BUCKET
    write(store, KEY, b"local")
    assert (tmp_path / "backups" / KEY).read_bytes() == b"local"


def test_make_backup_store_is_s3_with_an_endpoint_and_creates_the_bucket(
    tmp_path: Path, moto: MotoServer, client: Any
) -> None:
    name = f"dcs-made-{uuid.uuid4().hex[:12]}"
    environ = {
        OBS_ENDPOINT_ENV: moto.endpoint,
        OBS_ACCESS_KEY_ENV: "testing",
        OBS_SECRET_KEY_ENV: "testing",
        BACKUP_BUCKET_ENV: name,
    }
    store = make_backup_store(Settings.from_env(environ, data_dir=tmp_path))
    assert isinstance(store, S3BackupStore)
    assert store.bucket == name
    write(store, KEY, b"to the bucket")
    assert client.get_object(Bucket=name, Key=KEY)["Body"].read() == b"to the bucket"
    # A second store finds the bucket there and uses it as it is.
    again = make_backup_store(Settings.from_env(environ, data_dir=tmp_path))
    write(again, "proj/second.rdb", b"again")
    assert again.size(KEY) == len(b"to the bucket")
    assert not (tmp_path / "backups").exists()


def test_make_backup_store_default_bucket(tmp_path: Path, moto: MotoServer) -> None:
    environ = {OBS_ENDPOINT_ENV: moto.endpoint, OBS_ACCESS_KEY_ENV: "a", OBS_SECRET_KEY_ENV: "b"}
    settings = Settings.from_env(environ, data_dir=tmp_path)
    assert make_backup_store(settings).bucket == DEFAULT_BACKUP_BUCKET


def test_make_backup_store_half_credentials_refused(tmp_path: Path) -> None:
    environ = {OBS_ENDPOINT_ENV: "http://127.0.0.1:9", OBS_ACCESS_KEY_ENV: "a"}
    with pytest.raises(BackupStoreError, match=OBS_SECRET_KEY_ENV):
        make_backup_store(Settings.from_env(environ, data_dir=tmp_path))


def test_local_discard_prefix_removes_partial_files_too(local: LocalBackupStore) -> None:
    write(local, "p/i/b1/one.rdb", b"done")
    dead = local.writer("p/i/b1/two.rdb")
    dead.write(b"half")  # a writer that never ends: its process died
    write(local, "p/i/b2/keep.rdb", b"other backup")
    local.discard_prefix("p/i/b1")
    assert sorted(p.name for p in local.root.rglob("*") if p.is_file()) == ["keep.rdb"]
    local.discard_prefix("p/i/nothing-here")
    with pytest.raises(BackupStoreError):
        local.discard_prefix("../outside")


def test_s3_discard_prefix_removes_objects_and_pending_uploads(
    s3store: S3BackupStore, client: Any, bucket: str
) -> None:
    write(s3store, "p/i/b1/one.rdb", b"done")
    dead = s3store.writer("p/i/b1/two.rdb")
    dead.write(os.urandom(PART + 1))  # one part sent, never completed
    write(s3store, "p/i/b2/keep.rdb", b"other backup")
    assert pending_uploads(client, bucket)
    s3store.discard_prefix("p/i/b1")
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [o["Key"] for o in listed] == ["p/i/b2/keep.rdb"]
    assert pending_uploads(client, bucket) == []
