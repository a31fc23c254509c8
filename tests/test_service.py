"""The migration-task service over real HTTP, driven by the official SDK as a user would."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import (
    BackupFilesBody,
    BatchStopMigrationTasksBody,
    BatchStopMigrationTasksRequest,
    CreateMigrationTaskBody,
    CreateMigrationTaskRequest,
    DeleteMigrationTaskRequest,
    Files,
    ListMigrationTaskLogsRequest,
    ListMigrationTaskRequest,
    ShowMigrationTaskRequest,
    ShowMigrationTaskStatsRequest,
    StopMigrationTaskRequest,
    TargetInstanceBody,
)
from huaweicloudsdkdcs.v2.model.delete_migrate_task_request import DeleteMigrateTaskRequest

from tests.support import rdbgen as g
from tests.support.aofgen import aof
from tests.support.backups import big_rdb
from tests.support.corpus import CORPUS
from tests.support.flavours import RedisServerFactory
from tests.support.sdk import PROJECT, create, minted, register, wait_for
from tests.support.service import Service, import_task_json, signed

pytestmark = [pytest.mark.service, pytest.mark.redis]


@pytest.fixture
def service() -> Iterator[Service]:
    with Service() as running:
        yield running


def test_the_seed_request_imports_a_backup(
    service: Service, redis_server: RedisServerFactory
) -> None:
    target = redis_server()
    client = minted(service)
    instance_id = register(service, target)
    bucket = service.bucket("bucket", PROJECT)
    shutil.copy(CORPUS / "native/redis-7.0.15/dump.rdb", bucket / "dump.rdb")
    created = create(client, instance_id, ["dump.rdb"])
    assert created.status == "MIGRATING" and created.name == "import"
    task = wait_for(client, created.id, ("SUCCESS", "FAILED"))
    assert task.status == "SUCCESS"
    assert int(target.cli("DBSIZE")) > 0
    stats = client.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=created.id))
    assert stats.full_migration_progress == "100"
    logs = client.list_migration_task_logs(ListMigrationTaskLogsRequest(task_id=created.id))
    assert logs.log_num >= 2
    listed = client.list_migration_task(ListMigrationTaskRequest())
    assert listed.count == 1 and listed.migration_tasks[0].task_id == created.id


def test_a_multi_file_task_and_a_missing_file(
    service: Service, redis_server: RedisServerFactory
) -> None:
    target = redis_server()
    client = minted(service)
    instance_id = register(service, target)
    bucket = service.bucket("bucket", PROJECT)
    (bucket / "a.rdb").write_bytes(g.rdb(g.key(b"a", g.string(b"1")), version=9))
    (bucket / "b.rdb").write_bytes(g.rdb(g.key(b"b", g.string(b"2")), version=9))
    done = wait_for(
        client, create(client, instance_id, ["a.rdb", "b.rdb"]).id, ("SUCCESS", "FAILED")
    )
    assert done.status == "SUCCESS"
    assert sorted(redis.Redis(port=target.port).keys()) == [b"a", b"b"]
    failed = wait_for(client, create(client, instance_id, ["nope.rdb"]).id, ("SUCCESS", "FAILED"))
    assert failed.status == "FAILED"
    raw = client.list_migration_task(ListMigrationTaskRequest())
    message = next(t.error_message for t in raw.migration_tasks if t.task_id == failed.task_id)
    assert "nope.rdb" in message


def test_a_task_skips_refused_aof_commands_and_unknown_ones_when_created_so(
    service: Service, redis_server: RedisServerFactory
) -> None:
    target = redis_server()
    key = service.cli("keys", "create", "--project-id", PROJECT)
    client = service.client(key["ak"], key["sk"], PROJECT)
    instance_id = register(service, target)
    data, at = aof(
        (b"SET", b"s", b"text"), (b"INCR", b"s"), (b"NOSUCHCOMMAND",), (b"SET", b"end", b"1")
    )
    (service.bucket("bucket", PROJECT) / "log.aof").write_bytes(data)
    # Created as the SDK creates it: an unknown command fails the task, named.
    failed = wait_for(client, create(client, instance_id, ["log.aof"]).id, ("SUCCESS", "FAILED"))
    assert failed.status == "FAILED"
    path = f"/v2/{PROJECT}/migration-task"
    _, detail, _ = signed(service, key, "GET", f"{path}/{failed.task_id}")
    assert f"NOSUCHCOMMAND at offset {at[2]} of log.aof" in detail["error_message"]
    body = import_task_json(instance_id, "log.aof")
    code, answer, _ = signed(service, key, "POST", path, {**body, "skip_unknown_commands": "yes"})
    assert code == 400 and "skip_unknown_commands" in answer["error_msg"]
    code, answer, _ = signed(service, key, "POST", path, {**body, "skip_unknown_commands": True})
    assert code == 200, answer
    done = wait_for(client, answer["id"], ("SUCCESS", "FAILED"))
    assert done.status == "SUCCESS", done.error_message
    assert target.cli("GET", "end") == "1"
    code, stats, _ = signed(service, key, "GET", f"{path}/{answer['id']}/stats")
    assert code == 200
    assert (stats["commands_refused"], stats["commands_skipped_unknown"]) == (1, 1)
    logs = client.list_migration_task_logs(
        ListMigrationTaskLogsRequest(task_id=answer["id"], log_level="WARNING")
    )
    messages = [entry.message for entry in logs.migration_logs]
    assert any(
        f"INCR at offset {at[1]} of log.aof skipped, refused: ERR value is not an integer" in m
        for m in messages
    ), messages
    assert any(f"NOSUCHCOMMAND at offset {at[2]} of log.aof skipped" in m for m in messages)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"migration_method": "incremental_migration"}, "migration_method"),
        ({"migration_type": "online_migration"}, "migration_type"),
        ({"migration_type": "teleport"}, "migration_type"),
        ({"file_name": "../../etc/passwd"}, "file_name"),
    ],
)
def test_validation_errors_name_the_field(
    service: Service, redis_server: RedisServerFactory, change: dict[str, str], field: str
) -> None:
    client = minted(service)
    instance_id = register(service, redis_server())
    body = CreateMigrationTaskBody(
        task_name="bad",
        migration_type=change.get("migration_type", "backupfile_import"),
        migration_method=change.get("migration_method", "full_amount_migration"),
        backup_files=BackupFilesBody(
            file_source="self_build_obs",
            bucket_name="bucket",
            files=[Files(file_name=change.get("file_name", "dump.rdb"))],
        ),
        target_instance=TargetInstanceBody(id=instance_id),
    )
    with pytest.raises(ClientRequestException) as exc:
        client.create_migration_task(CreateMigrationTaskRequest(body=body))
    assert exc.value.status_code == 400
    assert exc.value.error_code == "DCS.4800"
    assert field in exc.value.error_msg


def test_signatures_and_projects(service: Service, redis_server: RedisServerFactory) -> None:
    key = service.cli("keys", "create", "--project-id", PROJECT)
    wrong = service.client(key["ak"], "not-the-secret", PROJECT)
    with pytest.raises(ClientRequestException) as exc:
        wrong.list_migration_task(ListMigrationTaskRequest())
    assert (exc.value.status_code, exc.value.error_code) == (401, "APIGW.0301")
    other_key = service.cli("keys", "create", "--project-id", "other")
    cross = service.client(other_key["ak"], other_key["sk"], PROJECT)
    with pytest.raises(ClientRequestException) as exc:
        cross.list_migration_task(ListMigrationTaskRequest())
    assert exc.value.status_code == 403
    # A task of one project is a 404 to another.
    client = service.client(key["ak"], key["sk"], PROJECT)
    instance_id = register(service, redis_server())
    service.bucket("bucket", PROJECT)
    task = create(client, instance_id, ["missing.rdb"])
    other = service.client(other_key["ak"], other_key["sk"], "other")
    with pytest.raises(ClientRequestException) as exc:
        other.show_migration_task(ShowMigrationTaskRequest(task_id=task.id))
    assert (exc.value.status_code, exc.value.error_code) == (404, "DCS.4133")
    with pytest.raises(ClientRequestException) as exc:
        client.show_migration_task(ShowMigrationTaskRequest(task_id="not-a-task-id"))
    assert exc.value.error_code == "DCS.4070"


def stats(client: Any, task_id: str) -> Any:
    return client.show_migration_task_stats(ShowMigrationTaskStatsRequest(task_id=task_id))


def test_stop_batch_stop_and_delete(service: Service, redis_server: RedisServerFactory) -> None:
    client = minted(service)
    instance_id = register(service, redis_server())
    big_rdb(service.bucket("bucket", PROJECT) / "big.rdb", redis_server)
    first = create(client, instance_id, ["big.rdb"]).id
    wait_for(client, first, ("MIGRATING",))
    with pytest.raises(ClientRequestException) as exc:
        client.delete_migration_task(
            DeleteMigrationTaskRequest(body=DeleteMigrateTaskRequest(task_id_list=[first]))
        )
    assert exc.value.error_code == "DCS.4017"
    stopped = client.stop_migration_task(StopMigrationTaskRequest(task_id=first))
    assert stopped.status in ("TERMINATING", "TERMINATED")
    assert wait_for(client, first, ("TERMINATED",), seconds=5).status == "TERMINATED"
    second = create(client, instance_id, ["big.rdb"], name="second").id
    third = create(client, instance_id, ["big.rdb"], name="third").id
    batch = client.batch_stop_migration_tasks(
        BatchStopMigrationTasksRequest(
            body=BatchStopMigrationTasksBody(migration_tasks=[second, third])
        )
    )
    assert [r.result for r in batch.migration_tasks] == ["success", "success"]
    for task_id in (second, third):
        assert wait_for(client, task_id, ("TERMINATED",), seconds=5).status == "TERMINATED"
    deleted = client.delete_migration_task(
        DeleteMigrationTaskRequest(body=DeleteMigrateTaskRequest(task_id_list=[first, second]))
    )
    assert sorted(deleted.task_id_list) == sorted([first, second])
    assert client.list_migration_task(ListMigrationTaskRequest()).count == 1


def test_a_restart_leaves_no_task_migrating(
    service: Service, redis_server: RedisServerFactory
) -> None:
    client = minted(service)
    instance_id = register(service, redis_server())
    big_rdb(service.bucket("bucket", PROJECT) / "big.rdb", redis_server)
    task_id = create(client, instance_id, ["big.rdb"]).id
    deadline = time.monotonic() + 30
    while int(stats(client, task_id).offset) == 0:  # under way, not just waiting
        assert time.monotonic() < deadline
        time.sleep(0.05)
    service.kill()
    service.start()
    task = wait_for(client, task_id, ("FAILED",), seconds=5)
    listed = client.list_migration_task(ListMigrationTaskRequest())
    assert "interrupted" in listed.migration_tasks[0].error_message
    assert task.status == "FAILED"


def test_a_task_reads_its_files_from_the_s3_endpoint(redis_server: RedisServerFactory) -> None:
    from dcs_migration.sources.s3 import S3Settings, make_s3_client
    from tests.support.s3server import MotoServer

    with MotoServer() as moto:
        env = {
            "DCS_MIGRATION_OBS_ENDPOINT": moto.endpoint,
            "DCS_MIGRATION_OBS_ACCESS_KEY": "test-access",
            "DCS_MIGRATION_OBS_SECRET_KEY": "test-secret",
        }
        s3 = make_s3_client(S3Settings(moto.endpoint, "test-access", "test-secret"))
        s3.create_bucket(Bucket="backups")
        s3.put_object(
            Bucket="backups",
            Key="shard/dump.rdb",
            Body=g.rdb(g.key(b"k", g.string(b"v")), version=9),
        )
        with Service(env=env) as service:
            service.grant("backups", PROJECT)
            target = redis_server()
            client = minted(service)
            instance_id = register(service, target)
            created = create(client, instance_id, ["shard/dump.rdb"], bucket="backups")
            assert wait_for(client, created.id, ("SUCCESS", "FAILED")).status == "SUCCESS"
            assert redis.Redis(port=target.port).get(b"k") == b"v"


def test_unsigned_oversized_and_unknown_requests_get_dcs_errors(service: Service) -> None:
    import http.client
    import json
    import urllib.error
    import urllib.request

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(service.url + path, data=body, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest

    status, body = call("GET", f"/v2/{PROJECT}/migration-tasks")
    assert (status, body["error_code"]) == (401, "APIGW.0301")
    assert set(body) == {"error_code", "error_msg", "error_ext_msg"}
    # A body over 12 MB is refused from its Content-Length, before it is read: unsigned,
    # as unsigned (401); signed, as too large (400).
    key = service.cli("keys", "create", "--project-id", PROJECT)
    path = f"/v2/{PROJECT}/migration-task"
    request = SdkRequest(
        method="POST",
        schema="http",
        host=f"127.0.0.1:{service.port}",
        resource_path=path,
        query_params=[],
        header_params={"Content-Type": "application/json"},
        body=b"{}",
    )
    signed_head = BasicCredentials(key["ak"], key["sk"], PROJECT).sign_request(request)
    for headers, wanted in (
        ({"Content-Type": "application/json"}, (401, "APIGW.0301")),
        (signed_head.header_params, (400, "DCS.4800")),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
        conn.putrequest("POST", path, skip_host="Host" in headers)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(13 << 20))
        conn.endheaders()
        answer = conn.getresponse()
        body = json.loads(answer.read())
        conn.close()
        assert (answer.status, body["error_code"]) == wanted, body
    assert "request body" in body["error_msg"]
    status, body = call("GET", "/v2/nothing/here/at/all")
    assert status == 404 and body["error_code"].startswith("DCS.")
    status, schema = call("GET", "/openapi.json")
    assert status == 200 and "/v2/{project_id}/migration-task" in schema["paths"]


def test_instances_list_and_show_without_passwords(
    service: Service, redis_server: RedisServerFactory
) -> None:
    from huaweicloudsdkdcs.v2 import ListInstancesRequest, ShowInstanceRequest

    target = redis_server("--requirepass", "hunter2-secret")
    client = minted(service)
    out = service.cli(
        "instances",
        "add",
        "--project-id",
        PROJECT,
        "--name",
        "guarded",
        "--addrs",
        f"127.0.0.1:{target.port}",
        "--password",
        "hunter2-secret",
    )
    listed = client.list_instances(ListInstancesRequest())
    assert listed.instance_num == 1 and listed.instances[0].name == "guarded"
    shown = client.show_instance(ShowInstanceRequest(instance_id=out["instance_id"]))
    assert (shown.ip, shown.port, shown.engine) == ("127.0.0.1", target.port, "Redis")
    assert "hunter2-secret" not in str(listed) + str(shown)
    for stored in service.data_dir.glob("dcs-migration.sqlite3*"):  # the database and its WAL
        assert b"hunter2-secret" not in stored.read_bytes()
    with pytest.raises(ClientRequestException) as exc:
        client.show_instance(ShowInstanceRequest(instance_id="missing"))
    assert exc.value.status_code == 404


def test_a_project_has_a_cap_on_tasks_at_once(redis_server: RedisServerFactory) -> None:
    with Service(env={"DCS_MIGRATION_MAX_TASKS_PER_PROJECT": "1"}) as service:
        client = minted(service)
        other = minted(service, "b1b2b3b4b5b6b7b8b9b0b1b2b3b4b5b6")
        instance_id = register(service, redis_server())
        other_instance = register(service, redis_server(), "b1b2b3b4b5b6b7b8b9b0b1b2b3b4b5b6")
        bucket = service.bucket("bucket", PROJECT, "b1b2b3b4b5b6b7b8b9b0b1b2b3b4b5b6")
        big_rdb(bucket / "big.rdb", redis_server)
        first = create(client, instance_id, ["big.rdb"]).id
        with pytest.raises(ClientRequestException) as refused:
            create(client, instance_id, ["big.rdb"], name="second")
        assert refused.value.error_code == "DCS.4957" and "limit" in refused.value.error_msg
        create(other, other_instance, ["big.rdb"])  # another project is not held back
        client.stop_migration_task(StopMigrationTaskRequest(task_id=first))
        wait_for(client, first, ("TERMINATED",), seconds=5)
        create(client, instance_id, ["big.rdb"], name="third")
