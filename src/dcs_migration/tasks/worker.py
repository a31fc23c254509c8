"""The process one migration task runs in: `python -m dcs_migration.tasks.worker PROJECT TASK`.

Started by the service's runner, which writes the service's settings to its stdin as JSON
(`Settings.to_json`): the process runs with exactly the service's settings, whatever of
them came from the command line rather than the environment. SIGTERM is the user's stop
(the task ends TERMINATED); SIGUSR1 is the service stopping (the task is left MIGRATING
with its checkpoint, for the next start to resume or fail). The process dies with the
service (PR_SET_PDEATHSIG), as a thread of it would.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from types import FrameType

from dcs_migration.config import SERVICE_PID_ENV, Settings
from dcs_migration.sources.backup_store import make_backup_store
from dcs_migration.store import Store, open_store
from dcs_migration.tasks.buckets import Buckets
from dcs_migration.tasks.job import TaskJob

USER_STOP = signal.SIGTERM
SERVICE_STOP = signal.SIGUSR1
PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


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
    if len(argv) != 2:
        print("usage: python -m dcs_migration.tasks.worker PROJECT_ID TASK_ID", file=sys.stderr)
        return 2
    project_id, task_id = argv
    die_with_parent()
    # Below the service and its targets: the API and a stop stay quick whatever runs.
    os.nice(5)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    leaving = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        (stop if signum == USER_STOP else leaving).set()

    signal.signal(USER_STOP, on_signal)
    signal.signal(SERVICE_STOP, on_signal)
    settings = Settings.from_json(sys.stdin.read())
    store = open_store(
        settings.database_url,
        settings.data_dir,
        secret_keys=settings.secret_keys,
        sqlite_busy_seconds=settings.sqlite_busy_timeout,
    )
    try:
        buckets = Buckets(store, settings.data_dir, object_store=settings.object_store)
        job = TaskJob(store, buckets, make_backup_store(settings), settings)
        job.run(project_id, task_id, stop, leaving)
    except Exception as exc:  # a bug: the task still ends, saying so, and the log has it
        log.exception("task %s: the import process failed", task_id)
        _fail(store, project_id, task_id, exc)
        return 1
    finally:
        store.close()
    return 0


def _fail(store: Store, project_id: str, task_id: str, exc: Exception) -> None:
    """End a task whose run broke off on an unexpected error: FAILED, naming the error's
    kind only (its text may hold a path of this machine; the service's log has it all)."""
    message = (
        f"the import stopped on an internal error ({type(exc).__name__}); "
        "the service's log has the details"
    )
    try:
        task = store.get_task(project_id, task_id)
        if task is not None and task.is_running:
            store.set_status(task_id, "FAILED", message, finished=True)
            store.add_log(task_id, "ERROR", message)
    except Exception:  # the database too: the service fails the task when the process ends
        log.exception("task %s: its failure could not be written", task_id)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
