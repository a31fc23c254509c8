"""Backups in an S3-compatible object store (OBS, MinIO, AWS, Ceph), read through boto3.

`find_s3_inputs(bucket, key_or_prefix)` turns objects into inputs, as `find_inputs` does
for local files. A key names one object: an RDB or AOF (told by content), a gzip of one
(decompressed on the fly), or an AOF manifest, whose prefix is then the multi-part AOF.
A prefix (a key ending in `/`, or the empty key) is walked like a folder: a sub-prefix
holding an `appendonly.aof.manifest` is one multi-part AOF read in manifest order, and
every other RDB or AOF object is an input of its own. Zip and tar archives are refused:
the archive readers need a local file. `s3_objects` lists a bucket's objects in key
order, for a page of `listing`.

Objects are read as streams of ranged GETs (`RANGE_BYTES` each), never whole. Every GET
carries `If-Match` with the ETag seen when the object was found, so an object replaced
while it is read is refused instead of mixing two versions. Transient failures
(connection resets, timeouts, 5xx, throttling) are retried with jittered exponential
backoff (`retry.py`); a read resumes at the last byte it delivered. After
`RetryPolicy.attempts` failures in a row the read fails with an error naming the bucket,
key and offset.

The client is made from `S3Settings` (the endpoint, unset meaning AWS; the access and
secret keys, unset meaning boto3's own credential chain; the region), with path-style
addressing, which every S3-compatible store understands. boto3 is imported only when
an S3 source is used.
"""

from __future__ import annotations

import contextlib
import gzip
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC
from functools import partial
from pathlib import PurePosixPath
from typing import Any, Protocol, TypeVar

from dcs_migration.config import OBS_ACCESS_KEY_ENV, OBS_SECRET_KEY_ENV, S3Settings
from dcs_migration.formats.detect import ARCHIVE_KINDS, SNIFF_BYTES, FileKind, detect_format
from dcs_migration.formats.manifest import MAX_MANIFEST_BYTES
from dcs_migration.sources.entries import Entry, group_entries
from dcs_migration.sources.errors import SourceError
from dcs_migration.sources.guard import DEFAULT_LIMITS, ArchiveLimits, GuardedStream, read_at_most
from dcs_migration.sources.inputs import ByteStream, Input, InputKind, InputPart
from dcs_migration.sources.listing import MAX_LIST_KEYS, ObjectInfo, listable
from dcs_migration.sources.retry import DEFAULT_RETRY, RetriesFailed, RetryPolicy, call_with_retries

__all__ = [
    "DEFAULT_RETRY",
    "RANGE_BYTES",
    "RetryPolicy",
    "S3Client",
    "S3Settings",
    "S3SourceError",
    "bucket_exists",
    "find_s3_inputs",
    "is_s3_url",
    "is_transient",
    "make_s3_client",
    "parse_s3_url",
    "s3_objects",
    "s3_url",
]

S3_SCHEME = "s3://"

RANGE_BYTES = 8 << 20  # bytes per ranged GET while reading an object
_GZIP_SNIFF_RANGE = 64 << 10  # compressed bytes fetched to sniff what a gzip object holds
_GZIP_TRAILER = 4
_MANIFEST_NAME = "appendonly.aof.manifest"

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)
_MISSING_KEY_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_CHANGED_CODES = frozenset({"412", "PreconditionFailed"})

T = TypeVar("T")


class S3Client(Protocol):
    """The calls of a boto3 S3 client that this module makes."""

    def head_object(self, **kwargs: Any) -> dict[str, Any]: ...
    def get_object(self, **kwargs: Any) -> dict[str, Any]: ...
    def list_objects_v2(self, **kwargs: Any) -> dict[str, Any]: ...
    def head_bucket(self, **kwargs: Any) -> dict[str, Any]: ...


class S3SourceError(SourceError):
    """An S3 source that cannot be read: a missing bucket or object, a refused access, an
    object changed while read, or a read that kept failing. Names the bucket and key."""

    def __init__(
        self,
        message: str,
        *,
        bucket: str | None = None,
        key: str | None = None,
        offset: int | None = None,
    ) -> None:
        source = s3_url(bucket, key or "") if bucket is not None else None
        super().__init__(message, offset=offset, source=source)
        self.bucket = bucket
        self.s3_key = key


def make_s3_client(settings: S3Settings) -> S3Client:
    """A boto3 S3 client for `settings`: path-style addressing, and no retries of its
    own, since the callers here retry. S3SourceError for credentials given by half."""
    problem = settings.credentials_problem()
    if problem is not None:
        raise S3SourceError(problem)
    try:
        import boto3  # type: ignore[import-untyped, unused-ignore]
        from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise S3SourceError(f"reading s3:// sources needs boto3 ({exc})") from exc

    options: dict[str, Any] = {
        "s3": {"addressing_style": "path"},
        "retries": {"total_max_attempts": 1},
        "connect_timeout": 10,
        "read_timeout": 60,
        "signature_version": "s3v4",
    }
    # Stores that predate S3's default checksums reject or garble them: ask only when required.
    for name in ("request_checksum_calculation", "response_checksum_validation"):
        if name in Config.OPTION_DEFAULTS:
            options[name] = "when_required"
    try:
        client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region,
            aws_access_key_id=settings.access_key,
            aws_secret_access_key=settings.secret_key,
            config=Config(**options),
        )
    except ValueError as exc:
        raise S3SourceError(f"cannot use the S3 endpoint {settings.endpoint!r}: {exc}") from exc
    return client


def is_s3_url(source: str) -> bool:
    """Whether `source` is an `s3://bucket/key` address rather than a local path."""
    return source[: len(S3_SCHEME)].lower() == S3_SCHEME


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/key` as (bucket, key); the key is empty for the whole bucket.

    The key is taken verbatim (`?` and `#` are plain characters in object keys).
    """
    if not is_s3_url(url):
        raise S3SourceError(f"{url!r} is not an s3://bucket/key address")
    bucket, _, key = url[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise S3SourceError(
            f"{url!r} names no bucket: write s3://bucket/key or s3://bucket/prefix/"
        )
    return bucket, key


def s3_url(bucket: str, key: str) -> str:
    return f"{S3_SCHEME}{bucket}/{key}"


def find_s3_inputs(
    bucket: str,
    key_or_prefix: str,
    *,
    client: S3Client,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    retry: RetryPolicy = DEFAULT_RETRY,
    range_bytes: int = RANGE_BYTES,
) -> list[Input]:
    """The backups at `key_or_prefix` in `bucket`, each one input.

    A key that ends in `/` (or the empty key) is a prefix, walked like a folder; a key
    that names no object but has objects under `key/` is taken as that prefix. Raises
    S3SourceError (a SourceError) when the bucket or key does not exist, when there is
    no backup, or when an object cannot be read; FormatError for a bad backup.
    """
    if range_bytes < 1:
        raise ValueError("range_bytes must be positive")
    store = _Store(client, bucket, retry, range_bytes)
    if not key_or_prefix or key_or_prefix.endswith("/"):
        return _prefix_inputs(store, key_or_prefix, limits)
    obj = store.head(key_or_prefix)
    if obj is None:
        if store.has_objects(key_or_prefix + "/"):
            return _prefix_inputs(store, key_or_prefix + "/", limits)
        raise store.missing(key_or_prefix)
    entry = _entry(store, obj, PurePosixPath(PurePosixPath(obj.key).name), limits)
    shown = s3_url(bucket, obj.key)
    if entry.kind is FileKind.RDB:
        return [Input(shown, InputKind.RDB, (entry.part,))]
    if entry.kind is FileKind.AOF:
        return [Input(shown, InputKind.AOF, (entry.part,))]
    if entry.kind is FileKind.MANIFEST:
        prefix = obj.key[: obj.key.rfind("/") + 1]
        inputs = _prefix_inputs(store, prefix, limits, recursive=False)
        return [i for i in inputs if i.kind is InputKind.AOF_MULTIPART]
    if entry.kind is FileKind.EMPTY:
        raise S3SourceError("the object is empty", bucket=bucket, key=obj.key)
    raise S3SourceError(
        "not an RDB or AOF file, an AOF manifest or a gzip file", bucket=bucket, key=obj.key
    )


def bucket_exists(bucket: str, *, client: S3Client, retry: RetryPolicy = DEFAULT_RETRY) -> bool:
    """Whether the store has `bucket`: False only when it says there is none; a refusal
    (the credentials do not reach it) counts as there, for the read to say so."""
    return _Store(client, bucket, retry, RANGE_BYTES).bucket_exists()


def s3_objects(
    bucket: str,
    *,
    client: S3Client,
    prefix: str = "",
    marker: str = "",
    page_size: int = MAX_LIST_KEYS,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> Iterator[ObjectInfo]:
    """The listable objects of `bucket` whose keys start with `prefix` and come after
    `marker`, in key order: ListObjectsV2 requests of `page_size` keys (StartAfter, then
    its continuation token), made only as the caller reads on, each retried as every
    call here is. S3SourceError when the store fails or has no such bucket."""
    store = _Store(client, bucket, retry, RANGE_BYTES)
    for item in store.items(prefix, start_after=marker, page_size=page_size):
        key = str(item["Key"])
        if listable(key):
            modified = item["LastModified"]
            if modified.tzinfo is None:
                modified = modified.replace(tzinfo=UTC)
            yield ObjectInfo(key, int(item["Size"]), modified.astimezone(UTC))


# -- finding ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Object:
    key: str
    size: int
    etag: str  # as the store quotes it; empty when the store gives none


def _prefix_inputs(
    store: _Store, prefix: str, limits: ArchiveLimits, *, recursive: bool = True
) -> list[Input]:
    entries: list[Entry] = []
    seen: set[PurePosixPath] = set()
    for count, obj in enumerate(store.list(prefix, recursive=recursive), start=1):
        if count > limits.max_members:
            raise S3SourceError(
                f"more than {limits.max_members} objects under the prefix",
                bucket=store.bucket,
                key=prefix,
            )
        rel = obj.key[len(prefix) :]
        if not rel or rel.endswith("/"):
            continue  # a folder marker
        path = PurePosixPath(rel)
        if path in seen:
            raise S3SourceError(
                f"two objects under the prefix both read as {str(path)!r}",
                bucket=store.bucket,
                key=obj.key,
            )
        seen.add(path)
        entries.append(_entry(store, obj, path, limits))
    if not entries and not store.bucket_exists():
        raise store.missing_bucket()
    inputs = group_entries(entries, partial(_display, store.bucket, prefix))
    if not inputs:
        raise S3SourceError(
            "no RDB or AOF backup under the prefix", bucket=store.bucket, key=prefix
        )
    return inputs


def _display(bucket: str, prefix: str, folder: PurePosixPath) -> str:
    return s3_url(bucket, f"{prefix}{folder}/" if folder.parts else prefix)


def _entry(store: _Store, obj: _Object, path: PurePosixPath, limits: ArchiveLimits) -> Entry:
    """One object, sniffed by its first bytes; archives are refused."""
    shown = s3_url(store.bucket, obj.key)
    with _ObjectReader(store, obj, SNIFF_BYTES) as reader:
        kind = detect_format(read_at_most(reader, SNIFF_BYTES))
    gz_limit: int | None = None
    size = obj.size
    if kind is FileKind.GZIP:
        gz_limit = limits.budget(obj.size)
        with _open_object(store, obj, shown, gz_limit, _GZIP_SNIFF_RANGE) as stream:
            kind = detect_format(read_at_most(stream, SNIFF_BYTES))
        if kind is FileKind.TAR:
            _refuse_archive(store, obj, "a gzipped tar archive")
        if kind in (FileKind.GZIP, FileKind.ZIP):
            raise S3SourceError(
                f"a {kind} file inside a gzip file is not supported",
                bucket=store.bucket,
                key=obj.key,
            )
        size = _gzip_size(store, obj)
    elif kind in ARCHIVE_KINDS:
        _refuse_archive(store, obj, f"a {kind} archive")
    opener = partial(_open_object, store, obj, shown, gz_limit, store.range_bytes)
    part = InputPart(shown, size, opener, size_exact=gz_limit is None)
    content = None
    if kind is FileKind.MANIFEST:
        with part.open() as stream:
            content = read_at_most(stream, MAX_MANIFEST_BYTES + 1)
    return Entry(path, kind, part, content)


def _refuse_archive(store: _Store, obj: _Object, what: str) -> None:
    raise S3SourceError(
        f"the object is {what}: archives are read from local files only "
        "(download it, or upload its members instead)",
        bucket=store.bucket,
        key=obj.key,
    )


def _gzip_size(store: _Store, obj: _Object) -> int:
    """Estimated decompressed size: the gzip trailer holds it modulo 2**32."""
    if obj.size < 18:
        return 0
    with _ObjectReader(store, obj, _GZIP_TRAILER) as reader:
        reader.seek(obj.size - _GZIP_TRAILER)
        isize = int.from_bytes(read_at_most(reader, _GZIP_TRAILER), "little")
    while isize < obj.size // 2:
        isize += 1 << 32
    return isize


@contextmanager
def _open_object(
    store: _Store, obj: _Object, shown: str, gz_limit: int | None, range_bytes: int
) -> Iterator[ByteStream]:
    with _ObjectReader(store, obj, range_bytes) as reader:
        if gz_limit is None:
            yield reader
        else:
            with gzip.GzipFile(mode="rb", fileobj=GuardedStream(reader, shown)) as gz:
                yield GuardedStream(gz, shown, gz_limit)


# -- the store ----------------------------------------------------------------------------


class _Store:
    """One bucket of one client, with retries and errors that name the bucket and key."""

    def __init__(self, client: S3Client, bucket: str, retry: RetryPolicy, range_bytes: int) -> None:
        self.client = client
        self.bucket = bucket
        self.retry = retry
        self.range_bytes = range_bytes

    def call(self, what: str, request: Callable[[], T], *, key: str | None) -> T:
        """`request()`, retried while it fails transiently; other failures become errors."""
        try:
            return call_with_retries(request, self.retry, is_transient)
        except RetriesFailed as failed:
            exc = failed.last
            if not failed.exhausted:
                raise self.error(exc, key) from exc
            raise S3SourceError(
                f"{what} failed {failed.attempts} times in a row, giving up: {exc}",
                bucket=self.bucket,
                key=key,
            ) from exc

    def head(self, key: str) -> _Object | None:
        """The object's size and ETag; None when there is no such key (or bucket)."""
        try:
            meta = self.call(
                "HEAD",
                partial(self.client.head_object, Bucket=self.bucket, Key=key),
                key=key,
            )
        except S3SourceError as exc:
            if _error_code(exc.__cause__) in _MISSING_KEY_CODES:
                return None
            raise
        return _Object(key, int(meta["ContentLength"]), str(meta.get("ETag") or ""))

    def list(self, prefix: str, *, recursive: bool) -> Iterator[_Object]:
        """The objects whose key starts with `prefix` (without `recursive`, not those in
        sub-prefixes), in key order."""
        for item in self.items(prefix, recursive=recursive):
            yield _Object(str(item["Key"]), int(item["Size"]), str(item.get("ETag") or ""))

    def items(
        self,
        prefix: str,
        *,
        recursive: bool = True,
        start_after: str = "",
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The listing's entries (ListObjectsV2 `Contents`) whose key starts with
        `prefix` and comes after `start_after`, in key order: a request of `page_size`
        keys (the store's own page without it) at a time, made only as the caller reads
        on, then its continuation token."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if not recursive:
            kwargs["Delimiter"] = "/"
        if start_after:
            kwargs["StartAfter"] = start_after
        if page_size is not None:
            kwargs["MaxKeys"] = page_size
        while True:
            page = self.call(
                "LIST", partial(self.client.list_objects_v2, **kwargs), key=prefix or None
            )
            yield from page.get("Contents", ())
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs.pop("StartAfter", None)  # the token says where the next page starts
            kwargs["ContinuationToken"] = token

    def has_objects(self, prefix: str) -> bool:
        page = self.call(
            "LIST",
            partial(self.client.list_objects_v2, Bucket=self.bucket, Prefix=prefix, MaxKeys=1),
            key=prefix,
        )
        return bool(page.get("Contents"))

    def bucket_exists(self) -> bool:
        """False only when the store says the bucket is not there (not for a refusal)."""
        try:
            self.call("HEAD bucket", partial(self.client.head_bucket, Bucket=self.bucket), key=None)
        except S3SourceError as exc:
            if _error_code(exc.__cause__) in ("404", "NoSuchBucket", "NotFound"):
                return False
            if _error_code(exc.__cause__) is None:
                raise
        return True

    def missing(self, key: str) -> S3SourceError:
        """The error for a key that HEAD did not find: its bucket may be what is missing."""
        if not self.bucket_exists():
            return self.missing_bucket()
        return S3SourceError(
            f"there is no object {key!r} in the bucket {self.bucket!r}", bucket=self.bucket, key=key
        )

    def missing_bucket(self) -> S3SourceError:
        return S3SourceError(f"the bucket {self.bucket!r} does not exist", bucket=self.bucket)

    def error(self, exc: Exception, key: str | None, offset: int | None = None) -> Exception:
        """A clear error for a failure that retrying will not cure."""
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped, unused-ignore]

        if isinstance(exc, S3SourceError):
            return exc
        where = partial(S3SourceError, bucket=self.bucket, key=key, offset=offset)
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code == "NoSuchBucket":
                return where(f"the bucket {self.bucket!r} does not exist")
            if code in _MISSING_KEY_CODES:
                return where(f"there is no object {key!r} in the bucket {self.bucket!r}")
            if code in _CHANGED_CODES:
                return where(
                    "the object changed while it was being read (its ETag no longer matches): "
                    "refusing to mix two versions of it"
                )
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return where(
                    f"the object store refused access ({code}): check {OBS_ACCESS_KEY_ENV} and "
                    f"{OBS_SECRET_KEY_ENV}"
                )
            return where(f"the object store answered an error: {exc}")
        if isinstance(exc, BotoCoreError):
            return where(f"cannot use the object store: {exc}")
        return exc


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may cure `exc`: a dropped or timed-out connection, a truncated
    body, a 5xx answer or throttling."""
    from botocore import exceptions as bx  # type: ignore[import-untyped, unused-ignore]

    if isinstance(exc, bx.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status in _TRANSIENT_STATUS or _error_code(exc) in _TRANSIENT_CODES
    if isinstance(exc, _Truncated):
        return True
    import http.client  # here: a local import does not pay for it at start-up

    transient: tuple[type[BaseException], ...] = (
        bx.ConnectionError,
        bx.HTTPClientError,
        bx.IncompleteReadError,
        ConnectionError,
        TimeoutError,
        http.client.HTTPException,
    )
    try:
        from urllib3 import exceptions as ux

        transient += (ux.ProtocolError, ux.TimeoutError, ux.ReadTimeoutError, ux.SSLError)
    except ImportError:  # pragma: no cover - urllib3 comes with botocore
        pass
    return isinstance(exc, transient)


def _error_code(exc: BaseException | None) -> str | None:
    from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

    if not isinstance(exc, ClientError):
        return None
    code = exc.response.get("Error", {}).get("Code")
    if code:
        return str(code)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(status) if status is not None else None


# -- reading ------------------------------------------------------------------------------


class _Truncated(Exception):
    """A ranged GET whose body ended before the bytes it promised."""


class _ObjectReader:
    """One object as a read-only, seekable file of ranged GETs, pinned to its ETag.

    At most one GET is open at a time and only `range_bytes` are asked for at once; a
    failed GET or body read is retried from the last byte delivered.
    """

    def __init__(self, store: _Store, obj: _Object, range_bytes: int) -> None:
        self._store = store
        self._obj = obj
        self._range_bytes = range_bytes
        self._pos = 0
        self._body: Any = None
        self._body_end = 0
        self.gets = 0  # GET requests made, for tests and diagnostics

    def __enter__(self) -> _ObjectReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            parts = []
            while piece := self.read(self._range_bytes):
                parts.append(piece)
            return b"".join(parts)
        if size == 0 or self._pos >= self._obj.size:
            return b""
        try:
            read_once = partial(self._read_once, size)
            data = call_with_retries(read_once, self._store.retry, is_transient)
        except RetriesFailed as failed:
            exc = failed.last
            if not failed.exhausted:
                raise self._store.error(exc, self._obj.key, self._pos) from exc
            raise S3SourceError(
                f"reading the object failed {failed.attempts} times in a row at the same "
                f"offset, giving up: {exc}",
                bucket=self._store.bucket,
                key=self._obj.key,
                offset=self._pos,
            ) from exc
        self._pos += len(data)
        if self._pos >= self._body_end:
            self._drop()
        return data

    def _read_once(self, size: int) -> bytes:
        """Up to `size` bytes from the open range (opened first if need be); a failed
        GET or body is dropped, for the next try to start again at the same offset."""
        try:
            if self._body is None:
                self._open_range()
            data: bytes = self._body.read(min(size, self._body_end - self._pos))
            if not data:
                raise _Truncated(f"the body ended {self._body_end - self._pos} bytes early")
        except Exception:
            self._drop()
            raise
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self._obj.size
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence {whence}")
        if offset < 0:
            raise ValueError("negative seek position")
        if offset != self._pos:
            self._drop()
            self._pos = offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._drop()

    def _open_range(self) -> None:
        start = self._pos
        end = min(start + self._range_bytes, self._obj.size)
        kwargs: dict[str, Any] = {
            "Bucket": self._store.bucket,
            "Key": self._obj.key,
            "Range": f"bytes={start}-{end - 1}",
        }
        if self._obj.etag:
            kwargs["IfMatch"] = self._obj.etag
        self.gets += 1
        response = self._store.client.get_object(**kwargs)
        body = response["Body"]
        try:
            self._check_response(response, start)
        except BaseException:
            body.close()
            raise
        self._body = body
        self._body_end = end

    def _check_response(self, response: dict[str, Any], start: int) -> None:
        """A store may ignore If-Match or Range: check what came back all the same."""
        etag = str(response.get("ETag") or "")
        if self._obj.etag and etag and etag.strip('"') != self._obj.etag.strip('"'):
            raise self._changed(f"its ETag is now {etag}, was {self._obj.etag}")
        content_range = response.get("ContentRange")
        if content_range:
            span, _, total = str(content_range).removeprefix("bytes ").partition("/")
            first = span.partition("-")[0]
            if total.isdigit() and int(total) != self._obj.size:
                raise self._changed(f"its size is now {total}, was {self._obj.size}")
            if not first.isdigit() or int(first) != start:
                raise S3SourceError(
                    f"the object store answered the range {content_range!r} to a request "
                    f"for bytes from {start}",
                    bucket=self._store.bucket,
                    key=self._obj.key,
                    offset=start,
                )
        elif start != 0:
            raise S3SourceError(
                "the object store ignored the Range header of a GET",
                bucket=self._store.bucket,
                key=self._obj.key,
                offset=start,
            )

    def _changed(self, detail: str) -> S3SourceError:
        return S3SourceError(
            f"the object changed while it was being read ({detail}): refusing to mix two "
            "versions of it",
            bucket=self._store.bucket,
            key=self._obj.key,
            offset=self._pos,
        )

    def _drop(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                body.close()
