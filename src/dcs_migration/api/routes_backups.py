"""Backups the service makes of an instance, their download links, and restores from them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from dcs_migration.api import links
from dcs_migration.api.deps import (
    BackupsDep,
    ExecutorDep,
    Signed,
    StoreDep,
    body_of,
    public_base,
    request_body_model,
)
from dcs_migration.api.errors import (
    APIGW_NOT_AUTHORIZED,
    DCS_BACKUP_NOT_SUCCEEDED,
    DCS_INSTANCE_BACKING_UP,
    DCS_INSTANCE_NOT_FOUND,
    DCS_INSTANCE_RESTORING,
    DcsError,
    invalid_parameter,
)
from dcs_migration.api.render import iso, json_model
from dcs_migration.api.schemas import (
    MAX_OFFSET,
    BackupInstanceBody,
    BackupInstanceResponse,
    BackupRecord,
    DownloadBackupFilesBody,
    LinksItem,
    ListBackupFileLinksResponse,
    ListBackupRecordsResponse,
    ListRestoreRecordsResponse,
    RestoreInstanceBody,
    RestoreInstanceResponse,
    RestoreRecord,
    parse_body,
)
from dcs_migration.store import BackupRecord as StoredBackup
from dcs_migration.store import BackupStatus, BackupUnusable, InstanceBusy, Store
from dcs_migration.store import RestoreRecord as StoredRestore
from dcs_migration.store.records import InstanceRecord
from dcs_migration.tasks.backups import BackupFileGone
from dcs_migration.tasks.executor import Work

router = APIRouter(prefix="/v2/{project_id}")
TIME_FORMAT = "%Y%m%d%H%M%S"  # the DCS query form, e.g. 20170718235959 (UTC)
STREAM_CHUNK = 1 << 20


def _instance(store: Store, project_id: str, instance_id: str) -> InstanceRecord:
    found = store.get_instance(project_id, instance_id)
    if found is None:
        raise DcsError(404, DCS_INSTANCE_NOT_FOUND, f"instance {instance_id} does not exist")
    return found


def _busy(exc: InstanceBusy) -> DcsError:
    code = DCS_INSTANCE_BACKING_UP if exc.activity == "backing up" else DCS_INSTANCE_RESTORING
    return DcsError(400, code, str(exc))


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise invalid_parameter(
            f"{name}: {value!r} is not a time of the form yyyyMMddHHmmss"
        ) from None


class Window(NamedTuple):
    """The query of a list of backup or restore records: when, and which page."""

    begin: datetime | None
    end: datetime | None
    offset: int
    limit: int


_TIME_QUERY = Query(
    description="UTC, yyyyMMddHHmmss (e.g. 20170718235959)",
    json_schema_extra={"pattern": "^([0-9]{14})?$"},
)


def record_window(
    begin_time: Annotated[str | None, _TIME_QUERY] = None,
    end_time: Annotated[str | None, _TIME_QUERY] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> Window:
    return Window(_time(begin_time, "begin_time"), _time(end_time, "end_time"), offset, limit)


def _backup(store: Store, project_id: str, instance_id: str, backup_id: str) -> StoredBackup:
    found = store.get_backup(project_id, backup_id)
    if found is None or found.instance_id != instance_id:
        raise DcsError(
            404,
            DCS_BACKUP_NOT_SUCCEEDED,
            f"backup {backup_id} of instance {instance_id} does not exist",
        )
    return found


# -- backups --------------------------------------------------------------------------


@router.post("/instances/{instance_id}/backups", response_model=BackupInstanceResponse)
@request_body_model(BackupInstanceBody)
def backup_instance(
    project_id: str,
    instance_id: str,
    request: Request,
    auth: Signed,
    store: StoreDep,
    executor: ExecutorDep,
) -> dict[str, Any]:
    """Back up the instance (the SDK's copy_instance): answered at once, taken by the
    executor's workers; one file per master."""
    body = parse_body(BackupInstanceBody, body_of(request))
    _instance(store, project_id, instance_id)
    try:
        backup = store.begin_backup(project_id, instance_id, body.backup_format, body.remark or "")
    except InstanceBusy as exc:
        raise _busy(exc) from None
    executor.submit(Work.backup(project_id, backup.backup_id))
    return {"backup_id": backup.backup_id}


@router.get("/instances/{instance_id}/backups", response_model=ListBackupRecordsResponse)
def list_backup_records(
    project_id: str,
    instance_id: str,
    auth: Signed,
    store: StoreDep,
    window: Annotated[Window, Depends(record_window)],
) -> dict[str, Any]:
    _instance(store, project_id, instance_id)
    count, found = store.list_backups(project_id, instance_id, *window)
    return {"total_num": count, "backup_record_response": [_backup_view(b) for b in found]}


def _backup_view(b: StoredBackup) -> dict[str, Any]:
    return json_model(
        BackupRecord(
            backup_id=b.backup_id,
            instance_id=b.instance_id,
            backup_name=b.backup_name,
            backup_type=b.backup_type,
            backup_format=b.backup_format,
            size=b.size,
            status=b.status.value,
            progress=f"{b.progress:.2f}",
            error_code=b.error_code or None,
            remark=b.remark,
            created_at=iso(b.created_at),
            updated_at=iso(b.updated_at),
            execution_at=iso(b.execution_at),
            is_support_restore="TRUE" if b.status is BackupStatus.SUCCEED else "FALSE",
        )
    )


@router.delete("/instances/{instance_id}/backups/{backup_id}", status_code=204)
def delete_backup_file(
    project_id: str,
    instance_id: str,
    backup_id: str,
    auth: Signed,
    store: StoreDep,
    backups: BackupsDep,
) -> Response:
    """Delete a backup's files; its record stays, `deleted`."""
    _instance(store, project_id, instance_id)
    try:
        before = store.delete_backup(project_id, instance_id, backup_id)
    except BackupUnusable as exc:
        raise DcsError(404, DCS_BACKUP_NOT_SUCCEEDED, str(exc)) from None
    except InstanceBusy:
        raise DcsError(
            400, DCS_INSTANCE_BACKING_UP, f"backup {backup_id} is still being taken"
        ) from None
    backups.delete_files(before)
    return Response(status_code=204)


@router.post(
    "/instances/{instance_id}/backups/{backup_id}/links",
    response_model=ListBackupFileLinksResponse,
)
@request_body_model(DownloadBackupFilesBody)
def list_backup_file_links(
    project_id: str,
    instance_id: str,
    backup_id: str,
    request: Request,
    auth: Signed,
    store: StoreDep,
    backups: BackupsDep,
) -> dict[str, Any]:
    """Links to download a backup's files, valid for `expiration` seconds: presigned URLs
    of the object store, or signed URLs of this service for the embedded store."""
    body = parse_body(DownloadBackupFilesBody, body_of(request))
    _instance(store, project_id, instance_id)
    backup = _backup(store, project_id, instance_id, backup_id)
    if backup.status is not BackupStatus.SUCCEED:
        raise DcsError(
            400, DCS_BACKUP_NOT_SUCCEEDED, f"backup {backup_id} is {backup.status.value}"
        )
    expires = int(time.time()) + body.expiration
    key = store.signing_key(links.LINK_PURPOSE)
    base = public_base(request)
    items = []
    for f in backup.files:
        url = backups.download_url(f.object_key, body.expiration)
        if url is None:
            path = links.download_path(project_id, backup_id, f.file_name)
            url = f"{base}{path}?{links.signed_query(key, path, expires)}"
        items.append(LinksItem(file_name=f.file_name, link=url))
    prefix = backup.files[0].object_key.rpartition("/")[0] + "/" if backup.files else ""
    return json_model(
        ListBackupFileLinksResponse(file_path=prefix, bucket_name=backups.bucket, links=items)
    )


@router.get("/backup-files/{backup_id}/{file_name}", include_in_schema=False)
def download_backup_file(
    project_id: str,
    backup_id: str,
    file_name: str,
    store: StoreDep,
    backups: BackupsDep,
    expires: str = "",
    signature: str = "",
) -> StreamingResponse:
    """A backup file, streamed, for whoever holds an unexpired link (no AK/SK: the link's
    signature is the credential)."""
    path = links.download_path(project_id, backup_id, file_name)
    try:
        links.verify(store.signing_key(links.LINK_PURPOSE), path, expires, signature, time.time())
    except links.LinkRefused as exc:
        raise DcsError(403, APIGW_NOT_AUTHORIZED, str(exc)) from None
    backup = store.get_backup(project_id, backup_id)
    wanted = (
        None
        if backup is None
        else next((f for f in backup.files if f.file_name == file_name), None)
    )
    if backup is None or backup.status is not BackupStatus.SUCCEED or wanted is None:
        raise DcsError(404, DCS_BACKUP_NOT_SUCCEEDED, f"backup file {file_name} does not exist")
    try:
        stream = backups.open_file(wanted.object_key)
    except BackupFileGone as exc:
        raise DcsError(404, DCS_BACKUP_NOT_SUCCEEDED, str(exc)) from None

    def chunks() -> Iterator[bytes]:
        try:
            while data := stream.read(STREAM_CHUNK):
                yield data
        finally:
            stream.close()

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(wanted.size),
            "Content-Disposition": f'attachment; filename="{file_name}"',
        },
    )


# -- restores -------------------------------------------------------------------------


@router.post("/instances/{instance_id}/restores", response_model=RestoreInstanceResponse)
@request_body_model(RestoreInstanceBody)
def restore_instance(
    project_id: str,
    instance_id: str,
    request: Request,
    auth: Signed,
    store: StoreDep,
    executor: ExecutorDep,
) -> dict[str, Any]:
    """Restore the instance from one of its backups: it is flushed, then loaded whole."""
    body = parse_body(RestoreInstanceBody, body_of(request))
    _instance(store, project_id, instance_id)
    try:
        restore = store.begin_restore(project_id, instance_id, body.backup_id, body.remark or "")
    except InstanceBusy as exc:
        raise _busy(exc) from None
    except BackupUnusable as exc:
        raise DcsError(400, DCS_BACKUP_NOT_SUCCEEDED, f"backup_id: {exc}") from None
    executor.submit(Work.restore(project_id, restore.restore_id))
    return {"restore_id": restore.restore_id}


@router.get("/instances/{instance_id}/restores", response_model=ListRestoreRecordsResponse)
def list_restore_records(
    project_id: str,
    instance_id: str,
    auth: Signed,
    store: StoreDep,
    window: Annotated[Window, Depends(record_window)],
) -> dict[str, Any]:
    _instance(store, project_id, instance_id)
    count, found = store.list_restores(project_id, instance_id, *window)
    return {
        "total_num": count,
        "restore_record_response": [_restore_view(store, project_id, r) for r in found],
    }


def _restore_view(store: Store, project_id: str, r: StoredRestore) -> dict[str, Any]:
    backup = store.get_backup(project_id, r.backup_id)
    return json_model(
        RestoreRecord(
            restore_id=r.restore_id,
            backup_id=r.backup_id,
            backup_name=None if backup is None else backup.backup_name,
            backup_remark=None if backup is None else backup.remark,
            restore_name=r.restore_name,
            status=r.status.value,
            progress=f"{r.progress:.2f}",
            error_code=r.error_code or None,
            restore_remark=r.remark,
            created_at=iso(r.created_at),
            updated_at=iso(r.updated_at),
        )
    )
