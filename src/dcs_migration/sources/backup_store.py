"""Where the backups the service makes are kept: a folder of the data dir, or a bucket.

`make_backup_store(settings)` picks one: files under `<data dir>/backups` by default, or the
backup bucket of the S3-compatible store when the settings have one (`Settings.object_store`).
Both stores take the same keys (relative POSIX paths such as
`proj/inst/backup-id/host_port.rdb`) and hand out the same source for a key, a
`BackupObject`, which the finder places with its own settings (`backup_location`): a file of
the folder (named `bucket/key` to users, as a folder bucket's objects are) or an object of
the bucket (`s3://bucket/key`).

A backup is written as a stream and becomes visible only when committed, so a reader never
sees half a file: locally through a temporary file renamed into place, in a bucket through
a multipart upload that holds at most one part in memory (RDB files outgrow RAM).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol, TypeVar, cast

from dcs_migration.config import DEFAULT_BACKUP_BUCKET, Settings
from dcs_migration.sources.retry import RetriesFailed, RetryPolicy, call_with_retries
from dcs_migration.sources.s3 import S3SourceError, is_transient, make_s3_client, s3_url
from dcs_migration.sources.specs import BackupObject, LocalObject, S3Object

MIN_PART_BYTES = 5 << 20  # S3 refuses smaller parts, except the last one
MAX_PARTS = 10_000  # S3's limit on parts per upload
_DELETE_BATCH = 1000  # S3's limit on keys per DeleteObjects
_WRITE_RETRY = RetryPolicy(attempts=4, base_delay=0.2, max_delay=2.0)
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_MISSING_BUCKET_CODES = frozenset({"404", "NoSuchBucket", "NotFound"})

T = TypeVar("T")


class BackupStoreError(Exception):
    """Storing, reading or deleting a backup file failed; the message says which key and why."""


class BackupWriter(Protocol):
    """One backup file being written: bytes in, then either `commit` or `abort`."""

    def write(self, data: bytes) -> None:
        """Append `data` (any size; called many times)."""
        ...

    def commit(self) -> int:
        """Make the file visible under its key, whole; returns its size in bytes."""
        ...

    def abort(self) -> None:
        """Drop what was written. Never raises, so it is safe in cleanup paths, after a
        failed write or commit, twice, or with nothing written; after `commit`, a no-op."""
        ...


class BackupStore(Protocol):
    """Backup files by key, wherever they are kept."""

    bucket: str  # the bucket name reported to users

    def writer(self, key: str) -> BackupWriter: ...
    def source(self, key: str) -> BackupObject: ...
    def size(self, key: str) -> int: ...
    def open(self, key: str) -> BinaryIO: ...
    def delete(self, keys: Iterable[str]) -> None: ...
    def discard_prefix(self, prefix: str) -> None: ...
    def presigned_url(self, key: str, expires_in: int) -> str | None: ...


def backup_location(settings: Settings, key: str) -> LocalObject | S3Object:
    """Where the backup file `key` is kept under `settings`: a file of the data dir's
    backups folder, or an object of the backup bucket in the object store."""
    if settings.object_store is None:
        return LocalObject(settings.data_dir / "backups", settings.backup_bucket, _check_key(key))
    return S3Object(settings.backup_bucket, _check_key(key))


def make_backup_store(settings: Settings) -> BackupStore:
    """The folder `<data dir>/backups`, unless the settings have an object store; then its
    backup bucket (`Settings.backup_bucket`), created on first use if it does not exist."""
    bucket = settings.backup_bucket
    if settings.object_store is None:
        return LocalBackupStore(settings.data_dir / "backups", bucket)
    try:
        client = make_s3_client(settings.object_store)
    except S3SourceError as exc:
        raise BackupStoreError(f"cannot use the backup bucket {bucket!r}: {exc}") from exc
    return S3BackupStore(client, bucket, create_bucket=True)


def _check_key(key: str) -> str:
    """`key` if it is a relative POSIX path that stays under the store's root, else an error.

    Empty and `.` segments are refused as well: a folder would read `a//b` as `a/b` where a
    bucket would not, and the two stores must agree on what a key names.
    """
    if not key or "\0" in key or key.startswith("/"):
        raise BackupStoreError(f"invalid backup key {key!r}: not a relative path")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise BackupStoreError(f"invalid backup key {key!r}: empty, '.' or '..' segment")
    return key


# -- local folder -------------------------------------------------------------------------


class LocalBackupStore:
    """Backup files under a root folder, at `root / key`."""

    def __init__(self, root: Path, bucket: str = DEFAULT_BACKUP_BUCKET) -> None:
        self.root = Path(root)
        self.bucket = bucket

    def _path_of(self, key: str) -> Path:
        return self.root.joinpath(*PurePosixPath(_check_key(key)).parts)

    def writer(self, key: str) -> BackupWriter:
        return _LocalWriter(self, key)

    def source(self, key: str) -> BackupObject:
        """The file as the importer finds it (named `bucket/key` in errors and logs)."""
        return BackupObject(_check_key(key))

    def size(self, key: str) -> int:
        path = self._path_of(key)
        try:
            if not path.is_file():
                raise BackupStoreError(f"there is no backup file {key!r} in {self.root}")
            return path.stat().st_size
        except OSError as exc:
            raise _disk_error("reading", key, exc) from exc

    def open(self, key: str) -> BinaryIO:
        path = self._path_of(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise BackupStoreError(f"there is no backup file {key!r} in {self.root}") from exc
        except OSError as exc:
            raise _disk_error("reading", key, exc) from exc

    def delete(self, keys: Iterable[str]) -> None:
        paths = [(key, self._path_of(key)) for key in keys]  # refuse a bad key before deleting
        for key, path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise _disk_error("deleting", key, exc) from exc
            self._prune(path.parent)

    def discard_prefix(self, prefix: str) -> None:
        """Remove everything under folder `prefix`, partial files of dead writers included
        (what a backup interrupted by a crash leaves)."""
        folder = self._path_of(prefix)
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _disk_error("deleting", prefix, exc) from exc
        self._prune(folder.parent)

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        _check_key(key)
        return None  # the service signs its own download links for local files

    def _prune(self, folder: Path) -> None:
        """Remove `folder` and its parents while they are empty, up to (not including) root."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                return  # not empty (or not ours to remove): stop here
            folder = folder.parent


class _LocalWriter:
    """Writes to a hidden temporary file next to the target, renamed into place on commit."""

    def __init__(self, store: LocalBackupStore, key: str) -> None:
        self._store = store
        self._key = key
        self._path = store._path_of(key)
        self._file: BinaryIO | None = None
        self._temp: Path | None = None
        self._size = 0
        self._failed = False
        self._committed = False
        self._aborted = False

    def write(self, data: bytes) -> None:
        self._check_open()
        try:
            self._opened().write(data)
        except OSError as exc:
            self._failed = True
            raise _disk_error("writing", self._key, exc) from exc
        self._size += len(data)

    def commit(self) -> int:
        self._check_open()
        try:
            file = self._opened()
            file.flush()
            os.fsync(file.fileno())
            file.close()
            assert self._temp is not None
            os.replace(self._temp, self._path)
        except OSError as exc:
            self._failed = True
            raise _disk_error("writing", self._key, exc) from exc
        self._temp = None
        self._committed = True
        _sync_folder(self._path.parent)
        return self._size

    def abort(self) -> None:
        if self._committed or self._aborted:
            return
        self._aborted = True
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._temp is not None:
            with contextlib.suppress(OSError):
                self._temp.unlink(missing_ok=True)
            self._store._prune(self._temp.parent)

    def _check_open(self) -> None:
        if self._committed or self._aborted or self._failed:
            state = "committed" if self._committed else "aborted" if self._aborted else "failed"
            raise BackupStoreError(f"the writer of backup file {self._key!r} was already {state}")

    def _opened(self) -> BinaryIO:
        if self._file is not None:
            return self._file
        folder = self._path.parent
        attempts = 3  # another writer's abort or a delete may prune the new folder at once
        while True:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                fd, name = tempfile.mkstemp(
                    dir=folder, prefix=f".{self._path.name}.", suffix=".partial"
                )
            except FileNotFoundError:
                attempts -= 1
                if not attempts:
                    raise
                continue
            self._temp = Path(name)
            self._file = os.fdopen(fd, "wb")
            return self._file


def _sync_folder(folder: Path) -> None:
    """Make a rename durable. Best effort: some file systems cannot sync a folder, and the
    rename is already atomic, which is what readers rely on."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _disk_error(doing: str, key: str, exc: OSError) -> BackupStoreError:
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    return BackupStoreError(f"{doing} backup file {key!r} failed: {reason}{where}")


# -- S3 bucket ----------------------------------------------------------------------------


class S3BackupStore:
    """Backup files as objects of one bucket, written by multipart upload of `part_bytes`
    parts (objects smaller than one part by a single PUT).

    With `create_bucket`, the bucket is created on the first write if it does not exist.
    Failed requests of a write are retried while they fail transiently (`retry`).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        part_bytes: int = 8 << 20,
        create_bucket: bool = False,
        retry: RetryPolicy = _WRITE_RETRY,
    ) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"part_bytes must be at least {MIN_PART_BYTES} (S3's minimum)")
        self.client = client
        self.bucket = bucket
        self.part_bytes = part_bytes
        self.retry = retry
        self._bucket_ready = not create_bucket
        self._bucket_lock = threading.Lock()

    def writer(self, key: str) -> BackupWriter:
        return _S3Writer(self, _check_key(key))

    def source(self, key: str) -> BackupObject:
        """The object as the importer finds it (named `s3://bucket/key`)."""
        return BackupObject(_check_key(key))

    def size(self, key: str) -> int:
        try:
            meta = self.client.head_object(Bucket=self.bucket, Key=_check_key(key))
        except Exception as exc:
            raise self._error("reading", key, exc) from exc
        return int(meta["ContentLength"])

    def open(self, key: str) -> BinaryIO:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=_check_key(key))
        except Exception as exc:
            raise self._error("reading", key, exc) from exc
        return cast(BinaryIO, response["Body"])

    def delete(self, keys: Iterable[str]) -> None:
        names = [_check_key(key) for key in keys]
        for start in range(0, len(names), _DELETE_BATCH):
            batch = names[start : start + _DELETE_BATCH]
            request = partial(
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            response = self._call("deleting", batch[0], request)
            errors = [e for e in response.get("Errors", ()) if e.get("Code") not in _MISSING_CODES]
            if errors:
                failed = ", ".join(f"{e.get('Key')!r} ({e.get('Code')})" for e in errors[:5])
                raise BackupStoreError(
                    f"deleting backup files from bucket {self.bucket!r} failed: {failed}"
                )

    def discard_prefix(self, prefix: str) -> None:
        """Remove every object under `prefix/` and abort the multipart uploads a dead
        writer left there (they hold stored parts until aborted)."""
        start = _check_key(prefix) + "/"
        uploads = self._call(
            "listing uploads under",
            prefix,
            partial(self.client.list_multipart_uploads, Bucket=self.bucket, Prefix=start),
        )
        for upload in uploads.get("Uploads", ()):
            self._call(
                "aborting an upload of",
                upload["Key"],
                partial(
                    self.client.abort_multipart_upload,
                    Bucket=self.bucket,
                    Key=upload["Key"],
                    UploadId=upload["UploadId"],
                ),
            )
        listed = self._call(
            "listing",
            prefix,
            partial(self.client.list_objects_v2, Bucket=self.bucket, Prefix=start),
        )
        keys = [o["Key"] for o in listed.get("Contents", ())]
        if keys:
            self.delete(keys)

    def presigned_url(self, key: str, expires_in: int) -> str | None:
        params = {"Bucket": self.bucket, "Key": _check_key(key)}
        try:
            url = self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )
        except Exception as exc:
            raise self._error("signing a link to", key, exc) from exc
        return str(url)

    def _call(self, doing: str, key: str, request: Callable[[], T]) -> T:
        """`request()`, retried while it fails transiently; then a BackupStoreError."""
        try:
            return call_with_retries(request, self.retry, is_transient)
        except RetriesFailed as failed:
            raise self._error(doing, key, failed.last, failed.attempts) from failed.last

    def _ensure_bucket(self, key: str) -> None:
        """Create the bucket if it does not exist (once per store; racing creators are fine)."""
        with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                self._call("writing", key, partial(self.client.head_bucket, Bucket=self.bucket))
            except BackupStoreError as exc:
                code = _error_code(exc.__cause__)
                if code in _MISSING_BUCKET_CODES:
                    self._create_bucket(key)
                elif code not in ("403", "AccessDenied"):
                    raise
                # A key allowed to write objects but not to look at the bucket: write on.
            self._bucket_ready = True

    def _create_bucket(self, key: str) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        region = getattr(getattr(self.client, "meta", None), "region_name", None)
        if region and region != "us-east-1":  # us-east-1 refuses its own name as a constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._call("creating the bucket for", key, partial(self.client.create_bucket, **kwargs))
        except BackupStoreError as exc:
            if _error_code(exc.__cause__) != "BucketAlreadyOwnedByYou":
                raise

    def _error(self, doing: str, key: str, exc: Exception, failures: int = 1) -> BackupStoreError:
        """A BackupStoreError naming the object and what the store answered."""
        if isinstance(exc, BackupStoreError):
            return exc
        where = s3_url(self.bucket, key)
        code = _error_code(exc)
        if code == "NoSuchBucket":
            return BackupStoreError(f"{doing} backup file {where} failed: no such bucket")
        if code in _MISSING_CODES:
            return BackupStoreError(f"there is no backup file {where}")
        tries = f" ({failures} tries)" if failures > 1 else ""
        return BackupStoreError(f"{doing} backup file {where} failed{tries}: {exc}")


class _S3Writer:
    """Buffers one part at a time and uploads it as soon as it is full."""

    def __init__(self, store: S3BackupStore, key: str) -> None:
        self._store = store
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0
        self._failed = False
        self._committed = False
        self._aborted = False

    def write(self, data: bytes) -> None:
        self._check_open()
        view = memoryview(data)
        part_bytes = self._store.part_bytes
        while view:
            room = part_bytes - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) >= part_bytes:
                self._guarded(self._upload_part)
        self._size += len(data)

    def commit(self) -> int:
        self._check_open()
        if self._upload_id is None:
            self._guarded(self._put)
        else:
            if self._buffer:
                self._guarded(self._upload_part)  # the last part may be small
            self._guarded(self._complete)
        self._committed = True
        self._buffer = bytearray()
        return self._size

    def abort(self) -> None:
        if self._committed or self._aborted:
            return
        self._aborted = True
        self._buffer = bytearray()
        if self._upload_id is not None:
            with contextlib.suppress(Exception):  # nothing more to do if the store is away
                self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id
                )

    def _check_open(self) -> None:
        if self._committed or self._aborted or self._failed:
            state = "committed" if self._committed else "aborted" if self._aborted else "failed"
            raise BackupStoreError(
                f"the writer of backup file {s3_url(self._store.bucket, self._key)} was "
                f"already {state}"
            )

    def _guarded(self, step: Callable[[], None]) -> None:
        try:
            step()
        except BaseException:
            self._failed = True
            raise

    def _put(self) -> None:
        store = self._store
        store._ensure_bucket(self._key)
        put = partial(
            store.client.put_object, Bucket=store.bucket, Key=self._key, Body=self._buffer
        )
        store._call("writing", self._key, put)

    def _upload_part(self) -> None:
        store = self._store
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise BackupStoreError(
                f"writing backup file {s3_url(store.bucket, self._key)} failed: more than "
                f"{MAX_PARTS} parts of {store.part_bytes} bytes"
            )
        if self._upload_id is None:
            store._ensure_bucket(self._key)
            create = partial(
                store.client.create_multipart_upload, Bucket=store.bucket, Key=self._key
            )
            self._upload_id = str(store._call("writing", self._key, create)["UploadId"])
        upload = partial(
            store.client.upload_part,
            Bucket=store.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=self._buffer,
        )
        response = store._call("writing", self._key, upload)
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})
        self._buffer = bytearray()

    def _complete(self) -> None:
        store = self._store
        complete = partial(
            store.client.complete_multipart_upload,
            Bucket=store.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        try:
            store._call("writing", self._key, complete)
        except BackupStoreError as exc:
            # A retry after a lost answer finds the upload already completed: fine if the
            # object is there with our size.
            if _error_code(exc.__cause__) != "NoSuchUpload" or not self._landed():
                raise
        self._upload_id = None

    def _landed(self) -> bool:
        try:
            return self._store.size(self._key) == self._size
        except BackupStoreError:
            return False


def _error_code(exc: BaseException | None) -> str | None:
    """The S3 error code of a botocore ClientError (its HTTP status when it has none)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    if code:
        return str(code)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(status) if status is not None else None
