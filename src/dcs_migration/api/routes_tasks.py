"""The migration-task API: create (the seed), list, show, stats, logs, stop, batch-stop, delete,
for backup imports and online migrations alike (an online migration is created and
configured through `routes_online.py`).

The rules live in the task service (`tasks/service.py`); a refusal it raises is answered
with its DCS code by the app.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from dcs_migration.api.deps import Signed, StoreDep, TasksDep, body_of, request_body_model
from dcs_migration.api.errors import invalid_parameter, task_outcomes
from dcs_migration.api.render import iso, json_model
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
    MigrationType,
    OnlineMigrationTaskStats,
    SourceInstanceInfo,
    TargetInstanceInfo,
    UpdateMigrationTaskBody,
    parse_addr,
    parse_body,
)
from dcs_migration.store import LogLevel, NewTaskFile, TaskRecord, TaskStatus
from dcs_migration.tasks.service import NewMigrationTask

router = APIRouter(prefix="/v2/{project_id}")
LOG_LEVELS = tuple(level.value for level in LogLevel)


@router.post("/migration-task", response_model=CreateMigrationTaskResponse)
@request_body_model(CreateMigrationTaskBody)
def create_migration_task(
    project_id: str, request: Request, auth: Signed, tasks: TasksDep
) -> dict[str, Any]:
    """Create a backup import task (`backupfile_import`): it starts at once, MIGRATING."""
    body = parse_body(CreateMigrationTaskBody, body_of(request))
    target = body.target_instance
    instance = tasks.target_instance(project_id, target.id or "")
    _same_addresses(target.addrs, target.ip, target.port, instance.addr_list)
    files = body.backup_files
    assert files is not None  # the schema requires it for backupfile_import
    new = NewMigrationTask(
        task_name=body.task_name,
        description=body.description or "",
        file_source=files.file_source or "self_build_obs",
        bucket_name=files.bucket_name or "",
        backup_id=files.backup_id,
        files=tuple(
            NewTaskFile(f.file_name, f.size, f.update_at, f.size_bytes) for f in files.files or []
        ),
        network_type=body.network_type,
        target_db=target.db,
        target_password=target.password.get_secret_value() if target.password else None,
        resume_mode=body.resume_mode,
        skip_unknown_commands=body.skip_unknown_commands,
    )
    task = tasks.create(project_id, instance, new)
    return {
        "id": task.task_id,
        "name": task.task_name,
        "status": TaskStatus.MIGRATING.value,
        "error": "",
    }


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
    auth: Signed,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    name: str | None = None,
    status: str | None = None,
    migration_type: MigrationType | None = None,
) -> dict[str, Any]:
    """Newest first. `status` (one or several, comma-separated) and `migration_type` are
    this service's extensions: a console's filters over every page, not just one."""
    statuses = _statuses(status)
    count, tasks = store.list_tasks(
        project_id, offset, limit, name, statuses=statuses, migration_type=migration_type
    )
    return {"count": count, "migration_tasks": [json_model(_list_item(t)) for t in tasks]}


def _statuses(spelt: str | None) -> list[TaskStatus]:
    if not spelt:
        return []
    found = []
    for part in spelt.split(","):
        try:
            found.append(TaskStatus(part.strip().upper()))
        except ValueError:
            known = ", ".join(s.value for s in TaskStatus)
            raise invalid_parameter(f"status: {part.strip()!r} is not one of {known}") from None
    return found


def _list_item(t: TaskRecord) -> MigrationTaskListItem:
    online = t.online
    return MigrationTaskListItem(
        task_id=t.task_id,
        task_name=t.task_name,
        status=t.status.value,
        migration_type=t.migration_type,
        migration_method=t.migration_method,
        data_source=t.bucket_name if online is None else online.source_addrs or None,
        source_instance_name=None if online is None else online.source_instance_name or None,
        source_instance_id=None if online is None else online.source_instance_id,
        target_instance_addrs=t.target_instance_addrs,
        target_instance_name=t.target_instance_name,
        target_instance_id=t.target_instance_id or None,
        created_at=iso(t.created_at),
        description=t.description,
        error_message=t.error_message or None,
        released_at=iso(t.released_at),
        resume_mode=t.resume_mode,
    )


def _first(addrs: str) -> tuple[str | None, str | None]:
    """The first address's host and port (brackets of an IPv6 literal removed)."""
    host, _, port = addrs.split(",")[0].rpartition(":")
    return host.strip("[]") or None, port or None


def _online_detail(t: TaskRecord) -> dict[str, Any]:
    online = t.online
    assert online is not None
    source_ip, source_port = _first(online.source_addrs)
    target_ip, target_port = _first(t.target_instance_addrs)
    limit = online.bandwidth_limit_mb
    return json_model(
        MigrationTaskDetail(
            task_id=t.task_id,
            task_name=t.task_name,
            description=t.description,
            status=t.status.value,
            migration_type=t.migration_type,
            migration_method=t.migration_method,
            source_instance=SourceInstanceInfo(
                id=online.source_instance_id,
                name=online.source_instance_name or None,
                ip=source_ip,
                port=source_port,
                addrs=online.source_addrs or None,
            ),
            target_instance=TargetInstanceInfo(
                id=t.target_instance_id or None,
                name=t.target_instance_name or None,
                ip=target_ip,
                port=target_port,
                addrs=t.target_instance_addrs or None,
            ),
            created_at=iso(t.created_at),
            updated_at=iso(t.updated_at),
            released_at=iso(t.released_at),
            resume_mode=t.resume_mode,
            tenant_vpc_id=online.vpc_id,
            tenant_subnet_id=online.subnet_id,
            tenant_security_group_id=online.security_group_id,
            bandwidth_limit_mb=None if limit is None else str(limit),
            error_message=t.error_message or None,
        )
    )


def _detail(t: TaskRecord) -> dict[str, Any]:
    if t.online is not None:
        return _online_detail(t)
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
    project_id: str, task_id: str, auth: Signed, tasks: TasksDep
) -> dict[str, Any]:
    return _detail(tasks.task(project_id, task_id))


@router.get("/migration-task/{task_id}/stats", response_model=MigrationTaskStats)
def show_migration_task_stats(
    project_id: str, task_id: str, auth: Signed, tasks: TasksDep
) -> dict[str, Any] | JSONResponse:
    """A task's progress. An online migration's answer has this service's extensions
    (`lag_ms`, `applied_offset`, `source_offset`, `resyncs_partial`, `resyncs_full`), and
    its `offset` is what of the source's stream the target has not applied (0: in sync)."""
    t = tasks.task(project_id, task_id)
    if t.online is not None:
        return JSONResponse(_online_stats(t))
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


def _online_stats(t: TaskRecord) -> dict[str, Any]:
    online = t.online
    assert online is not None
    progress = 100 if t.status is TaskStatus.SUCCESS else int(online.full_progress)
    return json_model(
        OnlineMigrationTaskStats(
            full_migration_progress=str(max(0, min(100, progress))),
            offset=str(online.offset_behind),
            source_dbsize=None if t.source_dbsize is None else str(t.source_dbsize),
            target_dbsize=None if t.target_dbsize is None else str(t.target_dbsize),
            target_input_kbps=f"{t.input_kbps:.2f}",
            target_ops=str(int(t.ops_per_second)),
            is_migrating=t.is_running,
            lag_ms=online.lag_ms,
            applied_offset=online.applied_offset,
            source_offset=online.source_offset,
            resyncs_partial=online.resyncs_partial,
            resyncs_full=online.resyncs_full,
        )
    )


@router.get("/migration-task/{task_id}/logs", response_model=ListMigrationTaskLogsResponse)
def list_migration_task_logs(
    project_id: str,
    task_id: str,
    auth: Signed,
    tasks: TasksDep,
    store: StoreDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    log_level: str | None = None,
) -> dict[str, Any]:
    t = tasks.task(project_id, task_id)
    wanted = log_level.upper() if log_level else None
    if wanted is not None and wanted not in LOG_LEVELS:
        raise invalid_parameter(f"log_level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    level = None if wanted is None else LogLevel(wanted)
    count, logs = store.list_logs(t.task_id, offset, limit, level, project_id=project_id)
    return {
        "log_num": count,
        "migration_logs": [
            json_model(
                MigrationLog(
                    created_at=iso(entry.created_at) or "",
                    log_level=entry.log_level.value,
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
    project_id: str, task_id: str, request: Request, auth: Signed, tasks: TasksDep
) -> dict[str, Any]:
    """Set the task's resume mode. "auto" also resumes a FAILED or TERMINATED task from
    its last checkpoint (what the target acknowledged), unless its files changed since."""
    body = parse_body(UpdateMigrationTaskBody, body_of(request))
    return _detail(tasks.set_resume_mode(project_id, task_id, body.resume_mode))


@router.post("/migration-task/{task_id}/stop", response_model=MigrationTaskDetail)
def stop_migration_task(
    project_id: str, task_id: str, auth: Signed, tasks: TasksDep
) -> dict[str, Any]:
    """Ask a task to stop: answers TERMINATING (TERMINATED if it had not started)."""
    return _detail(tasks.stop(project_id, task_id))


@router.post("/migration-task/batch-stop", response_model=BatchStopMigrationTasksResponse)
@request_body_model(BatchStopMigrationTasksBody)
def batch_stop_migration_tasks(
    project_id: str, request: Request, auth: Signed, tasks: TasksDep
) -> dict[str, Any]:
    """Every worker is told first, then the stops are recorded."""
    body = parse_body(BatchStopMigrationTasksBody, body_of(request))
    outcomes = tasks.stop_many(project_id, body.migration_tasks)
    return {"migration_tasks": task_outcomes(body.migration_tasks, outcomes)}


@router.delete("/migration-tasks/delete", response_model=DeleteMigrationTasksResponse)
@request_body_model(DeleteMigrationTasksBody)
def delete_migration_tasks(
    project_id: str, request: Request, auth: Signed, tasks: TasksDep
) -> dict[str, Any]:
    """Delete finished tasks; a running one must be stopped first (DCS.4017)."""
    body = parse_body(DeleteMigrationTasksBody, body_of(request))
    return {"task_id_list": tasks.delete(project_id, body.task_id_list)}
