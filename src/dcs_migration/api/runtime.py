"""One running service: its settings, its store, the executor its work runs in, and the
use-cases the routers call. Built once per process by `app.create_app`."""

from __future__ import annotations

import logging

from dcs_migration.config import ExecutorKind, Settings
from dcs_migration.store import Store, open_settings_store
from dcs_migration.tasks.backups import BackupRunner
from dcs_migration.tasks.executor import Executor
from dcs_migration.tasks.online_service import OnlineTasks
from dcs_migration.tasks.runner import InlineExecutor
from dcs_migration.tasks.service import TaskService
from dcs_migration.tasks.worker import make_jobs, task_inputs

log = logging.getLogger(__name__)


class Service:
    """What the routes use: the store, the executor and the use-cases of one service."""

    def __init__(self, settings: Settings) -> None:
        problem = settings.distribution_problem()
        if problem is not None:
            raise ValueError(problem)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.store: Store = open_settings_store(settings)
        inputs = task_inputs(self.store, settings)
        self.executor: Executor
        if settings.executor is ExecutorKind.CELERY:
            from dcs_migration.tasks.distributed import CeleryExecutor

            self.executor = CeleryExecutor(self.store, settings)
        else:
            self.executor = InlineExecutor(make_jobs(self.store, inputs, settings), settings)
        self.tasks = TaskService(
            self.store,
            inputs,
            self.executor,
            max_tasks_per_project=settings.max_tasks_per_project,
        )
        self.online = OnlineTasks(self.store, self.tasks, self.executor, settings)
        self.backups = BackupRunner(self.store, inputs.files, settings)
        self.buckets = inputs.buckets
        self.bodies = BodyBudget(settings.body_budget)

    def start(self) -> None:
        if self.executor.local:  # else the workers recover what they were running
            self.tasks.recover()
            self.backups.recover()
        self.executor.start()

    def close(self) -> None:
        left = self.executor.running()
        self.executor.shutdown()
        if left:
            log.info("%d unit(s) of work left to the next start", len(left))
        self.store.close()


class BodyBudget:
    """The bytes of request bodies being read or held, all requests of the process together.

    A body takes its declared Content-Length (a chunked one, what has come so far) before
    it is read, and gives it back once its request is answered; a body that does not fit
    is refused with a 503 instead of read. Only the event loop touches it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size
