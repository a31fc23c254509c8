"""The in-process executor: worker threads that run migration tasks, at most N at once.

A task waits in a queue (MIGRATING) until a worker takes it, in the order submitted.
The worker runs the import with a progress callback that writes the store at most once
a second, and a stop check that a stop request answers within a second (the importer
asks after every megabyte read). The outcome (SUCCESS, FAILED with the file, offset and
key, or TERMINATED) is written with the final counts and logged.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dcs_migration.importer import ImportResult, Progress, run_import
from dcs_migration.sources.backup_store import BackupStore
from dcs_migration.sources.bucket import object_path
from dcs_migration.store import BackupStatus, TaskRecord
from dcs_migration.store.db import Store
from dcs_migration.target.endpoint import Endpoint
from dcs_migration.target.options import WriteOptions

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 1.0
OBS_ENDPOINT_ENV = "DCS_MIGRATION_OBS_ENDPOINT"


@dataclass(frozen=True)
class Job:
    project_id: str
    task_id: str


class TaskRunner:
    def __init__(
        self, store: Store, data_dir: Path, files: BackupStore, *, workers: int = 4
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self.files = files
        self.workers = workers
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"migration-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, project_id: str, task_id: str) -> None:
        with self._lock:
            self._stops[task_id] = threading.Event()
        self._queue.put(Job(project_id, task_id))

    def stop(self, task_id: str) -> None:
        """Ask a task to stop; it ends TERMINATED within about a second."""
        with self._lock:
            event = self._stops.get(task_id)
        if event is not None:
            event.set()

    def shutdown(self, timeout: float = 5.0) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    # -- the work ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run(job)
            except Exception as exc:  # a bug must not kill the worker or leave a task hanging
                log.exception("task %s failed unexpectedly", job.task_id)
                self.store.set_status(
                    job.task_id, "FAILED", f"internal error: {exc}", finished=True
                )
            finally:
                with self._lock:
                    self._stops.pop(job.task_id, None)

    def _run(self, job: Job) -> None:
        store = self.store
        task = store.get_task(job.project_id, job.task_id)
        if task is None:
            return
        with self._lock:
            stop = self._stops.setdefault(job.task_id, threading.Event())
        if task.stop_requested or stop.is_set():
            store.set_status(task.task_id, "TERMINATED", "stopped before it started", finished=True)
            store.add_log(task.task_id, "INFO", "the task was stopped before it started")
            return
        instance = store.get_instance(job.project_id, task.target_instance_id)
        if instance is None:
            store.set_status(
                task.task_id, "FAILED", "the target instance no longer exists", finished=True
            )
            return
        endpoint = Endpoint(
            host=instance.ip,
            port=instance.port,
            username=instance.username,
            password=store.task_password(task.task_id),
        )
        sources = self._sources(task)
        if sources is None:
            message = f"backup {task.backup_id} is no longer a succeed backup of this project"
            store.set_status(task.task_id, "FAILED", message, finished=True)
            store.add_log(task.task_id, "ERROR", message)
            return
        if not store.mark_started(task.task_id):
            return  # stopped (or removed) while it waited
        store.add_log(
            task.task_id, "INFO", f"import started: {len(sources)} file(s) into {instance.name}"
        )
        last = 0.0
        started = time.monotonic()

        current_file = ""

        def on_progress(p: Progress) -> None:
            nonlocal last, current_file
            if p.current_input != current_file:
                current_file = p.current_input
                store.add_log(task.task_id, "INFO", f"reading {current_file}")
            now = time.monotonic()
            if now - last < PROGRESS_SECONDS:
                return
            last = now
            elapsed = max(now - started, 1e-6)
            store.update_progress(
                task.task_id,
                bytes_total=p.bytes_total,
                bytes_read=p.bytes_read,
                keys_written=p.keys_written,
                ops_per_second=p.keys_written / elapsed,
                input_kbps=p.bytes_read / 1024 / elapsed,
                current_file=p.current_input,
            )

        def should_stop() -> bool:
            return stop.is_set()

        options = WriteOptions(db=task.target_db)
        result = run_import(
            sources,
            endpoint,
            options,
            cluster=instance.instance_type == "cluster",
            on_progress=on_progress,
            should_stop=should_stop,
        )
        self._finish(task.task_id, result)

    def _sources(self, task: TaskRecord) -> list[str] | None:
        """What the task reads: objects of its bucket, or the files of its backup (None
        when that backup is gone)."""
        if task.file_source == "backup_record":
            backup = self.store.get_backup(task.project_id, task.backup_id or "")
            if backup is None or backup.status is not BackupStatus.SUCCEED:
                return None
            return [self.files.source(f.object_key) for f in backup.files]
        bucket = task.bucket_name or ""
        keys = [f.file_name for f in task.files]
        if os.environ.get(OBS_ENDPOINT_ENV):
            return [f"s3://{bucket}/{key}" for key in keys]
        return [str(object_path(self.data_dir, bucket, key)) for key in keys]

    def _finish(self, task_id: str, result: ImportResult) -> None:
        store = self.store
        elapsed = max(result.seconds, 1e-6)
        store.update_progress(
            task_id,
            bytes_total=result.bytes_total,
            bytes_read=result.bytes_read,
            keys_written=result.keys_written,
            keys_skipped_expired=result.keys_skipped_expired,
            keys_skipped_existing=result.keys_skipped_existing,
            keys_skipped_module=result.keys_skipped_module,
            commands_replayed=result.commands_replayed,
            ops_per_second=result.keys_written / elapsed,
            input_kbps=result.bytes_read / 1024 / elapsed,
        )
        for warning in result.warnings:
            store.add_log(task_id, "WARNING", warning)
        if result.keys_skipped_expired:
            store.add_log(
                task_id,
                "WARNING",
                f"{result.keys_skipped_expired} keys had already expired and were skipped",
            )
        summary = (
            f"{result.keys_written} keys written, {result.bytes_read} of {result.bytes_total} "
            f"bytes read in {result.seconds:.1f} s"
        )
        if result.status == "SUCCESS":
            store.set_status(task_id, "SUCCESS", None, finished=True)
            store.add_log(task_id, "INFO", f"import finished: {summary}")
        elif result.status == "TERMINATED":
            store.set_status(task_id, "TERMINATED", None, finished=True)
            store.add_log(task_id, "INFO", f"import stopped: {summary}")
        else:
            store.set_status(task_id, "FAILED", result.error, finished=True)
            store.add_log(task_id, "ERROR", f"import failed: {result.error} ({summary})")
