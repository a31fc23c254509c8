"""The process one migration task runs in: `python -m dcs_migration.tasks.worker PROJECT TASK`.

Started by the service's runner with the service's environment (data dir, database URL,
secret key, object store). SIGTERM is the user's stop (the task ends TERMINATED); SIGUSR1
is the service stopping (the task is left MIGRATING with its checkpoint, for the next
start to resume or fail). The process dies with the service (PR_SET_PDEATHSIG), as a
thread of it would.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from types import FrameType

from dcs_migration.config import Settings
from dcs_migration.sources.backup_store import make_backup_store
from dcs_migration.store import open_store
from dcs_migration.tasks.job import TaskJob

USER_STOP = signal.SIGTERM
SERVICE_STOP = signal.SIGUSR1
PARENT_ENV = "DCS_MIGRATION_SERVICE_PID"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """End this process when the service that started it ends, even by SIGKILL, as a
    thread of it would (Linux; elsewhere a restart fails what was left running)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    parent = os.environ.get(PARENT_ENV)
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
    settings = Settings.from_env()
    store = open_store(settings.database_url, settings.data_dir)
    try:
        job = TaskJob(
            store,
            settings.data_dir,
            make_backup_store(settings.data_dir),
            reply_timeout=settings.reply_timeout,
        )
        job.run(project_id, task_id, stop, leaving)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
