"""The buckets a project reads from: those the operator granted it, that are there.

Folder buckets and an object store's buckets alike, a project reads only the buckets
granted to it (`dcs-migration buckets grant`). A bucket that is not granted, not there,
or (a folder) a link or outside `buckets/` answers exactly as a bucket that does not
exist, so that no answer tells a project about another's buckets. It is checked when a
task is created and again whenever it runs, so a revoked grant stops what has not
started reading yet.

The same rules say what the console may offer: `listed` names the buckets a project may
read that are there, and `list_objects` pages through one's objects (keys, sizes and
times, for a task's `files`); a bucket the project may not read is refused as missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dcs_migration.config import S3Settings
from dcs_migration.sources.bucket import BadBucketName, BucketNotFound, bucket_dir
from dcs_migration.sources.keys import bucket_name_problem
from dcs_migration.sources.listing import (
    MAX_LIST_KEYS,
    ObjectInfo,
    ObjectPage,
    ObjectQuery,
    folder_page,
    page_of,
)
from dcs_migration.sources.s3 import (
    RetryPolicy,
    S3Client,
    S3SourceError,
    bucket_exists,
    make_s3_client,
    s3_objects,
)
from dcs_migration.sources.specs import LocalObject, S3Object
from dcs_migration.store import Store
from dcs_migration.tasks.refusals import Refusal, Refused

# What the API takes from here to ask for a page and read it (it never imports sources).
__all__ = [
    "CHECK_RETRY",
    "MAX_LIST_KEYS",
    "Bucket",
    "Buckets",
    "ObjectInfo",
    "ObjectPage",
    "ObjectQuery",
]

log = logging.getLogger(__name__)

# An API call waits for the store a few seconds at most; a task's own run retries longer.
CHECK_RETRY = RetryPolicy(attempts=3, base_delay=0.2, max_delay=1.0)


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bucket a project may read: its name, and its folder (None in an object store)."""

    name: str
    root: Path | None

    def source(self, key: str) -> LocalObject | S3Object:
        """Object `key` of this bucket, as an import reads it; BadObjectKey when the key
        leaves the bucket (in a folder, also through a link)."""
        if self.root is None:
            return S3Object(self.name, key)
        found = LocalObject(self.root, self.name, key)
        found.path()
        return found


class Buckets:
    """Opens a project's buckets: the grant in the store, the bucket in its place."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        *,
        object_store: S3Settings | None,
        backup_bucket: str | None = None,
    ) -> None:
        """`object_store`: the store the buckets are in (`Settings.object_store`); None,
        folders of `<data_dir>/buckets`. `backup_bucket`: the object store's bucket of
        the service's own backups, every project's, which no grant opens (they are read
        within their project, as backup records)."""
        self.store = store
        self.data_dir = data_dir
        self.object_store = object_store
        self.backup_bucket = backup_bucket if object_store is not None else None
        self._client: S3Client | None = None

    def _nameable(self, name: str) -> bool:
        """Whether `name` can be a bucket a grant opens (whether there or granted aside)."""
        return bucket_name_problem(name) is None and name != self.backup_bucket

    def open(self, project_id: str, name: str, *, retry: RetryPolicy = CHECK_RETRY) -> Bucket:
        """The bucket `name` of the project; BucketNotFound when the project may not read
        it or it is not there; S3SourceError when the object store cannot say."""
        if not self._nameable(name) or not self.store.bucket_granted(project_id, name):
            raise BucketNotFound(name)
        if self.object_store is not None:
            if not bucket_exists(name, client=self._s3(), retry=retry):
                raise BucketNotFound(name)
            return Bucket(name, None)
        try:
            return Bucket(name, bucket_dir(self.data_dir, name))
        except BucketNotFound:
            folder = self.data_dir / "buckets" / name
            if folder.is_symlink() or folder.exists():
                # The operator's mistake, told to the operator only.
                log.warning("bucket %s: its folder is a link or not a folder: refused", name)
            raise

    def listed(self, project_id: str) -> list[str]:
        """The names of the buckets the project may read and that are there, sorted: a
        grant whose bucket is missing (or, a folder, is no bucket folder) is left out.
        Refused (STORE_UNAVAILABLE) when the object store cannot say."""
        names = sorted({g.bucket_name for g in self.store.list_bucket_grants(project_id)})
        try:
            return [name for name in names if self._there(name)]
        except S3SourceError as exc:
            raise _unavailable(exc) from None

    def list_objects(self, project_id: str, name: str, query: ObjectQuery) -> ObjectPage:
        """A page of the objects of the project's bucket `name`, in key order. Refused:
        BUCKET_NOT_FOUND as `open` finds none (one answer whoever else holds it),
        STORE_UNAVAILABLE when the object store cannot say."""
        try:
            bucket = self.open(project_id, name)
            if bucket.root is None:
                found = s3_objects(
                    name,
                    client=self._s3(),
                    prefix=query.prefix,
                    marker=query.marker,
                    page_size=min(query.limit + 1, MAX_LIST_KEYS),
                    retry=CHECK_RETRY,
                )
                return page_of(found, query.limit)
            try:
                return folder_page(bucket.root, query)
            except OSError:  # its folder went away since it was opened
                raise BucketNotFound(name) from None
        except BucketNotFound as exc:
            raise Refused(Refusal.BUCKET_NOT_FOUND, str(exc)) from None
        except S3SourceError as exc:
            raise _unavailable(exc) from None

    def _there(self, name: str) -> bool:
        """Whether the bucket `name` is there (the grant aside), saying nothing to logs."""
        if not self._nameable(name):
            return False
        if self.object_store is not None:
            return bucket_exists(name, client=self._s3(), retry=CHECK_RETRY)
        try:
            bucket_dir(self.data_dir, name)
        except (BucketNotFound, BadBucketName):
            return False
        return True

    def _s3(self) -> S3Client:
        """The object store's client, made once (boto3 clients are safe across threads)."""
        if self._client is None:
            assert self.object_store is not None
            self._client = make_s3_client(self.object_store)
        return self._client


def _unavailable(exc: S3SourceError) -> Refused:
    """The refusal for an object store that cannot answer: its cause (an endpoint, a
    credential problem) goes to the operator's log, not to the project."""
    log.warning("the object store cannot list buckets or objects now: %s", exc)
    return Refused(Refusal.STORE_UNAVAILABLE, "the object store is unavailable: retry")
