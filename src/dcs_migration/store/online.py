"""Online migrations: a migration task of type online_migration and its online side (the
`online_migrations` row): created RUNNING, configured once (source, target, how it runs),
its replication's progress, the sync-stop (cut-over) request, and its restart.

The task row holds what every migration task has (status, target, resume mode, error,
progress counters, which `update_progress` sets); the online row holds the source and the
replication's offsets. Lookups an API path reaches take the project id; the methods that
take only a task id are for the engine, which got the id from a scoped lookup.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dcs_migration.store.base import Repository, require, rowcount
from dcs_migration.store.instances import scoped_instance
from dcs_migration.store.models import MigrationTask, OnlineMigration, utcnow
from dcs_migration.store.records import (
    ONLINE_FIELDS,
    ONLINE_MIGRATION,
    ONLINE_RESTARTABLE,
    OnlineConfig,
    OnlineRecord,
    TaskRecord,
    TaskStatus,
)
from dcs_migration.store.tasks import online_record, scoped_task, task_record


class OnlineMigrations(Repository):
    """An online migration's life in the store, beside its task row."""

    def create_online_task(
        self,
        project_id: str,
        *,
        task_name: str,
        description: str,
        vpc_id: str | None,
        subnet_id: str | None,
        security_group_id: str | None,
    ) -> TaskRecord:
        """A new online migration, RUNNING: created, waiting to be configured."""
        require(project_id, "project_id")
        now = utcnow()
        task = MigrationTask.new(
            project_id, task_name, description, ONLINE_MIGRATION, TaskStatus.RUNNING.value, now
        )
        online = OnlineMigration(
            task_id=task.task_id,
            vpc_id=vpc_id,
            subnet_id=subnet_id,
            security_group_id=security_group_id,
            source_addrs="",
            source_instance_id=None,
            source_instance_name="",
            source_password_encrypted=None,
            source_cluster=False,
            target_cluster=False,
            bandwidth_limit_mb=None,
            replication_id=None,
            applied_offset=None,
            source_offset=None,
            lag_ms=None,
            resyncs_partial=0,
            resyncs_full=0,
            full_progress=0.0,
            sync_stop_requested_at=None,
            sync_stop_error="",
        )
        with self._write() as s:
            s.add(task)
            s.flush()
            s.add(online)
            s.flush()
            return task_record(task, [], online_record(online))

    def configure_online_task(
        self, project_id: str, task_id: str, config: OnlineConfig
    ) -> TaskRecord | None:
        """Configure a RUNNING online migration of the project: it becomes FULLMIGRATING,
        waiting for a worker (`started_at` None). None when it is no such task (another
        project's, not online, or configured already: only one call of several at once
        configures it)."""
        now = utcnow()
        box = self._box
        with self._write() as s:
            result = s.execute(
                update(MigrationTask)
                .where(
                    MigrationTask.task_id == task_id,
                    MigrationTask.project_id == project_id,
                    MigrationTask.migration_type == ONLINE_MIGRATION,
                    MigrationTask.status == TaskStatus.RUNNING.value,
                )
                .values(
                    status=TaskStatus.FULLMIGRATING.value,
                    migration_method=config.migration_method,
                    resume_mode=config.resume_mode,
                    target_instance_id=config.target_instance_id or "",
                    target_instance_name=config.target_instance_name,
                    target_instance_addrs=config.target_addrs,
                    target_password_encrypted=(
                        box.encrypt(config.target_password) if config.target_password else None
                    ),
                    error_message="",
                    started_at=None,
                    finished_at=None,
                    stop_requested=False,
                    updated_at=now,
                )
            )
            if rowcount(result) == 0:
                return None
            s.execute(
                update(OnlineMigration)
                .where(OnlineMigration.task_id == task_id)
                .values(
                    source_addrs=config.source_addrs,
                    source_instance_id=config.source_instance_id,
                    source_instance_name=config.source_instance_name,
                    source_password_encrypted=(
                        box.encrypt(config.source_password) if config.source_password else None
                    ),
                    source_cluster=config.source_cluster,
                    target_cluster=config.target_cluster,
                    bandwidth_limit_mb=config.bandwidth_limit_mb,
                )
            )
            return _fresh(s, task_id)

    def online_of(self, task_id: str) -> OnlineRecord | None:
        """The online side of the task; None when it is no online migration."""
        with self._read() as s:
            row = s.get(OnlineMigration, task_id)
            return None if row is None else online_record(row)

    def source_password(self, task_id: str) -> str | None:
        """The source's password: the one the configuration gave, else the registered
        source instance's (None: none)."""
        with self._read() as s:
            online = s.get(OnlineMigration, task_id)
            task = s.get(MigrationTask, task_id)
            if online is None or task is None:
                return None
            token = online.source_password_encrypted
            if token is None and online.source_instance_id:
                instance = scoped_instance(s, task.project_id, online.source_instance_id)
                token = None if instance is None else instance.password_encrypted
            return None if token is None else self._box.decrypt(token)

    def update_online(self, task_id: str, **fields: int | float | str | None) -> bool:
        """Set the replication's progress (names in `records.ONLINE_FIELDS`); False when
        the task is gone."""
        values = _online_values(fields)
        with self._write() as s:
            result = s.execute(
                update(OnlineMigration).where(OnlineMigration.task_id == task_id).values(**values)
            )
            if rowcount(result) == 0:
                return False
            s.execute(
                update(MigrationTask)
                .where(MigrationTask.task_id == task_id)
                .values(updated_at=utcnow())
            )
            return True

    # -- the sync-stop (cut-over) -------------------------------------------------------

    def request_sync_stop(self, project_id: str, task_id: str) -> bool:
        """Ask an INCRMIGEATING online migration of the project to stop once its target
        caught up (a refusal of an earlier request is forgotten); False when it is no such
        task."""
        incremental = (
            select(MigrationTask.task_id)
            .where(
                MigrationTask.task_id == task_id,
                MigrationTask.project_id == project_id,
                MigrationTask.status == TaskStatus.INCRMIGEATING.value,
            )
            .scalar_subquery()
        )
        with self._write() as s:
            result = s.execute(
                update(OnlineMigration)
                .where(OnlineMigration.task_id == incremental)
                .values(sync_stop_requested_at=utcnow(), sync_stop_error="")
            )
            return rowcount(result) > 0

    def sync_stop_requested(self, task_id: str) -> bool:
        with self._read() as s:
            at = s.scalar(
                select(OnlineMigration.sync_stop_requested_at).where(
                    OnlineMigration.task_id == task_id
                )
            )
            return at is not None

    def refuse_sync_stop(self, task_id: str, message: str) -> None:
        """The engine cannot stop in sync (say, the target does not catch up): the request
        is cleared and `message` says why (the task runs on)."""
        with self._write() as s:
            s.execute(
                update(OnlineMigration)
                .where(OnlineMigration.task_id == task_id)
                .values(sync_stop_requested_at=None, sync_stop_error=message)
            )

    # -- restarting ---------------------------------------------------------------------

    def restart_online(self, project_id: str, task_id: str) -> TaskRecord | None:
        """A configured online migration of the project that is TERMINATED or
        MIGRATION_FAILED waits again, FULLMIGRATING (its engine resumes by partial resync
        where it can); None when it is no such task."""
        now = utcnow()
        with self._write() as s:
            task = scoped_task(s, project_id, task_id)
            online = s.get(OnlineMigration, task_id)
            if task is None or online is None or not online.source_addrs:
                return None
            result = s.execute(
                update(MigrationTask)
                .where(
                    MigrationTask.task_id == task_id,
                    MigrationTask.migration_type == ONLINE_MIGRATION,
                    MigrationTask.status.in_([st.value for st in ONLINE_RESTARTABLE]),
                )
                .values(
                    status=TaskStatus.FULLMIGRATING.value,
                    stop_requested=False,
                    error_message="",
                    started_at=None,
                    finished_at=None,
                    updated_at=now,
                )
            )
            if rowcount(result) == 0:
                return None
            s.execute(
                update(OnlineMigration)
                .where(OnlineMigration.task_id == task_id)
                .values(sync_stop_requested_at=None, sync_stop_error="")
            )
            return _fresh(s, task_id)


def _fresh(s: Session, task_id: str) -> TaskRecord:
    """The task as this transaction's updates left it."""
    task = s.scalars(
        select(MigrationTask)
        .where(MigrationTask.task_id == task_id)
        .execution_options(populate_existing=True)
    ).one()
    online = s.scalars(
        select(OnlineMigration)
        .where(OnlineMigration.task_id == task_id)
        .execution_options(populate_existing=True)
    ).one()
    return task_record(task, [], online_record(online))


def _online_values(fields: dict[str, int | float | str | None]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in fields.items():
        allowed = ONLINE_FIELDS.get(key)
        if allowed is None:
            raise TypeError(f"update_online() got an unknown field {key!r}")
        if not isinstance(value, allowed) or isinstance(value, bool):
            raise TypeError(f"update_online() field {key!r} got {type(value).__name__}")
        if key == "full_progress":
            assert isinstance(value, int | float)
            value = max(0.0, min(100.0, float(value)))
        values[key] = value
    return values
