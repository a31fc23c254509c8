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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from dcs_migration.client.connection import Interrupter
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
from dcs_migration.tasks.service import (
    InputsChanged,
    TaskInputs,
    checkpoint_of,
    resume_point,
)
from dcs_migration.writer.options import WriteOptions

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 1.0
STOP_GRACE_SECONDS = 0.5  # a stopped import's wait for the replies still due
LEAVING_POLL_SECONDS = 0.25  # how often the stop watcher looks whether the service leaves


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
        stats = result.stats
        error, logs = outcome_logs(result)
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


def task_write_options(task: TaskRecord, settings: Settings) -> WriteOptions:
    """How a task's import writes: into its db (or each key's own), as it asked of AOF
    commands the target does not know, with the service's reply deadline."""
    return WriteOptions(
        db=task.target_db,
        skip_unknown_commands=task.skip_unknown_commands,
        reply_timeout=settings.reply_timeout,
        handoff_addr=settings.handoff_addr,
        handoff_bind=settings.handoff_bind,
    )


@contextmanager
def stop_watcher(
    stop: threading.Event, leaving: threading.Event | None = None
) -> Iterator[Interrupter]:
    """An interrupter that fires STOP_GRACE_SECONDS after `stop` (or `leaving`) is set
    while the block runs: a hung target cannot hold a stop up."""
    interrupter = Interrupter()
    done = threading.Event()
    # Not joined: it ends at its next look, and a late interruption touches nothing.
    threading.Thread(
        target=interrupt_when_stopped,
        args=(stop, leaving, done, interrupter),
        name="stop-watcher",
        daemon=True,
    ).start()
    try:
        yield interrupter
    finally:
        done.set()


def outcome_logs(
    result: ImportResult, prefix: str = ""
) -> tuple[str | None, list[tuple[LogLevel, str]]]:
    """An import's error message (None unless FAILED) and the log lines of its end:
    warnings, skipped commands and keys, and a summary (each line after `prefix`)."""
    stats = result.stats
    logs = [(LogLevel.WARNING, line) for line in [*stats.warnings, *stats.skipped_command_log()]]
    if stats.keys_skipped_expired:
        logs.append(
            (
                LogLevel.WARNING,
                f"{stats.keys_skipped_expired} keys had already expired and were skipped",
            )
        )
    if result.empty_keys_dropped:
        logs.append(
            (
                LogLevel.INFO,
                f"{result.empty_keys_dropped} empty keys in the backup were left out, "
                "as Redis leaves them out when it loads it",
            )
        )
    summary = (
        f"{stats.keys_written} keys written, {result.bytes_read} of {result.bytes_total} "
        f"bytes read in {result.seconds:.1f} s"
    )
    error = None
    if result.status == TaskStatus.SUCCESS:
        logs.append((LogLevel.INFO, f"import finished: {summary}"))
    elif result.status == TaskStatus.TERMINATED:
        logs.append((LogLevel.INFO, f"import stopped: {summary}"))
    else:
        error = result.error
        logs.append((LogLevel.ERROR, f"import failed: {result.error} ({summary})"))
    return error, [(level, prefix + line) for level, line in logs]


def fail_broken_task(store: Store, project_id: str, task_id: str, exc: Exception) -> None:
    """End a task whose run broke off on an unexpected error: FAILED, naming the error's
    kind only (its text may hold a path of this machine; the service's log has it all)."""
    message = (
        f"the import stopped on an internal error ({type(exc).__name__}); "
        "the service's log has the details"
    )
    try:
        task = store.get_task(project_id, task_id)
        if task is not None and task.is_running:
            store.set_status(task_id, TaskStatus.FAILED, message, finished=True)
            store.add_log(task_id, LogLevel.ERROR, message)
    except Exception:  # the database too: the service fails the task when the process ends
        log.exception("task %s: its failure could not be written", task_id)


def interrupt_when_stopped(
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


def _checkpoint_fields(point: Checkpoint | None) -> dict[str, int]:
    if point is None:
        return {}
    return {
        "checkpoint_input": point.input_index,
        "checkpoint_records": point.records_done,
        "checkpoint_keys": point.keys_written,
    }


def best_effort(write: Callable[[], object]) -> None:
    try:
        write()
    except SQLAlchemyError as exc:
        log.warning("a progress write was refused (tried again later): %s", exc)


FINISH_ATTEMPTS = 60


def durably(what: str, write: Callable[[], object]) -> None:
    """A write the task's outcome depends on, tried again while the database is
    unavailable (about two minutes); then logged, and the next service start ends it."""

    def refused_again(attempt: RetryCallState) -> None:
        assert attempt.outcome is not None
        log.warning(
            "%s: the database refused it, trying again: %s", what, attempt.outcome.exception()
        )

    retrying = Retrying(
        retry=retry_if_exception_type(SQLAlchemyError),
        stop=stop_after_attempt(FINISH_ATTEMPTS),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        before_sleep=refused_again,
        reraise=True,
    )
    try:
        retrying(write)
    except SQLAlchemyError as exc:
        log.error("%s: the database refused it for good: %s", what, exc)
