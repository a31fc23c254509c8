"""Persistence (SQLAlchemy 2): access keys, bucket grants, instances, migration tasks with their
files and logs.

SQLite in the data dir by default, PostgreSQL (or another SQLAlchemy URL) when one is given.
`open_store(url, data_dir)` applies the schema migrations and returns a `Store`, whose methods
each run in their own short transaction and return frozen records, never ORM objects, so any
thread may call them. Secrets (SKs, instance and task passwords) are encrypted at rest and
never appear in a record's repr.
"""

from dcs_migration.sizes import parse_size
from dcs_migration.store.backups import BackupUnusable, InstanceBusy
from dcs_migration.store.crypto import SecretBox, SecretKeyError, load_secret_box
from dcs_migration.store.db import SQLITE_FILE_NAME, open_settings_store, open_store
from dcs_migration.store.records import (
    BACKUP_RUNNING,
    RESTORE_RUNNING,
    BackupFileRecord,
    BackupRecord,
    BackupStatus,
    BucketGrantRecord,
    CreatedKey,
    DeleteResult,
    InstanceRecord,
    KeyRecord,
    KeySecret,
    LogLevel,
    NewTaskFile,
    OnlineConfig,
    OnlineRecord,
    RestoreRecord,
    RestoreStatus,
    TaskFileRecord,
    TaskLogRecord,
    TaskRecord,
    TaskStatus,
)
from dcs_migration.store.repository import AddressHeld, NotFoundError, Store

__all__ = [
    "BACKUP_RUNNING",
    "RESTORE_RUNNING",
    "SQLITE_FILE_NAME",
    "AddressHeld",
    "BackupFileRecord",
    "BackupRecord",
    "BackupStatus",
    "BackupUnusable",
    "BucketGrantRecord",
    "CreatedKey",
    "DeleteResult",
    "InstanceBusy",
    "InstanceRecord",
    "KeyRecord",
    "KeySecret",
    "LogLevel",
    "NewTaskFile",
    "NotFoundError",
    "OnlineConfig",
    "OnlineRecord",
    "RestoreRecord",
    "RestoreStatus",
    "SecretBox",
    "SecretKeyError",
    "Store",
    "TaskFileRecord",
    "TaskLogRecord",
    "TaskRecord",
    "TaskStatus",
    "load_secret_box",
    "open_settings_store",
    "open_store",
    "parse_size",
]
