"""The migration-task use-cases: create, resume, stop, delete; the files of a task and
the resume check.

The API calls `TaskService`; the job, in its own process, calls `TaskInputs` (the files
of a task) and `resume_point` (the resume check) as the service does, so that each rule
exists once. A use-case the
rules refuse raises `Refused`, whose `Refusal` the API turns into its DCS error code:
nothing here speaks HTTP.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from dcs_migration.api.errors import DCS_JOB_FAILED
from dcs_migration.config import Settings
from dcs_migration.importer import Checkpoint
from dcs_migration.sources import Input
from dcs_migration.sources.backup_store import BackupStore
from dcs_migration.sources.bucket import BadObjectKey, BucketNotFound
from dcs_migration.sources.fingerprint import describe_change, fingerprint, inputs_fingerprint
from dcs_migration.sources.s3 import S3SourceError
from dcs_migration.sources.specs import SourceSpec
from dcs_migration.store import (
    BackupStatus,
    InstanceRecord,
    LogLevel,
    NewTaskFile,
    Store,
    TaskRecord,
    TaskStatus,
)
from dcs_migration.tasks.buckets import Buckets
from dcs_migration.tasks.executor import Executor, Work
from dcs_migration.tasks.refusals import Refusal, Refused

log = logging.getLogger(__name__)

_TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
RESUMABLE = frozenset({TaskStatus.FAILED, TaskStatus.TERMINATED})


class InputsChanged(Exception):
    """A task's inputs are not the bytes its checkpoint counts (the message says how)."""


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a task's run starts: `checkpoint` (None: from the beginning) and the
    fingerprint of its inputs now (kept when it starts from the beginning)."""

    checkpoint: Checkpoint | None
    fingerprint: str


@dataclass(frozen=True, slots=True)
class NewMigrationTask:
    """A backup import task as the request asks for it (its target already found)."""

    task_name: str
    description: str
    file_source: str  # self_build_obs | backup_record
    bucket_name: str  # self_build_obs
    backup_id: str | None  # backup_record
    files: tuple[NewTaskFile, ...]  # self_build_obs
    network_type: str | None = None
    target_db: int | None = None
    target_password: str | None = None
    resume_mode: str | None = None
    skip_unknown_commands: bool = False


def work_of(task: TaskRecord) -> Work:
    """The work that runs the task: an import's, or an online migration's."""
    if task.is_online:
        return Work.online_migration(task.project_id, task.task_id)
    return Work.migration_task(task.project_id, task.task_id)


def checkpoint_of(task: TaskRecord) -> Checkpoint | None:
    if task.checkpoint is None:
        return None
    input_index, records_done, keys_written = task.checkpoint
    return Checkpoint(input_index, records_done, keys_written)


def resume_point(
    task: TaskRecord,
    sources: Sequence[SourceSpec],
    settings: Settings,
    inputs: Sequence[Input] | None = None,
) -> ResumePoint:
    """The resume check: a resume skips what was written, so the inputs must be the bytes
    the checkpoint counts. From the checkpoint when they are; from the beginning when
    there is no checkpoint (or no fingerprint to compare with); InputsChanged when they
    changed. The fingerprint is the one `inputs` were found with, when given; else a
    fresh look at the sources (what is gone is then named). What fingerprinting the
    sources raises is left to the caller."""
    if inputs is not None and all(found.fingerprint for found in inputs):
        now = inputs_fingerprint(inputs)
    else:
        now = fingerprint(sources, settings)
    if task.checkpoint is None or task.inputs_fingerprint is None:
        return ResumePoint(None, now)
    change = describe_change(task.inputs_fingerprint, now)
    if change is not None:
        raise InputsChanged(change)
    return ResumePoint(checkpoint_of(task), now)


class TaskInputs:
    """The files a task reads, found where its request said they are."""

    def __init__(
        self, store: Store, buckets: Buckets, files: BackupStore, settings: Settings
    ) -> None:
        self.store = store
        self.buckets = buckets
        self.files = files
        self.settings = settings

    def sources_of(self, task: TaskRecord) -> list[SourceSpec] | None:
        """What the task reads: objects of its bucket, or the files of its backup (None
        when that backup is gone). BucketNotFound when the project may no longer read the
        bucket or it is gone; BadObjectKey for an object that now leaves it (a link);
        S3SourceError when the object store cannot say."""
        if task.file_source == "backup_record":
            backup = self.store.get_backup(task.project_id, task.backup_id or "")
            if backup is None or backup.status is not BackupStatus.SUCCEED:
                return None
            return [self.files.source(f.object_key) for f in backup.files]
        bucket = self.buckets.open(task.project_id, task.bucket_name or "")
        return [bucket.source(f.file_name) for f in task.files]

    def check_bucket(self, project_id: str, bucket: str, keys: Sequence[str]) -> None:
        """The project may read `bucket` (a bucket it was not granted answers exactly as a
        missing one) and every key names an object inside it."""
        settings = self.settings
        if settings.object_store is not None and bucket == settings.backup_bucket:
            raise Refused(
                Refusal.INVALID_PARAMETER,
                f"backup_files.bucket_name: bucket {bucket} holds the backups this service "
                "makes; import one with file_source backup_record",
            )
        try:
            opened = self.buckets.open(project_id, bucket)
        except BucketNotFound as exc:
            raise Refused(Refusal.INVALID_PARAMETER, f"backup_files.bucket_name: {exc}") from None
        except S3SourceError:  # the store cannot say now: the task's run will, or will read
            return
        for n, key in enumerate(keys):
            try:
                opened.source(key)
            except BadObjectKey as exc:
                raise Refused(
                    Refusal.INVALID_PARAMETER, f"backup_files.files[{n}].file_name: {exc.message}"
                ) from None


class TaskService:
    """What the API asks of migration tasks, over the store and the executor."""

    def __init__(
        self,
        store: Store,
        inputs: TaskInputs,
        executor: Executor,
        *,
        max_tasks_per_project: int,
    ) -> None:
        self.store = store
        self.inputs = inputs
        self.executor = executor
        self.max_tasks_per_project = max_tasks_per_project

    # -- finding --------------------------------------------------------------------------

    def task(self, project_id: str, task_id: str) -> TaskRecord:
        """The project's task; refused for an id of the wrong form or another project's."""
        if not _TASK_ID.fullmatch(task_id):
            raise Refused(Refusal.INVALID_TASK_ID, f"task_id {task_id!r} is not a task id")
        task = self.store.get_task(project_id, task_id)
        if task is None:
            raise Refused(Refusal.TASK_NOT_FOUND, f"migration task {task_id} does not exist")
        return task

    def target_instance(self, project_id: str, instance_id: str) -> InstanceRecord:
        instance = self.store.get_instance(project_id, instance_id)
        if instance is None:
            raise Refused(
                Refusal.INSTANCE_NOT_FOUND,
                f"target_instance.id: instance {instance_id} does not exist",
            )
        return instance

    # -- starting -------------------------------------------------------------------------

    def recover(self) -> None:
        """At service start: the tasks a stopped service left waiting, or set to resume on
        their own, are submitted again (from their checkpoint); the others it left
        running end FAILED. For an executor whose workers live in this service only:
        tasks that workers elsewhere still run must not be failed."""
        waiting = self.store.requeue_interrupted()
        interrupted = self.store.fail_interrupted(DCS_JOB_FAILED)
        if interrupted:
            log.warning("%d task(s) were running when the service stopped: FAILED", interrupted)
        for task in waiting:
            self.executor.submit(work_of(task))

    # -- creating -------------------------------------------------------------------------

    def create(
        self, project_id: str, instance: InstanceRecord, new: NewMigrationTask
    ) -> TaskRecord:
        """Create a backup import task and submit it: it starts at once, MIGRATING."""
        store = self.store
        if new.file_source == "backup_record":
            backup = store.get_backup(project_id, new.backup_id or "")
            if backup is None or backup.status is not BackupStatus.SUCCEED:
                raise Refused(
                    Refusal.BACKUP_NOT_SUCCEEDED,
                    f"backup_files.backup_id: backup {new.backup_id} is not a "
                    "succeed backup of this project",
                )
            bucket = ""
            task_files = [NewTaskFile(f.file_name, str(f.size), None, f.size) for f in backup.files]
            origin = f"backup {backup.backup_id}"
        else:
            bucket = new.bucket_name
            self.inputs.check_bucket(project_id, bucket, [f.file_name for f in new.files])
            task_files = list(new.files)
            origin = f"bucket {bucket}"
        limit = self.max_tasks_per_project
        if store.count_running(project_id) >= limit:
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"project {project_id} already has {limit} tasks running or waiting, "
                "its limit: stop some, or wait for them to finish",
            )
        task = store.create_task(
            project_id,
            task_name=new.task_name,
            description=new.description,
            target_instance_id=instance.instance_id,
            files=task_files,
            bucket_name=bucket or None,
            backup_id=new.backup_id if new.file_source == "backup_record" else None,
            file_source=new.file_source,
            network_type=new.network_type,
            target_db=new.target_db,
            target_password=new.target_password,
            resume_mode=new.resume_mode,
            skip_unknown_commands=new.skip_unknown_commands,
        )
        store.add_log(
            task.task_id, LogLevel.INFO, f"task created: {len(task.files)} file(s) from {origin}"
        )
        self.executor.submit(Work.migration_task(project_id, task.task_id))
        return task

    # -- resuming -------------------------------------------------------------------------

    def set_resume_mode(self, project_id: str, task_id: str, resume_mode: str) -> TaskRecord:
        """Set the task's resume mode. "auto" also resumes a FAILED or TERMINATED import
        from its last checkpoint (what the target acknowledged), unless its files changed
        since. An online migration only keeps the mode (for a service restart: batch-restart
        restarts it). Returns the task as it is then."""
        store = self.store
        task = self.task(project_id, task_id)
        store.set_resume_mode(project_id, task.task_id, resume_mode)
        if resume_mode == "auto" and task.status in RESUMABLE and not task.is_online:
            self._check_unchanged(task)
            if store.requeue(project_id, task.task_id):
                where = "its last checkpoint" if task.checkpoint else "the beginning"
                store.add_log(
                    task.task_id, LogLevel.INFO, f"resume asked: the task goes on from {where}"
                )
                self.executor.submit(Work.migration_task(project_id, task.task_id))
        return self.task(project_id, task_id)

    def _check_unchanged(self, task: TaskRecord) -> None:
        """Refuse a resume whose checkpoint no longer counts the task's files. What cannot
        be read is left to the run, which fails saying why (as it would without one)."""
        if task.inputs_fingerprint is None or task.checkpoint is None:
            return
        try:
            sources = self.inputs.sources_of(task)
        except (BucketNotFound, BadObjectKey, S3SourceError):
            return
        if sources is None:
            raise Refused(
                Refusal.BACKUP_NOT_SUCCEEDED,
                f"backup {task.backup_id} is no longer a succeed backup",
            )
        try:
            resume_point(task, sources, self.inputs.settings)
        except InputsChanged as change:
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"migration task {task.task_id} cannot resume: {change} since it ran",
            ) from None
        except BadObjectKey:
            return  # an object now leaves its bucket: the run fails, saying so
        except Exception as exc:  # an unreachable store: the run would fail the same way
            raise Refused(
                Refusal.STATE_NOT_ALLOWED, f"the task's files cannot be checked: {exc}"
            ) from None

    # -- stopping and deleting --------------------------------------------------------------

    def signal_stop(self, project_id: str, task_id: str) -> None:
        """Tell the task's worker to stop, before anything is written: a busy database must
        not hold up the stop itself."""
        before = self.task(project_id, task_id)
        if not before.is_running:
            raise Refused(
                Refusal.STATE_NOT_ALLOWED,
                f"migration task {task_id} is {before.status.value}: "
                "only a running task can be stopped",
            )
        self.executor.stop(work_of(before))

    def record_stop(self, project_id: str, task_id: str) -> TaskRecord:
        """Write the stop: TERMINATING (TERMINATED if it had not started)."""
        after = self.store.request_stop(project_id, task_id)
        assert after is not None
        return after

    def stop(self, project_id: str, task_id: str) -> TaskRecord:
        self.signal_stop(project_id, task_id)
        return self.record_stop(project_id, task_id)

    def stop_many(self, project_id: str, task_ids: Sequence[str]) -> list[Refused | None]:
        """Every worker is told first, then the stops are recorded; for each id in turn,
        None when it stops or why it was refused."""
        refused: dict[str, Refused] = {}
        for task_id in task_ids:
            try:
                self.signal_stop(project_id, task_id)
            except Refused as refusal:
                refused[task_id] = refusal
        self.store.request_stops(project_id, [t for t in task_ids if t not in refused])
        return [refused.get(task_id) for task_id in task_ids]

    def delete(self, project_id: str, task_ids: Sequence[str]) -> list[str]:
        """Delete finished tasks (the ids deleted); a running one must be stopped first."""
        for task_id in task_ids:
            if self.task(project_id, task_id).is_running:
                raise Refused(
                    Refusal.TASK_RUNNING, f"migration task {task_id} is running: stop it first"
                )
        return list(self.store.delete_tasks(project_id, task_ids).deleted)
