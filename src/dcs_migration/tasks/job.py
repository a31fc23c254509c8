"""One migration task, run from its row to its end: where its bytes come from, where it
resumes, its progress and checkpoints in the store, and its outcome.

Run in a process of its own (`worker.py`), so that imports neither share the service's
interpreter lock with the API nor take it down if they crash. Progress is written at most
once a second, with the newest checkpoint; a write the database refuses (locked, full)
never stops the import, and the outcome is written as soon as the database takes it.

A stop is heard between chunks, and the replies still due are then collected, so that the
counts are exact; a target that does not answer them (hung) cannot hold a stop up: after
STOP_GRACE_SECONDS its connections are shut down, and the task ends with what the target
had acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from dcs_migration.client.addresses import AddressPolicy, AllowedNetworks
from dcs_migration.client.connection import Interrupter
from dcs_migration.client.endpoint import Endpoint
from dcs_migration.importer import (
    Checkpoint,
    ImportHooks,
    ImportResult,
    Progress,
    resolve_inputs,
    run_import,
)
from dcs_migration.sources.backup_store import BackupStore
from dcs_migration.sources.bucket import BadObjectKey, BucketNotFound, Source
from dcs_migration.sources.fingerprint import describe_change, fingerprint
from dcs_migration.sources.s3 import S3SourceError
from dcs_migration.store import BackupStatus, TaskRecord
from dcs_migration.store.db import Store
from dcs_migration.tasks.buckets import Buckets
from dcs_migration.writer.options import REPLY_TIMEOUT, WriteOptions

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 1.0
STOP_GRACE_SECONDS = 0.5  # a stopped import's wait for the replies still due
LEAVING_POLL_SECONDS = 0.25  # how often the stop watcher looks whether the service leaves


class TaskJob:
    def __init__(
        self,
        store: Store,
        buckets: Buckets,
        files: BackupStore,
        networks: AllowedNetworks,
        *,
        reply_timeout: float = REPLY_TIMEOUT,
    ) -> None:
        self.store = store
        self.buckets = buckets
        self.files = files
        self.networks = networks
        self.reply_timeout = reply_timeout

    def run(
        self,
        project_id: str,
        task_id: str,
        stop: threading.Event,
        leaving: threading.Event | None = None,
    ) -> None:
        """Run the task to its end, unless `stop` (the user: TERMINATED) or `leaving` (the
        service stops: the task stays MIGRATING, its checkpoint saved) is set."""
        store = self.store
        task = store.get_task(project_id, task_id)
        if task is None:
            return
        if task.stop_requested or stop.is_set():
            store.set_status(task.task_id, "TERMINATED", "stopped before it started", finished=True)
            store.add_log(task.task_id, "INFO", "the task was stopped before it started")
            return
        instance = store.get_instance(project_id, task.target_instance_id)
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
            policy=AddressPolicy(self.networks, store.addresses_held_elsewhere(project_id)),
        )
        try:
            sources = self.sources_of(task)
        except (BucketNotFound, BadObjectKey, S3SourceError) as exc:
            sources, message = None, str(exc)
        else:
            message = f"backup {task.backup_id} is no longer a succeed backup of this project"
        if sources is None:
            store.set_status(task.task_id, "FAILED", message, finished=True)
            store.add_log(task.task_id, "ERROR", message)
            return
        if not store.mark_started(task.task_id):
            return  # stopped (or removed) while it waited
        try:
            resume_from = self._resume_point(task, sources)
        except _InputsChanged as exc:
            message = f"the task cannot resume: {exc} since it ran"
            store.set_status(task.task_id, "FAILED", message, finished=True)
            store.add_log(task.task_id, "ERROR", message)
            return
        if resume_from is None:
            store.add_log(
                task.task_id,
                "INFO",
                f"import started: {len(sources)} file(s) into {instance.name}",
            )
        else:
            store.add_log(
                task.task_id,
                "INFO",
                f"import resumed from its checkpoint: file {resume_from.input_index + 1} of "
                f"{len(sources)}, {resume_from.keys_written} keys already written",
            )
        last = 0.0
        started = time.monotonic()
        current_file = ""
        checkpoint: Checkpoint | None = None  # the newest, saved with the next progress

        # Progress is best effort: a write the database refuses (locked, full) is tried
        # again at the next tick, and never stops the import.
        def on_progress(p: Progress) -> None:
            nonlocal last, current_file
            if p.current_input != current_file:
                current_file = p.current_input
                _best_effort(lambda: store.add_log(task.task_id, "INFO", f"reading {current_file}"))
            now = time.monotonic()
            if now - last < PROGRESS_SECONDS:
                return
            last = now
            elapsed = max(now - started, 1e-6)
            _best_effort(
                lambda: store.update_progress(
                    task.task_id,
                    bytes_total=p.bytes_total,
                    bytes_read=p.bytes_read,
                    keys_written=p.keys_written,
                    ops_per_second=p.keys_written / elapsed,
                    input_kbps=p.bytes_read / 1024 / elapsed,
                    current_file=p.current_input,
                    **_checkpoint_fields(checkpoint),
                )
            )

        def should_stop() -> bool:
            return stop.is_set() or (leaving is not None and leaving.is_set())

        def on_checkpoint(point: Checkpoint) -> None:
            nonlocal checkpoint
            checkpoint = point

        options = WriteOptions(
            db=task.target_db,
            skip_unknown_commands=task.skip_unknown_commands,
            reply_timeout=self.reply_timeout,
        )
        interrupter = Interrupter()
        done = threading.Event()
        # Not joined: it ends at its next look, and a late interruption touches nothing.
        threading.Thread(
            target=_interrupt_when_stopped,
            args=(stop, leaving, done, interrupter),
            name="stop-watcher",
            daemon=True,
        ).start()
        try:
            result = run_import(
                lambda: resolve_inputs(sources),
                endpoint,
                options,
                ImportHooks(
                    on_progress=on_progress,
                    should_stop=should_stop,
                    on_checkpoint=on_checkpoint,
                    interrupter=interrupter,
                ),
                cluster=instance.instance_type == "cluster",
                resume_from=resume_from,
            )
        finally:
            done.set()
        if result.target_lost_writes:
            checkpoint = None  # what it counts may be gone: a resume starts over
            _durably("forgetting a checkpoint", lambda: store.clear_checkpoint(task.task_id))
        if leaving is not None and leaving.is_set() and not stop.is_set():
            # The service is stopping, not the user: the task is interrupted, and resumes
            # (or ends FAILED) at the next start, from here.
            _best_effort(
                lambda: store.update_progress(task.task_id, **_checkpoint_fields(checkpoint))
            )
            return
        _durably(
            f"ending task {task.task_id}", lambda: self._finish(task.task_id, result, checkpoint)
        )

    def _resume_point(self, task: TaskRecord, sources: list[Source]) -> Checkpoint | None:
        """Where the task starts: None from the beginning (its inputs' fingerprint is kept
        then), or its checkpoint; _InputsChanged when its inputs changed since."""
        store = self.store
        try:
            now = fingerprint(sources)
        except Exception as exc:  # the import itself will say what is wrong with them
            log.warning("task %s: inputs not fingerprinted: %s", task.task_id, exc)
            return None if task.checkpoint is None else _checkpoint(task.checkpoint)
        if task.checkpoint is None or task.inputs_fingerprint is None:
            store.set_fingerprint(task.task_id, now)
            return None
        change = describe_change(task.inputs_fingerprint, now)
        if change is not None:
            raise _InputsChanged(change)
        return _checkpoint(task.checkpoint)

    def sources_of(self, task: TaskRecord) -> list[Source] | None:
        """What the task reads: objects of its bucket, or the files of its backup (None
        when that backup is gone). BucketNotFound when the project may no longer read the
        bucket or it is gone; BadObjectKey for an object that now leaves it (a link);
        S3SourceError when the object store cannot say."""
        if task.file_source == "backup_record":
            backup = self.store.get_backup(task.project_id, task.backup_id or "")
            if backup is None or backup.status is not BackupStatus.SUCCEED:
                return None
            return [self.files.source(f.object_key) for f in backup.files]
        bucket = self.buckets.open(task.project_id, task.bucket_name or "")
        return [bucket.source(f.file_name) for f in task.files]

    def _finish(self, task_id: str, result: ImportResult, checkpoint: Checkpoint | None) -> None:
        """The outcome, its counts and its log lines, in one write."""
        elapsed = max(result.seconds, 1e-6)
        stats = result.stats
        logs = [("WARNING", line) for line in [*stats.warnings, *stats.skipped_command_log()]]
        if stats.keys_skipped_expired:
            logs.append(
                (
                    "WARNING",
                    f"{stats.keys_skipped_expired} keys had already expired and were skipped",
                )
            )
        if result.empty_keys_dropped:
            logs.append(
                (
                    "INFO",
                    f"{result.empty_keys_dropped} empty keys in the backup were left out, "
                    "as Redis leaves them out when it loads it",
                )
            )
        summary = (
            f"{stats.keys_written} keys written, {result.bytes_read} of {result.bytes_total} "
            f"bytes read in {result.seconds:.1f} s"
        )
        if result.status == "SUCCESS":
            error = None
            logs.append(("INFO", f"import finished: {summary}"))
        elif result.status == "TERMINATED":
            error = None
            logs.append(("INFO", f"import stopped: {summary}"))
        else:
            error = result.error
            logs.append(("ERROR", f"import failed: {result.error} ({summary})"))
        self.store.finish_task(
            task_id,
            result.status,
            error,
            logs,
            **_checkpoint_fields(checkpoint),
            bytes_total=result.bytes_total,
            bytes_read=result.bytes_read,
            keys_written=stats.keys_written,
            keys_skipped_expired=stats.keys_skipped_expired,
            keys_skipped_existing=stats.keys_skipped_existing,
            keys_skipped_module=stats.keys_skipped_module,
            commands_replayed=stats.commands_replayed,
            commands_refused=stats.commands_refused,
            commands_skipped_unknown=stats.commands_skipped_unknown,
            ops_per_second=stats.keys_written / elapsed,
            input_kbps=result.bytes_read / 1024 / elapsed,
        )


def _interrupt_when_stopped(
    stop: threading.Event,
    leaving: threading.Event | None,
    done: threading.Event,
    interrupter: Interrupter,
) -> None:
    """Once a stop is asked (or the service leaves), give the import STOP_GRACE_SECONDS
    to end by itself (its replies collected), then shut its connections down. It waits
    on the stop itself: an import's process spends no time on it until then."""
    while not done.is_set():
        if stop.wait(LEAVING_POLL_SECONDS) or (leaving is not None and leaving.is_set()):
            if not done.wait(STOP_GRACE_SECONDS):
                interrupter.fire()
            return


class _InputsChanged(Exception):
    """A task's inputs are not the bytes its checkpoint counts (the message says how)."""


def _checkpoint(saved: tuple[int, int, int]) -> Checkpoint:
    input_index, records_done, keys_written = saved
    return Checkpoint(input_index, records_done, keys_written)


def _checkpoint_fields(point: Checkpoint | None) -> dict[str, int]:
    if point is None:
        return {}
    return {
        "checkpoint_input": point.input_index,
        "checkpoint_records": point.records_done,
        "checkpoint_keys": point.keys_written,
    }


def _best_effort(write: Callable[[], object]) -> None:
    try:
        write()
    except SQLAlchemyError as exc:
        log.warning("a progress write was refused (tried again later): %s", exc)


FINISH_ATTEMPTS = 60


def _durably(what: str, write: Callable[[], object]) -> None:
    """A write the task's outcome depends on, tried again while the database is
    unavailable (about two minutes); then logged, and the next service start ends it."""
    for attempt in range(FINISH_ATTEMPTS):
        try:
            write()
            return
        except SQLAlchemyError as exc:
            if attempt == FINISH_ATTEMPTS - 1:
                log.error("%s: the database refused it for good: %s", what, exc)
                return
            log.warning("%s: the database refused it, trying again: %s", what, exc)
            time.sleep(min(0.1 * 2**attempt, 2.0))
