"""The in-service executor: migration tasks, each in a process of its own, at most N at once.

A task waits (MIGRATING) until a slot takes it. Slots are shared fairly between projects
(`FairQueue`): a free slot goes to the project with tasks waiting that runs the fewest,
and within a project tasks start in the order submitted. A project alone may use every
slot; while another project's task waits, it gets none of the slots that free up until
the other runs as many. A running task is never preempted (an import stopped part way
cannot always resume exactly): a slot frees when its task ends, which a hung target
bounds by the reply timeout.

Each task runs in its own process (`worker.py`): imports are CPU-bound Python, and in
threads of the service they would share its interpreter lock with the API and with each
other, so that under load a stop or a list call waits seconds for its turn. In processes
they run on every core, the API stays quick, and a crash in one ends that task only.

A stop signals the task's process (SIGTERM), which ends TERMINATED within a second; a
service that stops asks its tasks to leave (SIGUSR1), and they stay MIGRATING with their
checkpoint, for the next start. A process that dies without writing its outcome leaves
its task FAILED, saying so.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
from collections import Counter, deque
from dataclasses import dataclass

from dcs_migration.config import SERVICE_PID_ENV, Settings, environ_with
from dcs_migration.sources.backup_store import BackupStore
from dcs_migration.sources.specs import SourceSpec
from dcs_migration.store import TaskRecord
from dcs_migration.store.db import Store
from dcs_migration.tasks.buckets import Buckets
from dcs_migration.tasks.job import TaskJob
from dcs_migration.tasks.worker import SERVICE_STOP, USER_STOP

log = logging.getLogger(__name__)

WORKER = "dcs_migration.tasks.worker"


@dataclass(frozen=True)
class Job:
    project_id: str
    task_id: str


class FairQueue:
    """Who starts next: among the projects with tasks waiting, the one that runs the
    fewest (a tie goes to the one that started a task least recently, then to the task
    submitted first); within a project, the order submitted. With P projects that have
    work and N slots, each comes to hold at most ceil(N / P) as slots free, and a project
    alone holds them all. Not thread-safe: the runner holds its lock around every call."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[tuple[int, Job]]] = {}
        self._running: Counter[str] = Counter()
        self._numbers = itertools.count()
        self._starts = itertools.count()
        self._last_start: dict[str, int] = {}  # of the projects with work: when it last took one

    def put(self, job: Job) -> None:
        self._waiting.setdefault(job.project_id, deque()).append((next(self._numbers), job))

    def take(self) -> Job | None:
        """The job to start now (counted as running until `done`), or None if none waits."""
        if not self._waiting:
            return None
        project = min(
            self._waiting,
            key=lambda p: (self._running[p], self._last_start.get(p, -1), self._waiting[p][0][0]),
        )
        waiting = self._waiting[project]
        _, job = waiting.popleft()
        if not waiting:
            del self._waiting[project]
        self._running[project] += 1
        self._last_start[project] = next(self._starts)
        return job

    def done(self, job: Job) -> None:
        project = job.project_id
        self._running[project] -= 1
        if self._running[project] <= 0:
            del self._running[project]
            if project not in self._waiting:  # no work left: forgotten
                self._last_start.pop(project, None)


class TaskRunner:
    def __init__(
        self, store: Store, settings: Settings, files: BackupStore, buckets: Buckets
    ) -> None:
        """`settings` are the service's: each task's process is handed them whole."""
        self.store = store
        self.settings = settings
        self.workers = settings.workers
        self._job = TaskJob(store, buckets, files, settings)
        self._queue = FairQueue()
        self._stops: dict[str, threading.Event] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a job was queued, or we leave
        self._threads: list[threading.Thread] = []
        self._leaving = False

    def start(self) -> None:
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"migration-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, project_id: str, task_id: str) -> None:
        with self._lock:
            self._stops[task_id] = threading.Event()
            self._queue.put(Job(project_id, task_id))
            self._changed.notify()

    def stop(self, task_id: str) -> None:
        """Ask a task to stop; it ends TERMINATED within about a second."""
        with self._lock:
            event = self._stops.get(task_id)
            process = self._processes.get(task_id)
            if event is not None:
                event.set()
        if process is not None and process.poll() is None:
            process.send_signal(USER_STOP)

    def sources_of(self, task: TaskRecord) -> list[SourceSpec] | None:
        return self._job.sources_of(task)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the running tasks to leave (they stay MIGRATING, with their checkpoint)."""
        with self._lock:
            self._leaving = True  # tasks still waiting stay so, for the next start
            self._changed.notify_all()
            running = list(self._processes.values())
        for process in running:
            if process.poll() is None:
                process.send_signal(SERVICE_STOP)
        for process in running:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        for thread in self._threads:
            thread.join(timeout)

    # -- the work ------------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                self._run(job)
            except Exception:  # a bug must not kill the slot
                log.exception("task %s could not be run", job.task_id)
            finally:
                with self._lock:
                    self._queue.done(job)

    def _next(self) -> Job | None:
        """The next job for this slot, waiting for one; None when the service stops."""
        with self._lock:
            while not self._leaving:
                job = self._queue.take()
                if job is not None:
                    return job
                self._changed.wait()
            return None

    def _run(self, job: Job) -> None:
        with self._lock:
            stop = self._stops.setdefault(job.task_id, threading.Event())
            if stop.is_set():
                process = None
            else:
                process = self._start_worker(job)
                self._processes[job.task_id] = process
        try:
            if process is None:  # stopped while it waited: ended here, without a process
                self._job.run(job.project_id, job.task_id, stop)
                return
            self._after(job, process, stop)
        finally:
            # Only this run's entries: a resume may already have submitted the task again.
            with self._lock:
                if self._stops.get(job.task_id) is stop:
                    del self._stops[job.task_id]
                if process is not None and self._processes.get(job.task_id) is process:
                    del self._processes[job.task_id]

    def _after(self, job: Job, process: subprocess.Popen[bytes], stop: threading.Event) -> None:
        """A task's process ended: make sure its task did too."""
        code = process.wait()
        with self._lock:
            # Submitted again (resumed) once this run had written its outcome: the task
            # that runs now is the new run's.
            superseded = self._stops.get(job.task_id) is not stop
        task = self.store.get_task(job.project_id, job.task_id)
        if task is None or not task.is_running or self._leaving or superseded:
            return
        # The process ended without writing the outcome: a signal that came before it
        # could handle one, or a crash.
        if stop.is_set():
            self.store.set_status(job.task_id, "TERMINATED", "stopped", finished=True)
            return
        message = f"the import process ended without a result (exit status {code})"
        log.error("task %s: %s", job.task_id, message)
        self.store.set_status(job.task_id, "FAILED", message, finished=True)
        self.store.add_log(job.task_id, "ERROR", message)

    def _start_worker(self, job: Job) -> subprocess.Popen[bytes]:
        """The task's process, handed the service's settings as JSON on its stdin (not
        its command line, which any local user may read: they hold secrets). The
        settings are a few hundred bytes, far below a pipe's buffer: writing them never
        waits for the process."""
        process = subprocess.Popen(
            [sys.executable, "-m", WORKER, job.project_id, job.task_id],
            env=environ_with({SERVICE_PID_ENV: str(os.getpid())}),
            stdin=subprocess.PIPE,
        )
        assert process.stdin is not None
        try:
            process.stdin.write(self.settings.to_json().encode())
            process.stdin.close()
        except BrokenPipeError:  # it died at once: `_after` reports how it ended
            pass
        return process
