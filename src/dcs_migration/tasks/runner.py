"""The inline executor: units of work (migration tasks, restores, backups), each in a
process of its own on this machine, at most N at once.

A unit waits (its task MIGRATING, its restore `waiting`) until a slot takes it. Slots are
shared fairly between projects (`FairQueue`): a free slot goes to the project with work
waiting that runs the fewest, and within a project units start in the order submitted. A
project alone may use every slot; while another project's unit waits, it gets none of the
slots that free up until the other runs as many. A running unit is never preempted (an
import stopped part way cannot always resume exactly): a slot frees when its unit ends,
which a hung target bounds by the reply timeout.

Each unit runs in its own process (`worker.py`): imports are CPU-bound Python, and in
threads of the service they would share its interpreter lock with the API and with each
other, so that under load a stop or a list call waits seconds for its turn. In processes
they run on every core, the API stays quick, and a crash in one ends that unit only.

A stop signals the task's process (SIGTERM), which ends TERMINATED within a second; a
service that stops asks its units to leave (SIGUSR1): tasks stay MIGRATING with their
checkpoint, for the next start. A process that dies without writing its outcome leaves
its unit FAILED, saying so.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
from collections import Counter, deque
from collections.abc import Mapping
from typing import Protocol

from dcs_migration.config import SERVICE_PID_ENV, Settings, environ_with
from dcs_migration.tasks.executor import Work, WorkKind
from dcs_migration.tasks.worker import SERVICE_STOP, USER_STOP, WorkerJob

log = logging.getLogger(__name__)

WORKER = "dcs_migration.tasks.worker"
STOPPABLE = frozenset({WorkKind.MIGRATION_TASK, WorkKind.ONLINE_MIGRATION})


class ProcessJob(WorkerJob, Protocol):
    """What the executor needs of the job of a kind of work, in the service's process:
    end a unit stopped before it started (`run`), and one whose process ended without
    its outcome."""

    def ended_without_outcome(
        self, project_id: str, work_id: str, exit_status: int, *, stopped: bool
    ) -> None: ...


class FairQueue:
    """Who starts next: among the projects with work waiting, the one that runs the
    fewest (a tie goes to the one that started a unit least recently, then to the unit
    submitted first); within a project, the order submitted. With P projects that have
    work and N slots, each comes to hold at most ceil(N / P) as slots free, and a project
    alone holds them all. Not thread-safe: the executor holds its lock around every call."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[tuple[int, Work]]] = {}
        self._running: Counter[str] = Counter()
        self._numbers = itertools.count()
        self._starts = itertools.count()
        self._last_start: dict[str, int] = {}  # of the projects with work: when it last took one

    def put(self, work: Work) -> None:
        self._waiting.setdefault(work.project_id, deque()).append((next(self._numbers), work))

    def take(self) -> Work | None:
        """The work to start now (counted as running until `done`), or None if none waits."""
        if not self._waiting:
            return None
        project = min(
            self._waiting,
            key=lambda p: (self._running[p], self._last_start.get(p, -1), self._waiting[p][0][0]),
        )
        waiting = self._waiting[project]
        _, work = waiting.popleft()
        if not waiting:
            del self._waiting[project]
        self._running[project] += 1
        self._last_start[project] = next(self._starts)
        return work

    def done(self, work: Work) -> None:
        project = work.project_id
        self._running[project] -= 1
        if self._running[project] <= 0:
            del self._running[project]
            if project not in self._waiting:  # no work left: forgotten
                self._last_start.pop(project, None)


class InlineExecutor:
    """The `Executor` of one service: `workers` slots, each unit in a process of its own."""

    local = True

    def __init__(self, jobs: Mapping[WorkKind, ProcessJob], settings: Settings) -> None:
        """`settings` are the service's: each unit's process is handed them whole."""
        self.jobs = jobs
        self.settings = settings
        self.workers = settings.workers
        self._queue = FairQueue()
        self._stops: dict[Work, threading.Event] = {}
        self._processes: dict[Work, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # work was queued, or we leave
        self._threads: list[threading.Thread] = []
        self._leaving = False

    def start(self) -> None:
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"migration-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, work: Work) -> None:
        with self._lock:
            self._stops[work] = threading.Event()
            self._queue.put(work)
            self._changed.notify()

    def stop(self, work: Work) -> None:
        """Ask a migration task (an import or an online migration) to stop; it ends
        TERMINATED within about a second. (A restore or a backup cannot be stopped:
        nothing asks it to.)"""
        if work.kind not in STOPPABLE:
            return
        with self._lock:
            event = self._stops.get(work)
            process = self._processes.get(work)
            if event is not None:
                event.set()
        if process is not None and process.poll() is None:
            process.send_signal(USER_STOP)

    def running(self) -> frozenset[Work]:
        """The units submitted here that have not ended: waiting for a slot, or running."""
        with self._lock:
            return frozenset(self._stops)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the running units to leave (tasks stay MIGRATING, with their checkpoint)."""
        with self._lock:
            self._leaving = True  # units still waiting stay so, for the next start
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
        while (work := self._next()) is not None:
            try:
                self._run(work)
            except Exception:  # a bug must not kill the slot
                log.exception("%s %s could not be run", work.kind.value, work.work_id)
            finally:
                with self._lock:
                    self._queue.done(work)

    def _next(self) -> Work | None:
        """The next unit for this slot, waiting for one; None when the service stops."""
        with self._lock:
            while not self._leaving:
                work = self._queue.take()
                if work is not None:
                    return work
                self._changed.wait()
            return None

    def _run(self, work: Work) -> None:
        job = self.jobs[work.kind]
        with self._lock:
            stop = self._stops.setdefault(work, threading.Event())
            if stop.is_set():
                process = None
            else:
                process = self._start_worker(work)
                self._processes[work] = process
        try:
            if process is None:  # stopped while it waited: ended here, without a process
                job.run(work.project_id, work.work_id, stop)
                return
            self._after(work, job, process, stop)
        finally:
            # Only this run's entries: a resume may already have submitted the task again.
            with self._lock:
                if self._stops.get(work) is stop:
                    del self._stops[work]
                if process is not None and self._processes.get(work) is process:
                    del self._processes[work]

    def _after(
        self, work: Work, job: ProcessJob, process: subprocess.Popen[bytes], stop: threading.Event
    ) -> None:
        """A unit's process ended: make sure its unit did too."""
        code = process.wait()
        with self._lock:
            # Submitted again (resumed) once this run had written its outcome: the unit
            # that runs now is the new run's.
            superseded = self._stops.get(work) is not stop
        if self._leaving or superseded:
            return
        job.ended_without_outcome(work.project_id, work.work_id, code, stopped=stop.is_set())

    def _start_worker(self, work: Work) -> subprocess.Popen[bytes]:
        """The unit's process, handed the service's settings as JSON on its stdin (not
        its command line, which any local user may read: they hold secrets). The
        settings are a few hundred bytes, far below a pipe's buffer: writing them never
        waits for the process."""
        process = subprocess.Popen(
            [sys.executable, "-m", WORKER, work.kind.value, work.project_id, work.work_id],
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
