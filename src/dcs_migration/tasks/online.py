"""Online migration tasks, run in a process of the executor as imports are: the task's
row in, `OnlineSync` (`sync.py`) run, its state and its end written back.

The status follows the sync: FULLMIGRATING while the snapshot is copied, INCRMIGEATING
(the managed service's spelling) while the stream is applied, then SUCCESS (a full-only
migration), TERMINATED (stopped, or sync-stopped once caught up) or MIGRATION_FAILED.
When the service stops, the task is left as it is: the next start continues it (resume
mode auto) or fails it, and a batch-restart continues it; either way the sync goes on
from the target's marker, by partial resync where the source still holds that offset.
"""

from __future__ import annotations

import logging
import threading
import time

from dcs_migration.client.addresses import AddressPolicy
from dcs_migration.client.endpoint import Endpoint
from dcs_migration.config import Settings
from dcs_migration.store import LogLevel, Store, TaskStatus
from dcs_migration.store.records import OnlineRecord, TaskRecord
from dcs_migration.tasks.imports import best_effort, durably
from dcs_migration.tasks.sync import Ending, OnlineSync, Phase, SyncHooks, SyncPlan, SyncState
from dcs_migration.tasks.sync_cluster import ClusterSourceSync
from dcs_migration.writer.stream import MARKER_PREFIX

log = logging.getLogger(__name__)

FLAG_SECONDS = 0.5  # how often the store is asked for a stop or a sync-stop
MB = 1 << 20


class OnlineJob:
    """Runs online migration tasks (`WorkKind.ONLINE_MIGRATION`), one per call of `run`."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def run(
        self,
        project_id: str,
        task_id: str,
        stop: threading.Event,
        leaving: threading.Event | None = None,
        *,
        again: bool = False,
    ) -> None:
        """Run the task until it ends, `stop` is set (the user: TERMINATED) or `leaving`
        (the service stops: it goes on at the next start). `again`: an earlier run was
        cut off; the marker in the target says where to go on, as after any stop."""
        store = self.store
        task = store.get_task(project_id, task_id)
        if task is None or task.online is None:
            return
        if task.stop_requested or stop.is_set():
            store.set_status(task_id, TaskStatus.TERMINATED, "stopped before it started", True)
            store.add_log(task_id, LogLevel.INFO, "the task was stopped before it started")
            return
        if again:  # a worker died running it: the sync goes on from the target's marker
            if not task.is_running:
                return
            store.add_log(task_id, LogLevel.INFO, "the sync goes on after its worker was lost")
        elif not store.mark_started(task_id):
            return  # stopped (or removed) while it waited
        online = task.online
        plan = self._plan(task, online)
        flags = _Flags(store, task_id, stop, leaving)
        state = SyncState(
            replication_id=online.replication_id,
            applied_offset=online.applied_offset,
            resyncs_partial=online.resyncs_partial,
            resyncs_full=online.resyncs_full,
            keys_written=task.keys_written,
        )
        hooks = SyncHooks(
            on_phase=lambda phase: self._phase(task_id, phase),
            on_state=lambda s: best_effort(lambda: self._save(task_id, s)),
            on_log=lambda level, message: best_effort(
                lambda: store.add_log(task_id, LogLevel(level), message)
            ),
            should_stop=flags.stop_asked,
            leaving=flags.leaving,
            sync_stop_asked=flags.sync_stop_asked,
            sync_stop_refused=lambda message: best_effort(
                lambda: store.refuse_sync_stop(task_id, message)
            ),
        )
        store.add_log(
            task_id,
            LogLevel.INFO,
            f"online migration started: {online.source_addrs} into "
            f"{task.target_instance_addrs} ({task.migration_method})",
        )
        kind = ClusterSourceSync if online.source_cluster else OnlineSync
        result = kind(plan, hooks, state).run()
        self._end(task_id, result.ending, result.error, result.state)

    def _plan(self, task: TaskRecord, online: OnlineRecord) -> SyncPlan:
        store = self.store
        policy = AddressPolicy(
            self.settings.allowed_networks, store.addresses_held_elsewhere(task.project_id)
        )
        source = _endpoint(online.source_addrs, store.source_password(task.task_id), policy)
        target = _endpoint(task.target_instance_addrs, store.task_password(task.task_id), policy)
        limit = online.bandwidth_limit_mb
        return SyncPlan(
            source=source,
            target=target,
            marker_key=MARKER_PREFIX + task.task_id.encode(),
            incremental=task.migration_method == "incremental_migration",
            target_cluster=online.target_cluster,
            bytes_per_second=limit * MB if limit else None,
            spool_max_bytes=self.settings.spool_max_bytes,
            reply_timeout=self.settings.reply_timeout,
            sync_stop_seconds=self.settings.sync_stop_seconds,
            spool_dir=str(self.settings.data_dir),
        )

    def _phase(self, task_id: str, phase: Phase) -> None:
        durably(
            f"online task {task_id}: {phase.value}",
            lambda: self.store.set_status(task_id, TaskStatus(phase.value)),
        )

    def _save(self, task_id: str, state: SyncState) -> None:
        store = self.store
        store.update_online(
            task_id,
            replication_id=state.replication_id,
            applied_offset=state.applied_offset,
            source_offset=state.source_offset,
            lag_ms=state.lag_ms,
            resyncs_partial=state.resyncs_partial,
            resyncs_full=state.resyncs_full,
            full_progress=state.full_progress,
        )
        store.update_progress(
            task_id,
            bytes_read=state.snapshot_bytes,
            bytes_total=state.snapshot_total,
            keys_written=state.keys_written,
            commands_replayed=state.commands_applied,
            commands_refused=state.commands_refused,
            commands_skipped_unknown=state.commands_skipped_unknown,
            ops_per_second=state.ops_per_second,
            input_kbps=state.input_kbps,
            source_dbsize=state.source_dbsize,
            target_dbsize=state.target_dbsize,
        )

    def _end(self, task_id: str, ending: Ending, error: str, state: SyncState) -> None:
        store = self.store
        durably(f"online task {task_id}: its state", lambda: self._save(task_id, state))
        logs = [(LogLevel.WARNING, line) for line in state.skipped]
        summary = (
            f"{state.keys_written} keys copied, {state.commands_applied} commands applied, "
            f"applied offset {state.applied_offset}"
        )
        if ending is Ending.LEFT:
            store.add_log(task_id, LogLevel.INFO, f"the service stops: {summary}; it goes on later")
            return
        outcome = {
            Ending.COPIED: (TaskStatus.SUCCESS, None, f"full migration finished: {summary}"),
            Ending.SYNC_STOPPED: (TaskStatus.TERMINATED, None, f"sync-stopped: {summary}"),
            Ending.STOPPED: (TaskStatus.TERMINATED, None, f"stopped: {summary}"),
            Ending.FAILED: (TaskStatus.MIGRATION_FAILED, error, f"failed: {error} ({summary})"),
        }
        status, message, line = outcome[ending]
        level = LogLevel.ERROR if ending is Ending.FAILED else LogLevel.INFO
        durably(
            f"online task {task_id}: its end",
            lambda: store.finish_task(task_id, status, message, [*logs, (level, line)]),
        )

    def _fail(self, task_id: str, message: str) -> None:
        self.store.finish_task(
            task_id, TaskStatus.MIGRATION_FAILED, message, [(LogLevel.ERROR, message)]
        )

    def ended_without_outcome(
        self, project_id: str, work_id: str, exit_status: int, *, stopped: bool
    ) -> None:
        """The task's process ended without writing its end (a crash, or a signal it could
        not handle): a stopped task ends TERMINATED, any other MIGRATION_FAILED."""
        task = self.store.get_task(project_id, work_id)
        if task is None or not task.is_running:
            return
        if stopped:
            self.store.set_status(work_id, TaskStatus.TERMINATED, "stopped", finished=True)
            return
        message = f"the sync process ended without a result (exit status {exit_status})"
        log.error("task %s: %s", work_id, message)
        self._fail(work_id, message)


def _endpoint(addrs: str, password: str | None, policy: AddressPolicy) -> Endpoint:
    first = addrs.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    return Endpoint(host=host.strip("[]"), port=int(port), password=password, policy=policy)


class _Flags:
    """The stop, leave and sync-stop asked of a task: the events its process gets, and the
    store's flags (an API process elsewhere writes them), read twice a second at most."""

    def __init__(
        self, store: Store, task_id: str, stop: threading.Event, leaving: threading.Event | None
    ) -> None:
        self.store = store
        self.task_id = task_id
        self.stop = stop
        self._leaving = leaving
        self._asked_at = 0.0
        self._stop_flag = False
        self._sync_stop_flag = False

    def _ask(self) -> None:
        now = time.monotonic()
        if now - self._asked_at < FLAG_SECONDS:
            return
        self._asked_at = now
        try:
            self._stop_flag = self.store.is_stop_requested(self.task_id)
            self._sync_stop_flag = self.store.sync_stop_requested(self.task_id)
        except Exception as exc:  # a busy database: asked again next time
            log.warning("task %s: its flags could not be read: %s", self.task_id, exc)

    def stop_asked(self) -> bool:
        if self.stop.is_set():
            return True
        self._ask()
        return self._stop_flag

    def leaving(self) -> bool:
        return self._leaving is not None and self._leaving.is_set()

    def sync_stop_asked(self) -> bool:
        self._ask()
        return self._sync_stop_flag
