"""The process one unit of work runs in: `python -m dcs_migration.tasks.worker KIND PROJECT ID`
(KIND `migration_task`, `online_migration`, `restore` or `backup`, ID the task's, the
restore's or the backup's).

Started by the service's inline executor, which writes the service's settings to its
stdin as JSON (`Settings.to_json`): the process runs with exactly the service's settings,
whatever of them came from the command line rather than the environment. SIGTERM is the
user's stop (the task ends TERMINATED); SIGUSR1 is the service stopping (a task is left
MIGRATING with its checkpoint, an online migration running, for the next start to resume
or fail; a restore or a backup ends at once, and the next start fails it). The process
dies with the service (PR_SET_PDEATHSIG), as a thread of it would.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from dcs_migration.config import SERVICE_PID_ENV, Settings
from dcs_migration.sources.backup_store import make_backup_store
from dcs_migration.store import Store, open_settings_store
from dcs_migration.tasks.backups import BackupJob, fail_broken_backup
from dcs_migration.tasks.buckets import Buckets
from dcs_migration.tasks.executor import WorkKind
from dcs_migration.tasks.imports import fail_broken_task
from dcs_migration.tasks.job import TaskJob
from dcs_migration.tasks.online import OnlineJob
from dcs_migration.tasks.restore import RestoreJob, fail_broken_restore
from dcs_migration.tasks.service import TaskInputs

USER_STOP = signal.SIGTERM
SERVICE_STOP = signal.SIGUSR1
PR_SET_PDEATHSIG = 1
USAGE = (
    "usage: python -m dcs_migration.tasks.worker "
    "migration_task|online_migration|restore|backup PROJECT_ID ID"
)
# The kinds whose processes hear the user's stop and the service's (the others end at once).
SIGNALLED = frozenset({WorkKind.MIGRATION_TASK, WorkKind.ONLINE_MIGRATION})

log = logging.getLogger(__name__)


class WorkerJob(Protocol):
    """What a job does in its unit's process."""

    def run(
        self,
        project_id: str,
        work_id: str,
        stop: threading.Event,
        leaving: threading.Event | None = None,
    ) -> None: ...


# How a unit whose run broke off on an unexpected error (a bug) ends, whatever broke.
BROKEN: dict[WorkKind, Callable[[Store, str, str, Exception], None]] = {
    WorkKind.MIGRATION_TASK: fail_broken_task,
    WorkKind.RESTORE: fail_broken_restore,
    WorkKind.BACKUP: fail_broken_backup,
    WorkKind.ONLINE_MIGRATION: fail_broken_task,
}


def task_inputs(store: Store, settings: Settings) -> TaskInputs:
    """Where the tasks of a process with these settings find their files."""
    buckets = Buckets(
        store,
        settings.data_dir,
        object_store=settings.object_store,
        backup_bucket=settings.backup_bucket,
    )
    return TaskInputs(store, buckets, make_backup_store(settings), settings)


def make_jobs(
    store: Store, inputs: TaskInputs, settings: Settings
) -> dict[WorkKind, TaskJob | RestoreJob | BackupJob | OnlineJob]:
    """The job of each kind of work, for a process with these settings."""
    return {
        WorkKind.MIGRATION_TASK: TaskJob(store, inputs, settings),
        WorkKind.RESTORE: RestoreJob(store, inputs.files, settings),
        WorkKind.BACKUP: BackupJob(store, inputs.files, settings),
        WorkKind.ONLINE_MIGRATION: OnlineJob(store, settings),
    }


def die_with_parent() -> None:
    """End this process when the service that started it ends, even by SIGKILL, as a
    thread of it would (Linux; elsewhere a restart fails what was left running)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    parent = os.environ.get(SERVICE_PID_ENV)
    if parent and int(parent) != os.getppid():  # it ended before the line above ran
        os._exit(1)


def main(argv: list[str]) -> int:
    try:
        kind_name, project_id, work_id = argv
        kind = WorkKind(kind_name)
    except ValueError:
        print(USAGE, file=sys.stderr)
        return 2
    die_with_parent()
    # Below the service and its targets: the API and a stop stay quick whatever runs.
    os.nice(5)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    leaving = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        (stop if signum == USER_STOP else leaving).set()

    if kind in SIGNALLED:
        signal.signal(USER_STOP, on_signal)
        signal.signal(SERVICE_STOP, on_signal)
    # A restore or a backup keeps the signals' default: it ends at once, and the next
    # start fails it.
    settings = Settings.from_json(sys.stdin.read())
    store = open_settings_store(settings)
    try:
        job: WorkerJob = make_jobs(store, task_inputs(store, settings), settings)[kind]
        job.run(project_id, work_id, stop, leaving)
    except Exception as exc:  # a bug: the unit still ends, saying so, and the log has it
        log.exception("%s %s: the process failed", kind.value, work_id)
        BROKEN[kind](store, project_id, work_id, exc)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
