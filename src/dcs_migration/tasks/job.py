"""One migration task, run from its row to its end: where its bytes come from, where it
resumes, its progress and checkpoints in the store, and its outcome.

Run in a process of its own (`worker.py`), so that imports neither share the service's
interpreter lock with the API nor take it down if they crash. Progress is written at most
once a second, with the newest checkpoint; a write the database refuses (locked, full)
never stops the import, and the outcome is written as soon as the database takes it.
How a stop reaches the import is `imports.py`'s, shared with the distributed units.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from dcs_migration.config import Settings
from dcs_migration.formats.errors import FormatError
from dcs_migration.importer import (
    Checkpoint,
    ImportHooks,
    ImportResult,
    Progress,
    resolve_inputs,
    run_import,
)
from dcs_migration.sources import Input, SourceError, find_all
from dcs_migration.sources.bucket import BadObjectKey, BucketNotFound
from dcs_migration.sources.s3 import S3SourceError
from dcs_migration.sources.specs import SourceSpec
from dcs_migration.store import LogLevel, Store, TaskRecord, TaskStatus
from dcs_migration.tasks.endpoints import instance_endpoint
from dcs_migration.tasks.imports import (
    best_effort,
    durably,
    outcome_counters,
    outcome_logs,
    stop_watcher,
    task_write_options,
)
from dcs_migration.tasks.service import (
    InputsChanged,
    TaskInputs,
    checkpoint_of,
    resume_point,
)

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 1.0


class TaskJob:
    """Runs migration tasks (`WorkKind.MIGRATION_TASK`), one per call of `run`."""

    def __init__(
        self,
        store: Store,
        inputs: TaskInputs,
        settings: Settings,
    ) -> None:
        self.store = store
        self.inputs = inputs
        self.settings = settings
        self.networks = settings.allowed_networks
        self.reply_timeout = settings.reply_timeout

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
            store.set_status(
                task.task_id, TaskStatus.TERMINATED, "stopped before it started", finished=True
            )
            store.add_log(task.task_id, LogLevel.INFO, "the task was stopped before it started")
            return
        instance = store.get_instance(project_id, task.target_instance_id)
        if instance is None:
            store.set_status(
                task.task_id,
                TaskStatus.FAILED,
                "the target instance no longer exists",
                finished=True,
            )
            return
        endpoint = instance_endpoint(
            store, instance, self.networks, password=store.task_password(task.task_id)
        )
        try:
            sources = self.inputs.sources_of(task)
        except (BucketNotFound, BadObjectKey, S3SourceError) as exc:
            sources, message = None, str(exc)
        else:
            message = f"backup {task.backup_id} is no longer a succeed backup of this project"
        if sources is None:
            store.set_status(task.task_id, TaskStatus.FAILED, message, finished=True)
            store.add_log(task.task_id, LogLevel.ERROR, message)
            return
        if not store.mark_started(task.task_id):
            return  # stopped (or removed) while it waited
        try:
            inputs: list[Input] | None = find_all(sources, self.settings)
        except (FormatError, SourceError):
            inputs = None  # the import finds them again, and fails saying why
        try:
            resume_from = self._resume_from(task, sources, inputs)
        except InputsChanged as exc:
            message = f"the task cannot resume: {exc} since it ran"
            store.set_status(task.task_id, TaskStatus.FAILED, message, finished=True)
            store.add_log(task.task_id, LogLevel.ERROR, message)
            return
        if resume_from is None:
            store.add_log(
                task.task_id,
                LogLevel.INFO,
                f"import started: {len(sources)} file(s) into {instance.name}",
            )
        else:
            store.add_log(
                task.task_id,
                LogLevel.INFO,
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
                best_effort(
                    lambda: store.add_log(task.task_id, LogLevel.INFO, f"reading {current_file}")
                )
            now = time.monotonic()
            if now - last < PROGRESS_SECONDS:
                return
            last = now
            elapsed = max(now - started, 1e-6)
            best_effort(
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

        with stop_watcher(stop, leaving) as interrupter:
            result = run_import(
                inputs if inputs is not None else lambda: resolve_inputs(sources, self.settings),
                endpoint,
                task_write_options(task, self.settings),
                ImportHooks(
                    on_progress=on_progress,
                    should_stop=should_stop,
                    on_checkpoint=on_checkpoint,
                    interrupter=interrupter,
                ),
                cluster=instance.instance_type == "cluster",
                resume_from=resume_from,
            )
        if result.target_lost_writes:
            checkpoint = None  # what it counts may be gone: a resume starts over
            durably("forgetting a checkpoint", lambda: store.clear_checkpoint(task.task_id))
        if leaving is not None and leaving.is_set() and not stop.is_set():
            # The service is stopping, not the user: the task is interrupted, and resumes
            # (or ends FAILED) at the next start, from here.
            best_effort(
                lambda: store.update_progress(task.task_id, **_checkpoint_fields(checkpoint))
            )
            return
        durably(
            f"ending task {task.task_id}", lambda: self._finish(task.task_id, result, checkpoint)
        )

    def _resume_from(
        self, task: TaskRecord, sources: Sequence[SourceSpec], inputs: list[Input] | None
    ) -> Checkpoint | None:
        """Where the task starts (None: from the beginning, its inputs' fingerprint kept
        then); InputsChanged when its inputs changed since its checkpoint."""
        try:
            point = resume_point(task, sources, self.settings, inputs)
        except InputsChanged:
            raise
        except Exception as exc:  # the import itself will say what is wrong with them
            log.warning("task %s: inputs not fingerprinted: %s", task.task_id, exc)
            return checkpoint_of(task)
        if point.checkpoint is None:
            self.store.set_fingerprint(task.task_id, point.fingerprint)
        return point.checkpoint

    def ended_without_outcome(
        self, project_id: str, task_id: str, exit_status: int, *, stopped: bool
    ) -> None:
        """The task's process ended without writing the outcome: a signal that came before
        it could handle one, or a crash. A stopped task ends TERMINATED, any other FAILED."""
        store = self.store
        task = store.get_task(project_id, task_id)
        if task is None or not task.is_running:
            return
        if stopped:
            store.set_status(task_id, TaskStatus.TERMINATED, "stopped", finished=True)
            return
        message = f"the import process ended without a result (exit status {exit_status})"
        log.error("task %s: %s", task_id, message)
        store.set_status(task_id, TaskStatus.FAILED, message, finished=True)
        store.add_log(task_id, LogLevel.ERROR, message)

    def _finish(self, task_id: str, result: ImportResult, checkpoint: Checkpoint | None) -> None:
        """The outcome, its counts and its log lines, in one write."""
        elapsed = max(result.seconds, 1e-6)
        error, logs = outcome_logs(result)
        self.store.finish_task(
            task_id,
            result.status,
            error,
            logs,
            **_checkpoint_fields(checkpoint),
            **outcome_counters(result),
            ops_per_second=result.stats.keys_written / elapsed,
            input_kbps=result.bytes_read / 1024 / elapsed,
        )


def _checkpoint_fields(point: Checkpoint | None) -> dict[str, int]:
    if point is None:
        return {}
    return {
        "checkpoint_input": point.input_index,
        "checkpoint_records": point.records_done,
        "checkpoint_keys": point.keys_written,
    }
