"""The plain, frozen records that the store returns, and the values its columns take.

No record holds a password; the two that carry an SK hide it from `repr`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from dcs_migration.statuses import TaskStatus as TaskStatus

# A worker may still be writing (or the task waits for one): it cannot be deleted.
RUNNING_STATUSES = frozenset(
    {
        TaskStatus.MIGRATING,
        TaskStatus.TERMINATING,
        TaskStatus.FULLMIGRATING,
        TaskStatus.INCRMIGEATING,
    }
)
# An online migration configured and waiting for a worker, or running.
ONLINE_RUNNING = frozenset(
    {TaskStatus.FULLMIGRATING, TaskStatus.INCRMIGEATING, TaskStatus.TERMINATING}
)
# An online migration that `restart_online` sets going again.
ONLINE_RESTARTABLE = frozenset({TaskStatus.TERMINATED, TaskStatus.MIGRATION_FAILED})

BACKUP_IMPORT = "backupfile_import"
ONLINE_MIGRATION = "online_migration"


class LogLevel(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def log_level(level: LogLevel | str) -> LogLevel:
    """The level a caller names, in any case; ValueError for one that is not a level."""
    try:
        return LogLevel(level.upper())
    except ValueError:
        raise ValueError(f"log level must be one of {[x.value for x in LogLevel]}") from None


INSTANCE_TYPES = frozenset({"single", "cluster"})
FILE_SOURCES = frozenset({"self_build_obs", "backup_record"})

# Fields of a task that `Store.update_progress` may set.
PROGRESS_FIELDS: dict[str, tuple[type, ...]] = {
    "bytes_total": (int,),
    "bytes_read": (int,),
    "keys_written": (int,),
    "keys_skipped_expired": (int,),
    "keys_skipped_existing": (int,),
    "keys_skipped_module": (int,),
    "commands_replayed": (int,),
    "commands_refused": (int,),
    "commands_skipped_unknown": (int,),
    "ops_per_second": (int, float),
    "input_kbps": (int, float),
    "target_dbsize": (int, type(None)),
    "source_dbsize": (int, type(None)),
    "current_file": (str, type(None)),
    "checkpoint_input": (int, type(None)),
    "checkpoint_records": (int, type(None)),
    "checkpoint_keys": (int, type(None)),
}

# Fields of an online migration that `Store.update_online` may set.
ONLINE_FIELDS: dict[str, tuple[type, ...]] = {
    "replication_id": (str, type(None)),
    "applied_offset": (int, type(None)),
    "source_offset": (int, type(None)),
    "lag_ms": (int, type(None)),
    "resyncs_partial": (int,),
    "resyncs_full": (int,),
    "full_progress": (int, float),
}


@dataclass(frozen=True)
class CreatedKey:
    """A new access key. The SK is shown this once; unpacks as `ak, sk = ...`."""

    ak: str
    project_id: str
    sk: str = field(repr=False)

    def __iter__(self) -> Iterator[str]:
        return iter((self.ak, self.sk))


@dataclass(frozen=True)
class KeySecret:
    """What verifying a signature needs; unpacks as `project_id, sk = ...`."""

    project_id: str
    sk: str = field(repr=False)

    def __iter__(self) -> Iterator[str]:
        return iter((self.project_id, self.sk))


@dataclass(frozen=True)
class KeyRecord:
    ak: str
    project_id: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class BucketGrantRecord:
    """A bucket the operator granted to a project: tasks of that project may read it."""

    project_id: str
    bucket_name: str
    created_at: datetime


@dataclass(frozen=True)
class InstanceRecord:
    instance_id: str
    project_id: str
    name: str
    instance_type: str  # single | cluster
    addrs: str  # "host:port[,host:port...]"
    username: str | None
    has_password: bool
    engine: str
    engine_version: str | None
    status: str
    created_at: datetime

    @property
    def addr_list(self) -> list[str]:
        return [addr.strip() for addr in self.addrs.split(",") if addr.strip()]

    @property
    def ip(self) -> str:
        """The first address's host (brackets of an IPv6 literal removed)."""
        host, _, _ = self.addr_list[0].rpartition(":")
        return host.strip("[]")

    @property
    def port(self) -> int:
        return int(self.addr_list[0].rpartition(":")[2])


@dataclass(frozen=True)
class NewTaskFile:
    """A file of a new task, as the request gave it."""

    file_name: str
    size: str | None = None  # digits, or a human form such as "754.0MB"
    update_at: str | None = None
    size_bytes: int | None = None  # None: parsed from `size` when it can be


@dataclass(frozen=True)
class TaskFileRecord:
    position: int
    file_name: str
    size_text: str | None
    update_at: str | None
    size_bytes: int | None


@dataclass(frozen=True)
class OnlineConfig:
    """What configuring an online migration sets: its source and target (addresses
    already checked), how it runs. The passwords are hidden from `repr`; None: none
    given (an instance named by id lends its own)."""

    migration_method: str  # full_amount_migration | incremental_migration
    resume_mode: str  # auto | manual
    bandwidth_limit_mb: int | None
    source_addrs: str  # "host:port[,host:port...]": a cluster's every master
    source_instance_id: str | None
    source_instance_name: str
    source_password: str | None = field(repr=False)
    source_cluster: bool
    target_addrs: str
    target_instance_id: str | None
    target_instance_name: str
    target_password: str | None = field(repr=False)
    target_cluster: bool


@dataclass(frozen=True)
class OnlineRecord:
    """The online side of a migration task (no password: whether the source has one)."""

    task_id: str
    vpc_id: str | None
    subnet_id: str | None
    security_group_id: str | None
    source_addrs: str
    source_instance_id: str | None
    source_instance_name: str
    has_source_password: bool
    source_cluster: bool
    target_cluster: bool
    bandwidth_limit_mb: int | None
    replication_id: str | None
    applied_offset: int | None
    source_offset: int | None
    lag_ms: int | None
    resyncs_partial: int
    resyncs_full: int
    full_progress: float  # 0 to 100
    sync_stop_requested_at: datetime | None
    sync_stop_error: str

    @property
    def configured(self) -> bool:
        return bool(self.source_addrs)

    @property
    def source_addr_list(self) -> list[str]:
        return [addr.strip() for addr in self.source_addrs.split(",") if addr.strip()]

    @property
    def offset_behind(self) -> int:
        """Bytes of the source's stream not yet applied to the target (0: in sync, or
        not known yet)."""
        if self.source_offset is None or self.applied_offset is None:
            return 0
        return max(self.source_offset - self.applied_offset, 0)


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    project_id: str
    task_name: str
    description: str
    migration_type: str
    migration_method: str
    file_source: str
    bucket_name: str | None
    backup_id: str | None
    network_type: str | None
    target_instance_id: str
    target_db: int | None
    has_password_override: bool
    target_instance_name: str
    target_instance_addrs: str
    status: TaskStatus
    error_message: str
    resume_mode: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    released_at: datetime | None
    stop_requested: bool
    bytes_total: int
    bytes_read: int
    keys_written: int
    keys_skipped_expired: int
    keys_skipped_existing: int
    keys_skipped_module: int
    commands_replayed: int
    commands_refused: int
    commands_skipped_unknown: int
    skip_unknown_commands: bool
    ops_per_second: float
    input_kbps: float
    target_dbsize: int | None
    source_dbsize: int | None
    current_file: str | None
    files: tuple[TaskFileRecord, ...] = ()
    # (input index, records done, keys written) the target acknowledged; None: none yet
    checkpoint: tuple[int, int, int] | None = None
    inputs_fingerprint: str | None = None  # JSON, as the task first saw its inputs
    online: OnlineRecord | None = None  # an online migration's own side

    @property
    def is_running(self) -> bool:
        """MIGRATING, FULLMIGRATING, INCRMIGEATING or TERMINATING: a worker may still be
        writing (an online task RUNNING is only created, not configured: not running)."""
        return self.status in RUNNING_STATUSES

    @property
    def is_online(self) -> bool:
        return self.migration_type == ONLINE_MIGRATION

    @property
    def percent(self) -> int:
        """Bytes read out of the total, 0 to 100 (100 once SUCCESS)."""
        if self.status == TaskStatus.SUCCESS:
            return 100
        if self.bytes_total <= 0:
            return 0
        return max(0, min(100, self.bytes_read * 100 // self.bytes_total))


@dataclass(frozen=True)
class TaskLogRecord:
    id: int
    task_id: str
    created_at: datetime
    log_level: LogLevel
    message: str
    log_code: str
    keyword: str


@dataclass(frozen=True)
class DeleteResult:
    deleted: tuple[str, ...]  # removed, with their files and logs
    running: tuple[str, ...]  # RUNNING_STATUSES: stop them first
    missing: tuple[str, ...]  # not a task of this project


class BackupStatus(StrEnum):
    WAITING = "waiting"
    BACKUPING = "backuping"
    SUCCEED = "succeed"
    FAILED = "failed"
    DELETED = "deleted"


class RestoreStatus(StrEnum):
    WAITING = "waiting"
    RESTORING = "restoring"
    SUCCEED = "succeed"
    FAILED = "failed"


BACKUP_RUNNING = frozenset({BackupStatus.WAITING, BackupStatus.BACKUPING})
RESTORE_RUNNING = frozenset({RestoreStatus.WAITING, RestoreStatus.RESTORING})


@dataclass(frozen=True)
class BackupFileRecord:
    position: int
    file_name: str  # the name users see, e.g. "10.0.0.1_6379.rdb"
    object_key: str  # where the backup store keeps it
    size: int
    source_addr: str  # the master it came from


@dataclass(frozen=True)
class BackupRecord:
    backup_id: str
    project_id: str
    instance_id: str
    backup_name: str
    backup_type: str
    backup_format: str
    status: BackupStatus
    progress: float
    size: int
    error_code: str
    error_message: str
    remark: str
    created_at: datetime
    updated_at: datetime
    execution_at: datetime | None
    finished_at: datetime | None
    files: tuple[BackupFileRecord, ...] = ()

    @property
    def is_running(self) -> bool:
        return self.status in BACKUP_RUNNING


@dataclass(frozen=True)
class RestoreRecord:
    restore_id: str
    project_id: str
    instance_id: str
    backup_id: str
    restore_name: str
    status: RestoreStatus
    progress: float
    error_code: str
    error_message: str
    remark: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
