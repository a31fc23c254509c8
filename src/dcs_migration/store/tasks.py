"""Migration tasks: their rows and files, their progress and checkpoints, their ends.

Lookups that an API path reaches take the project id and answer None (or nothing) for
another project's rows; methods that take only a task id are for the workers, which got
that id from a scoped lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from dcs_migration.sizes import parse_size
from dcs_migration.store.base import Repository, page_limit, page_offset, require, rowcount
from dcs_migration.store.instances import scoped_instance
from dcs_migration.store.models import (
    MigrationTask,
    OnlineMigration,
    TaskFile,
    TaskLog,
    UnitRun,
    WorkUnit,
    utcnow,
)
from dcs_migration.store.records import (
    FILE_SOURCES,
    ONLINE_MIGRATION,
    PROGRESS_FIELDS,
    RUNNING_STATUSES,
    DeleteResult,
    LogLevel,
    NewTaskFile,
    OnlineRecord,
    TaskFileRecord,
    TaskRecord,
    TaskStatus,
    log_level,
)

log = logging.getLogger(__name__)

# What a task waiting for a worker is (with no `started_at`): an import MIGRATING, an online
# migration FULLMIGRATING, or INCRMIGEATING when a service restart resumes it.
WAITING_STATUSES = tuple(
    st.value for st in (TaskStatus.MIGRATING, TaskStatus.FULLMIGRATING, TaskStatus.INCRMIGEATING)
)


class NotFoundError(LookupError):
    """A row the call refers to is not there (or belongs to another project)."""


class Tasks(Repository):
    """A task's life in the store, from its creation to its end (or its deletion)."""

    def create_task(
        self,
        project_id: str,
        *,
        task_name: str,
        target_instance_id: str,
        files: Iterable[NewTaskFile] = (),
        description: str = "",
        migration_type: str = "backupfile_import",
        migration_method: str = "full_amount_migration",
        file_source: str = "self_build_obs",
        bucket_name: str | None = None,
        backup_id: str | None = None,
        network_type: str | None = None,
        target_db: int | None = None,
        target_password: str | None = None,
        resume_mode: str | None = None,
        skip_unknown_commands: bool = False,
    ) -> TaskRecord:
        """A new task, MIGRATING and waiting for a worker (`started_at` is None until one
        takes it). The target instance must be one of the project's, else NotFoundError;
        its name and addresses are copied into the task. `target_password`, when given,
        overrides the instance's password for this task only."""
        require(project_id, "project_id")
        if file_source not in FILE_SOURCES:
            raise ValueError(f"file_source must be one of {sorted(FILE_SOURCES)}")
        now = utcnow()
        task_files = [
            TaskFile(
                position=position,
                file_name=f.file_name,
                size_text=f.size,
                update_at=f.update_at,
                size_bytes=f.size_bytes if f.size_bytes is not None else parse_size(f.size),
            )
            for position, f in enumerate(files)
        ]
        sizes = [f.size_bytes for f in task_files]
        with self._write() as s:
            instance = scoped_instance(s, project_id, target_instance_id)
            if instance is None:
                raise NotFoundError(
                    f"instance {target_instance_id} is not registered in project {project_id}"
                )
            task = MigrationTask.new(
                project_id,
                task_name,
                description,
                migration_type,
                TaskStatus.MIGRATING.value,
                now,
                migration_method=migration_method,
                file_source=file_source,
                bucket_name=bucket_name,
                backup_id=backup_id,
                network_type=network_type,
                target_instance_id=instance.instance_id,
                target_db=target_db,
                target_password_encrypted=(
                    self._box.encrypt(target_password) if target_password else None
                ),
                target_instance_name=instance.name,
                target_instance_addrs=instance.addrs,
                resume_mode=resume_mode,
                bytes_total=sum(x for x in sizes if x is not None)
                if all(x is not None for x in sizes)
                else 0,
                skip_unknown_commands=skip_unknown_commands,
            )
            s.add(task)
            s.flush()
            for f in task_files:
                f.task_id = task.task_id
                s.add(f)
            s.flush()
            return task_record(task, [_file_record(f) for f in task_files])

    def count_running(self, project_id: str) -> int:
        """The project's tasks that run or wait for a worker (an online migration not
        configured yet counts: it waits for its configuration)."""
        counted = [st.value for st in RUNNING_STATUSES | {TaskStatus.RUNNING}]
        with self._read() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(MigrationTask)
                    .where(
                        MigrationTask.project_id == project_id,
                        MigrationTask.status.in_(counted),
                    )
                )
                or 0
            )

    def get_task(self, project_id: str, task_id: str) -> TaskRecord | None:
        with self._read() as s:
            row = scoped_task(s, project_id, task_id)
            if row is None:
                return None
            return task_record(
                row,
                _files_of(s, [row.task_id]).get(row.task_id, []),
                _online_of(s, [row]).get(row.task_id),
            )

    def list_tasks(
        self,
        project_id: str,
        offset: int = 0,
        limit: int = 10,
        name: str | None = None,
        *,
        statuses: Collection[TaskStatus] = (),
        migration_type: str | None = None,
    ) -> tuple[int, list[TaskRecord]]:
        """(how many match, one page of them), newest first; `name` matches a part, any
        case; `statuses` (any of them) and `migration_type`, when given, must match."""
        where: list[ColumnElement[bool]] = [MigrationTask.project_id == project_id]
        if name:
            named = func.lower(MigrationTask.task_name).contains(name.lower(), autoescape=True)
            where.append(named)
        if statuses:
            where.append(MigrationTask.status.in_(sorted(s.value for s in statuses)))
        if migration_type:
            where.append(MigrationTask.migration_type == migration_type)
        with self._read() as s:
            count = s.scalar(select(func.count()).select_from(MigrationTask).where(*where)) or 0
            rows = list(
                s.scalars(
                    select(MigrationTask)
                    .where(*where)
                    .order_by(MigrationTask.created_at.desc(), MigrationTask.task_id.desc())
                    .offset(page_offset(offset))
                    .limit(page_limit(limit))
                )
            )
            files = _files_of(s, [r.task_id for r in rows])
            online = _online_of(s, rows)
            return count, [
                task_record(r, files.get(r.task_id, []), online.get(r.task_id)) for r in rows
            ]

    def update_progress(self, task_id: str, **fields: int | float | str | None) -> bool:
        """Set progress counters (names in `records.PROGRESS_FIELDS`); False if no such task."""
        values = _progress_values(fields)
        values["updated_at"] = utcnow()
        with self._write() as s:
            result = s.execute(
                update(MigrationTask).where(MigrationTask.task_id == task_id).values(**values)
            )
            return rowcount(result) > 0

    def finish_task(
        self,
        task_id: str,
        status: TaskStatus | str,
        error_message: str | None,
        logs: Iterable[tuple[LogLevel | str, str]],
        **fields: int | float | str | None,
    ) -> None:
        """A task's end in one transaction: its status, final counts and log lines (level,
        message), so that a busy database is asked once."""
        values = _progress_values(fields)
        now = utcnow()
        values.update(status=TaskStatus(status).value, finished_at=now, updated_at=now)
        if error_message is not None:
            values["error_message"] = error_message
        with self._write() as s:
            s.execute(
                update(MigrationTask).where(MigrationTask.task_id == task_id).values(**values)
            )
            for level, message in logs:
                s.add(TaskLog.line(task_id, log_level(level).value, message, now))

    def set_status(
        self,
        task_id: str,
        status: TaskStatus | str,
        error_message: str | None = None,
        finished: bool = False,
    ) -> bool:
        """Set the status (and the error message when given; `finished` stamps finished_at)."""
        status = TaskStatus(status)
        now = utcnow()
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if error_message is not None:
            values["error_message"] = error_message
        if finished:
            values["finished_at"] = now
        with self._write() as s:
            result = s.execute(
                update(MigrationTask).where(MigrationTask.task_id == task_id).values(**values)
            )
            return rowcount(result) > 0

    def mark_started(self, task_id: str) -> bool:
        """Record that a worker took the task; False if it is no longer waiting (say,
        stopped). A waiting import is MIGRATING, a waiting online migration FULLMIGRATING
        or INCRMIGEATING (resumed after a service stop), with no `started_at`."""
        now = utcnow()
        with self._write() as s:
            result = s.execute(
                update(MigrationTask)
                .where(
                    MigrationTask.task_id == task_id,
                    MigrationTask.status.in_(WAITING_STATUSES),
                    MigrationTask.started_at.is_(None),
                )
                .values(started_at=now, updated_at=now)
            )
            return rowcount(result) > 0

    def clear_checkpoint(self, task_id: str) -> None:
        """Forget how far the task got (the target lost it): a resume starts over."""
        with self._write() as s:
            s.execute(
                update(MigrationTask)
                .where(MigrationTask.task_id == task_id)
                .values(checkpoint_input=None, checkpoint_records=None, checkpoint_keys=None)
            )

    def set_fingerprint(self, task_id: str, fingerprint: str) -> None:
        with self._write() as s:
            s.execute(
                update(MigrationTask)
                .where(MigrationTask.task_id == task_id)
                .values(inputs_fingerprint=fingerprint)
            )

    def set_resume_mode(self, project_id: str, task_id: str, resume_mode: str) -> None:
        with self._write() as s:
            s.execute(
                update(MigrationTask)
                .where(MigrationTask.task_id == task_id, MigrationTask.project_id == project_id)
                .values(resume_mode=resume_mode, updated_at=utcnow())
            )

    def requeue(self, project_id: str, task_id: str) -> bool:
        """A FAILED or TERMINATED backup import waits again (MIGRATING, not started),
        keeping its checkpoint; False when it is in no such state (an online migration
        restarts with `restart_online`)."""
        ended = [TaskStatus.FAILED.value, TaskStatus.TERMINATED.value]
        with self._write() as s:
            result = s.execute(
                update(MigrationTask)
                .where(
                    MigrationTask.task_id == task_id,
                    MigrationTask.project_id == project_id,
                    MigrationTask.status.in_(ended),
                    MigrationTask.migration_type != ONLINE_MIGRATION,
                )
                .values(
                    status=TaskStatus.MIGRATING.value,
                    error_message="",
                    started_at=None,
                    finished_at=None,
                    stop_requested=False,
                    updated_at=utcnow(),
                )
            )
            return rowcount(result) > 0

    def requeue_interrupted(self) -> list[TaskRecord]:
        """At service start: tasks a stopped service left MIGRATING that had not started,
        or that are set to resume on their own (`resume_mode` auto), wait again, from their
        checkpoint. So do online migrations left FULLMIGRATING or INCRMIGEATING that had
        not started or are set to auto (they go on by partial resync where the source
        still holds their offset); one left TERMINATING ends TERMINATED. Returns the tasks
        that wait, oldest first, for the workers; call it before `fail_interrupted`, which
        fails the rest."""
        online = MigrationTask.migration_type == ONLINE_MIGRATION
        going = [TaskStatus.FULLMIGRATING.value, TaskStatus.INCRMIGEATING.value]
        resumes = or_(MigrationTask.resume_mode == "auto", MigrationTask.started_at.is_(None))
        with self._write() as s:
            rows = list(
                s.scalars(
                    select(MigrationTask)
                    .where(
                        or_(
                            and_(~online, MigrationTask.status == TaskStatus.MIGRATING.value),
                            and_(online, MigrationTask.status.in_(going)),
                        ),
                        resumes,
                    )
                    .order_by(MigrationTask.created_at, MigrationTask.task_id)
                )
            )
            now = utcnow()
            for row in rows:
                if row.started_at is None:
                    continue  # it never ran: it just waits on
                row.started_at = None
                row.updated_at = now
                s.add(
                    TaskLog.line(
                        row.task_id,
                        LogLevel.WARNING.value,
                        "the service stopped while the task ran: it resumes "
                        + (
                            "by partial resync where the source still holds its offset"
                            if row.migration_type == ONLINE_MIGRATION
                            else "from its last checkpoint"
                        ),
                        now,
                        keyword="resumed",
                    )
                )
            stopping = s.scalars(
                select(MigrationTask).where(
                    online, MigrationTask.status == TaskStatus.TERMINATING.value
                )
            )
            for row in stopping:
                row.status = TaskStatus.TERMINATED.value
                row.finished_at = row.updated_at = now
                s.add(
                    TaskLog.line(
                        row.task_id,
                        LogLevel.INFO.value,
                        "the service stopped while the task was stopping: it is TERMINATED",
                        now,
                        keyword="stopped",
                    )
                )
            s.flush()
            files = _files_of(s, [r.task_id for r in rows])
            found = _online_of(s, rows)
            return [task_record(r, files.get(r.task_id, []), found.get(r.task_id)) for r in rows]

    def next_waiting(self) -> TaskRecord | None:
        """Take the oldest waiting task (MIGRATING, not started, no stop asked): it is marked
        started and returned; None when none waits. Safe from several workers at once."""
        for _ in range(20):
            with self._write() as s:
                task_id = s.scalar(
                    select(MigrationTask.task_id)
                    .where(
                        MigrationTask.status == TaskStatus.MIGRATING.value,
                        MigrationTask.started_at.is_(None),
                        MigrationTask.stop_requested.is_(False),
                    )
                    .order_by(MigrationTask.created_at, MigrationTask.task_id)
                    .limit(1)
                )
            if task_id is None:
                return None
            if self.mark_started(task_id):
                with self._read() as s:
                    row = s.get(MigrationTask, task_id)
                    if row is not None:
                        return task_record(row, _files_of(s, [task_id]).get(task_id, []))
        return None

    def is_stop_requested(self, task_id: str) -> bool:
        with self._read() as s:
            return bool(
                s.scalar(
                    select(MigrationTask.stop_requested).where(MigrationTask.task_id == task_id)
                )
            )

    def request_stop(self, project_id: str, task_id: str) -> TaskRecord | None:
        """Ask a task to stop. A task no worker has taken yet is TERMINATED at once; a running
        one becomes TERMINATING until its worker stops. A finished task is left as it is.
        Returns the task after the change (None when not the project's): its status tells
        the caller which case it was."""
        self.request_stops(project_id, [task_id])
        return self.get_task(project_id, task_id)

    def request_stops(self, project_id: str, task_ids: Iterable[str]) -> None:
        """`request_stop` of each task, in one transaction: a batch stop holds the
        database once, while the stopped workers wait to write their ends."""
        now = utcnow()
        migrating = MigrationTask.status.in_(WAITING_STATUSES)
        with self._write() as s:
            for task_id in task_ids:
                mine = (MigrationTask.task_id == task_id, MigrationTask.project_id == project_id)
                waiting = s.execute(
                    update(MigrationTask)
                    .where(*mine, migrating, MigrationTask.started_at.is_(None))
                    .values(
                        status=TaskStatus.TERMINATED.value,
                        stop_requested=True,
                        error_message="stopped before it started",
                        finished_at=now,
                        updated_at=now,
                    )
                )
                if rowcount(waiting) == 0:
                    s.execute(
                        update(MigrationTask)
                        .where(*mine, migrating)
                        .values(
                            status=TaskStatus.TERMINATING.value,
                            stop_requested=True,
                            updated_at=now,
                        )
                    )

    def delete_tasks(self, project_id: str, task_ids: Iterable[str]) -> DeleteResult:
        """Delete the project's finished tasks among `task_ids`, with their files and logs
        (an online migration, its online side). Running ones (`RUNNING_STATUSES`) and
        unknown ones are left and reported."""
        wanted = list(dict.fromkeys(task_ids))
        with self._write() as s:
            found: dict[str, str] = {
                task_id: status
                for task_id, status in s.execute(
                    select(MigrationTask.task_id, MigrationTask.status).where(
                        MigrationTask.project_id == project_id,
                        MigrationTask.task_id.in_(wanted),
                    )
                )
            }
            running = [t for t in wanted if found.get(t) in RUNNING_STATUSES]
            deletable = [t for t in wanted if t in found and t not in running]
            if deletable:
                s.execute(delete(TaskLog).where(TaskLog.task_id.in_(deletable)))
                s.execute(delete(TaskFile).where(TaskFile.task_id.in_(deletable)))
                s.execute(delete(OnlineMigration).where(OnlineMigration.task_id.in_(deletable)))
                kinds = ("migration_task", ONLINE_MIGRATION)  # tasks.executor.WorkKind's
                units = (WorkUnit.work_kind.in_(kinds), WorkUnit.work_id.in_(deletable))
                s.execute(delete(WorkUnit).where(*units))
                runs = (UnitRun.work_kind.in_(kinds), UnitRun.work_id.in_(deletable))
                s.execute(delete(UnitRun).where(*runs))
                s.execute(
                    delete(MigrationTask).where(
                        MigrationTask.task_id.in_(deletable),
                        MigrationTask.status.not_in([st.value for st in RUNNING_STATUSES]),
                    )
                )
        return DeleteResult(
            deleted=tuple(deletable),
            running=tuple(running),
            missing=tuple(t for t in wanted if t not in found),
        )

    def task_password(self, task_id: str) -> str | None:
        """The task's own password when one was given, else its target instance's."""
        with self._read() as s:
            task = s.get(MigrationTask, task_id)
            if task is None:
                return None
            token = task.target_password_encrypted
            if token is None:
                instance = scoped_instance(s, task.project_id, task.target_instance_id)
                token = None if instance is None else instance.password_encrypted
            return None if token is None else self._box.decrypt(token)

    def fail_interrupted(self, error_code: str) -> int:
        """At service start: every task left MIGRATING or TERMINATING by a service that stopped
        ends FAILED, saying how far it had got, with an ERROR log of code `error_code`; an
        online migration left running (not set to resume by itself) ends
        MIGRATION_FAILED, saying that batch-restart continues it. Returns how many.

        Only for an executor whose workers live in this service: tasks that workers elsewhere
        still run must not be failed."""
        running = [st.value for st in RUNNING_STATUSES]
        failed = 0
        with self._write() as s:
            rows = list(
                s.scalars(
                    select(MigrationTask).where(
                        MigrationTask.status.in_(running),
                        # a task waiting for a worker was not interrupted: it waits on
                        or_(
                            MigrationTask.status == TaskStatus.TERMINATING.value,
                            MigrationTask.started_at.is_not(None),
                        ),
                    )
                )
            )
            now = utcnow()
            for row in rows:
                if row.migration_type == ONLINE_MIGRATION:
                    message = online_interrupted_message(TaskStatus(row.status))
                    ended = TaskStatus.MIGRATION_FAILED
                else:
                    message = interrupted_message(row.bytes_read, row.bytes_total, row.keys_written)
                    if row.current_file:
                        message += f" (in {row.current_file})"
                    ended = TaskStatus.FAILED
                result = s.execute(
                    update(MigrationTask)
                    .where(MigrationTask.task_id == row.task_id, MigrationTask.status.in_(running))
                    .values(
                        status=ended.value,
                        error_message=message,
                        finished_at=now,
                        updated_at=now,
                    )
                )
                if rowcount(result) == 0:
                    continue
                s.add(
                    TaskLog.line(
                        row.task_id,
                        LogLevel.ERROR.value,
                        message,
                        now,
                        code=error_code,
                        keyword="interrupted",
                    )
                )
                failed += 1
        if failed:
            log.warning("%d task(s) interrupted by a service stop are now FAILED", failed)
        return failed


def online_interrupted_message(status: TaskStatus) -> str:
    """Why an online migration that a service stop cut off is MIGRATION_FAILED."""
    phase = "its full sync" if status is TaskStatus.FULLMIGRATING else "its incremental sync"
    return (
        f"interrupted: the service stopped during {phase}; batch-restart continues it "
        "(by partial resync where the source still holds its offset, else by a full sync)"
    )


def interrupted_message(bytes_read: int, bytes_total: int, keys_written: int) -> str:
    return (
        f"interrupted: the service stopped after reading {bytes_read} of {bytes_total} bytes, "
        f"{keys_written} keys written"
    )


def _progress_values(fields: dict[str, int | float | str | None]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in fields.items():
        allowed = PROGRESS_FIELDS.get(key)
        if allowed is None:
            raise TypeError(f"update_progress() got an unknown field {key!r}")
        if not isinstance(value, allowed) or isinstance(value, bool):
            raise TypeError(f"update_progress() field {key!r} got {type(value).__name__}")
        values[key] = float(value) if float in allowed and value is not None else value
    return values


def scoped_task(s: Session, project_id: str, task_id: str) -> MigrationTask | None:
    row = s.get(MigrationTask, task_id)
    return row if row is not None and row.project_id == project_id else None


def _files_of(s: Session, task_ids: list[str]) -> dict[str, list[TaskFileRecord]]:
    files: dict[str, list[TaskFileRecord]] = {}
    if not task_ids:
        return files
    rows = s.scalars(
        select(TaskFile)
        .where(TaskFile.task_id.in_(task_ids))
        .order_by(TaskFile.task_id, TaskFile.position)
    )
    for row in rows:
        files.setdefault(row.task_id, []).append(_file_record(row))
    return files


def _file_record(row: TaskFile) -> TaskFileRecord:
    return TaskFileRecord(
        position=row.position,
        file_name=row.file_name,
        size_text=row.size_text,
        update_at=row.update_at,
        size_bytes=row.size_bytes,
    )


def _online_of(s: Session, rows: Sequence[MigrationTask]) -> dict[str, OnlineRecord]:
    """The online side of those of `rows` that are online migrations."""
    ids = [r.task_id for r in rows if r.migration_type == ONLINE_MIGRATION]
    if not ids:
        return {}
    found = s.scalars(select(OnlineMigration).where(OnlineMigration.task_id.in_(ids)))
    return {row.task_id: online_record(row) for row in found}


def online_record(row: OnlineMigration) -> OnlineRecord:
    return OnlineRecord(
        task_id=row.task_id,
        vpc_id=row.vpc_id,
        subnet_id=row.subnet_id,
        security_group_id=row.security_group_id,
        source_addrs=row.source_addrs,
        source_instance_id=row.source_instance_id,
        source_instance_name=row.source_instance_name,
        has_source_password=row.source_password_encrypted is not None,
        source_cluster=row.source_cluster,
        target_cluster=row.target_cluster,
        bandwidth_limit_mb=row.bandwidth_limit_mb,
        replication_id=row.replication_id,
        applied_offset=row.applied_offset,
        source_offset=row.source_offset,
        lag_ms=row.lag_ms,
        resyncs_partial=row.resyncs_partial,
        resyncs_full=row.resyncs_full,
        full_progress=row.full_progress,
        sync_stop_requested_at=row.sync_stop_requested_at,
        sync_stop_error=row.sync_stop_error,
    )


def task_record(
    row: MigrationTask, files: Sequence[TaskFileRecord], online: OnlineRecord | None = None
) -> TaskRecord:
    return TaskRecord(
        task_id=row.task_id,
        project_id=row.project_id,
        task_name=row.task_name,
        description=row.description,
        migration_type=row.migration_type,
        migration_method=row.migration_method,
        file_source=row.file_source,
        bucket_name=row.bucket_name,
        backup_id=row.backup_id,
        network_type=row.network_type,
        target_instance_id=row.target_instance_id,
        target_db=row.target_db,
        has_password_override=row.target_password_encrypted is not None,
        target_instance_name=row.target_instance_name,
        target_instance_addrs=row.target_instance_addrs,
        status=TaskStatus(row.status),
        error_message=row.error_message,
        resume_mode=row.resume_mode,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        released_at=row.released_at,
        stop_requested=row.stop_requested,
        bytes_total=row.bytes_total,
        bytes_read=row.bytes_read,
        keys_written=row.keys_written,
        keys_skipped_expired=row.keys_skipped_expired,
        keys_skipped_existing=row.keys_skipped_existing,
        keys_skipped_module=row.keys_skipped_module,
        commands_replayed=row.commands_replayed,
        commands_refused=row.commands_refused,
        commands_skipped_unknown=row.commands_skipped_unknown,
        skip_unknown_commands=row.skip_unknown_commands,
        ops_per_second=row.ops_per_second,
        input_kbps=row.input_kbps,
        target_dbsize=row.target_dbsize,
        source_dbsize=row.source_dbsize,
        current_file=row.current_file,
        files=tuple(files),
        checkpoint=(
            None
            if row.checkpoint_input is None
            else (row.checkpoint_input, row.checkpoint_records or 0, row.checkpoint_keys or 0)
        ),
        inputs_fingerprint=row.inputs_fingerprint,
        online=online,
    )
