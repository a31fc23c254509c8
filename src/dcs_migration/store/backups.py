"""Backup and restore records: what the service backed up, where the files are, what it restored.

A repository of `Store`. The one rule that needs the
database is enforced here, in the transaction that creates a record: an instance runs at
most one backup or restore at a time (the instance row is locked while that is checked).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from dcs_migration.store.base import Repository
from dcs_migration.store.models import Backup, BackupFile, Instance, Restore, utcnow
from dcs_migration.store.records import (
    BACKUP_RUNNING,
    RESTORE_RUNNING,
    BackupFileRecord,
    BackupRecord,
    BackupStatus,
    RestoreRecord,
    RestoreStatus,
)

RowT = TypeVar("RowT", Backup, Restore)

INTERRUPTED = "interrupted: the service stopped before it finished"


class InstanceBusy(Exception):
    """The instance is already backing up (`activity` "backing up") or restoring."""

    def __init__(self, instance_id: str, activity: str) -> None:
        super().__init__(f"instance {instance_id} is {activity}")
        self.activity = activity


class BackupUnusable(Exception):
    """The backup is not there, not this instance's, or not `succeed`."""


class BackupRecords(Repository):
    """Backups of an instance and restores from them: their records and their files."""

    # -- backups ----------------------------------------------------------------------------

    def begin_backup(
        self, project_id: str, instance_id: str, backup_format: str, remark: str = ""
    ) -> BackupRecord:
        """A new backup, `waiting`; LookupError for an unknown instance, InstanceBusy when
        the instance is backing up or restoring."""
        now = utcnow()
        with self._write() as s:
            _lock_idle_instance(s, project_id, instance_id)
            row = Backup(
                backup_id=str(uuid.uuid4()),
                project_id=project_id,
                instance_id=instance_id,
                backup_name=f"backup_{now:%Y%m%d%H%M%S}",
                backup_type="manual",
                backup_format=backup_format,
                status=BackupStatus.WAITING.value,
                progress=0.0,
                size=0,
                error_code="",
                error_message="",
                remark=remark,
                created_at=now,
                updated_at=now,
                execution_at=None,
                finished_at=None,
            )
            s.add(row)
            s.flush()
            return _backup_record(row, [])

    def backup_started(self, backup_id: str, *, again: bool = False) -> bool:
        """The backup is being taken; False unless it waited (or, taken `again` after
        its first run was cut off, it was being taken)."""
        now = utcnow()
        states = [BackupStatus.WAITING.value]
        if again:
            states.append(BackupStatus.BACKUPING.value)
        with self._write() as s:
            result = s.execute(
                update(Backup)
                .where(Backup.backup_id == backup_id, Backup.status.in_(states))
                .values(status=BackupStatus.BACKUPING.value, execution_at=now, updated_at=now)
            )
            return bool(getattr(result, "rowcount", 0))

    def backup_progress(self, backup_id: str, progress: float) -> None:
        with self._write() as s:
            s.execute(
                update(Backup)
                .where(Backup.backup_id == backup_id)
                .values(progress=max(0.0, min(progress, 100.0)), updated_at=utcnow())
            )

    def add_backup_file(
        self, backup_id: str, file_name: str, object_key: str, size: int, source_addr: str
    ) -> None:
        with self._write() as s:
            position = s.scalar(
                select(func.count())
                .select_from(BackupFile)
                .where(BackupFile.backup_id == backup_id)
            )
            s.add(
                BackupFile(
                    backup_id=backup_id,
                    position=position or 0,
                    file_name=file_name,
                    object_key=object_key,
                    size=size,
                    source_addr=source_addr,
                )
            )

    def finish_backup(
        self, backup_id: str, status: BackupStatus, error_code: str = "", error_message: str = ""
    ) -> None:
        """End a backup: `succeed` (size is its files', progress 100) or `failed` (its files
        are forgotten here; the caller removes them from the backup store)."""
        now = utcnow()
        with self._write() as s:
            values: dict[str, Any] = {
                "status": status.value,
                "error_code": error_code,
                "error_message": error_message,
                "finished_at": now,
                "updated_at": now,
            }
            if status is BackupStatus.SUCCEED:
                size = s.scalar(
                    select(func.coalesce(func.sum(BackupFile.size), 0)).where(
                        BackupFile.backup_id == backup_id
                    )
                )
                values.update(size=int(size or 0), progress=100.0)
            else:
                s.execute(delete(BackupFile).where(BackupFile.backup_id == backup_id))
            s.execute(update(Backup).where(Backup.backup_id == backup_id).values(**values))

    def get_backup(self, project_id: str, backup_id: str) -> BackupRecord | None:
        with self._read() as s:
            row = s.get(Backup, backup_id)
            if row is None or row.project_id != project_id:
                return None
            return _backup_record(row, _backup_files(s, backup_id))

    def list_backups(
        self,
        project_id: str,
        instance_id: str,
        begin: datetime | None = None,
        end: datetime | None = None,
        offset: int = 0,
        limit: int = 10,
    ) -> tuple[int, list[BackupRecord]]:
        """(how many match, one page of them), newest first, created within [begin, end]."""
        with self._read() as s:
            count, rows = _page(
                s, Backup, Backup.backup_id, project_id, instance_id, begin, end, offset, limit
            )
            return count, [_backup_record(r, _backup_files(s, r.backup_id)) for r in rows]

    def delete_backup(self, project_id: str, instance_id: str, backup_id: str) -> BackupRecord:
        """Mark the backup `deleted` and forget its files; returns it as it was, files
        included, for the caller to remove them. BackupUnusable when it is not the
        instance's; InstanceBusy while it is still being taken."""
        now = utcnow()
        with self._write() as s:
            row = s.get(Backup, backup_id, with_for_update=True)
            if row is None or row.project_id != project_id or row.instance_id != instance_id:
                raise BackupUnusable(f"backup {backup_id} of instance {instance_id} does not exist")
            if BackupStatus(row.status) in BACKUP_RUNNING:
                raise InstanceBusy(instance_id, "backing up")
            before = _backup_record(row, _backup_files(s, backup_id))
            s.execute(delete(BackupFile).where(BackupFile.backup_id == backup_id))
            row.status = BackupStatus.DELETED.value
            row.updated_at = now
            return before

    def fail_interrupted_backups(self, error_code: str) -> list[BackupRecord]:
        """At service start: backups and restores left running by a service that stopped
        end `failed` with `error_code`. Returns the backups, with the files they had
        stored, to remove."""
        now = utcnow()
        running = [st.value for st in BACKUP_RUNNING]
        with self._write() as s:
            rows = list(s.scalars(select(Backup).where(Backup.status.in_(running))))
            found = [_backup_record(r, _backup_files(s, r.backup_id)) for r in rows]
            for row in rows:
                s.execute(delete(BackupFile).where(BackupFile.backup_id == row.backup_id))
            s.execute(
                update(Backup)
                .where(Backup.status.in_(running))
                .values(
                    status=BackupStatus.FAILED.value,
                    error_code=error_code,
                    error_message=INTERRUPTED,
                    finished_at=now,
                    updated_at=now,
                )
            )
            s.execute(
                update(Restore)
                .where(Restore.status.in_([st.value for st in RESTORE_RUNNING]))
                .values(
                    status=RestoreStatus.FAILED.value,
                    error_code=error_code,
                    error_message=INTERRUPTED,
                    finished_at=now,
                    updated_at=now,
                )
            )
            return found

    # -- restores ---------------------------------------------------------------------------

    def begin_restore(
        self, project_id: str, instance_id: str, backup_id: str, remark: str = ""
    ) -> RestoreRecord:
        """A new restore of the instance from one of its `succeed` backups, `waiting`.
        LookupError for an unknown instance, BackupUnusable, InstanceBusy."""
        now = utcnow()
        with self._write() as s:
            _lock_idle_instance(s, project_id, instance_id)
            backup = s.get(Backup, backup_id)
            if backup is None or backup.project_id != project_id:
                raise BackupUnusable(f"backup {backup_id} does not exist")
            if backup.instance_id != instance_id:
                raise BackupUnusable(
                    f"backup {backup_id} is not a backup of instance {instance_id}"
                )
            if backup.status != BackupStatus.SUCCEED.value:
                raise BackupUnusable(
                    f"backup {backup_id} is {backup.status}: only a succeed backup can be restored"
                )
            row = Restore(
                restore_id=str(uuid.uuid4()),
                project_id=project_id,
                instance_id=instance_id,
                backup_id=backup_id,
                restore_name=f"restore_{now:%Y%m%d%H%M%S}",
                status=RestoreStatus.WAITING.value,
                progress=0.0,
                error_code="",
                error_message="",
                remark=remark,
                created_at=now,
                updated_at=now,
                finished_at=None,
            )
            s.add(row)
            s.flush()
            return _restore_record(row)

    def restore_started(self, restore_id: str, *, again: bool = False) -> bool:
        """The restore runs; False unless it waited (or, run `again` after its first
        run was cut off, it was running)."""
        states = [RestoreStatus.WAITING.value]
        if again:
            states.append(RestoreStatus.RESTORING.value)
        with self._write() as s:
            result = s.execute(
                update(Restore)
                .where(
                    Restore.restore_id == restore_id,
                    Restore.status.in_(states),
                )
                .values(status=RestoreStatus.RESTORING.value, updated_at=utcnow())
            )
            return bool(getattr(result, "rowcount", 0))

    def restore_progress(self, restore_id: str, progress: float) -> None:
        with self._write() as s:
            s.execute(
                update(Restore)
                .where(Restore.restore_id == restore_id)
                .values(progress=max(0.0, min(progress, 100.0)), updated_at=utcnow())
            )

    def finish_restore(
        self, restore_id: str, status: RestoreStatus, error_code: str = "", error_message: str = ""
    ) -> None:
        now = utcnow()
        values: dict[str, Any] = {
            "status": status.value,
            "error_code": error_code,
            "error_message": error_message,
            "finished_at": now,
            "updated_at": now,
        }
        if status is RestoreStatus.SUCCEED:
            values["progress"] = 100.0
        with self._write() as s:
            s.execute(update(Restore).where(Restore.restore_id == restore_id).values(**values))

    def get_restore(self, project_id: str, restore_id: str) -> RestoreRecord | None:
        with self._read() as s:
            row = s.get(Restore, restore_id)
            if row is None or row.project_id != project_id:
                return None
            return _restore_record(row)

    def list_restores(
        self,
        project_id: str,
        instance_id: str,
        begin: datetime | None = None,
        end: datetime | None = None,
        offset: int = 0,
        limit: int = 10,
    ) -> tuple[int, list[RestoreRecord]]:
        """(how many match, one page of them), newest first, created within [begin, end]."""
        with self._read() as s:
            count, rows = _page(
                s, Restore, Restore.restore_id, project_id, instance_id, begin, end, offset, limit
            )
            return count, [_restore_record(r) for r in rows]


def _lock_idle_instance(s: Session, project_id: str, instance_id: str) -> None:
    instance = s.get(Instance, instance_id, with_for_update=True)
    if instance is None or instance.project_id != project_id:
        raise LookupError(f"instance {instance_id} does not exist")
    busy_backup = s.scalar(
        select(func.count())
        .select_from(Backup)
        .where(
            Backup.instance_id == instance_id,
            Backup.status.in_([st.value for st in BACKUP_RUNNING]),
        )
    )
    if busy_backup:
        raise InstanceBusy(instance_id, "backing up")
    busy_restore = s.scalar(
        select(func.count())
        .select_from(Restore)
        .where(
            Restore.instance_id == instance_id,
            Restore.status.in_([st.value for st in RESTORE_RUNNING]),
        )
    )
    if busy_restore:
        raise InstanceBusy(instance_id, "restoring")


def _page(
    s: Session,
    table: type[RowT],
    row_id: InstrumentedAttribute[str],
    project_id: str,
    instance_id: str,
    begin: datetime | None,
    end: datetime | None,
    offset: int,
    limit: int,
) -> tuple[int, list[RowT]]:
    """(how many of the instance's rows were created within [begin, end], one page of
    them, newest first)."""
    where: list[ColumnElement[bool]] = [
        table.project_id == project_id,
        table.instance_id == instance_id,
    ]
    if begin is not None:
        where.append(table.created_at >= begin)
    if end is not None:
        where.append(table.created_at <= end)
    count = s.scalar(select(func.count()).select_from(table).where(*where)) or 0
    rows = s.scalars(
        select(table)
        .where(*where)
        .order_by(table.created_at.desc(), row_id.desc())
        .offset(max(offset, 0))
        .limit(max(limit, 0))
    )
    return count, list(rows)


def _backup_files(s: Session, backup_id: str) -> list[BackupFileRecord]:
    rows: Iterator[BackupFile] = iter(
        s.scalars(
            select(BackupFile)
            .where(BackupFile.backup_id == backup_id)
            .order_by(BackupFile.position)
        )
    )
    return [
        BackupFileRecord(r.position, r.file_name, r.object_key, r.size, r.source_addr) for r in rows
    ]


def _backup_record(row: Backup, files: list[BackupFileRecord]) -> BackupRecord:
    return BackupRecord(
        backup_id=row.backup_id,
        project_id=row.project_id,
        instance_id=row.instance_id,
        backup_name=row.backup_name,
        backup_type=row.backup_type,
        backup_format=row.backup_format,
        status=BackupStatus(row.status),
        progress=row.progress,
        size=row.size,
        error_code=row.error_code,
        error_message=row.error_message,
        remark=row.remark,
        created_at=row.created_at,
        updated_at=row.updated_at,
        execution_at=row.execution_at,
        finished_at=row.finished_at,
        files=tuple(files),
    )


def _restore_record(row: Restore) -> RestoreRecord:
    return RestoreRecord(
        restore_id=row.restore_id,
        project_id=row.project_id,
        instance_id=row.instance_id,
        backup_id=row.backup_id,
        restore_name=row.restore_name,
        status=RestoreStatus(row.status),
        progress=row.progress,
        error_code=row.error_code,
        error_message=row.error_message,
        remark=row.remark,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )
