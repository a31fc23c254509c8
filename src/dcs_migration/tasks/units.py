"""Running units of work on a distributed worker: under a lease, with a heartbeat, a stop
heard from the database, and a sweep that sends again what a dead worker or a lost
message left behind.

The broker only tells a worker to look at a unit; the database (`store/units.py`) says
whether it is left to do and who holds it. So a message delivered twice, late or to a
worker that restarted runs nothing twice, and a unit whose message was lost or whose
worker died is sent again by the sweep of whichever worker is alive (or starts next).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from dcs_migration.config import Settings
from dcs_migration.store import LogLevel, Store
from dcs_migration.store.units import Lease, UnitKey, UnitState
from dcs_migration.tasks.backups import BackupJob
from dcs_migration.tasks.executor import WorkKind
from dcs_migration.tasks.imports import fail_broken_task
from dcs_migration.tasks.online import OnlineJob
from dcs_migration.tasks.restore import RestoreJob

log = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.5  # how often a running unit asks whether its task was stopped
# The kinds whose units hear a stop asked through the database (the task's flag).
STOPPABLE = frozenset({WorkKind.MIGRATION_TASK.value, WorkKind.ONLINE_MIGRATION.value})


class Dispatch(Protocol):
    """How units reach the workers (a broker's messages)."""

    def __call__(self, key: UnitKey) -> None:
        """Send the unit, counted as one more message sent for it."""

    def send(self, key: UnitKey, number: int) -> None:
        """Send the unit's message number `number` (already counted)."""


@dataclass(frozen=True)
class Ending:
    """Why a running unit is asked to end early; `stop` is set with each of the others.

    `stop` alone: the task was stopped (by the user, or because a sibling unit failed):
    end TERMINATED with what was acknowledged. `lost`: the lease was lost (the database
    was out of reach longer than a lease, and another worker may hold the unit now): end
    at once and write nothing more. `leaving`: the worker shuts down: give the unit back
    with its checkpoint, for another worker to take at once."""

    stop: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    leaving: threading.Event = field(default_factory=threading.Event)


class UnitJob(Protocol):
    """What runs one kind of unit (see `Ending` for how it is asked to end early)."""

    def run_unit(self, lease: Lease, ending: Ending) -> None: ...


class UnitRunner:
    """Runs the units a worker is told about, each only under its lease."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        jobs: Mapping[WorkKind, UnitJob],
        worker: str,
        dispatch: Dispatch,
        leaving: Callable[[], bool] = lambda: False,
    ) -> None:
        """`worker`: the worker's name (as its operator named it), for its runs' records;
        `leaving`: whether the worker shuts down (its running units are handed over)."""
        self.store = store
        self.settings = settings
        self.jobs = jobs
        self.dispatch = dispatch
        self.name = f"{worker}:{os.getpid()}"  # one process of the worker's pool
        self.leaving = leaving

    def run(self, key: UnitKey) -> None:
        """Run the unit if it is left to do and no live worker holds it; else nothing.
        A task's unit gives its turn to another project's, when that project runs
        fewer units (the message is a free worker: fair between projects); it is sent
        again, to wait for the next."""
        owner = f"{self.name}:{uuid.uuid4().hex[:12]}"
        lease = None
        if key.work_kind == WorkKind.MIGRATION_TASK.value:
            fairer = self.store.fairer_unit(key)
            if fairer != key:
                lease = self.store.take_lease(fairer, owner, self.name, self.settings.lease_seconds)
                if lease is not None:
                    log.info("unit %s gives its turn to %s", _named(key), _named(fairer))
                    self.dispatch(key)
                    key = fairer
        if lease is None:
            lease = self.store.take_lease(key, owner, self.name, self.settings.lease_seconds)
        if lease is None:
            log.info("unit %s: ended, or held by a live worker: nothing to do", _named(key))
            return
        log.info("unit %s: run %d starts here", _named(key), lease.unit.runs)
        ending, done = Ending(), threading.Event()
        keeper = threading.Thread(
            target=self._keep, args=(lease, ending, done), name="lease-keeper", daemon=True
        )
        keeper.start()
        try:
            self.jobs[WorkKind(key.work_kind)].run_unit(lease, ending)
        except Exception as exc:  # a bug: the unit still ends, saying so
            log.exception("unit %s failed unexpectedly", _named(key))
            message = (
                f"the unit stopped on an internal error ({type(exc).__name__}); "
                "the worker's log has the details"
            )
            try:
                self.store.end_unit(lease, UnitState.FAILED, error=message)
                if key.work_kind == WorkKind.MIGRATION_TASK.value:
                    self.store.settle_task(key.work_id)
            except SQLAlchemyError:
                log.exception("unit %s: its failure could not be written", _named(key))
        finally:
            done.set()
            keeper.join()

    def _keep(self, lease: Lease, ending: Ending, done: threading.Event) -> None:
        """Renew the lease (three times a lease) and look for a stop and for the worker
        leaving (twice a second), until the unit ends. A lease that cannot be renewed
        before it runs out is lost."""
        stop, lost = ending.stop, ending.lost
        key = lease.unit.key
        seconds = self.settings.lease_seconds
        renewed = time.monotonic()
        is_task = key.work_kind in STOPPABLE
        while not done.wait(STOP_POLL_SECONDS):
            now = time.monotonic()
            try:
                if now - renewed >= seconds / 3:
                    if not self.store.renew_lease(lease, seconds):
                        log.error("unit %s: its lease was lost: it ends here", _named(key))
                        lost.set()
                        stop.set()
                        return
                    renewed = now
                if not stop.is_set() and self.leaving():
                    ending.leaving.set()
                    stop.set()
                if is_task and not stop.is_set() and self.store.is_stop_requested(key.work_id):
                    stop.set()
            except SQLAlchemyError as exc:
                log.warning("unit %s: the database did not answer: %s", _named(key), exc)
                if time.monotonic() - renewed >= seconds:
                    log.error("unit %s: its lease ran out: it ends here", _named(key))
                    lost.set()
                    stop.set()
                    return


class Sweeper:
    """What every worker does every third of a lease: send again the units whose worker
    died (lease expired) or whose message may be lost, and end the stopped tasks whose
    units no worker runs any more."""

    def __init__(self, store: Store, settings: Settings, dispatch: Dispatch) -> None:
        self.store = store
        self.settings = settings
        self.dispatch = dispatch

    def sweep(self) -> int:
        """One look; returns how many units were sent again."""
        due = self.store.due_again(self.settings.lease_seconds)
        for key, number in due:
            log.info("unit %s: sent again (its worker died, or its message was lost)", _named(key))
            self.dispatch.send(key, number)
        for task_id in self.store.stopped_tasks_with_units():
            self.store.settle_task(task_id)
        return len(due)

    def run_forever(self, leaving: threading.Event) -> None:
        """Sweep at once, then every third of a lease, until `leaving` is set."""
        while True:
            try:
                self.sweep()
            except Exception:  # the database or the broker away: the next look tries again
                log.exception("the sweep failed; trying again")
            if leaving.wait(self.settings.lease_seconds / 3):
                return


class WholeUnit:
    """A restore or a backup as one unit: its job writes its own record; a run cut off
    (its worker died) runs whole again."""

    def __init__(self, store: Store, job: RestoreJob | BackupJob) -> None:
        self.store = store
        self.job = job

    def run_unit(self, lease: Lease, ending: Ending) -> None:
        """Run to the end (a restore or backup cannot be stopped: a worker that leaves
        waits for it)."""
        key = lease.unit.key
        project_id = lease.unit.project_id
        self.job.run(project_id, key.work_id, ending.stop, ending.lost, again=lease.unit.runs > 1)
        if not ending.lost.is_set():
            self.store.end_unit(lease, UnitState.SUCCESS)


class OnlineUnit:
    """An online migration as one unit: its job writes the task's status itself. A stop
    of the task reaches the job as `stop`; the worker leaving, or the lease lost, as
    `leaving` (the task is not stopped: it goes on, on another worker). A worker that
    leaves hands the unit over at once; a run cut off (its worker died) runs again, the
    job told so (`again`)."""

    def __init__(self, store: Store, job: OnlineJob, dispatch: Dispatch) -> None:
        self.store = store
        self.job = job
        self.dispatch = dispatch

    def run_unit(self, lease: Lease, ending: Ending) -> None:
        key = lease.unit.key
        project_id = lease.unit.project_id
        stop, leaving, done = threading.Event(), threading.Event(), threading.Event()

        def tell() -> None:
            # `Ending.stop` is set with each of the others, after them: which one it was
            # is known once it is set.
            while not done.is_set():
                if ending.stop.wait(STOP_POLL_SECONDS):
                    (leaving if ending.leaving.is_set() or ending.lost.is_set() else stop).set()
                    return

        teller = threading.Thread(target=tell, name="online-ending", daemon=True)
        teller.start()
        try:
            self.job.run(project_id, key.work_id, stop, leaving, again=lease.unit.runs > 1)
        except Exception as exc:  # a bug: the task still ends, saying so
            log.exception("unit %s failed unexpectedly", _named(key))
            if not ending.lost.is_set():
                fail_broken_task(self.store, project_id, key.work_id, exc)
                self.store.end_unit(lease, UnitState.FAILED, error=type(exc).__name__)
            return
        finally:
            done.set()
            teller.join()
        if ending.lost.is_set():
            return  # another worker may hold the unit now
        if ending.leaving.is_set():
            self.store.leave_unit(lease, None)
            self.store.add_log(
                key.work_id,
                LogLevel.INFO,
                f"handed over by {lease.worker}, which is stopping: "
                "the task goes on on another worker",
            )
            self.dispatch(key)
            return
        self.store.end_unit(lease, UnitState.SUCCESS)


def _named(key: UnitKey) -> str:
    return f"{key.work_kind} {key.work_id} #{key.unit_index}"
