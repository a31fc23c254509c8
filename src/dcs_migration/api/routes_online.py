"""The online-migration API: create, the job that made it, configure, sync-stop,
batch-restart, and the IP switch a self-hosted service cannot do. List, show, stats,
logs, stop, batch-stop and delete are the migration-task routes' (`routes_tasks.py`),
for both kinds of task.

The rules live in the online use-cases (`tasks/online_service.py`); a refusal they raise
is answered with its DCS code by the app.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from dcs_migration.api.deps import (
    OnlineDep,
    SettingsDep,
    Signed,
    body_of,
    request_body_model,
)
from dcs_migration.api.errors import (
    DCS_JOB_FAILED,
    DCS_STATE_NOT_ALLOWED,
    DcsError,
    task_outcomes,
)
from dcs_migration.api.render import iso, json_model
from dcs_migration.api.schemas import (
    BatchRestartOnlineMigrationTasksBody,
    BatchRestartOnlineMigrationTasksResponse,
    CreateOnlineMigrationTaskBody,
    CreateOnlineMigrationTaskResponse,
    JobInfo,
    SetOnlineMigrationTaskBody,
    SetOnlineMigrationTaskResponse,
    parse_body,
)
from dcs_migration.tasks.online_service import (
    JOB_TYPE,
    OnlineRequest,
    OnlineSide,
    SyncStopOutcome,
)

router = APIRouter(prefix="/v2/{project_id}")

SYNC_STOP_POLL_SECONDS = 0.2  # how often a sync-stop looks at its task
SYNC_STOP_GRACE_SECONDS = 10.0  # beyond the engine's own wait, for it to end the task


@router.post("/migration/instance", response_model=CreateOnlineMigrationTaskResponse)
@request_body_model(CreateOnlineMigrationTaskBody)
def create_online_migration_task(
    project_id: str, request: Request, auth: Signed, online: OnlineDep
) -> dict[str, Any]:
    """Create an online migration task: RUNNING until it is configured. Its id is the
    `instance_id` (the migration's "instance", as the managed service calls it) and the
    `job_id` of the job that made it."""
    body = parse_body(CreateOnlineMigrationTaskBody, body_of(request))
    task = online.create(
        project_id,
        name=body.name,
        description=body.description or "",
        vpc_id=body.vpc_id,
        subnet_id=body.subnet_id,
        security_group_id=body.security_group_id,
    )
    return {"instance_id": task.task_id, "job_id": task.task_id}


@router.get("/jobs/{job_id}", response_model=JobInfo)
def show_job_info(project_id: str, job_id: str, auth: Signed, online: OnlineDep) -> dict[str, Any]:
    """The job that created an online migration task: done as soon as it was asked."""
    task = online.job(project_id, job_id)
    return json_model(
        JobInfo(
            job_id=task.task_id,
            job_type=JOB_TYPE,
            status="SUCCESS",
            begin_time=iso(task.created_at),
            end_time=iso(task.created_at),
            fail_reason="",
        )
    )


@router.post("/migration/{task_id}/task", response_model=SetOnlineMigrationTaskResponse)
@request_body_model(SetOnlineMigrationTaskBody)
def set_online_migration_task(
    project_id: str, task_id: str, request: Request, auth: Signed, online: OnlineDep
) -> dict[str, Any]:
    """Configure a RUNNING online migration task: it starts, FULLMIGRATING."""
    body = parse_body(SetOnlineMigrationTaskBody, body_of(request))
    source, target = body.source_instance, body.target_instance
    task = online.configure(
        project_id,
        task_id,
        OnlineRequest(
            migration_method=body.migration_method,
            resume_mode=body.resume_mode,
            bandwidth_limit_mb=body.bandwidth_limit_mb,
            source=OnlineSide(
                source.id,
                source.addresses(),
                source.password.get_secret_value() if source.password else None,
            ),
            target=OnlineSide(
                target.id,
                target.addresses(),
                target.password.get_secret_value() if target.password else None,
            ),
        ),
    )
    return {"id": task.task_id, "name": task.task_name, "status": task.status.value}


@router.post("/migration-task/{task_id}/sync-stop", status_code=204)
async def stop_migration_task_sync(
    project_id: str, task_id: str, auth: Signed, online: OnlineDep, settings: SettingsDep
) -> Response:
    """Stop an INCRMIGEATING task once its target caught up with the source (the
    cut-over): answered 204 once it is TERMINATED. The engine waits up to
    `DCS_MIGRATION_SYNC_STOP_SECONDS` for the target; this call a little longer, looking
    at the task's row (no database session is held between looks)."""
    await run_in_threadpool(online.request_sync_stop, project_id, task_id)
    limit = settings.sync_stop_seconds + SYNC_STOP_GRACE_SECONDS
    deadline = time.monotonic() + limit
    while True:
        outcome, message = await run_in_threadpool(online.sync_stop_outcome, project_id, task_id)
        if outcome is SyncStopOutcome.STOPPED:
            return Response(status_code=204)
        if outcome is SyncStopOutcome.FAILED:
            raise DcsError(500, DCS_JOB_FAILED, f"the task failed while stopping: {message}")
        if outcome in (SyncStopOutcome.REFUSED, SyncStopOutcome.GONE):
            raise DcsError(400, DCS_STATE_NOT_ALLOWED, message)
        if time.monotonic() >= deadline:
            message = await run_in_threadpool(online.give_up_sync_stop, task_id, limit)
            raise DcsError(400, DCS_STATE_NOT_ALLOWED, message)
        await asyncio.sleep(SYNC_STOP_POLL_SECONDS)


@router.post(
    "/migration-tasks/batch-restart", response_model=BatchRestartOnlineMigrationTasksResponse
)
@request_body_model(BatchRestartOnlineMigrationTasksBody)
def batch_restart_online_migration_tasks(
    project_id: str, request: Request, auth: Signed, online: OnlineDep
) -> dict[str, Any]:
    """Restart TERMINATED or MIGRATION_FAILED online migrations; each id succeeds or fails
    on its own."""
    body = parse_body(BatchRestartOnlineMigrationTasksBody, body_of(request))
    outcomes = online.restart_many(project_id, body.migration_tasks)
    return {"migration_tasks": task_outcomes(body.migration_tasks, outcomes)}


@router.post("/migration-task/{task_id}/exchange-ip", status_code=204)
def exchange_instance_ip(
    project_id: str, task_id: str, auth: Signed, online: OnlineDep
) -> Response:
    """Refused: a self-hosted service has no IP address to switch."""
    online.refuse_ip_switch(project_id, task_id)
    return Response(status_code=204)  # never reached: refused above


@router.post("/migration-task/{task_id}/rollback-ip", status_code=204)
def rollback_exchange_instance_ip(
    project_id: str, task_id: str, auth: Signed, online: OnlineDep
) -> Response:
    """Refused: a self-hosted service has no IP address to switch back."""
    online.refuse_ip_switch(project_id, task_id)
    return Response(status_code=204)  # never reached: refused above
