"""Backups and restores, run in the background by worker threads of the service.

A backup connects to each master of the instance as a replica would and streams the RDB
snapshot it sends straight into the backup store, checked on the way (structure, CRC64):
nothing touches the Redis host's disk. `aof` backups turn the same snapshot into RESP
commands as it arrives. A failed backup leaves no file behind. A restore imports a backup
into the instance it was taken from, after flushing it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from dcs_migration.client.addresses import AddressPolicy, AllowedNetworks
from dcs_migration.client.capabilities import Capabilities
from dcs_migration.client.cluster import slot_masters
from dcs_migration.client.connection import Connection, ConnectionLost, info, keyspace
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.rdb import RdbReader
from dcs_migration.importer import ImportHooks, Progress, resolve_inputs, run_import
from dcs_migration.reading import BigValues
from dcs_migration.sources.backup_store import BackupStore, BackupStoreError, BackupWriter
from dcs_migration.sources.replication import take_snapshot
from dcs_migration.store import BackupRecord, BackupStatus, RestoreStatus, Store
from dcs_migration.store.records import InstanceRecord
from dcs_migration.writer.aof_writer import AofWriter
from dcs_migration.writer.options import WriteOptions

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 1.0
JOB_FAILED = "DCS.4842"


class BackupRunner:
    """Runs backups and restores, at most `workers` at once."""

    def __init__(
        self, store: Store, files: BackupStore, networks: AllowedNetworks, *, workers: int = 2
    ) -> None:
        self.store = store
        self.files = files
        self.networks = networks
        # Daemon threads: a service that is stopped does not wait for a backup to end
        # (the next start fails what was left running, and removes its files).
        self._jobs: queue.Queue[tuple[Callable[[str, str], None], str, str] | None] = queue.Queue()
        for n in range(workers):
            threading.Thread(target=self._work, name=f"backup-worker-{n}", daemon=True).start()
        self._workers = workers

    def recover(self) -> None:
        """At service start: what a stopped service left running is failed, and the files
        it had stored for those backups are removed."""
        for backup in self.store.fail_interrupted_backups():
            try:
                self.files.discard_prefix(
                    _prefix(backup.project_id, backup.instance_id, backup.backup_id)
                )
            except BackupStoreError as exc:
                log.error("the files of backup %s could not be removed: %s", backup.backup_id, exc)

    def submit_backup(self, project_id: str, backup_id: str) -> None:
        self._jobs.put((self._backup, project_id, backup_id))

    def submit_restore(self, project_id: str, restore_id: str) -> None:
        self._jobs.put((self._restore, project_id, restore_id))

    def delete_files(self, backup: BackupRecord) -> None:
        self._discard(backup.project_id, backup.instance_id, backup.backup_id)

    def shutdown(self) -> None:
        for _ in range(self._workers):
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._guarded(*job)

    # -- backups -----------------------------------------------------------------------

    def _guarded(self, job: Callable[[str, str], None], project_id: str, job_id: str) -> None:
        try:
            job(project_id, job_id)
        except Exception:  # a bug must not leave a record running forever
            log.exception("%s %s failed unexpectedly", job.__name__.strip("_"), job_id)
            if job == self._backup:
                self.store.finish_backup(job_id, BackupStatus.FAILED, JOB_FAILED, "internal error")
            else:
                self.store.finish_restore(
                    job_id, RestoreStatus.FAILED, JOB_FAILED, "internal error"
                )

    def _backup(self, project_id: str, backup_id: str) -> None:
        store = self.store
        backup = store.get_backup(project_id, backup_id)
        if backup is None or not store.backup_started(backup_id):
            return
        instance = store.get_instance(project_id, backup.instance_id)
        if instance is None:
            store.finish_backup(
                backup_id, BackupStatus.FAILED, JOB_FAILED, "the instance no longer exists"
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
            store.finish_backup(backup_id, BackupStatus.FAILED, JOB_FAILED, str(exc))
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
        """Remove whatever a backup stored, partial files included."""
        try:
            self.files.discard_prefix(_prefix(project_id, instance_id, backup_id))
        except BackupStoreError as exc:
            log.error("the files of backup %s could not all be removed: %s", backup_id, exc)

    # -- restores ----------------------------------------------------------------------

    def _restore(self, project_id: str, restore_id: str) -> None:
        store = self.store
        restore = store.get_restore(project_id, restore_id)
        if restore is None or not store.restore_started(restore_id):
            return
        backup = store.get_backup(project_id, restore.backup_id)
        instance = store.get_instance(project_id, restore.instance_id)
        if backup is None or backup.status is not BackupStatus.SUCCEED or instance is None:
            store.finish_restore(
                restore_id,
                RestoreStatus.FAILED,
                JOB_FAILED,
                "the backup or the instance is no longer there",
            )
            return
        last = 0.0

        def on_progress(p: Progress) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= PROGRESS_SECONDS and p.bytes_total:
                last = now
                store.restore_progress(restore_id, 100.0 * p.bytes_read / p.bytes_total)

        # As the managed service does: the instance is emptied, then loaded whole.
        sources = [self.files.source(f.object_key) for f in backup.files]
        result = run_import(
            lambda: resolve_inputs(sources),
            self._endpoint(instance),
            WriteOptions(flush=True),
            ImportHooks(on_progress=on_progress),
            cluster=instance.instance_type == "cluster",
        )
        if result.status == "SUCCESS":
            store.finish_restore(restore_id, RestoreStatus.SUCCEED)
        else:
            store.finish_restore(
                restore_id, RestoreStatus.FAILED, JOB_FAILED, result.error or result.status
            )

    def _endpoint(self, instance: InstanceRecord) -> Endpoint:
        return Endpoint(
            host=instance.ip,
            port=instance.port,
            username=instance.username,
            password=self.store.instance_password(instance.project_id, instance.instance_id),
            policy=AddressPolicy(
                self.networks, self.store.addresses_held_elsewhere(instance.project_id)
            ),
        )


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
