"""The DCS-shaped schemas: the seed page's example, every body rule, and the official SDK."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.utils.http_utils import sanitize_for_serialization
from huaweicloudsdkdcs.v2 import DcsClient
from huaweicloudsdkdcs.v2 import model as sdk
from pydantic import BaseModel, SecretStr, ValidationError

from dcs_migration.api import schemas
from dcs_migration.api.errors import (
    DCS_EMPTY_BODY,
    DCS_INVALID_PARAMETER,
    DCS_TASK_NOT_FOUND,
    DcsError,
    error_body,
    field_path,
    validation_messages,
)
from dcs_migration.api.schemas import (
    CreateMigrationTaskBody,
    RegisterInstanceBody,
    parse_body,
    parse_size,
)

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "000_85b06ada4902bfb7.txt"


def _spec_json_after(marker: str) -> dict[str, Any]:
    if not SPEC.exists():
        pytest.skip(f"the seed API page is not at {SPEC}")
    text = SPEC.read_text(encoding="utf-8")
    start = text.index("{", text.index(marker) + len(marker))
    value, _ = json.JSONDecoder().raw_decode(text, start)
    assert isinstance(value, dict)
    return value


@pytest.fixture
def seed_request() -> dict[str, Any]:
    return _spec_json_after("POST https://{dcs_endpoint}/v2/{project_id}/migration-task")


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def create(body: dict[str, Any]) -> CreateMigrationTaskBody:
    return parse_body(CreateMigrationTaskBody, encode(body))


def refused(body: Any, model: type[BaseModel] = CreateMigrationTaskBody) -> str:
    raw = body if isinstance(body, bytes) else encode(body)
    with pytest.raises(DcsError) as info:
        parse_body(model, raw)
    err = info.value
    assert (err.status, err.error_code) == (400, DCS_INVALID_PARAMETER)
    assert err.to_body() == {
        "error_code": "DCS.4800",
        "error_msg": err.error_msg,
        "error_ext_msg": None,
    }
    return err.error_msg


# -- the seed page's own example --------------------------------------------------------


def test_the_seed_request_example_validates(seed_request: dict[str, Any]) -> None:
    assert seed_request["backup_files"]["files"][0]["size"] == "754.0MB"
    body = create(seed_request)
    assert body.task_name == "migration1"
    assert body.migration_type == "backupfile_import"
    assert body.backup_files is not None and body.backup_files.files is not None
    assert body.backup_files.file_source == "self_build_obs"
    assert body.backup_files.bucket_name == "bucketName"
    assert body.backup_files.files[0].file_name == "fileName"
    assert body.backup_files.files[0].size_bytes == 754 * 1024 * 1024
    assert body.target_instance.id == "d2c8399f-bdba-43c1-8069-3ff17a1a79d5"
    assert isinstance(body.target_instance.password, SecretStr)
    assert body.target_instance.password.get_secret_value() == "xxxxxx"
    assert "xxxxxx" not in repr(body) and "xxxxxx" not in body.model_dump_json()


def test_the_seed_response_example_validates() -> None:
    answer = _spec_json_after("创建备份导入任务成功。")
    response = schemas.CreateMigrationTaskResponse.model_validate(answer)
    assert response.model_dump() == answer


# -- rules, each answered with DCS.4800 naming the field ----------------------------------


def mutate(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `base` with `path` (``a.b[0].c``) set to `value`, or deleted for DELETE."""
    body = copy.deepcopy(base)
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    node: Any = body
    for part in parts[:-1]:
        node = node[part]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return body


DELETE = object()

RULES: list[tuple[str, Any, str]] = [
    ("task_name", DELETE, "task_name is required"),
    ("task_name", 5, "task_name must be a string"),
    ("task_name", "", "task_name must not be empty"),
    ("task_name", None, "task_name must be a string"),
    ("description", ["x"], "description must be a string"),
    ("migration_type", DELETE, "migration_type is required"),
    ("migration_type", "copy", "migration_type must be one of 'backupfile_import', 'online_"),
    ("migration_type", "online_migration", "CreateOnlineMigrationTask"),
    ("migration_method", "delta", "migration_method must be one of 'full_amount_migration'"),
    ("migration_method", "incremental_migration", "migration_method must be full_amount_mig"),
    ("network_type", "internet", "network_type must be one of 'vpc', 'vpn'"),
    ("backup_files", DELETE, "backup_files is required when migration_type is backupfile_imp"),
    ("backup_files", "bucket/file", "backup_files must be an object"),
    ("backup_files.file_source", "ftp", "backup_files.file_source must be one of 'self_build_obs"),
    ("backup_files.bucket_name", DELETE, "backup_files.bucket_name is required when file_source"),
    ("backup_files.bucket_name", "a/b", "backup_files.bucket_name must be a bucket name"),
    ("backup_files.bucket_name", "..", "backup_files.bucket_name must be a bucket name"),
    ("backup_files.bucket_name", "", "backup_files.bucket_name must not be empty"),
    ("backup_files.files", DELETE, "backup_files.files is required and must not be empty"),
    ("backup_files.files", [], "backup_files.files is required and must not be empty"),
    ("backup_files.files", {"file_name": "x"}, "backup_files.files must be an array"),
    ("backup_files.files[0]", "x.rdb", "backup_files.files[0] must be an object"),
    ("backup_files.files[0].file_name", DELETE, "backup_files.files[0].file_name is required"),
    ("backup_files.files[0].file_name", 7, "backup_files.files[0].file_name must be a string"),
    ("backup_files.files[0].file_name", "", "backup_files.files[0].file_name must not be empty"),
    (
        "backup_files.files[0].file_name",
        "../etc/passwd",
        "files[0].file_name must not contain a '..'",
    ),
    ("backup_files.files[0].file_name", "a/../../b", "files[0].file_name must not contain a '..'"),
    ("backup_files.files[0].file_name", "a\\..\\b", "files[0].file_name must not contain a '..'"),
    ("backup_files.files[0].file_name", "..", "files[0].file_name must not contain a '..'"),
    ("backup_files.files[0].file_name", "/etc/passwd", "files[0].file_name must be an object key"),
    ("backup_files.files[0].file_name", "a\x00b", "files[0].file_name must not contain a NUL"),
    (
        "backup_files.files[0].file_name",
        "x" * 1025,
        "files[0].file_name must be at most 1024 bytes",
    ),
    ("backup_files.files[0].file_name", "é" * 513, "files[0].file_name must be at most 1024 bytes"),
    ("backup_files.files[0].size", "lots", "backup_files.files[0].size must be a number of bytes"),
    ("backup_files.files[0].size", "-5", "backup_files.files[0].size must be a number of bytes"),
    ("backup_files.files[0].size", "1e9", "backup_files.files[0].size must be a number of bytes"),
    ("backup_files.files[0].size", True, "backup_files.files[0].size must be a string"),
    ("backup_files.files[0].size", 1.5, "backup_files.files[0].size must be a string"),
    ("backup_files.files[0].size", -1, "backup_files.files[0].size must be a string"),
    ("backup_files.files[0].update_at", "2024-13-01 00:00:00", "files[0].update_at must be a time"),
    ("backup_files.files[0].update_at", "2024-01-01T00:00:00", "files[0].update_at must be a time"),
    ("backup_files.files[0].update_at", "2024-01-01", "files[0].update_at must be a time in the"),
    ("backup_files.files[0].update_at", 1700000000, "files[0].update_at must be a string"),
    ("target_instance", DELETE, "target_instance is required"),
    ("target_instance", "d2c8399f", "target_instance must be an object"),
    ("target_instance.id", DELETE, "target_instance.id is required"),
    ("target_instance.id", "", "target_instance.id must not be empty"),
    ("target_instance.id", 12, "target_instance.id must be a string"),
    ("target_instance.db", "256", "target_instance.db must be a database number (0-255)"),
    ("target_instance.db", -1, "target_instance.db must be a database number (0-255)"),
    ("target_instance.db", "x", "target_instance.db must be a database number"),
    ("target_instance.db", "1.0", "target_instance.db must be a database number"),
    ("target_instance.db", " 1", "target_instance.db must be a database number"),
    ("target_instance.db", True, "target_instance.db must be a database number"),
    ("target_instance.db", 3.0, "target_instance.db must be an integer"),
    ("target_instance.db", "١", "target_instance.db must be a database number"),
    ("target_instance.port", "redis", "target_instance.port must be a port number"),
    ("target_instance.port", 0, "target_instance.port must be a port number"),
    ("target_instance.proxy_multi_db", "true", "target_instance.proxy_multi_db must be a boolean"),
    ("target_instance.password", 123, "target_instance.password must be a string"),
    ("target_instance.name", False, "target_instance.name must be a string"),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), RULES, ids=[f"{p}={v!r}"[:60] for p, v, _ in RULES]
)
def test_each_rule_names_the_field(
    seed_request: dict[str, Any], path: str, value: Any, expected: str
) -> None:
    message = refused(mutate(seed_request, path, value))
    assert message.startswith("Invalid parameter: ")
    assert expected in message


def test_online_migration_points_to_the_online_api(seed_request: dict[str, Any]) -> None:
    body = mutate(seed_request, "migration_type", "online_migration")
    body["source_instance"] = {"addrs": "10.0.0.1:6379", "password": "pw"}
    body["network_type"] = "vpc"
    del body["backup_files"]
    message = refused(body)
    assert "migration_type" in message
    assert "POST /v2/{project_id}/migration/instance" in message


def test_backup_record_needs_a_backup_id(seed_request: dict[str, Any]) -> None:
    record = {"file_source": "backup_record", "backup_id": "b-1"}
    body = create(mutate(seed_request, "backup_files", record))
    assert body.backup_files is not None and body.backup_files.backup_id == "b-1"
    assert body.backup_files.files is None
    for bad in (
        {"file_source": "backup_record"},
        {"file_source": "backup_record", "backup_id": ""},
    ):
        message = refused(mutate(seed_request, "backup_files", bad))
        assert "backup_files.backup_id is required when file_source is backup_record" in message


def test_file_source_defaults_to_a_bucket(seed_request: dict[str, Any]) -> None:
    body = create(mutate(seed_request, "backup_files.file_source", DELETE))
    assert body.backup_files is not None and body.backup_files.file_source == "self_build_obs"


@pytest.mark.parametrize(
    ("path", "value", "check"),
    [
        ("backup_files.files[0].size", 1234, ("size", "1234")),
        ("backup_files.files[0].size", "1.5 GB", ("size_bytes", 1536 * 1024 * 1024)),
        ("backup_files.files[0].update_at", "2024-02-29 23:59:59", ("update_at", None)),
        ("backup_files.files[0].file_name", "dir/sub/dump.rdb", ("file_name", None)),
        ("backup_files.files[0].file_name", "a..b/..c/.x", ("file_name", None)),
        ("backup_files.files[0].file_name", "aof-dir/", ("file_name", None)),
    ],
)
def test_accepted_file_forms(
    seed_request: dict[str, Any], path: str, value: Any, check: tuple[str, Any]
) -> None:
    body = create(mutate(seed_request, path, value))
    assert body.backup_files is not None and body.backup_files.files is not None
    attr, expected = check
    got = getattr(body.backup_files.files[0], attr)
    assert got == (value if expected is None else expected)


@pytest.mark.parametrize(
    ("value", "expected"), [("15", 15), (0, 0), (255, 255), ("007", 7), (None, None)]
)
def test_db_forms(seed_request: dict[str, Any], value: Any, expected: int | None) -> None:
    body = create(mutate(seed_request, "target_instance.db", value))
    assert body.target_instance.db == expected


def test_port_forms(seed_request: dict[str, Any]) -> None:
    assert create(mutate(seed_request, "target_instance.port", 6379)).target_instance.port == "6379"
    assert (
        create(mutate(seed_request, "target_instance.port", "6380")).target_instance.port == "6380"
    )


def test_unknown_fields_are_ignored(seed_request: dict[str, Any]) -> None:
    body = mutate(seed_request, "color", "blue")
    body["target_instance"]["zone"] = "az1"
    body["backup_files"]["files"][0]["etag"] = "abc"
    assert create(body).task_name == "migration1"


def test_several_errors_are_all_named(seed_request: dict[str, Any]) -> None:
    body = mutate(mutate(seed_request, "task_name", DELETE), "target_instance.id", 3)
    message = refused(body)
    assert "task_name is required" in message
    assert "target_instance.id must be a string" in message


def test_a_password_never_appears_in_a_message(seed_request: dict[str, Any]) -> None:
    body = mutate(seed_request, "target_instance.password", ["hunter2-secret"])
    message = refused(body)
    assert "target_instance.password must be a string" in message
    assert "hunter2" not in message


def test_empty_malformed_and_non_object_bodies(seed_request: dict[str, Any]) -> None:
    for empty in (b"", b"   \n"):
        with pytest.raises(DcsError) as info:
            parse_body(CreateMigrationTaskBody, empty)
        assert (info.value.status, info.value.error_code) == (400, DCS_EMPTY_BODY)
    assert "request body is not valid JSON" in refused(encode(seed_request)[:-3])
    assert "request body is not valid JSON" in refused(b"\xff\xfe{}")
    assert "request body must be an object" in refused([seed_request])
    assert "request body must be an object" in refused(b"null")
    deep = b"[" * 100_000 + b"]" * 100_000
    assert refused(deep)  # refused, not a crash


# -- parse_size -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("754.0MB", 754 * 2**20),
        ("1234", 1234),
        ("0", 0),
        ("10B", 10),
        ("1KB", 1024),
        ("1.5 KB", 1536),
        ("2kb", 2048),
        ("1K", 1024),
        ("1KiB", 1024),
        ("3MiB", 3 * 2**20),
        (" 3MB ", 3 * 2**20),
        ("1GB", 2**30),
        ("2.25GB", 9 * 2**28),
        ("1TB", 2**40),
        ("0.5B", 1),
        ("0.4B", 0),
        ("1.0000001KB", 1024),
        ("", None),
        ("MB", None),
        ("-1MB", None),
        ("+1MB", None),
        ("1e3", None),
        ("1,5MB", None),
        ("1 2MB", None),
        ("1  MB", None),
        ("1XB", None),
        ("1iB", None),
        ("1Ki", None),
        ("1.MB", None),
        (".5MB", None),
        ("١٢", None),
        ("1" * 21, None),
    ],
)
def test_parse_size(text: str, expected: int | None) -> None:
    assert parse_size(text) == expected


# -- the official SDK's models ------------------------------------------------------------


def sdk_json(obj: Any) -> bytes:
    return json.dumps(sanitize_for_serialization(obj)).encode()


def test_sdk_serialized_bodies_validate() -> None:
    target = sdk.TargetInstanceBody(id="inst-1", name="dcs-test", password="pw", db="3")
    body = sdk.CreateMigrationTaskBody(
        task_name="migration1",
        description="Test",
        migration_type="backupfile_import",
        migration_method="full_amount_migration",
        backup_files=sdk.BackupFilesBody(
            file_source="self_build_obs",
            bucket_name="bucketName",
            files=[
                sdk.Files(file_name="fileName", size="754.0MB", update_at="2024-05-01 10:20:30"),
                sdk.Files(file_name="dir/appendonly.aof"),
            ],
        ),
        target_instance=target,
    )
    parsed = parse_body(CreateMigrationTaskBody, sdk_json(body))
    assert parsed.target_instance.db == 3
    assert parsed.backup_files is not None and parsed.backup_files.files is not None
    assert [f.file_name for f in parsed.backup_files.files] == ["fileName", "dir/appendonly.aof"]

    record = sdk.CreateMigrationTaskBody(
        task_name="from-backup",
        migration_type="backupfile_import",
        migration_method="full_amount_migration",
        backup_files=sdk.BackupFilesBody(file_source="backup_record", files=None, backup_id="b-1"),
        target_instance=sdk.TargetInstanceBody(id="inst-1"),
    )
    parsed = parse_body(CreateMigrationTaskBody, sdk_json(record))
    assert parsed.backup_files is not None and parsed.backup_files.backup_id == "b-1"

    stop = sdk.BatchStopMigrationTasksBody(migration_tasks=["a", "b"])
    assert parse_body(schemas.BatchStopMigrationTasksBody, sdk_json(stop)).migration_tasks == [
        "a",
        "b",
    ]
    delete = sdk.DeleteMigrateTaskRequest(task_id_list=["a"])
    assert parse_body(schemas.DeleteMigrationTasksBody, sdk_json(delete)).task_id_list == ["a"]
    backup = sdk.BackupInstanceBody(remark="nightly", backup_format="aof")
    assert parse_body(schemas.BackupInstanceBody, sdk_json(backup)).backup_format == "aof"
    restore = sdk.RestoreInstanceBody(backup_id="b-1", remark="r")
    assert parse_body(schemas.RestoreInstanceBody, sdk_json(restore)).backup_id == "b-1"


def test_sdk_online_migration_body_is_refused() -> None:
    body = sdk.CreateMigrationTaskBody(
        task_name="online",
        migration_type="online_migration",
        migration_method="incremental_migration",
        network_type="vpc",
        source_instance=sdk.SourceInstanceBody(addrs="10.0.0.1:6379", password="pw"),
        target_instance=sdk.TargetInstanceBody(id="inst-1"),
    )
    assert "CreateOnlineMigrationTask" in refused(sdk_json(body))


REQUEST_PAIRS: list[tuple[type[BaseModel], type]] = [
    (schemas.CreateMigrationTaskBody, sdk.CreateMigrationTaskBody),
    (schemas.BackupFilesBody, sdk.BackupFilesBody),
    (schemas.Files, sdk.Files),
    (schemas.SourceInstanceBody, sdk.SourceInstanceBody),
    (schemas.TargetInstanceBody, sdk.TargetInstanceBody),
    (schemas.BatchStopMigrationTasksBody, sdk.BatchStopMigrationTasksBody),
    (schemas.DeleteMigrationTasksBody, sdk.DeleteMigrateTaskRequest),
    (schemas.BackupInstanceBody, sdk.BackupInstanceBody),
    (schemas.RestoreInstanceBody, sdk.RestoreInstanceBody),
]

# this service's additions, which the SDK ignores
EXTRAS = {
    "error",
    "error_message",
    "cache_mode",
    "commands_refused",
    "commands_skipped_unknown",
}

RESPONSE_PAIRS: list[tuple[type[BaseModel], type]] = [
    (schemas.CreateMigrationTaskResponse, sdk.CreateMigrationTaskResponse),
    (schemas.MigrationTaskListItem, sdk.MigrationTaskList),
    (schemas.ListMigrationTasksResponse, sdk.ListMigrationTaskResponse),
    (schemas.MigrationTaskDetail, sdk.ShowMigrationTaskResponse),
    # the stop answers the detail (status TERMINATING or TERMINATED)
    (schemas.MigrationTaskDetail, sdk.StopMigrationTaskResponse),
    (schemas.BackupFilesInfo, sdk.BackupFilesBody),
    (schemas.FilesInfo, sdk.Files),
    (schemas.SourceInstanceInfo, sdk.SourceInstanceBody),
    (schemas.TargetInstanceInfo, sdk.TargetInstanceBody),
    (schemas.MigrationTaskStats, sdk.ShowMigrationTaskStatsResponse),
    (schemas.MigrationLog, sdk.MigrationLog),
    (schemas.ListMigrationTaskLogsResponse, sdk.ListMigrationTaskLogsResponse),
    (schemas.StopMigrationTaskResult, sdk.StopMigrationTaskResult),
    (schemas.BatchStopMigrationTasksResponse, sdk.BatchStopMigrationTasksResponse),
    (schemas.DeleteMigrationTasksResponse, sdk.DeleteMigrationTaskResponse),
    (schemas.InstanceListInfo, sdk.InstanceListInfo),
    (schemas.ListInstancesResponse, sdk.ListInstancesResponse),
    (schemas.InstanceDetail, sdk.ShowInstanceResponse),
    (schemas.BackupInstanceResponse, sdk.CopyInstanceResponse),
    (schemas.BackupRecord, sdk.BackupRecordResponse),
    (schemas.ListBackupRecordsResponse, sdk.ListBackupRecordsResponse),
    (schemas.RestoreInstanceResponse, sdk.RestoreInstanceResponse),
    (schemas.RestoreRecord, sdk.InstanceRestoreInfo),
    (schemas.ListRestoreRecordsResponse, sdk.ListRestoreRecordsResponse),
]


@pytest.mark.parametrize(("ours", "theirs"), REQUEST_PAIRS, ids=lambda c: c.__name__)
def test_request_fields_are_the_sdks(ours: type[BaseModel], theirs: type) -> None:
    # resume_mode at creation (the SDK sets it by update) and skip_unknown_commands are
    # this service's extensions
    extensions = {"resume_mode", "skip_unknown_commands"}
    assert set(ours.model_fields) - extensions == set(theirs.attribute_map.values())


@pytest.mark.parametrize(("ours", "theirs"), RESPONSE_PAIRS, ids=lambda c: c.__name__)
def test_response_fields_are_the_sdks(ours: type[BaseModel], theirs: type) -> None:
    assert set(ours.model_fields) - set(theirs.attribute_map.values()) <= EXTRAS
    assert "password" not in ours.model_fields


@pytest.fixture(scope="module")
def sdk_client() -> Any:
    return (
        DcsClient.new_builder()
        .with_credentials(BasicCredentials("ak", "sk", "proj"))
        .with_endpoints(["http://127.0.0.1:9"])
        .build()
    )


def sdk_reads(client: Any, model: BaseModel, sdk_type: str) -> Any:
    """What the SDK makes of a response body: the JSON the service would answer."""
    return client._deserialize(json.loads(model.model_dump_json()), sdk_type)


def test_responses_deserialize_in_the_sdk(sdk_client: Any) -> None:
    detail = schemas.MigrationTaskDetail(
        task_id="t-1",
        task_name="migration1",
        status="MIGRATING",
        migration_type="backupfile_import",
        migration_method="full_amount_migration",
        backup_files=schemas.BackupFilesInfo(
            file_source="self_build_obs",
            bucket_name="bucketName",
            files=[schemas.FilesInfo(file_name="fileName", size="754.0MB")],
        ),
        target_instance=schemas.TargetInstanceInfo(id="inst-1", name="dcs-test", db="0"),
        created_at="2024-05-01T10:20:30.000Z",
        resume_mode="auto",
        supported_features=["backup_import"],
    )
    got = sdk_reads(sdk_client, detail, "ShowMigrationTaskResponse")
    assert got.task_id == "t-1" and got.status == "MIGRATING"
    assert got.backup_files.files[0].size == "754.0MB"
    assert got.target_instance.id == "inst-1" and got.target_instance.password is None
    assert got.supported_features == ["backup_import"]

    created = schemas.CreateMigrationTaskResponse(id="t-1", name="m", status="MIGRATING")
    got = sdk_reads(sdk_client, created, "CreateMigrationTaskResponse")
    assert (got.id, got.name, got.status) == ("t-1", "m", "MIGRATING")

    listing = schemas.ListMigrationTasksResponse(
        count=1,
        migration_tasks=[
            schemas.MigrationTaskListItem(
                task_id="t-1",
                task_name="m",
                status="FAILED",
                migration_type="backupfile_import",
                migration_method="full_amount_migration",
                data_source="bucketName",
                target_instance_addrs="127.0.0.1:6379",
                error_message="bad CRC64 (file fileName, offset 12)",
            )
        ],
    )
    got = sdk_reads(sdk_client, listing, "ListMigrationTaskResponse")
    assert got.count == 1 and got.migration_tasks[0].error_message.startswith("bad CRC64")

    stats = schemas.MigrationTaskStats(
        full_migration_progress="42", source_dbsize="10", target_dbsize="4", is_migrating=True
    )
    got = sdk_reads(sdk_client, stats, "ShowMigrationTaskStatsResponse")
    assert got.full_migration_progress == "42" and got.is_migrating is True

    logs = schemas.ListMigrationTaskLogsResponse(
        log_num=1,
        migration_logs=[
            schemas.MigrationLog(
                created_at="2023-05-15T09:11:25.449Z", log_level="Info", message="started"
            )
        ],
    )
    got = sdk_reads(sdk_client, logs, "ListMigrationTaskLogsResponse")
    assert got.migration_logs[0].message == "started"

    stop = schemas.BatchStopMigrationTasksResponse(
        migration_tasks=[
            schemas.StopMigrationTaskResult(
                task_id="t-9", result="failed", error_code=DCS_TASK_NOT_FOUND, error_msg="no task"
            )
        ]
    )
    got = sdk_reads(sdk_client, stop, "BatchStopMigrationTasksResponse")
    assert got.migration_tasks[0].error_code == "DCS.4133"

    instances = schemas.ListInstancesResponse(
        instance_num=1,
        instances=[
            schemas.InstanceListInfo(
                instance_id="i-1",
                name="r",
                engine_version="7.2",
                ip="127.0.0.1",
                port=6379,
                status="RUNNING",
            )
        ],
    )
    got = sdk_reads(sdk_client, instances, "ListInstancesResponse")
    assert got.instances[0].port == 6379 and got.instances[0].engine == "Redis"

    show = schemas.InstanceDetail(
        instance_id="i-1",
        name="r",
        status="RUNNING",
        cache_mode="cluster",
        backend_addrs="127.0.0.1:7000,127.0.0.1:7001",
    )
    got = sdk_reads(sdk_client, show, "ShowInstanceResponse")
    assert got.cache_mode == "cluster" and got.backend_addrs.endswith("7001")


# -- instance registration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "addresses"),
    [
        ({"name": "r", "addrs": "127.0.0.1:6379"}, [("127.0.0.1", 6379)]),
        ({"name": "r", "ip": "127.0.0.1", "port": 6380}, [("127.0.0.1", 6380)]),
        ({"name": "r", "ip": "::1", "port": "6380"}, [("::1", 6380)]),
        ({"name": "r", "addrs": "[::1]:6379", "password": "pw"}, [("::1", 6379)]),
        (
            {"name": "c", "addrs": "a:7000, b:7001", "instance_type": "cluster"},
            [("a", 7000), ("b", 7001)],
        ),
        (
            {"name": "c", "addrs": ["a:7000", "b:7001"], "instance_type": "cluster"},
            [("a", 7000), ("b", 7001)],
        ),
    ],
)
def test_registration_forms(body: dict[str, Any], addresses: list[tuple[str, int]]) -> None:
    parsed = parse_body(RegisterInstanceBody, encode(body))
    assert parsed.addresses() == addresses
    assert "pw" not in parsed.model_dump_json()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"addrs": "a:1"}, "name is required"),
        ({"name": "r"}, "addrs is required (or ip and port)"),
        ({"name": "r", "addrs": "a:1", "ip": "a", "port": 1}, "addrs must not be given with ip"),
        ({"name": "r", "ip": "127.0.0.1"}, "port is required with ip"),
        ({"name": "r", "addrs": "a"}, "addrs must be host:port addresses"),
        ({"name": "r", "addrs": "a:0"}, "addrs must be host:port addresses"),
        ({"name": "r", "addrs": "a:70000"}, "addrs must be host:port addresses"),
        ({"name": "r", "addrs": ":6379"}, "addrs must be host:port addresses"),
        ({"name": "r", "addrs": "a b:6379"}, "addrs must be host:port addresses"),
        ({"name": "r", "addrs": ""}, "addrs must not be empty"),
        ({"name": "r", "addrs": [1]}, "addrs[0] must be a string"),
        ({"name": "r", "addrs": "a:1,b:2"}, "addrs must hold one address for a single instance"),
        (
            {"name": "r", "addrs": "a:1", "instance_type": "sentinel"},
            "instance_type must be one of",
        ),
        ({"name": "r", "ip": "127.0.0.1", "port": 70000}, "port must be a port number"),
        ({"name": "r", "ip": "a b", "port": 1}, "ip must be a host name or IP address"),
        ({"name": "r", "addrs": "a:1", "password": 5}, "password must be a string"),
    ],
)
def test_registration_rules(body: dict[str, Any], expected: str) -> None:
    assert expected in refused(body, RegisterInstanceBody)


def test_batch_bodies_need_ids() -> None:
    assert "migration_tasks must not be empty" in refused(
        {"migration_tasks": []}, schemas.BatchStopMigrationTasksBody
    )
    assert "task_id_list[1] must be a string" in refused(
        {"task_id_list": ["a", 2]}, schemas.DeleteMigrationTasksBody
    )
    assert "backup_format must be one of 'rdb', 'aof'" in refused(
        {"backup_format": "zip"}, schemas.BackupInstanceBody
    )


# -- errors helpers --------------------------------------------------------------------------


def test_error_helpers() -> None:
    assert error_body("DCS.4133", "x") == {
        "error_code": "DCS.4133",
        "error_msg": "x",
        "error_ext_msg": None,
    }
    err = DcsError.of(DCS_TASK_NOT_FOUND, "The task does not exist")
    assert (err.status, err.to_body()["error_code"]) == (404, "DCS.4133")
    assert DcsError.of("DCS.4842", "job failed").status == 500
    assert DcsError.of("APIGW.0302", "no").status == 403
    assert (
        field_path(("backup_files", "files", 0, "file_name")) == "backup_files.files[0].file_name"
    )
    assert field_path(("db", "function-after[_db(), int]")) == "db"
    assert field_path(()) == ""


def test_validation_messages_are_per_error() -> None:
    with pytest.raises(ValidationError) as info:
        CreateMigrationTaskBody.model_validate({"task_name": 1})
    messages = validation_messages(info.value)
    assert "task_name must be a string" in messages
    assert "migration_type is required" in messages
    assert "target_instance is required" in messages
