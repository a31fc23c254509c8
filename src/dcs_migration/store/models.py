"""The tables, as SQLAlchemy 2 typed declarative models.

The schema itself is made and changed by the Alembic migrations in `migrations/`; a test
checks that the migrated database matches these models.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Constraint names fixed by convention, so that later migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A 64-bit integer primary key that is still SQLite's auto-incrementing rowid.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, always handed back timezone-aware in UTC.

    SQLite keeps no zone, so values are stored there as naive UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a stored time must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AccessKey(Base):
    __tablename__ = "access_keys"

    ak: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    sk_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BucketGrant(Base):
    """A bucket a project may read (granted by the operator, `dcs-migration buckets grant`)."""

    __tablename__ = "bucket_grants"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AcceptedSignature(Base):
    """The signature of an accepted call that changes something, until its date can no
    longer be accepted (a replay of it is refused meanwhile)."""

    __tablename__ = "accepted_signatures"

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Instance(Base):
    __tablename__ = "instances"

    instance_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))
    instance_type: Mapped[str] = mapped_column(String(16))
    addrs: Mapped[str] = mapped_column(Text)
    username: Mapped[str | None] = mapped_column(String(255))
    password_encrypted: Mapped[str | None] = mapped_column(Text)
    engine: Mapped[str] = mapped_column(String(32))
    engine_version: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InstanceAddress(Base):
    """An address (host:port resolved, `addresses.address_key` form) an instance holds.
    An address belongs to one project: the API refuses another project's; only the
    command line registers one for a second project (an operator sharing it)."""

    __tablename__ = "instance_addresses"

    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instances.instance_id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    project_id: Mapped[str] = mapped_column(String(64))


class MigrationTask(Base):
    __tablename__ = "migration_tasks"
    __table_args__ = (
        Index("ix_migration_tasks_project_created", "project_id", "created_at"),
        Index("ix_migration_tasks_status", "status"),
    )

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    task_name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text)
    migration_type: Mapped[str] = mapped_column(String(32))
    migration_method: Mapped[str] = mapped_column(String(32))
    file_source: Mapped[str] = mapped_column(String(32))
    bucket_name: Mapped[str | None] = mapped_column(String(255))
    backup_id: Mapped[str | None] = mapped_column(String(64))
    network_type: Mapped[str | None] = mapped_column(String(16))
    target_instance_id: Mapped[str] = mapped_column(String(36))
    target_db: Mapped[int | None] = mapped_column(Integer)
    target_password_encrypted: Mapped[str | None] = mapped_column(Text)
    target_instance_name: Mapped[str] = mapped_column(String(255))
    target_instance_addrs: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    error_message: Mapped[str] = mapped_column(Text)
    resume_mode: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stop_requested: Mapped[bool] = mapped_column(Boolean)
    bytes_total: Mapped[int] = mapped_column(BigInteger)
    bytes_read: Mapped[int] = mapped_column(BigInteger)
    keys_written: Mapped[int] = mapped_column(BigInteger)
    keys_skipped_expired: Mapped[int] = mapped_column(BigInteger)
    keys_skipped_existing: Mapped[int] = mapped_column(BigInteger)
    keys_skipped_module: Mapped[int] = mapped_column(BigInteger)
    commands_replayed: Mapped[int] = mapped_column(BigInteger)
    # AOF replay (0004): unknown commands skipped when asked; refused ones are skipped.
    skip_unknown_commands: Mapped[bool] = mapped_column(Boolean, server_default=false())
    commands_refused: Mapped[int] = mapped_column(BigInteger, server_default="0")
    commands_skipped_unknown: Mapped[int] = mapped_column(BigInteger, server_default="0")
    ops_per_second: Mapped[float] = mapped_column(Float)
    input_kbps: Mapped[float] = mapped_column(Float)
    target_dbsize: Mapped[int | None] = mapped_column(BigInteger)
    source_dbsize: Mapped[int | None] = mapped_column(BigInteger)
    current_file: Mapped[str | None] = mapped_column(Text)
    # How far the target acknowledged (see importer.Checkpoint), and what the inputs were.
    checkpoint_input: Mapped[int | None] = mapped_column(Integer)
    checkpoint_records: Mapped[int | None] = mapped_column(BigInteger)
    checkpoint_keys: Mapped[int | None] = mapped_column(BigInteger)
    inputs_fingerprint: Mapped[str | None] = mapped_column(Text)

    @classmethod
    def new(
        cls,
        project_id: str,
        task_name: str,
        description: str,
        migration_type: str,
        status: str,
        at: datetime,
        **fields: Any,
    ) -> MigrationTask:
        """A task that has not run: no progress, no checkpoint, no end; `fields` sets
        the rest (its method, source and target)."""
        row = cls(
            task_id=str(uuid.uuid4()),
            project_id=project_id,
            task_name=task_name,
            description=description,
            migration_type=migration_type,
            migration_method="",
            file_source="",
            bucket_name=None,
            backup_id=None,
            network_type=None,
            target_instance_id="",
            target_db=None,
            target_password_encrypted=None,
            target_instance_name="",
            target_instance_addrs="",
            status=status,
            error_message="",
            resume_mode=None,
            created_at=at,
            updated_at=at,
            started_at=None,
            finished_at=None,
            released_at=None,
            stop_requested=False,
            bytes_total=0,
            bytes_read=0,
            keys_written=0,
            keys_skipped_expired=0,
            keys_skipped_existing=0,
            keys_skipped_module=0,
            commands_replayed=0,
            commands_refused=0,
            commands_skipped_unknown=0,
            skip_unknown_commands=False,
            ops_per_second=0.0,
            input_kbps=0.0,
            target_dbsize=None,
            source_dbsize=None,
            current_file=None,
            checkpoint_input=None,
            checkpoint_records=None,
            checkpoint_keys=None,
            inputs_fingerprint=None,
        )
        for name, value in fields.items():
            setattr(row, name, value)
        return row


class OnlineMigration(Base):
    """The online side of a migration task of type online_migration (0009): where it
    runs (the VPC fields the API takes), its source, and how far its replication got.
    Its task row holds the rest: status, target, resume mode, progress counters."""

    __tablename__ = "online_migrations"

    task_id: Mapped[str] = mapped_column(
        ForeignKey("migration_tasks.task_id", ondelete="CASCADE"), primary_key=True
    )
    vpc_id: Mapped[str | None] = mapped_column(String(64))
    subnet_id: Mapped[str | None] = mapped_column(String(64))
    security_group_id: Mapped[str | None] = mapped_column(String(64))
    source_addrs: Mapped[str] = mapped_column(Text)  # "host:port[,...]"; "": not configured
    source_instance_id: Mapped[str | None] = mapped_column(String(36))
    source_instance_name: Mapped[str] = mapped_column(String(255))
    source_password_encrypted: Mapped[str | None] = mapped_column(Text)
    source_cluster: Mapped[bool] = mapped_column(Boolean)
    target_cluster: Mapped[bool] = mapped_column(Boolean)
    bandwidth_limit_mb: Mapped[int | None] = mapped_column(Integer)
    replication_id: Mapped[str | None] = mapped_column(String(64))
    applied_offset: Mapped[int | None] = mapped_column(BigInteger)
    source_offset: Mapped[int | None] = mapped_column(BigInteger)
    lag_ms: Mapped[int | None] = mapped_column(BigInteger)
    resyncs_partial: Mapped[int] = mapped_column(Integer)
    resyncs_full: Mapped[int] = mapped_column(Integer)
    full_progress: Mapped[float] = mapped_column(Float)  # 0 to 100
    sync_stop_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sync_stop_error: Mapped[str] = mapped_column(Text)


class TaskFile(Base):
    __tablename__ = "migration_task_files"

    task_id: Mapped[str] = mapped_column(
        ForeignKey("migration_tasks.task_id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_name: Mapped[str] = mapped_column(Text)
    size_text: Mapped[str | None] = mapped_column(String(64))
    update_at: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)


class TaskLog(Base):
    __tablename__ = "migration_task_logs"
    __table_args__ = (Index("ix_migration_task_logs_task_level", "task_id", "log_level"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(
        ForeignKey("migration_tasks.task_id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    log_level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    log_code: Mapped[str] = mapped_column(String(32))
    keyword: Mapped[str] = mapped_column(String(64))

    @classmethod
    def line(
        cls,
        task_id: str,
        level: str,
        message: str,
        at: datetime,
        *,
        code: str = "",
        keyword: str = "",
    ) -> TaskLog:
        """A log line of a task (its level's value, as stored)."""
        return cls(
            task_id=task_id,
            created_at=at,
            log_level=level,
            message=message,
            log_code=code,
            keyword=keyword,
        )


class Backup(Base):
    __tablename__ = "backups"
    __table_args__ = (Index("ix_backups_instance_created", "instance_id", "created_at"),)

    backup_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    instance_id: Mapped[str] = mapped_column(String(36))
    backup_name: Mapped[str] = mapped_column(String(255))
    backup_type: Mapped[str] = mapped_column(String(16))
    backup_format: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float)
    size: Mapped[int] = mapped_column(BigInteger)
    error_code: Mapped[str] = mapped_column(String(32))
    error_message: Mapped[str] = mapped_column(Text)
    remark: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    execution_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BackupFile(Base):
    __tablename__ = "backup_files"

    backup_id: Mapped[str] = mapped_column(
        ForeignKey("backups.backup_id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_name: Mapped[str] = mapped_column(String(255))
    object_key: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    source_addr: Mapped[str] = mapped_column(String(255))


class Restore(Base):
    __tablename__ = "restores"
    __table_args__ = (Index("ix_restores_instance_created", "instance_id", "created_at"),)

    restore_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    instance_id: Mapped[str] = mapped_column(String(36))
    backup_id: Mapped[str] = mapped_column(String(36))
    restore_name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float] = mapped_column(Float)
    error_code: Mapped[str] = mapped_column(String(32))
    error_message: Mapped[str] = mapped_column(Text)
    remark: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WorkUnit(Base):
    """A unit of distributed work: one input of a migration task (unit_index: its place
    among the task's inputs), or a whole restore or backup (unit_index 0). The lease says
    which worker runs it, until when; the database, not the broker, is what says what is
    left to do, so that a lost message or a dead worker costs a lease, not the unit."""

    __tablename__ = "work_units"
    __table_args__ = (Index("ix_work_units_state", "state", "lease_expires_at"),)

    work_kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    work_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    unit_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    input_name: Mapped[str] = mapped_column(Text)
    input_fingerprint: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dispatched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    dispatches: Mapped[int] = mapped_column(Integer)
    runs: Mapped[int] = mapped_column(Integer)
    checkpoint_records: Mapped[int | None] = mapped_column(BigInteger)
    checkpoint_keys: Mapped[int | None] = mapped_column(BigInteger)
    bytes_total: Mapped[int] = mapped_column(BigInteger)
    bytes_read: Mapped[int] = mapped_column(BigInteger)
    keys_written: Mapped[int] = mapped_column(BigInteger)
    keys_skipped_expired: Mapped[int] = mapped_column(BigInteger)
    keys_skipped_existing: Mapped[int] = mapped_column(BigInteger)
    keys_skipped_module: Mapped[int] = mapped_column(BigInteger)
    commands_replayed: Mapped[int] = mapped_column(BigInteger)
    commands_refused: Mapped[int] = mapped_column(BigInteger)
    commands_skipped_unknown: Mapped[int] = mapped_column(BigInteger)
    error_message: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UnitRun(Base):
    """One run of a unit on a worker, from its start to its last heartbeat and its end
    (none: the worker died): what ran where, and proof that no two overlapped."""

    __tablename__ = "unit_runs"
    __table_args__ = (Index("ix_unit_runs_work", "work_kind", "work_id", "unit_index"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    work_kind: Mapped[str] = mapped_column(String(16))
    work_id: Mapped[str] = mapped_column(String(36))
    unit_index: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(16))
