"""A restore, run in a process of the executor as every import is: the instance a backup
was taken from is flushed, then loaded whole from the backup's files (as the managed
service restores). Its record says `restoring` while it runs, then `succeed` or `failed`.

A restore cannot be stopped by the user. When the service stops, its process ends at once
(as it would have with the service) and the next start fails it as interrupted.
"""

from __future__ import annotations

import logging
import threading
import time

from dcs_migration.api.errors import DCS_JOB_FAILED
from dcs_migration.config import Settings
from dcs_migration.importer import ImportHooks, Progress, resolve_inputs, run_import
from dcs_migration.sources.backup_store import BackupStore
from dcs_migration.store import RESTORE_RUNNING, BackupStatus, RestoreStatus, Store, TaskStatus
from dcs_migration.tasks.endpoints import instance_endpoint
from dcs_migration.writer.options import WriteOptions

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 1.0


class RestoreJob:
    """Runs restores (`WorkKind.RESTORE`), one per call of `run`."""

    def __init__(self, store: Store, files: BackupStore, settings: Settings) -> None:
        self.store = store
        self.files = files
        self.settings = settings

    def run(
        self,
        project_id: str,
        restore_id: str,
        stop: threading.Event,
        leaving: threading.Event | None = None,
        *,
        again: bool = False,
    ) -> None:
        """Restore to the end: the user cannot stop a restore, and a service that leaves
        ends its process (`stop` and `leaving` are not looked at). `again`: an earlier
        run was cut off (its worker died): it runs whole again, the instance flushed."""
        store = self.store
        restore = store.get_restore(project_id, restore_id)
        if restore is None or not store.restore_started(restore_id, again=again):
            return
        backup = store.get_backup(project_id, restore.backup_id)
        instance = store.get_instance(project_id, restore.instance_id)
        if backup is None or backup.status is not BackupStatus.SUCCEED or instance is None:
            store.finish_restore(
                restore_id,
                RestoreStatus.FAILED,
                DCS_JOB_FAILED,
                "the backup or the instance is no longer there",
            )
            return
        last = 0.0

        def on_progress(p: Progress) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PROGRESS_SECONDS and p.bytes_total:
                last = now
                store.restore_progress(restore_id, 100.0 * p.bytes_read / p.bytes_total)

        password = store.instance_password(instance.project_id, instance.instance_id)
        # As the managed service does: the instance is emptied, then loaded whole.
        sources = [self.files.source(f.object_key) for f in backup.files]
        result = run_import(
            lambda: resolve_inputs(sources, self.settings),
            instance_endpoint(store, instance, self.settings.allowed_networks, password=password),
            WriteOptions(
                flush=True,
                handoff_addr=self.settings.handoff_addr,
                handoff_bind=self.settings.handoff_bind,
            ),
            ImportHooks(on_progress=on_progress),
            cluster=instance.instance_type == "cluster",
        )
        if result.status == TaskStatus.SUCCESS:
            store.finish_restore(restore_id, RestoreStatus.SUCCEED)
        else:
            store.finish_restore(
                restore_id, RestoreStatus.FAILED, DCS_JOB_FAILED, result.error or result.status
            )

    def ended_without_outcome(
        self, project_id: str, restore_id: str, exit_status: int, *, stopped: bool
    ) -> None:
        """The restore's process ended without writing the outcome (a crash): FAILED."""
        restore = self.store.get_restore(project_id, restore_id)
        if restore is None or restore.status not in RESTORE_RUNNING:
            return
        message = f"the restore process ended without a result (exit status {exit_status})"
        log.error("restore %s: %s", restore_id, message)
        self.store.finish_restore(restore_id, RestoreStatus.FAILED, DCS_JOB_FAILED, message)


def fail_broken_restore(store: Store, project_id: str, restore_id: str, exc: Exception) -> None:
    """A restore that broke off on an unexpected error (a bug) ends FAILED."""
    store.finish_restore(restore_id, RestoreStatus.FAILED, DCS_JOB_FAILED, "internal error")
