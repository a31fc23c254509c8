"""The Celery executor: units of work sent through a broker (Redis or RabbitMQ) to
`dcs-migration worker` processes on any number of machines, their state in PostgreSQL.

The service (`serve`) only writes units and sends messages (`CeleryExecutor`); the
workers run them (`run_worker`). Messages carry a unit's key and nothing else: what is
left to do, who holds it and how far it got live in the database, so that

- a message is acknowledged late (when its unit ended): a worker killed mid-unit leaves
  it to the broker to deliver again, and a lease (`store/units.py`) keeps the unit from
  running twice at once;
- a message the broker cannot give back soon (Redis keeps an unacknowledged one for its
  visibility timeout, an hour) or lost (a broker that lost its data) costs a lease, not
  the unit: every worker's sweep sends again the units whose lease expired, or that
  waited too long;
- a stop is a flag in the database that every running unit looks at twice a second,
  plus a revocation of the unit's messages still queued.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
import socket
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutting_down
from kombu.exceptions import KombuError

from dcs_migration.config import Settings
from dcs_migration.store import Store, open_settings_store
from dcs_migration.store.units import PLAN_INDEX, UnitKey
from dcs_migration.tasks.backups import BackupJob
from dcs_migration.tasks.executor import Work, WorkKind
from dcs_migration.tasks.fanout import TaskUnits
from dcs_migration.tasks.online import OnlineJob
from dcs_migration.tasks.restore import RestoreJob
from dcs_migration.tasks.units import OnlineUnit, Sweeper, UnitJob, UnitRunner, WholeUnit
from dcs_migration.tasks.worker import task_inputs

log = logging.getLogger(__name__)

UNIT_TASK = "dcs_migration.unit"  # the one kind of message: run this unit
QUEUE = "dcs-migration"
PR_SET_PDEATHSIG = 1


def make_celery(settings: Settings) -> Celery:
    """The Celery app of these settings: late acknowledgement, one message reserved per
    worker process (a long unit never holds a second one back), JSON messages only."""
    app = Celery("dcs_migration", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker restart
        # A send while the broker is away is tried for about two seconds; after that the
        # unit waits in the database, and a worker's sweep sends it again.
        task_publish_retry_policy={
            "max_retries": 3,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


def message_id(key: UnitKey, number: int) -> str:
    """The id of a unit's message number `number`, known to whoever revokes it."""
    return f"{key.work_kind}.{key.work_id}.{key.unit_index}.{number}"


class Dispatcher:
    """Sends units to the workers: a message per unit, counted in the database."""

    def __init__(self, app: Celery, store: Store) -> None:
        self.app = app
        self.store = store

    def __call__(self, key: UnitKey) -> None:
        self.send(key, self.store.mark_dispatched(key))

    def send(self, key: UnitKey, number: int) -> None:
        try:
            self.app.send_task(
                UNIT_TASK,
                args=[key.work_kind, key.work_id, key.unit_index],
                task_id=message_id(key, number),
                queue=QUEUE,
            )
        except (KombuError, OSError) as exc:  # the unit waits; a sweep sends it again
            log.warning("the broker did not take unit %s (sent again later): %s", key, exc)


class CeleryExecutor:
    """The service's side: work becomes units in the database and messages to workers.
    Nothing runs here."""

    local = False

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.app = make_celery(settings)
        self.dispatch = Dispatcher(self.app, store)

    def start(self) -> None:
        """Nothing to start: the workers take what waits, and recover what was cut off."""

    def submit(self, work: Work) -> None:
        """A task's plan unit (which makes one unit per input, on a worker), or a restore's
        or backup's one unit, waits; its message is sent. A task resumed keeps the units
        that succeeded, and the others wait again from their checkpoints."""
        index = PLAN_INDEX if work.kind is WorkKind.MIGRATION_TASK else 0
        key = self.store.open_units(work.kind.value, work.work_id, work.project_id, index)
        self.dispatch(key)

    def stop(self, work: Work) -> None:
        """Ask a migration task to stop: the flag every unit looks at twice a second (the
        stop is written first here: the database is how it reaches the workers), the
        task ended at once when no unit runs, and its queued messages revoked. An
        online migration is one unit: TERMINATED at once when no worker took it yet,
        else its job ends it once it hears the flag."""
        if work.kind not in (WorkKind.MIGRATION_TASK, WorkKind.ONLINE_MIGRATION):
            return
        self.store.request_stop(work.project_id, work.work_id)
        kind = work.kind.value
        units = self.store.units_of(kind, work.work_id)
        keys = [(u.key, u.dispatches) for u in units]
        if work.kind is WorkKind.MIGRATION_TASK:
            self.store.settle_task(work.work_id)
            plan = UnitKey(kind, work.work_id, PLAN_INDEX)
            keys.append((plan, self.store.dispatches_of(plan)))
        ids = [message_id(key, n) for key, sent in keys for n in range(1, sent + 1)]
        if ids:
            try:
                self.app.control.revoke(ids)
            except (KombuError, OSError) as exc:  # the flag is what stops them anyway
                log.warning("task %s: its messages were not revoked: %s", work.work_id, exc)

    def running(self) -> frozenset[Work]:
        """Nothing runs in this process."""
        return frozenset()

    def shutdown(self, timeout: float = 5.0) -> None:
        """The workers go on; only this process's broker connections close."""
        self.app.close()


# -- the worker ----------------------------------------------------------------------------


class _WorkerProcess:
    """What one process of a worker holds (its own database connections: never shared
    across the fork that made it)."""

    runner: UnitRunner | None = None


_process = _WorkerProcess()


def _unit_jobs(store: Store, settings: Settings, dispatch: Dispatcher) -> dict[WorkKind, UnitJob]:
    inputs = task_inputs(store, settings)
    return {
        WorkKind.MIGRATION_TASK: TaskUnits(store, inputs, settings, dispatch),
        WorkKind.RESTORE: WholeUnit(store, RestoreJob(store, inputs.files, settings)),
        WorkKind.BACKUP: WholeUnit(store, BackupJob(store, inputs.files, settings)),
        WorkKind.ONLINE_MIGRATION: OnlineUnit(store, OnlineJob(store, settings), dispatch),
    }


def _end_with_parent() -> None:
    """A process of the pool dies with its worker, as it would with its machine: its
    units then go to another worker once their leases expire (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def build_worker(settings: Settings, hostname: str) -> Celery:
    """The worker's Celery app, its unit task and the hooks that open each process's store
    and start the sweep."""
    app = make_celery(settings)
    leaving = threading.Event()  # this process: the sweep ends
    # Made before the pool forks: set in the worker's process, seen in its pool's.
    shutting_down = multiprocessing.Event()

    @app.task(name=UNIT_TASK)  # type: ignore[untyped-decorator]
    def run_unit(kind: str, work_id: str, index: int) -> None:
        runner = _process.runner
        assert runner is not None, "the worker process has no store"
        runner.run(UnitKey(kind, work_id, int(index)))

    def open_process(**_: Any) -> None:
        _end_with_parent()
        store = open_settings_store(settings)
        dispatch = Dispatcher(app, store)
        jobs = _unit_jobs(store, settings, dispatch)
        _process.runner = UnitRunner(
            store, settings, jobs, hostname, dispatch, shutting_down.is_set
        )

    def start_sweep(**_: Any) -> None:
        store = open_settings_store(settings)
        sweeper = Sweeper(store, settings, Dispatcher(app, store))
        threading.Thread(
            target=sweeper.run_forever, args=(leaving,), name="sweep", daemon=True
        ).start()

    def shut_down(**_: Any) -> None:
        leaving.set()
        shutting_down.set()

    worker_process_init.connect(open_process, weak=False)
    worker_ready.connect(start_sweep, weak=False)
    worker_shutting_down.connect(shut_down, weak=False)
    return app


def run_worker(settings: Settings, concurrency: int, hostname: str | None = None) -> None:
    """Run a Celery worker of these settings until it is stopped. SIGTERM (Celery's warm
    shutdown): its running imports hand their units over at once, from their checkpoints,
    and it leaves once they have (a restore or a backup runs to its end first). SIGQUIT:
    at once, its units resuming elsewhere once their leases expire. `hostname` names it in
    its units' runs and logs (default: dcs-migration@ this machine's name)."""
    hostname = hostname or f"dcs-migration@{socket.gethostname()}"
    app = build_worker(settings, hostname)
    argv = [
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        f"--queues={QUEUE}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        f"--hostname={hostname}",
    ]
    app.worker_main(argv)
