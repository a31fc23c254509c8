"""A migration task spread over distributed workers: one unit finds the task's inputs
(its plan), then each input is a unit of its own, imported into the task's target by
whichever worker takes it, from its own checkpoint.

Several parts of one input (a multi-part AOF) stay one unit: they are one command log.
The task is SUCCESS when every unit is; the first unit that fails fails the task and
stops its siblings; a stop reaches every unit through the database within a second.
Counters and logs of all units add up in the task's row (`store/units.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from dcs_migration.config import Settings
from dcs_migration.formats.errors import FormatError
from dcs_migration.importer import Checkpoint, ImportHooks, Progress, run_import
from dcs_migration.sources import Input, SourceError, find_all
from dcs_migration.sources.bucket import BadObjectKey, BucketNotFound
from dcs_migration.sources.fingerprint import describe_change, inputs_fingerprint
from dcs_migration.sources.s3 import S3SourceError
from dcs_migration.store import LogLevel, Store, TaskRecord, TaskStatus
from dcs_migration.store.units import PLAN_INDEX, Lease, NewUnit, UnitState
from dcs_migration.tasks.endpoints import instance_endpoint
from dcs_migration.tasks.imports import (
    best_effort,
    durably,
    outcome_counters,
    outcome_logs,
    stop_watcher,
    task_write_options,
)
from dcs_migration.tasks.service import TaskInputs
from dcs_migration.tasks.units import Dispatch, Ending

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 1.0
ENDS = {TaskStatus.SUCCESS: UnitState.SUCCESS, TaskStatus.TERMINATED: UnitState.TERMINATED}


class TaskUnits:
    """Runs the units of migration tasks: the plan (index `PLAN_INDEX`) and each input."""

    def __init__(
        self, store: Store, inputs: TaskInputs, settings: Settings, dispatch: Dispatch
    ) -> None:
        self.store = store
        self.inputs = inputs
        self.settings = settings
        self.dispatch = dispatch

    def run_unit(self, lease: Lease, ending: Ending) -> None:
        key = lease.unit.key
        task = self.store.get_task(lease.unit.project_id, key.work_id)
        if task is None or not task.is_running or task.stop_requested:
            self._end(lease, UnitState.TERMINATED)
            return
        if key.unit_index == PLAN_INDEX:
            self._plan(task, lease)
        else:
            self._import(task, lease, ending)

    # -- the plan ---------------------------------------------------------------------------

    def _plan(self, task: TaskRecord, lease: Lease) -> None:
        """Find the task's inputs, make a unit of each (once: a plan run again keeps the
        units and their checkpoints), and send the units left to do."""
        store = self.store
        failure = self._check_target(task)
        inputs: list[Input] = []
        if failure is None:
            try:
                sources = self.inputs.sources_of(task)
                if sources is None:
                    failure = f"backup {task.backup_id} is no longer a succeed backup"
                else:
                    inputs = find_all(sources, self.settings)
            except (BucketNotFound, BadObjectKey, S3SourceError, FormatError, SourceError) as e:
                failure = str(e)
        if failure is not None:
            self._end(lease, UnitState.FAILED, error=failure)
            return
        first_run = store.mark_started(task.task_id)
        keys = store.plan_units(
            key_kind(lease),
            task.task_id,
            task.project_id,
            [NewUnit(i.name, inputs_fingerprint([i]), i.size) for i in inputs],
        )
        units = store.units_of(key_kind(lease), task.task_id)
        if first_run and all(u.runs == 0 for u in units):
            message = (
                f"import started: {len(units)} file(s) into {task.target_instance_name}, "
                "one unit each, spread over the workers"
            )
        else:
            message = f"import resumed: {len(keys)} of {len(units)} file(s) left to import"
        store.add_log(task.task_id, LogLevel.INFO, message)
        for key in keys:
            self.dispatch(key)
        self._end(lease, UnitState.SUCCESS)

    def _check_target(self, task: TaskRecord) -> str | None:
        if self.store.get_instance(task.project_id, task.target_instance_id) is None:
            return "the target instance no longer exists"
        return None

    # -- one input --------------------------------------------------------------------------

    def _import(self, task: TaskRecord, lease: Lease, ending: Ending) -> None:
        store = self.store
        unit = lease.unit
        name = unit.input_name
        prefix = f"{name}: "
        instance = store.get_instance(task.project_id, task.target_instance_id)
        if instance is None:
            self._end(lease, UnitState.FAILED, error="the target instance no longer exists")
            return
        try:
            found = self._find(task, lease)
        except (BucketNotFound, BadObjectKey, S3SourceError, FormatError, SourceError) as exc:
            self._end(lease, UnitState.FAILED, error=f"{prefix}{exc}")
            return
        if isinstance(found, str):
            self._end(lease, UnitState.FAILED, error=found)
            return
        resume_from = None
        if unit.checkpoint_records is not None and unit.checkpoint_keys is not None:
            resume_from = Checkpoint(0, unit.checkpoint_records, unit.checkpoint_keys)
        where = lease.worker
        if resume_from is None:
            store.add_log(task.task_id, LogLevel.INFO, f"{prefix}import started on {where}")
        else:
            store.add_log(
                task.task_id,
                LogLevel.INFO,
                f"{prefix}import resumed on {where} from its checkpoint: "
                f"{resume_from.keys_written} keys already written",
            )
        endpoint = instance_endpoint(
            store,
            instance,
            self.settings.allowed_networks,
            password=store.task_password(task.task_id),
        )
        checkpoint: Checkpoint | None = resume_from
        last = 0.0

        def on_checkpoint(point: Checkpoint) -> None:
            nonlocal checkpoint
            checkpoint = point

        def on_progress(p: Progress) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < PROGRESS_SECONDS:
                return
            last = now
            counters = {
                "bytes_total": p.bytes_total,
                "bytes_read": p.bytes_read,
                "keys_written": p.keys_written,
            }
            if not _attempt(lambda: store.unit_progress(lease, counters, _pair(checkpoint))):
                ending.lost.set()

        with stop_watcher(ending.stop) as interrupter:
            result = run_import(
                [found],
                endpoint,
                task_write_options(task, self.settings, unit.key.unit_index),
                ImportHooks(
                    on_progress=on_progress,
                    should_stop=ending.stop.is_set,
                    on_checkpoint=on_checkpoint,
                    interrupter=interrupter,
                ),
                cluster=instance.instance_type == "cluster",
                resume_from=resume_from,
            )
        if ending.lost.is_set():
            return  # another worker may hold the unit now: it is its to write
        if ending.leaving.is_set():
            self._hand_over(lease, _pair(checkpoint), result.stats.keys_written)
            return
        if result.target_lost_writes:
            checkpoint = None
            durably("forgetting a checkpoint", lambda: store.clear_unit_checkpoint(lease))
        error, logs = outcome_logs(result, prefix)
        state = ENDS.get(result.status, UnitState.FAILED)
        self._end(
            lease,
            state,
            error=error or "",
            counters=outcome_counters(result),
            checkpoint=_pair(checkpoint),
            logs=logs,
        )

    def _hand_over(self, lease: Lease, checkpoint: tuple[int, int] | None, keys: int) -> None:
        """The worker leaves: the unit waits again from its checkpoint, and is sent at
        once, for another worker (or this one's successor) to take."""
        store, key = self.store, lease.unit.key
        durably("handing a unit over", lambda: store.leave_unit(lease, checkpoint))
        store.add_log(
            key.work_id,
            LogLevel.INFO,
            f"{lease.unit.input_name}: handed over by {lease.worker}, which is stopping, "
            f"at {keys} keys written; it goes on from its checkpoint on another worker",
        )
        self.dispatch(key)
        store.settle_task(key.work_id)  # stopped meanwhile: it ends now

    def _find(self, task: TaskRecord, lease: Lease) -> Input | str:
        """The unit's input, found again as the plan found it; a message (the unit
        fails) when it is gone or changed since the unit's checkpoint."""
        unit = lease.unit
        sources = self.inputs.sources_of(task)
        if sources is None:
            return f"backup {task.backup_id} is no longer a succeed backup"
        inputs = find_all(sources, self.settings)
        index = unit.key.unit_index
        if index >= len(inputs) or inputs[index].name != unit.input_name:
            return f"{unit.input_name} is no longer among the task's files"
        found = inputs[index]
        if unit.checkpoint_records is not None and unit.input_fingerprint is not None:
            change = describe_change(unit.input_fingerprint, inputs_fingerprint([found]))
            if change is not None:
                return f"the task cannot resume: {change} since it ran"
        return found

    def _end(
        self,
        lease: Lease,
        state: UnitState,
        *,
        error: str = "",
        counters: dict[str, int] | None = None,
        checkpoint: tuple[int, int] | None = None,
        logs: list[tuple[LogLevel, str]] | None = None,
    ) -> None:
        """The unit's end, and the task's when it was the last to run."""
        task_id = lease.unit.key.work_id
        lines = list(logs or [])
        if state is UnitState.FAILED and not logs:
            lines.append((LogLevel.ERROR, error))
        durably(
            f"ending a unit of task {task_id}",
            lambda: self.store.end_unit(
                lease, state, counters=counters, checkpoint=checkpoint, error=error, logs=lines
            ),
        )
        settled = self.store.settle_task(task_id)
        if settled is not None:
            log.info("task %s ended %s", task_id, settled.status.value)


def key_kind(lease: Lease) -> str:
    return lease.unit.key.work_kind


def _pair(point: Checkpoint | None) -> tuple[int, int] | None:
    return None if point is None else (point.records_done, point.keys_written)


def _attempt(write: Callable[[], bool]) -> bool:
    """A progress write: False only when it says the lease was lost (a refused write is
    tried again at the next tick)."""
    answer = True

    def keep() -> None:
        nonlocal answer
        answer = write()

    best_effort(keep)
    return answer
