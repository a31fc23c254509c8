"""`Store`: every read and write of the service's data, each in its own short transaction.

One repository per aggregate, each in its module: access keys and accepted signatures
(`keys`), instances and their addresses (`instances`), migration tasks (`tasks`), the
online side of online migrations (`online`), task logs (`task_logs`), backups and
restores (`backups`), bucket grants (`grants`), the units distributed workers run
(`units`). `Store` is all of them over one engine, so a caller holds one object. Methods
return frozen records (`records.py`), never ORM objects, so callers in any thread hold
plain values and no session.
"""

from __future__ import annotations

from dcs_migration.store.backups import BackupRecords
from dcs_migration.store.base import WRITE_OPTION
from dcs_migration.store.grants import BucketGrants
from dcs_migration.store.instances import AddressHeld, Instances
from dcs_migration.store.keys import AccessKeys
from dcs_migration.store.online import OnlineMigrations
from dcs_migration.store.task_logs import TaskLogs
from dcs_migration.store.tasks import NotFoundError, Tasks
from dcs_migration.store.units import WorkUnits

__all__ = ["WRITE_OPTION", "AddressHeld", "NotFoundError", "Store"]


class Store(
    AccessKeys,
    Instances,
    Tasks,
    OnlineMigrations,
    TaskLogs,
    BackupRecords,
    BucketGrants,
    WorkUnits,
):
    """The store of one database: every repository, and the engine's life."""

    def __repr__(self) -> str:
        return f"Store({self.engine.url!r})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
