"""The executor seam: what the service hands its work to, and stops it through.

A unit of work (`Work`) is plain data: its kind, its project and the id of its row (a
migration task or a restore), so that it can be handed to a process of this machine (as
its arguments) or to another machine. Everything a run needs is read from the store by the run
itself. The service and the API see only `Executor`; `runner.InlineExecutor` (one
process per unit, on this machine) is the first implementation, and a distributed
engine is another (`distributed.CeleryExecutor`) with the same five methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class WorkKind(StrEnum):
    MIGRATION_TASK = "migration_task"  # an import of backup files into an instance
    RESTORE = "restore"  # an instance flushed and loaded from one of its backups
    BACKUP = "backup"  # an instance's data streamed into the backup store
    ONLINE_MIGRATION = "online_migration"  # a live Redis copied into another, kept in sync


@dataclass(frozen=True, slots=True)
class Work:
    """One unit of work: `work_id` is the task id (an import's or an online migration's),
    the restore id or the backup id."""

    kind: WorkKind
    project_id: str
    work_id: str

    @classmethod
    def migration_task(cls, project_id: str, task_id: str) -> Work:
        return cls(WorkKind.MIGRATION_TASK, project_id, task_id)

    @classmethod
    def online_migration(cls, project_id: str, task_id: str) -> Work:
        return cls(WorkKind.ONLINE_MIGRATION, project_id, task_id)

    @classmethod
    def restore(cls, project_id: str, restore_id: str) -> Work:
        return cls(WorkKind.RESTORE, project_id, restore_id)

    @classmethod
    def backup(cls, project_id: str, backup_id: str) -> Work:
        return cls(WorkKind.BACKUP, project_id, backup_id)


class Executor(Protocol):
    """Runs units of work away from the API, at most some number at once.

    `submit` never waits for the work (it is queued; its row already says MIGRATING or
    waiting); `stop` asks a migration task (an import or an online migration) to end
    TERMINATED and returns at once;
    `running` is what was submitted here and has not ended yet (waiting or running);
    `shutdown` asks the running work to leave, and leaves queued work queued: the next
    start takes a migration task up again from its checkpoint (or fails it), and fails a
    restore as interrupted.
    """

    # True when work runs only in this service's processes: what a stopped service left
    # running was interrupted, and its next start recovers it. False when workers
    # elsewhere may still run it (they recover their own).
    local: bool

    def start(self) -> None:
        """Begin taking work (the service calls it once, after its own recovery)."""

    def submit(self, work: Work) -> None: ...

    def stop(self, work: Work) -> None: ...

    def running(self) -> frozenset[Work]: ...

    def shutdown(self, timeout: float = 5.0) -> None: ...
