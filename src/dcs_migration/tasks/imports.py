"""What every run of a migration task's import shares, whole (`job.py`) or one input at a
time on a distributed worker (`fanout.py`): how it writes, how a stop reaches it, what
its end logs, and how its writes to the store survive a busy database.

A stop is heard between chunks, and the replies still due are then collected, so that the
counts are exact; a target that does not answer them (hung) cannot hold a stop up: after
STOP_GRACE_SECONDS its connections are shut down, and the import ends with what the
target had acknowledged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
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
from dcs_migration.importer import ImportResult
from dcs_migration.store import LogLevel, Store, TaskRecord, TaskStatus
from dcs_migration.writer.options import WriteOptions

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 0.5  # a stopped import's wait for the replies still due
LEAVING_POLL_SECONDS = 0.25  # how often the stop watcher looks whether the service leaves


IMPORT_MARKER_PREFIX = b"dcs-migration:import:"


def task_write_options(
    task: TaskRecord, settings: Settings, unit: int | None = None
) -> WriteOptions:
    """How a task's import writes: into its db (or each key's own), as it asked of AOF
    commands the target does not know, with the service's reply deadline, and its AOF
    commands sealed with the task's marker (`unit`: one input's unit on a worker, whose
    marker is its own), so that a resume applies none of them twice."""
    marker = IMPORT_MARKER_PREFIX + task.task_id.encode()
    return WriteOptions(
        db=task.target_db,
        skip_unknown_commands=task.skip_unknown_commands,
        reply_timeout=settings.reply_timeout,
        handoff_addr=settings.handoff_addr,
        handoff_bind=settings.handoff_bind,
        marker_key=marker if unit is None else marker + b":%d" % unit,
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


def outcome_counters(result: ImportResult) -> dict[str, int]:
    """An import's counts, as a task's row (and a unit's) keeps them."""
    stats = result.stats
    return {
        "bytes_total": result.bytes_total,
        "bytes_read": result.bytes_read,
        "keys_written": stats.keys_written,
        "keys_skipped_expired": stats.keys_skipped_expired,
        "keys_skipped_existing": stats.keys_skipped_existing,
        "keys_skipped_module": stats.keys_skipped_module,
        "commands_replayed": stats.commands_replayed,
        "commands_refused": stats.commands_refused,
        "commands_skipped_unknown": stats.commands_skipped_unknown,
    }


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


def fail_broken_task(store: Store, project_id: str, task_id: str, exc: Exception) -> None:
    """End a task whose run broke off on an unexpected error (an import FAILED, an online
    migration MIGRATION_FAILED), naming the error's kind only (its text may hold a path
    of this machine; the service's log has it all)."""
    try:
        task = store.get_task(project_id, task_id)
        if task is None or not task.is_running:
            return
        what, status = (
            ("sync", TaskStatus.MIGRATION_FAILED)
            if task.is_online
            else (
                "import",
                TaskStatus.FAILED,
            )
        )
        message = (
            f"the {what} stopped on an internal error ({type(exc).__name__}); "
            "the service's log has the details"
        )
        store.finish_task(task_id, status, message, [(LogLevel.ERROR, message)])
    except Exception:  # the database too: the service fails the task when the process ends
        log.exception("task %s: its failure could not be written", task_id)
