"""The migration-task API: create (the seed), list, show, stats, logs, stop, batch-stop, delete."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from dcs_migration.api.app import Signed, body_of, iso, json_model, request_body_model, service_of
from dcs_migration.api.errors import (
    DCS_BACKUP_NOT_SUCCEEDED,
    DCS_INSTANCE_NOT_FOUND,
    DCS_INVALID_TASK_ID_FORMAT,
    DCS_STATE_NOT_ALLOWED,
    DCS_TASK_NOT_FOUND,
    DCS_TASK_RUNNING,
    DcsError,
    invalid_parameter,
)
from dcs_migration.api.schemas import (
    MAX_OFFSET,
    BackupFilesInfo,
    BatchStopMigrationTasksBody,
    BatchStopMigrationTasksResponse,
    CreateMigrationTaskBody,
    CreateMigrationTaskResponse,
    DeleteMigrationTasksBody,
    DeleteMigrationTasksResponse,
    FilesInfo,
    ListMigrationTaskLogsResponse,
    ListMigrationTasksResponse,
    MigrationLog,
    MigrationTaskDetail,
    MigrationTaskListItem,
    MigrationTaskStats,
    StopMigrationTaskResult,
    TargetInstanceInfo,
    UpdateMigrationTaskBody,
    parse_addr,
    parse_body,
)
from dcs_migration.sources.bucket import BadObjectKey, BucketNotFound
from dcs_migration.sources.fingerprint import describe_change, fingerprint
from dcs_migration.sources.s3 import S3SourceError
from dcs_migration.store import BackupStatus, LogLevel, NewTaskFile
from dcs_migration.store.records import TaskRecord

router = APIRouter(prefix="/v2/{project_id}")
LOG_LEVELS = tuple(level.value for level in LogLevel)

_TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _task_id(task_id: str) -> str:
    if not _TASK_ID.fullmatch(task_id):
        raise DcsError(400, DCS_INVALID_TASK_ID_FORMAT, f"task_id {task_id!r} is not a task id")
    return task_id


def _task(request: Request, project_id: str, task_id: str) -> TaskRecord:
    task = service_of(request).store.get_task(project_id, _task_id(task_id))
    if task is None:
        raise DcsError(404, DCS_TASK_NOT_FOUND, f"migration task {task_id} does not exist")
    return task


@router.post("/migration-task", response_model=CreateMigrationTaskResponse)
@request_body_model(CreateMigrationTaskBody)
def create_migration_task(project_id: str, request: Request, auth: Signed) -> dict[str, Any]:
    """Create a backup import task (`backupfile_import`): it starts at once, MIGRATING."""
    body = parse_body(CreateMigrationTaskBody, body_of(request))
    service = service_of(request)
    store = service.store
    target = body.target_instance
    instance = store.get_instance(project_id, target.id or "")
    if instance is None:
        raise DcsError(
            404, DCS_INSTANCE_NOT_FOUND, f"target_instance.id: instance {target.id} does not exist"
        )
    _same_addresses(target.addrs, target.ip, target.port, instance.addr_list)
    files = body.backup_files
    assert files is not None  # the schema requires it for backupfile_import
    if files.file_source == "backup_record":
        backup = store.get_backup(project_id, files.backup_id or "")
        if backup is None or backup.status is not BackupStatus.SUCCEED:
            raise DcsError(
                400,
                DCS_BACKUP_NOT_SUCCEEDED,
                f"backup_files.backup_id: backup {files.backup_id} is not a "
                "succeed backup of this project",
            )
        bucket = ""
        task_files = [NewTaskFile(f.file_name, str(f.size), None, f.size) for f in backup.files]
        origin = f"backup {backup.backup_id}"
    else:
        bucket = files.bucket_name or ""
        settings = service.settings
        if settings.object_store is not None and bucket == settings.backup_bucket:
            raise invalid_parameter(
                f"backup_files.bucket_name: bucket {bucket} holds the backups this service "
                "makes; import one with file_source backup_record"
            )
        _check_bucket(service, project_id, bucket, [f.file_name for f in files.files or []])
        task_files = [
            NewTaskFile(f.file_name, f.size, f.update_at, f.size_bytes) for f in files.files or []
        ]
        origin = f"bucket {bucket}"
    limit = service.settings.max_tasks_per_project
    if store.count_running(project_id) >= limit:
        raise DcsError(
            400,
            DCS_STATE_NOT_ALLOWED,
            f"project {project_id} already has {limit} tasks running or waiting, "
            "its limit: stop some, or wait for them to finish",
        )
    task = store.create_task(
        project_id,
        task_name=body.task_name,
        description=body.description or "",
        target_instance_id=instance.instance_id,
        files=task_files,
        bucket_name=bucket or None,
        backup_id=files.backup_id if files.file_source == "backup_record" else None,
        file_source=files.file_source or "self_build_obs",
        network_type=body.network_type,
        target_db=target.db,
        target_password=target.password.get_secret_value() if target.password else None,
        resume_mode=body.resume_mode,
        skip_unknown_commands=body.skip_unknown_commands,
    )
    store.add_log(task.task_id, "INFO", f"task created: {len(task.files)} file(s) from {origin}")
    service.runner.submit(project_id, task.task_id)
    return {"id": task.task_id, "name": task.task_name, "status": "MIGRATING", "error": ""}


def _check_bucket(service: Any, project_id: str, bucket: str, keys: list[str]) -> None:
    """The project may read `bucket` (a bucket it was not granted answers exactly as a
    missing one) and every key names an object inside it."""
    try:
        opened = service.buckets.open(project_id, bucket)
    except BucketNotFound as exc:
        raise invalid_parameter(f"backup_files.bucket_name: {exc}") from None
    except S3SourceError:  # the store cannot say now: the task's run will, or will read
        return
    for n, key in enumerate(keys):
        try:
            opened.source(key)
        except BadObjectKey as exc:
            raise invalid_parameter(f"backup_files.files[{n}].file_name: {exc.message}") from None


def _same_addresses(
    addrs: str | None, ip: str | None, port: str | None, registered: list[str]
) -> None:
    """The target is the registered instance: an address in the body must agree with it."""
    known = {parse_addr(a) for a in registered}
    if addrs:
        for addr in addrs.split(","):
            if addr.strip() and parse_addr(addr.strip()) not in known:
                raise invalid_parameter(
                    "target_instance.addrs: does not match the registered instance"
                )
    if ip is not None or port is not None:
        hosts = {h for h, _ in known}
        ports = {str(p) for _, p in known}
        if (ip is not None and ip not in hosts) or (port is not None and port not in ports):
            raise invalid_parameter(
                "target_instance.ip/port: does not match the registered instance"
            )


@router.get("/migration-tasks", response_model=ListMigrationTasksResponse)
def list_migration_tasks(
    project_id: str,
    request: Request,
    auth: Signed,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    name: str | None = None,
) -> dict[str, Any]:
    count, tasks = service_of(request).store.list_tasks(project_id, offset, limit, name)
    return {"count": count, "migration_tasks": [json_model(_list_item(t)) for t in tasks]}


def _list_item(t: TaskRecord) -> MigrationTaskListItem:
    return MigrationTaskListItem(
        task_id=t.task_id,
        task_name=t.task_name,
        status=t.status.value,
        migration_type=t.migration_type,
        migration_method=t.migration_method,
        data_source=t.bucket_name,
        target_instance_addrs=t.target_instance_addrs,
        target_instance_name=t.target_instance_name,
        target_instance_id=t.target_instance_id,
        created_at=iso(t.created_at),
        description=t.description,
        error_message=t.error_message or None,
        released_at=iso(t.released_at),
        resume_mode=t.resume_mode,
    )


def _detail(t: TaskRecord) -> dict[str, Any]:
    host, _, port = t.target_instance_addrs.split(",")[0].rpartition(":")
    return json_model(
        MigrationTaskDetail(
            task_id=t.task_id,
            task_name=t.task_name,
            description=t.description,
            status=t.status.value,
            migration_type=t.migration_type,
            migration_method=t.migration_method,
            backup_files=BackupFilesInfo(
                file_source=t.file_source,
                bucket_name=t.bucket_name,
                files=[
                    FilesInfo(file_name=f.file_name, size=f.size_text, update_at=f.update_at)
                    for f in t.files
                ],
                backup_id=t.backup_id,
            ),
            network_type=t.network_type,
            target_instance=TargetInstanceInfo(
                id=t.target_instance_id,
                name=t.target_instance_name,
                ip=host or None,
                port=port or None,
                addrs=t.target_instance_addrs,
                db=None if t.target_db is None else str(t.target_db),
            ),
            created_at=iso(t.created_at),
            updated_at=iso(t.updated_at),
            released_at=iso(t.released_at),
            resume_mode=t.resume_mode,
            error_message=t.error_message or None,
        )
    )


@router.get("/migration-task/{task_id}", response_model=MigrationTaskDetail)
def show_migration_task(
    project_id: str, task_id: str, request: Request, auth: Signed
) -> dict[str, Any]:
    return _detail(_task(request, project_id, task_id))


@router.get("/migration-task/{task_id}/stats", response_model=MigrationTaskStats)
def show_migration_task_stats(
    project_id: str, task_id: str, request: Request, auth: Signed
) -> dict[str, Any]:
    t = _task(request, project_id, task_id)
    return json_model(
        MigrationTaskStats(
            full_migration_progress=str(t.percent),
            offset=str(t.bytes_read),
            source_dbsize=None if t.source_dbsize is None else str(t.source_dbsize),
            target_dbsize=str(t.keys_written if t.target_dbsize is None else t.target_dbsize),
            target_input_kbps=f"{t.input_kbps:.2f}",
            target_ops=str(int(t.ops_per_second)),
            is_migrating=t.is_running,
            commands_refused=t.commands_refused,
            commands_skipped_unknown=t.commands_skipped_unknown,
        )
    )


@router.get("/migration-task/{task_id}/logs", response_model=ListMigrationTaskLogsResponse)
def list_migration_task_logs(
    project_id: str,
    task_id: str,
    request: Request,
    auth: Signed,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    log_level: str | None = None,
) -> dict[str, Any]:
    t = _task(request, project_id, task_id)
    level = log_level.upper() if log_level else None
    if level is not None and level not in LOG_LEVELS:
        raise invalid_parameter(f"log_level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    count, logs = service_of(request).store.list_logs(
        t.task_id, offset, limit, level, project_id=project_id
    )
    return {
        "log_num": count,
        "migration_logs": [
            json_model(
                MigrationLog(
                    created_at=iso(entry.created_at) or "",
                    log_level=str(
                        entry.log_level.value
                        if hasattr(entry.log_level, "value")
                        else entry.log_level
                    ),
                    message=entry.message,
                    log_code=entry.log_code or None,
                    keyword=[entry.keyword] if entry.keyword else None,
                )
            )
            for entry in logs
        ],
    }


@router.put("/migration-task/{task_id}", response_model=MigrationTaskDetail)
@request_body_model(UpdateMigrationTaskBody)
def update_migration_task(
    project_id: str, task_id: str, request: Request, auth: Signed
) -> dict[str, Any]:
    """Set the task's resume mode. "auto" also resumes a FAILED or TERMINATED task from
    its last checkpoint (what the target acknowledged), unless its files changed since."""
    body = parse_body(UpdateMigrationTaskBody, body_of(request))
    service = service_of(request)
    store = service.store
    task = _task(request, project_id, task_id)
    store.set_resume_mode(project_id, task.task_id, body.resume_mode)
    if body.resume_mode == "auto" and task.status.value in ("FAILED", "TERMINATED"):
        _check_unchanged(service, task)
        if store.requeue(project_id, task.task_id):
            where = "its last checkpoint" if task.checkpoint else "the beginning"
            store.add_log(task.task_id, "INFO", f"resume asked: the task goes on from {where}")
            service.runner.submit(project_id, task.task_id)
    return _detail(_task(request, project_id, task_id))


def _check_unchanged(service: Any, task: TaskRecord) -> None:
    """A resume skips what was written, so the files must be the ones that were read."""
    if task.inputs_fingerprint is None or task.checkpoint is None:
        return
    try:
        sources = service.runner.sources_of(task)
    except (BucketNotFound, BadObjectKey, S3SourceError):
        return  # the run fails, saying why, as it would without a checkpoint
    if sources is None:
        raise DcsError(
            400, DCS_BACKUP_NOT_SUCCEEDED, f"backup {task.backup_id} is no longer a succeed backup"
        )
    try:
        change = describe_change(task.inputs_fingerprint, fingerprint(sources, service.settings))
    except BadObjectKey:
        return  # an object now leaves its bucket: the run fails, saying so
    except Exception as exc:  # an unreachable store: the run would fail the same way
        raise DcsError(
            400, DCS_STATE_NOT_ALLOWED, f"the task's files cannot be checked: {exc}"
        ) from None
    if change is not None:
        raise DcsError(
            400,
            DCS_STATE_NOT_ALLOWED,
            f"migration task {task.task_id} cannot resume: {change} since it ran",
        )


def _signal_stop(request: Request, project_id: str, task_id: str) -> None:
    """Tell the task's worker to stop, before anything is written: a busy database must
    not hold up the stop itself."""
    before = _task(request, project_id, task_id)
    if not before.is_running:
        raise DcsError(
            400,
            DCS_STATE_NOT_ALLOWED,
            f"migration task {task_id} is {before.status.value}: "
            "only a running task can be stopped",
        )
    service_of(request).runner.stop(task_id)


def _record_stop(request: Request, project_id: str, task_id: str) -> TaskRecord:
    after = service_of(request).store.request_stop(project_id, task_id)
    assert after is not None
    return after


@router.post("/migration-task/{task_id}/stop", response_model=MigrationTaskDetail)
def stop_migration_task(
    project_id: str, task_id: str, request: Request, auth: Signed
) -> dict[str, Any]:
    """Ask a task to stop: answers TERMINATING (TERMINATED if it had not started)."""
    _signal_stop(request, project_id, task_id)
    return _detail(_record_stop(request, project_id, task_id))


@router.post("/migration-task/batch-stop", response_model=BatchStopMigrationTasksResponse)
@request_body_model(BatchStopMigrationTasksBody)
def batch_stop_migration_tasks(project_id: str, request: Request, auth: Signed) -> dict[str, Any]:
    """Every worker is told first, then the stops are recorded."""
    body = parse_body(BatchStopMigrationTasksBody, body_of(request))
    refused: dict[str, DcsError] = {}
    for task_id in body.migration_tasks:
        try:
            _signal_stop(request, project_id, task_id)
        except DcsError as error:
            refused[task_id] = error
    results = []
    for task_id in body.migration_tasks:
        why = refused.get(task_id)
        if why is None:
            _record_stop(request, project_id, task_id)
            results.append(StopMigrationTaskResult(task_id=task_id, result="success"))
        else:
            results.append(
                StopMigrationTaskResult(
                    task_id=task_id,
                    result="failed",
                    error_code=why.error_code,
                    error_msg=why.error_msg,
                )
            )
    return {"migration_tasks": [json_model(r) for r in results]}


@router.delete("/migration-tasks/delete", response_model=DeleteMigrationTasksResponse)
@request_body_model(DeleteMigrationTasksBody)
def delete_migration_tasks(project_id: str, request: Request, auth: Signed) -> dict[str, Any]:
    """Delete finished tasks; a running one must be stopped first (DCS.4017)."""
    body = parse_body(DeleteMigrationTasksBody, body_of(request))
    store = service_of(request).store
    for task_id in body.task_id_list:
        task = _task(request, project_id, task_id)
        if task.is_running:
            raise DcsError(
                400, DCS_TASK_RUNNING, f"migration task {task_id} is running: stop it first"
            )
    result = store.delete_tasks(project_id, body.task_id_list)
    return {"task_id_list": list(result.deleted)}
