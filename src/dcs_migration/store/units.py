"""Units of distributed work: their leases, checkpoints and counters, and how a migration
task's units add up to the task.

A unit is one input of a migration task (its index among the task's inputs), the task's
planning (index `PLAN_INDEX`: finding the inputs), or a whole restore or backup (index 0).
The database says what is left to do; broker messages only tell a worker to look. A
worker takes a unit with a lease (`take_lease`), renews it while it runs, and gives it
back with the unit's end. A lease that expired is a dead worker's: its unit may be taken
again (from its checkpoint), never while the lease runs, so no unit runs twice at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dcs_migration.store.base import Repository, rowcount
from dcs_migration.store.models import MigrationTask, TaskLog, UnitRun, WorkUnit, utcnow
from dcs_migration.store.records import ONLINE_MIGRATION, LogLevel, TaskStatus

PLAN_INDEX = -1  # a migration task's first unit: it finds the inputs, one unit each

# The counters a unit reports, which add up to its task's.
UNIT_COUNTERS = (
    "bytes_total",
    "bytes_read",
    "keys_written",
    "keys_skipped_expired",
    "keys_skipped_existing",
    "keys_skipped_module",
    "commands_replayed",
    "commands_refused",
    "commands_skipped_unknown",
)

# A unit waiting for a worker is sent again when its message may have been lost (a broker
# that lost its data): after this many leases, doubling each time, up to 16 times as long.
REDISPATCH_LEASES = 4


class UnitState(StrEnum):
    PENDING = "pending"  # waiting for a worker
    RUNNING = "running"  # a worker holds its lease (or held it, and died)
    SUCCESS = "success"
    FAILED = "failed"
    TERMINATED = "terminated"  # stopped: by the user, or because a sibling failed


OPEN_STATES = (UnitState.PENDING.value, UnitState.RUNNING.value)
ENDED_STATES = frozenset({UnitState.SUCCESS, UnitState.FAILED, UnitState.TERMINATED})


@dataclass(frozen=True, slots=True)
class UnitKey:
    work_kind: str
    work_id: str
    unit_index: int


@dataclass(frozen=True, slots=True)
class NewUnit:
    input_name: str
    input_fingerprint: str | None
    size: int


@dataclass(frozen=True)
class UnitRecord:
    key: UnitKey
    project_id: str
    state: UnitState
    input_name: str
    input_fingerprint: str | None
    lease_owner: str | None
    runs: int
    dispatches: int
    checkpoint_records: int | None
    checkpoint_keys: int | None
    counters: dict[str, int]
    error_message: str


@dataclass(frozen=True)
class Lease:
    """A unit taken by a worker: the unit as it was then, and the run it starts."""

    unit: UnitRecord
    owner: str
    worker: str  # as the run is recorded
    run_id: int


@dataclass(frozen=True)
class RunRecord:
    unit_index: int
    worker: str
    started_at: datetime
    beat_at: datetime
    ended_at: datetime | None
    outcome: str | None


@dataclass(frozen=True)
class Settled:
    """A migration task's outcome, decided once none of its units runs."""

    status: TaskStatus
    error_message: str


class WorkUnits(Repository):
    """The units of the work of every worker, in the one database they share."""

    # -- made by the service ----------------------------------------------------------------

    def open_units(self, work_kind: str, work_id: str, project_id: str, index: int) -> UnitKey:
        """Make the unit `index` of a work wait for a worker (a new unit, or one that
        ended FAILED or TERMINATED, kept with its checkpoint: a resume); the task's other
        unfinished units wait again too. Returns the unit to dispatch."""
        key = UnitKey(work_kind, work_id, index)
        with self._write() as s:
            now = _now(s)
            s.execute(
                update(WorkUnit)
                .where(
                    WorkUnit.work_kind == work_kind,
                    WorkUnit.work_id == work_id,
                    WorkUnit.state.in_([UnitState.FAILED.value, UnitState.TERMINATED.value]),
                )
                .values(
                    state=UnitState.PENDING.value,
                    error_message="",
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            )
            row = s.get(WorkUnit, (work_kind, work_id, index))
            if row is None:
                s.add(_new_row(key, project_id, NewUnit("", None, 0), now))
            elif row.state != UnitState.RUNNING.value:
                row.state = UnitState.PENDING.value
                row.updated_at = now
        return key

    def mark_dispatched(self, key: UnitKey) -> int:
        """Count a message sent for the unit; returns its number (1 for the first)."""
        with self._write() as s:
            row = s.get(WorkUnit, (key.work_kind, key.work_id, key.unit_index))
            if row is None:
                return 0
            row.dispatches += 1
            row.dispatched_at = _now(s)
            return row.dispatches

    def dispatches_of(self, key: UnitKey) -> int:
        """How many messages were sent for the unit (0: none, or no such unit)."""
        with self._read() as s:
            row = s.get(WorkUnit, (key.work_kind, key.work_id, key.unit_index))
            return 0 if row is None else row.dispatches

    # -- planned by a worker ----------------------------------------------------------------

    def plan_units(
        self, work_kind: str, work_id: str, project_id: str, units: Sequence[NewUnit]
    ) -> list[UnitKey]:
        """The units of a task's inputs, made once (a plan run again keeps the first
        one's units and their checkpoints); returns those that wait for a worker."""
        try:
            with self._write() as s:
                now = _now(s)
                exists = s.scalar(
                    select(WorkUnit.unit_index).where(
                        WorkUnit.work_kind == work_kind,
                        WorkUnit.work_id == work_id,
                        WorkUnit.unit_index >= 0,
                    )
                )
                if exists is None:
                    for n, unit in enumerate(units):
                        s.add(_new_row(UnitKey(work_kind, work_id, n), project_id, unit, now))
        except IntegrityError:  # another worker planned it at the same moment
            pass
        return [u.key for u in self.units_of(work_kind, work_id) if u.state is UnitState.PENDING]

    def units_of(self, work_kind: str, work_id: str) -> list[UnitRecord]:
        """The units of one work, in order (a task's plan unit excluded)."""
        with self._read() as s:
            rows = s.scalars(
                select(WorkUnit)
                .where(
                    WorkUnit.work_kind == work_kind,
                    WorkUnit.work_id == work_id,
                    WorkUnit.unit_index >= 0,
                )
                .order_by(WorkUnit.unit_index)
            )
            return [_record(r) for r in rows]

    def runs_of(self, work_kind: str, work_id: str) -> list[RunRecord]:
        """Every run of the work's units, in the order they started."""
        with self._read() as s:
            rows = s.scalars(
                select(UnitRun)
                .where(UnitRun.work_kind == work_kind, UnitRun.work_id == work_id)
                .order_by(UnitRun.started_at, UnitRun.id)
            )
            return [
                RunRecord(r.unit_index, r.worker, r.started_at, r.beat_at, r.ended_at, r.outcome)
                for r in rows
            ]

    # -- leases -----------------------------------------------------------------------------

    def take_lease(self, key: UnitKey, owner: str, worker: str, seconds: float) -> Lease | None:
        """Take the unit for `owner` for `seconds`, if it waits or its lease expired (its
        worker died); None when it ended or another worker's lease still runs."""
        with self._write() as s:
            now = _now(s)
            result = s.execute(
                update(WorkUnit)
                .where(
                    *_is(key),
                    WorkUnit.state.in_(OPEN_STATES),
                    or_(WorkUnit.lease_expires_at.is_(None), WorkUnit.lease_expires_at < now),
                )
                .values(
                    state=UnitState.RUNNING.value,
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=seconds),
                    runs=WorkUnit.runs + 1,
                    updated_at=now,
                )
            )
            if rowcount(result) == 0:
                return None
            run = UnitRun(
                work_kind=key.work_kind,
                work_id=key.work_id,
                unit_index=key.unit_index,
                worker=worker,
                started_at=now,
                beat_at=now,
            )
            s.add(run)
            s.flush()
            row = s.get(WorkUnit, (key.work_kind, key.work_id, key.unit_index))
            assert row is not None
            return Lease(_record(row), owner, worker, run.id)

    def renew_lease(self, lease: Lease, seconds: float) -> bool:
        """Keep the unit `seconds` more; False when the lease was lost (it expired and
        another worker took the unit): the run must end at once, writing nothing more."""
        with self._write() as s:
            now = _now(s)
            result = s.execute(
                update(WorkUnit)
                .where(*_is(lease.unit.key), WorkUnit.lease_owner == lease.owner)
                .values(lease_expires_at=now + timedelta(seconds=seconds))
            )
            if rowcount(result) == 0:
                return False
            s.execute(update(UnitRun).where(UnitRun.id == lease.run_id).values(beat_at=now))
            return True

    def unit_progress(
        self,
        lease: Lease,
        counters: dict[str, int],
        checkpoint: tuple[int, int] | None,
    ) -> bool:
        """A running unit's counters and newest checkpoint (records done, keys written),
        added up into its task's; False when the lease was lost."""
        with self._write() as s:
            if not _write_unit(s, lease, counters, checkpoint, state=None, error=None):
                return False
            if lease.unit.key.work_kind == MIGRATION_TASK:
                _add_up(s, lease.unit.key.work_id, current=lease.unit.input_name)
            return True

    def clear_unit_checkpoint(self, lease: Lease) -> None:
        with self._write() as s:
            s.execute(
                update(WorkUnit)
                .where(*_is(lease.unit.key), WorkUnit.lease_owner == lease.owner)
                .values(checkpoint_records=None, checkpoint_keys=None)
            )

    def end_unit(
        self,
        lease: Lease,
        state: UnitState,
        *,
        counters: dict[str, int] | None = None,
        checkpoint: tuple[int, int] | None = None,
        error: str = "",
        logs: Iterable[tuple[LogLevel, str]] = (),
    ) -> bool:
        """The unit's end, its lease given back and its run closed, with its log lines
        (for a migration task's unit). A failed unit asks its task's other units to stop.
        False when the lease was lost (another worker runs the unit now)."""
        key = lease.unit.key
        with self._write() as s:
            now = _now(s)
            if not _write_unit(s, lease, counters or {}, checkpoint, state=state, error=error):
                return False
            s.execute(
                update(UnitRun)
                .where(UnitRun.id == lease.run_id)
                .values(beat_at=now, ended_at=now, outcome=state.value)
            )
            if key.work_kind == MIGRATION_TASK:
                _add_logs(s, key.work_id, logs, now)
                if state is UnitState.FAILED:
                    task = s.get(MigrationTask, key.work_id)
                    if task is not None and not task.stop_requested:
                        task.stop_requested = True
                        task.error_message = error
                        task.updated_at = now
                _add_up(s, key.work_id, current=None)
            return True

    def leave_unit(self, lease: Lease, checkpoint: tuple[int, int] | None) -> None:
        """A worker that shuts down gives the unit back, waiting, with its checkpoint."""
        with self._write() as s:
            now = _now(s)
            values: dict[str, Any] = {
                "state": UnitState.PENDING.value,
                "lease_owner": None,
                "lease_expires_at": None,
                "updated_at": now,
            }
            if checkpoint is not None:
                values["checkpoint_records"], values["checkpoint_keys"] = checkpoint
            s.execute(
                update(WorkUnit)
                .where(*_is(lease.unit.key), WorkUnit.lease_owner == lease.owner)
                .values(**values)
            )
            s.execute(
                update(UnitRun)
                .where(UnitRun.id == lease.run_id)
                .values(beat_at=now, ended_at=now, outcome="left")
            )

    # -- a migration task's outcome ---------------------------------------------------------

    def settle_task(self, task_id: str) -> Settled | None:
        """End the task if none of its units runs any more: SUCCESS when all succeeded,
        FAILED when one failed (its error), else TERMINATED; units still waiting end
        TERMINATED when a stop was asked. None while a unit runs (or waits, unstopped),
        or when the task already ended. Safe from several workers at once: the task row
        is locked while it is decided."""
        with self._write() as s:
            now = _now(s)
            task = s.scalar(
                select(MigrationTask).where(MigrationTask.task_id == task_id).with_for_update()
            )
            if (
                task is None
                or task.migration_type == ONLINE_MIGRATION  # one unit, which ends it itself
                or task.status not in (TaskStatus.MIGRATING.value, TaskStatus.TERMINATING.value)
            ):
                return None
            rows = list(
                s.scalars(
                    select(WorkUnit).where(
                        WorkUnit.work_kind == MIGRATION_TASK, WorkUnit.work_id == task_id
                    )
                )
            )
            if task.stop_requested:
                for row in rows:
                    waiting = row.state == UnitState.PENDING.value
                    orphaned = row.state == UnitState.RUNNING.value and (
                        row.lease_expires_at is None or row.lease_expires_at < now
                    )
                    if waiting or orphaned:
                        row.state = UnitState.TERMINATED.value
                        row.lease_owner = row.lease_expires_at = None
                        row.updated_at = now
            if any(r.state in OPEN_STATES for r in rows):
                return None
            inputs = [r for r in rows if r.unit_index >= 0]
            planned = any(r.unit_index == PLAN_INDEX and r.state == "success" for r in rows)
            failed = [r for r in rows if r.state == UnitState.FAILED.value]
            if failed:
                status, error = TaskStatus.FAILED, task.error_message or failed[0].error_message
            elif planned and all(r.state == UnitState.SUCCESS.value for r in inputs):
                status, error = TaskStatus.SUCCESS, ""
            else:
                status, error = TaskStatus.TERMINATED, task.error_message
            _add_up(s, task_id, current=None)
            task.status = status.value
            task.error_message = error
            task.finished_at = task.updated_at = now
            return Settled(status, error)

    # -- the sweep --------------------------------------------------------------------------

    def due_again(self, lease_seconds: float, limit: int = 200) -> list[tuple[UnitKey, int]]:
        """Units to send a message for again: those whose worker died (their lease expired),
        and those that waited so long their message may be lost (a broker that lost its
        data; `REDISPATCH_LEASES` leases, doubling with each message sent, at most 16
        times as long). Each is counted as dispatched: (unit, its message's number). Units
        of a task asked to stop are left to `settle_task`."""
        found: list[tuple[UnitKey, int]] = []
        with self._write() as s:
            now = _now(s)
            rows = s.scalars(
                select(WorkUnit)
                .outerjoin(
                    MigrationTask,
                    and_(
                        WorkUnit.work_kind == MIGRATION_TASK,
                        MigrationTask.task_id == WorkUnit.work_id,
                    ),
                )
                .where(
                    WorkUnit.state.in_(OPEN_STATES),
                    or_(MigrationTask.stop_requested.is_(None), ~MigrationTask.stop_requested),
                    or_(WorkUnit.lease_expires_at.is_(None), WorkUnit.lease_expires_at < now),
                )
                .order_by(WorkUnit.dispatched_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=WorkUnit)
            )
            for row in rows:
                # Its worker died, and it was not sent since: at once; else as one waiting.
                died = row.lease_expires_at is not None and row.dispatched_at < row.lease_expires_at
                wait = lease_seconds * REDISPATCH_LEASES * min(2 ** max(row.dispatches - 1, 0), 16)
                if died or row.dispatched_at + timedelta(seconds=wait) < now:
                    row.dispatches += 1
                    row.dispatched_at = now
                    key = UnitKey(row.work_kind, row.work_id, row.unit_index)
                    found.append((key, row.dispatches))
        return found

    def fairer_unit(self, key: UnitKey, limit: int = 1000) -> UnitKey:
        """The unit of a migration task a free worker should run instead of `key`, to share
        the workers fairly between projects, as the inline executor's queue does: among
        the projects with units waiting, the one that runs the fewest, then the one that
        started a unit least recently; its oldest waiting unit (a plan first). `key`
        itself when that is `key`'s project."""
        with self._read() as s:
            now = _now(s)
            migration = WorkUnit.work_kind == MIGRATION_TASK
            running: dict[str, int] = dict(
                s.execute(
                    select(WorkUnit.project_id, func.count())
                    .where(
                        migration,
                        WorkUnit.state == UnitState.RUNNING.value,
                        WorkUnit.lease_expires_at >= now,
                    )
                    .group_by(WorkUnit.project_id)
                ).all()
            )
            started: dict[str, datetime] = dict(
                s.execute(
                    select(WorkUnit.project_id, func.max(UnitRun.started_at))
                    .join(
                        UnitRun,
                        and_(
                            UnitRun.work_kind == WorkUnit.work_kind,
                            UnitRun.work_id == WorkUnit.work_id,
                            UnitRun.unit_index == WorkUnit.unit_index,
                        ),
                    )
                    .where(migration)
                    .group_by(WorkUnit.project_id)
                ).all()
            )
            waiting = s.execute(
                select(WorkUnit.project_id, WorkUnit.work_id, WorkUnit.unit_index)
                .join(MigrationTask, MigrationTask.task_id == WorkUnit.work_id)
                .where(
                    migration,
                    WorkUnit.state == UnitState.PENDING.value,
                    ~MigrationTask.stop_requested,
                )
                .order_by(MigrationTask.created_at, WorkUnit.work_id, WorkUnit.unit_index)
                .limit(limit)
            ).all()
            project = s.scalar(select(WorkUnit.project_id).where(*_is(key)))
        oldest: dict[str, UnitKey] = {}
        for project_id, work_id, index in waiting:
            oldest.setdefault(project_id, UnitKey(MIGRATION_TASK, work_id, index))
        if project not in oldest:
            return key
        order = list(oldest)
        never = datetime.min.replace(tzinfo=UTC)

        def rank(p: str) -> tuple[int, datetime, int]:
            last = started.get(p)
            return running.get(p, 0), never if last is None else _aware(last), order.index(p)

        fairest = min(oldest, key=rank)
        return key if fairest == project else oldest[fairest]

    def stopped_tasks_with_units(self, limit: int = 200) -> list[str]:
        """Tasks asked to stop that have not ended: the sweep settles them (their units'
        workers may all be gone)."""
        with self._read() as s:
            return list(
                s.scalars(
                    select(MigrationTask.task_id)
                    .where(
                        MigrationTask.status.in_(
                            [TaskStatus.MIGRATING.value, TaskStatus.TERMINATING.value]
                        ),
                        MigrationTask.stop_requested.is_(True),
                        MigrationTask.migration_type != ONLINE_MIGRATION,
                    )
                    .limit(limit)
                )
            )


MIGRATION_TASK = "migration_task"  # `tasks.executor.WorkKind.MIGRATION_TASK`, the store's side


def _now(s: Session) -> datetime:
    """The database's clock (PostgreSQL's, at the transaction's start): leases written by
    one machine and read by another compare one clock. SQLite is one machine's: its own."""
    if s.get_bind().dialect.name == "postgresql":
        now = s.scalar(select(func.now()))
        assert isinstance(now, datetime)
        return now
    return utcnow()


def _aware(at: datetime) -> datetime:
    """A time read raw from SQL (an aggregate skips the column's type): in UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def _is(key: UnitKey) -> tuple[Any, ...]:
    return (
        WorkUnit.work_kind == key.work_kind,
        WorkUnit.work_id == key.work_id,
        WorkUnit.unit_index == key.unit_index,
    )


def _new_row(key: UnitKey, project_id: str, unit: NewUnit, now: datetime) -> WorkUnit:
    counters = dict.fromkeys(UNIT_COUNTERS, 0)
    counters["bytes_total"] = unit.size
    return WorkUnit(
        work_kind=key.work_kind,
        work_id=key.work_id,
        unit_index=key.unit_index,
        project_id=project_id,
        state=UnitState.PENDING.value,
        input_name=unit.input_name,
        input_fingerprint=unit.input_fingerprint,
        dispatched_at=now,
        dispatches=0,
        runs=0,
        error_message="",
        updated_at=now,
        **counters,
    )


def _record(row: WorkUnit) -> UnitRecord:
    return UnitRecord(
        key=UnitKey(row.work_kind, row.work_id, row.unit_index),
        project_id=row.project_id,
        state=UnitState(row.state),
        input_name=row.input_name,
        input_fingerprint=row.input_fingerprint,
        lease_owner=row.lease_owner,
        runs=row.runs,
        dispatches=row.dispatches,
        checkpoint_records=row.checkpoint_records,
        checkpoint_keys=row.checkpoint_keys,
        counters={name: getattr(row, name) for name in UNIT_COUNTERS},
        error_message=row.error_message,
    )


def _write_unit(
    s: Session,
    lease: Lease,
    counters: dict[str, int],
    checkpoint: tuple[int, int] | None,
    *,
    state: UnitState | None,
    error: str | None,
) -> bool:
    now = _now(s)
    values: dict[str, Any] = {name: counters[name] for name in UNIT_COUNTERS if name in counters}
    values["updated_at"] = now
    if checkpoint is not None:
        values["checkpoint_records"], values["checkpoint_keys"] = checkpoint
    if state is not None:
        values.update(state=state.value, lease_owner=None, lease_expires_at=None)
    if error is not None:
        values["error_message"] = error
    result = s.execute(
        update(WorkUnit)
        .where(*_is(lease.unit.key), WorkUnit.lease_owner == lease.owner)
        .values(**values)
    )
    if rowcount(result) == 0:
        return False
    s.execute(update(UnitRun).where(UnitRun.id == lease.run_id).values(beat_at=now))
    return True


def _add_up(s: Session, task_id: str, *, current: str | None) -> None:
    """The task's counters: the sum of its input units'; its rates since it started."""
    rows = list(
        s.scalars(
            select(WorkUnit).where(
                WorkUnit.work_kind == MIGRATION_TASK,
                WorkUnit.work_id == task_id,
                WorkUnit.unit_index >= 0,
            )
        )
    )
    task = s.get(MigrationTask, task_id)
    if task is None or not rows:
        return
    now = _now(s)
    for name in UNIT_COUNTERS:
        setattr(task, name, sum(getattr(r, name) for r in rows))
    if task.started_at is not None:
        elapsed = max((now - task.started_at).total_seconds(), 1e-6)
        task.ops_per_second = task.keys_written / elapsed
        task.input_kbps = task.bytes_read / 1024 / elapsed
    if current is not None:
        task.current_file = current
    task.updated_at = now


def _add_logs(
    s: Session, task_id: str, logs: Iterable[tuple[LogLevel, str]], now: datetime
) -> None:
    for level, message in logs:
        s.add(TaskLog.line(task_id, level.value, message, now))
