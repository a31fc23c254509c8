"""Backups the service makes, their download links, imports of them and restores: over
real HTTP with the official SDK, against real redis-server processes."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import redis
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    BackupFilesBody,
    BackupInstanceBody,
    CopyInstanceRequest,
    CreateMigrationTaskBody,
    CreateMigrationTaskRequest,
    DeleteBackupFileRequest,
    DownloadBackupFilesReq,
    ListBackupFileLinksRequest,
    ListBackupRecordsRequest,
    RestoreInstanceBody,
    RestoreInstanceRequest,
    TargetInstanceBody,
)

from dcs_migration.api import links
from dcs_migration.store import load_secret_box
from tests.support.cluster import RedisCluster, emptied
from tests.support.corpus import CORPUS, manifest
from tests.support.flavours import RedisServerFactory
from tests.support.live import dump_cluster_oracle, dump_oracle
from tests.support.sdk import PROJECT, minted, wait_for
from tests.support.service import Service
from tests.support.waiting import backup_record, finished_backup, finished_restore, until

pytestmark = [pytest.mark.service, pytest.mark.redis]

OTHER_PROJECT = "1f0b2e7c9d4a4c55a1e2b3c4d5e6f708"


@pytest.fixture
def service() -> Iterator[Service]:
    with Service() as running:
        yield running


def corpus_rdb() -> Path:
    case = next((c for c in manifest()["cases"] if c["id"] == "native/redis-7.0.15/rdb"), None)
    if case is None:
        pytest.skip("corpus not found")
    return CORPUS / case["path"]


def register(service: Service, port: int, name: str, *, cluster: bool = False) -> str:
    args = ["--project-id", PROJECT, "--name", name, "--addrs", f"127.0.0.1:{port}"]
    out = service.cli("instances", "add", *args, *(["--cluster"] if cluster else []))
    instance_id: str = out["instance_id"]
    return instance_id


def back_up(
    client: Any, instance_id: str, backup_format: str = "rdb", remark: str = "nightly"
) -> str:
    """Back up an instance. (A call that changes something is accepted once per signature,
    and the SDK signs to the second: calls made back to back differ by `remark`, or by
    the name or remark the helpers below take.)"""
    answer = client.copy_instance(
        CopyInstanceRequest(
            instance_id=instance_id,
            body=BackupInstanceBody(remark=remark, backup_format=backup_format),
        )
    )
    backup_id: str = answer.backup_id
    return backup_id


def restore(client: Any, instance_id: str, backup_id: str, remark: str = "roll back") -> Any:
    restore_id = client.restore_instance(
        RestoreInstanceRequest(
            instance_id=instance_id,
            body=RestoreInstanceBody(backup_id=backup_id, remark=remark),
        )
    ).restore_id
    return finished_restore(client, instance_id, restore_id)


def import_backup(
    client: Any, backup_id: str, instance_id: str, name: str = "from a backup"
) -> Any:
    body = CreateMigrationTaskBody(
        task_name=name,
        migration_type="backupfile_import",
        migration_method="full_amount_migration",
        backup_files=BackupFilesBody(file_source="backup_record", backup_id=backup_id),
        target_instance=TargetInstanceBody(id=instance_id),
    )
    return client.create_migration_task(CreateMigrationTaskRequest(body=body))


def links_of(client: Any, instance_id: str, backup_id: str, expiration: int = 600) -> Any:
    return client.list_backup_file_links(
        ListBackupFileLinksRequest(
            instance_id=instance_id,
            backup_id=backup_id,
            body=DownloadBackupFilesReq(expiration=expiration),
        )
    )


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def refused(call: Callable[[], Any]) -> ClientRequestException:
    with pytest.raises(ClientRequestException) as caught:
        call()
    return caught.value


def backup_files(service: Service) -> list[Path]:
    """The files in the service's backup store, partial ones included."""
    root = service.data_dir / "backups"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("backup_format", ["rdb", "aof"])
def test_back_up_download_import_restore_and_delete(
    service: Service, redis_server: RedisServerFactory, tmp_path: Path, backup_format: str
) -> None:
    source = redis_server("--repl-diskless-sync-delay", "0", rdb=corpus_rdb())
    source_client = redis.Redis(port=source.port)
    source_client.set(b"with-ttl", b"v", px=3_600_000)
    source_client.select(3)
    source_client.set(b"in-db-3", b"x")
    source_client = redis.Redis(port=source.port)
    original = dump_oracle(source_client)
    copy = redis_server()
    client = minted(service)
    source_id = register(service, source.port, "source")
    copy_id = register(service, copy.port, "copy")

    backup_id = back_up(client, source_id, backup_format)
    record = finished_backup(client, source_id, backup_id)
    assert record.status == "succeed", record
    assert (record.backup_format, record.backup_type, record.remark) == (
        backup_format,
        "manual",
        "nightly",
    )
    assert record.progress == "100.00" and record.is_support_restore == "TRUE"
    stored = backup_files(service)
    assert len(stored) == 1 and stored[0].name == f"127.0.0.1_{source.port}.{backup_format}"
    assert record.size == stored[0].stat().st_size > 0
    assert redis.Redis(port=source.port).info("replication")["connected_slaves"] == 0

    # A download link serves the file as stored; an altered or expired one is refused.
    answer = links_of(client, source_id, backup_id)
    assert [x.file_name for x in answer.links] == [stored[0].name]
    status, data = fetch(answer.links[0].link)
    assert status == 200 and data == stored[0].read_bytes()
    if backup_format == "rdb":
        (tmp_path / "dump.rdb").write_bytes(data)
        loaded = redis_server(rdb=tmp_path / "dump.rdb")
        assert dump_oracle(redis.Redis(port=loaded.port)) == original
    parts = urlsplit(answer.links[0].link)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    later = dict(query, expires=str(int(query["expires"]) + 3600))
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    assert fetch(f"{base}?{urlencode(later)}")[0] == 403
    assert fetch(f"{base}?{urlencode(dict(query, signature='0' * 64))}")[0] == 403
    key = load_secret_box(service.data_dir).derive_key(links.LINK_PURPOSE)
    past = int(time.time()) - 1
    assert fetch(f"{base}?{links.signed_query(key, parts.path, past)}")[0] == 403
    assert fetch(f"{base}?{links.signed_query(key, parts.path, past + 600)}")[0] == 200

    # The backup imported into another instance, by a migration task.
    task = wait_for(client, import_backup(client, backup_id, copy_id).id, ("SUCCESS", "FAILED"))
    assert task.status == "SUCCESS", task.error_message
    assert dump_oracle(redis.Redis(port=copy.port)) == original

    # A restore empties the instance and loads the backup.
    changed = redis.Redis(port=source.port)
    changed.set(b"added-later", b"1")
    changed.delete(b"with-ttl")
    done = restore(client, source_id, backup_id)
    assert done.status == "succeed", done
    assert (done.backup_id, done.progress, done.restore_remark) == (
        backup_id,
        "100.00",
        "roll back",
    )
    assert dump_oracle(redis.Redis(port=source.port)) == original

    # Deleted: the files go, the record stays, and nothing can use it any more.
    client.delete_backup_file(DeleteBackupFileRequest(instance_id=source_id, backup_id=backup_id))
    assert backup_files(service) == []
    assert backup_record(client, source_id, backup_id).status == "deleted"
    assert fetch(answer.links[0].link)[0] == 404
    assert refused(lambda: links_of(client, source_id, backup_id, 900)).error_code == "DCS.4087"
    again = refused(lambda: import_backup(client, backup_id, copy_id, "again"))
    assert again.error_code == "DCS.4087"
    assert refused(lambda: restore(client, source_id, backup_id, "again")).error_code == "DCS.4087"


def test_a_cluster_backs_up_one_file_per_master_and_restores(
    service: Service, shared_cluster: RedisCluster, redis_server: RedisServerFactory
) -> None:
    cluster = emptied(shared_cluster)
    writer = cluster.client()
    for n in range(300):
        writer.set(f"key:{n}", n)
        writer.rpush(f"list:{n % 7}", n)
    writer.hset("{tag}:hash", mapping={"a": 1, "b": 2})
    original = dump_cluster_oracle(cluster.nodes)
    client = minted(service)
    cluster_id = register(service, cluster.nodes[0][1], "cluster", cluster=True)

    backup_id = back_up(client, cluster_id)
    record = finished_backup(client, cluster_id, backup_id)
    assert record.status == "succeed", record
    names = sorted(x.file_name for x in links_of(client, cluster_id, backup_id).links)
    assert names == sorted(f"127.0.0.1_{port}.rdb" for _, port in cluster.nodes)

    # Imported into a standalone Redis, the three files make one keyspace.
    single = redis_server()
    single_id = register(service, single.port, "single")
    task = wait_for(client, import_backup(client, backup_id, single_id).id, ("SUCCESS", "FAILED"))
    assert task.status == "SUCCESS", task.error_message
    assert dump_oracle(redis.Redis(port=single.port)) == original

    writer.set("key:1", "changed")
    writer.delete("{tag}:hash")
    writer.set("new", "x")
    done = restore(client, cluster_id, backup_id)
    assert done.status == "succeed", done
    assert dump_cluster_oracle(cluster.nodes) == original
    writer.close()


def test_a_source_that_dies_mid_backup_fails_and_leaves_nothing(
    service: Service, redis_server: RedisServerFactory
) -> None:
    source = slow_source(redis_server)
    client = minted(service)
    source_id = register(service, source.port, "source")
    backup_id = back_up(client, source_id)
    until(
        lambda: backup_record(client, source_id, backup_id).status == "backuping",
        "the backup to start",
        60,
    )
    # One backup or restore at a time per instance.
    assert refused(lambda: back_up(client, source_id, remark="again")).error_code == "DCS.4096"
    assert refused(lambda: restore(client, source_id, backup_id)).error_code == "DCS.4096"
    until(lambda: backup_files(service), "bytes to arrive", 30)
    assert source.process is not None
    source.process.kill()
    record = finished_backup(client, source_id, backup_id)
    assert record.status == "failed"
    assert record.error_code == "DCS.4842"
    assert record.is_support_restore == "FALSE"
    assert backup_files(service) == []
    assert refused(lambda: links_of(client, source_id, backup_id)).error_code == "DCS.4087"


def slow_source(redis_server: RedisServerFactory) -> Any:
    """A server whose snapshot takes seconds (2 ms a key), slow enough to be cut short."""
    source = redis_server("--rdb-key-save-delay", "2000", "--repl-diskless-sync-delay", "0")
    pipe = redis.Redis(port=source.port).pipeline(transaction=False)
    for n in range(3000):
        pipe.set(f"k{n}", "v" * 100)
    pipe.execute()
    return source


def test_a_backup_interrupted_by_a_service_kill_ends_failed_without_files(
    redis_server: RedisServerFactory,
) -> None:
    source = slow_source(redis_server)
    service = Service().start()
    try:
        client = minted(service)
        source_id = register(service, source.port, "source")
        backup_id = back_up(client, source_id)
        until(lambda: backup_files(service), "bytes to arrive", 30)
        service.kill()
        service.start()
        record = backup_record(client, source_id, backup_id)
        assert record.status == "failed"
        assert backup_files(service) == []
        # The instance is free again.
        source.cli("CONFIG", "SET", "rdb-key-save-delay", "0")
        again = back_up(client, source_id, remark="again")
        assert finished_backup(client, source_id, again, 90).status in (
            "succeed",
            "failed",
        )
    finally:
        service.stop()


def test_backups_are_scoped_to_their_project_and_checked(
    service: Service, redis_server: RedisServerFactory
) -> None:
    source = redis_server("--repl-diskless-sync-delay", "0")
    redis.Redis(port=source.port).set(b"k", b"v")
    client = minted(service)
    other = minted(service, OTHER_PROJECT)
    source_id = register(service, source.port, "source")
    backup_id = back_up(client, source_id)
    assert finished_backup(client, source_id, backup_id).status == "succeed"

    not_found = refused(
        lambda: other.list_backup_records(ListBackupRecordsRequest(instance_id=source_id))
    )
    assert (not_found.status_code, not_found.error_code) == (404, "DCS.4001")
    assert refused(lambda: back_up(other, source_id)).status_code == 404
    assert refused(lambda: links_of(other, source_id, backup_id)).status_code == 404
    assert refused(lambda: restore(other, source_id, backup_id)).status_code == 404
    assert (
        refused(
            lambda: other.delete_backup_file(
                DeleteBackupFileRequest(instance_id=source_id, backup_id=backup_id)
            )
        ).status_code
        == 404
    )
    bad = refused(lambda: links_of(client, source_id, backup_id, expiration=10))
    assert bad.error_code == "DCS.4800" and "expiration" in bad.error_msg
    window = refused(
        lambda: client.list_backup_records(
            ListBackupRecordsRequest(instance_id=source_id, begin_time="yesterday")
        )
    )
    assert window.error_code == "DCS.4800" and "begin_time" in window.error_msg
    later = client.list_backup_records(
        ListBackupRecordsRequest(instance_id=source_id, begin_time="29990101000000")
    )
    assert later.total_num == 0 and later.backup_record_response == []
    assert backup_record(client, source_id, backup_id).status == "succeed"


def test_backups_in_the_s3_endpoint_with_presigned_links(
    redis_server: RedisServerFactory,
) -> None:
    from dcs_migration.sources.s3 import S3Settings, make_s3_client
    from tests.support.s3server import MotoServer
    from tests.support.sdk import create

    with MotoServer() as moto:
        env = {
            "DCS_MIGRATION_OBS_ENDPOINT": moto.endpoint,
            "DCS_MIGRATION_OBS_ACCESS_KEY": "test-access",
            "DCS_MIGRATION_OBS_SECRET_KEY": "test-secret",
            "DCS_MIGRATION_BACKUP_BUCKET": "made-backups",
        }
        s3 = make_s3_client(S3Settings(moto.endpoint, "test-access", "test-secret"))
        source = redis_server(
            "--requirepass", "s3cret-Pw", "--repl-diskless-sync-delay", "0", rdb=corpus_rdb()
        )
        source_client = redis.Redis(port=source.port, password="s3cret-Pw")
        original = dump_oracle(source_client)
        copy = redis_server()
        with Service(env=env) as service:
            client = minted(service)
            args = ["--project-id", PROJECT, "--name", "source", "--password", "s3cret-Pw"]
            out = service.cli("instances", "add", *args, "--addrs", f"127.0.0.1:{source.port}")
            source_id = out["instance_id"]
            copy_id = register(service, copy.port, "copy")

            backup_id = back_up(client, source_id)
            assert finished_backup(client, source_id, backup_id).status == "succeed"
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="made-backups")["Contents"]]
            assert keys == [f"{PROJECT}/{source_id}/{backup_id}/127.0.0.1_{source.port}.rdb"]
            answer = links_of(client, source_id, backup_id)
            assert answer.bucket_name == "made-backups"
            assert answer.links[0].link.startswith(moto.endpoint)
            status, data = fetch(answer.links[0].link)
            stored = s3.get_object(Bucket="made-backups", Key=keys[0])["Body"].read()
            assert status == 200 and data == stored

            task = import_backup(client, backup_id, copy_id)
            assert wait_for(client, task.id, ("SUCCESS", "FAILED")).status == "SUCCESS"
            assert dump_oracle(redis.Redis(port=copy.port)) == original
            source_client.flushall()
            assert restore(client, source_id, backup_id).status == "succeed"
            assert dump_oracle(source_client) == original

            # The backup bucket is not a bucket to import from by name.
            named = refused(lambda: create(client, copy_id, [keys[0]], bucket="made-backups"))
            assert named.error_code == "DCS.4800" and "backup_record" in named.error_msg
            client.delete_backup_file(
                DeleteBackupFileRequest(instance_id=source_id, backup_id=backup_id)
            )
            assert "Contents" not in s3.list_objects_v2(Bucket="made-backups")
