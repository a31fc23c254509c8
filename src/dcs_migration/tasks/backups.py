"""Backups: taken by a unit of work of the executor (`BackupJob`, in a process of the
service or on a distributed worker, as imports and restores are), and their files handed
out (`BackupRunner`).

A backup connects to each master of the instance as a replica would and streams the RDB
snapshot it sends straight into the backup store, checked on the way (structure, CRC64):
nothing touches the Redis host's disk. `aof` backups turn the same snapshot into RESP
commands as it arrives. A failed backup leaves no file behind. A backup taken again (its worker
died part way) starts over: what the first run stored is removed first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import BinaryIO, TypeVar

from dcs_migration.api.errors import DCS_JOB_FAILED
from dcs_migration.client.capabilities import Capabilities
from dcs_migration.client.cluster import slot_masters
from dcs_migration.client.connection import Connection, ConnectionLost, info, keyspace
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.config import Settings
from dcs_migration.formats.aof_writer import AofWriter
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.rdb import RdbReader
from dcs_migration.reading import BigValues
from dcs_migration.sources.backup_store import BackupStore, BackupStoreError, BackupWriter
from dcs_migration.sources.replication import take_snapshot
from dcs_migration.store import BACKUP_RUNNING, BackupRecord, BackupStatus, Store
from dcs_migration.store.records import InstanceRecord
from dcs_migration.tasks.endpoints import instance_endpoint

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 1.0


class BackupFileGone(Exception):
    """A file of a backup that the backup store no longer holds."""


class BackupRunner:
    """The backups this service made, as the API serves them: their files, their links,
    and what a stopped service left running."""

    def __init__(self, store: Store, files: BackupStore, settings: Settings) -> None:
        self.store = store
        self.files = files
        self.settings = settings

    def recover(self) -> None:
        """At service start (an executor whose work runs in the service only): what a
        stopped service left running (backups and restores) is failed, and the files it
        had stored for those backups are removed."""
        for backup in self.store.fail_interrupted_backups(DCS_JOB_FAILED):
            try:
                self.files.discard_prefix(
                    _prefix(backup.project_id, backup.instance_id, backup.backup_id)
                )
            except BackupStoreError as exc:
                log.error("the files of backup %s could not be removed: %s", backup.backup_id, exc)

    def delete_files(self, backup: BackupRecord) -> None:
        _discard(self.files, backup.project_id, backup.instance_id, backup.backup_id)

    def open_file(self, object_key: str) -> BinaryIO:
        """A backup file to read; BackupFileGone when the backup store no longer has it."""
        try:
            return self.files.open(object_key)
        except BackupStoreError as exc:
            raise BackupFileGone(str(exc)) from None

    def download_url(self, object_key: str, expires_in: int) -> str | None:
        """A URL of the object store to download a backup file from (None: the backup
        store is a folder, and this service hands out its own links)."""
        return self.files.presigned_url(object_key, expires_in)

    @property
    def bucket(self) -> str:
        """The bucket name the backups are reported in."""
        return self.files.bucket


class BackupJob:
    """Takes backups (`WorkKind.BACKUP`), one per call of `run`."""

    def __init__(self, store: Store, files: BackupStore, settings: Settings) -> None:
        self.store = store
        self.files = files
        self.settings = settings
        self.networks = settings.allowed_networks

    def run(
        self,
        project_id: str,
        backup_id: str,
        stop: threading.Event,
        leaving: threading.Event | None = None,
        *,
        again: bool = False,
    ) -> None:
        """Take the backup to its end (it cannot be stopped: `stop` and `leaving` are not
        looked at; a service that leaves ends its process, and the next start fails it).
        `again`: an earlier run of it was cut off (its worker died): it starts over."""
        try:
            self._backup(project_id, backup_id, again=again)
        except Exception as exc:  # a bug must not leave a record running forever
            log.exception("backup %s failed unexpectedly", backup_id)
            fail_broken_backup(self.store, project_id, backup_id, exc)

    def ended_without_outcome(
        self, project_id: str, backup_id: str, exit_status: int, *, stopped: bool
    ) -> None:
        """The backup's process ended without writing the outcome (a crash): FAILED."""
        backup = self.store.get_backup(project_id, backup_id)
        if backup is None or backup.status not in BACKUP_RUNNING:
            return
        message = f"the backup process ended without a result (exit status {exit_status})"
        log.error("backup %s: %s", backup_id, message)
        _discard(self.files, project_id, backup.instance_id, backup_id)
        self.store.finish_backup(backup_id, BackupStatus.FAILED, DCS_JOB_FAILED, message)

    # -- backups -----------------------------------------------------------------------

    def _backup(self, project_id: str, backup_id: str, *, again: bool) -> None:
        store = self.store
        backup = store.get_backup(project_id, backup_id)
        if backup is None or not store.backup_started(backup_id, again=again):
            return
        if again:
            self._discard(project_id, backup.instance_id, backup_id)
        instance = store.get_instance(project_id, backup.instance_id)
        if instance is None:
            store.finish_backup(
                backup_id, BackupStatus.FAILED, DCS_JOB_FAILED, "the instance no longer exists"
            )
            return
        prefix = _prefix(project_id, instance.instance_id, backup_id)
        try:
            masters = _masters(self._endpoint(instance), instance.instance_type == "cluster")
            progress = _Progress(store, backup_id, len(masters))
            # Every master at once: each waits out its own repl-diskless-sync-delay, so a
            # cluster takes about as long as its biggest shard, not the sum of them.
            outcomes = _all_at_once(
                [
                    partial(self._take, m, prefix, backup.backup_format, progress.of(n))
                    for n, m in enumerate(masters)
                ]
            )
            for master, outcome in zip(masters, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    raise _MasterFailed(master, outcome)
            for master, outcome in zip(masters, outcomes, strict=True):
                assert not isinstance(outcome, BaseException)
                name, key, size = outcome
                store.add_backup_file(backup_id, name, key, size, f"{master.host}:{master.port}")
        except (_MasterFailed, TargetError, ConnectionLost, FormatError, BackupStoreError) as exc:
            self._discard(project_id, instance.instance_id, backup_id)
            if isinstance(exc, _MasterFailed) and not _expected(exc.cause):
                raise exc.cause from None
            store.finish_backup(backup_id, BackupStatus.FAILED, DCS_JOB_FAILED, str(exc))
            log.warning("backup %s failed: %s", backup_id, exc)
            return
        except BaseException:
            self._discard(project_id, instance.instance_id, backup_id)
            raise
        store.finish_backup(backup_id, BackupStatus.SUCCEED)
        log.info("backup %s of %s succeeded (%d file(s))", backup_id, instance.name, len(masters))

    def _take(
        self, master: Endpoint, prefix: str, backup_format: str, progress: _MasterProgress
    ) -> tuple[str, str, int]:
        """One master's snapshot into the backup store: (file name, object key, size)."""
        name = f"{master.host}_{master.port}.{backup_format}"
        key = f"{prefix}/{name}"
        progress.total_keys = _key_count(master)
        writer = self.files.writer(key)
        try:
            if backup_format == "aof":
                to_aof = _AofSink(writer, _capabilities(master))
                take_snapshot(master, to_aof.feed, on_progress=progress)
                to_aof.close()
            else:
                take_snapshot(master, writer.write, on_progress=progress)
            return name, key, writer.commit()
        except BaseException:
            writer.abort()
            raise

    def _discard(self, project_id: str, instance_id: str, backup_id: str) -> None:
        _discard(self.files, project_id, instance_id, backup_id)

    def _endpoint(self, instance: InstanceRecord) -> Endpoint:
        password = self.store.instance_password(instance.project_id, instance.instance_id)
        return instance_endpoint(self.store, instance, self.networks, password=password)


def fail_broken_backup(store: Store, project_id: str, backup_id: str, exc: Exception) -> None:
    """A backup whose run broke off on an unexpected error (a bug) ends FAILED."""
    store.finish_backup(backup_id, BackupStatus.FAILED, DCS_JOB_FAILED, "internal error")


class _Progress:
    """A backup's progress: the mean of its masters' parts, each the share of that
    master's keys received so far; written to the store at most once a second."""

    def __init__(self, store: Store, backup_id: str, masters: int) -> None:
        self.store = store
        self.backup_id = backup_id
        self.parts = [0.0] * masters
        self._last = 0.0
        self._lock = threading.Lock()

    def of(self, n: int) -> _MasterProgress:
        return _MasterProgress(self, n)

    def update(self, n: int, part: float) -> None:
        with self._lock:
            self.parts[n] = part
            now = time.monotonic()
            if now - self._last < PROGRESS_SECONDS:
                return
            self._last = now
            done = 100.0 * sum(self.parts) / len(self.parts)
        self.store.backup_progress(self.backup_id, done)


class _MasterProgress:
    """What one master's snapshot reports (bytes and keys so far) as its part of the whole."""

    def __init__(self, whole: _Progress, n: int) -> None:
        self.whole = whole
        self.n = n
        self.total_keys = 0

    def __call__(self, size: int, keys: int) -> None:
        part = min(keys / self.total_keys, 1.0) if self.total_keys else 0.0
        self.whole.update(self.n, part)


class _MasterFailed(Exception):
    """One master's snapshot failed; the message names the master."""

    def __init__(self, master: Endpoint, cause: BaseException) -> None:
        super().__init__(f"{master.host}:{master.port}: {cause}")
        self.cause = cause


def _expected(exc: BaseException) -> bool:
    """A failure of the server, the image or the store, as opposed to a bug."""
    return isinstance(exc, (TargetError, ConnectionLost, FormatError, BackupStoreError, OSError))


class _AofSink:
    """The snapshot's bytes in, the same data as RESP commands out to the backup store."""

    def __init__(self, writer: BackupWriter, caps: Capabilities) -> None:
        self.writer = writer
        self.reader = RdbReader()
        self.big_values = BigValues()
        self.aof = AofWriter(caps)

    def feed(self, data: bytes) -> None:
        self._write(self.aof.records(self.big_values.join(self.reader.feed(data))))

    def close(self) -> None:
        self._write(self.aof.records(self.big_values.join(self.reader.close())))

    def _write(self, data: bytes) -> None:
        if data:
            self.writer.write(data)


T = TypeVar("T")


def _all_at_once(calls: list[Callable[[], T]]) -> list[T | BaseException]:
    """Run the calls in daemon threads at once; each one's result or exception, in order."""
    outcomes: list[T | BaseException] = [RuntimeError("did not run")] * len(calls)

    def run(n: int) -> None:
        try:
            outcomes[n] = calls[n]()
        except BaseException as exc:  # handed to the caller, which decides
            outcomes[n] = exc

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def _discard(files: BackupStore, project_id: str, instance_id: str, backup_id: str) -> None:
    """Remove whatever a backup stored, partial files included."""
    try:
        files.discard_prefix(_prefix(project_id, instance_id, backup_id))
    except BackupStoreError as exc:
        log.error("the files of backup %s could not all be removed: %s", backup_id, exc)


def _prefix(project_id: str, instance_id: str, backup_id: str) -> str:
    """Where a backup's files live in the backup store."""
    return f"{project_id}/{instance_id}/{backup_id}"


def _masters(endpoint: Endpoint, cluster: bool) -> list[Endpoint]:
    if not cluster:
        return [endpoint]
    with _connected(endpoint) as conn:
        nodes = sorted(set(slot_masters(conn, endpoint)))
    return [endpoint.at(host, port) for host, port in nodes]


def _key_count(endpoint: Endpoint) -> int:
    with _connected(endpoint) as conn:
        return sum(keyspace(info(conn, "keyspace")).values())


def _capabilities(endpoint: Endpoint) -> Capabilities:
    with _connected(endpoint) as conn:
        return Capabilities.from_info(info(conn, "server"))


class _connected:
    """A short-lived connection to ask a server something, as a context manager."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.conn = Connection(endpoint, timeout=10.0)

    def __enter__(self) -> Connection:
        try:
            self.conn.connect()
        except ConnectionLost as exc:
            raise TargetError(str(exc)) from None
        return self.conn

    def __exit__(self, *_: object) -> None:
        self.conn.close()
