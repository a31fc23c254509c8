"""The buckets a project reads from: those the operator granted it, that are there.

Folder buckets and an object store's buckets alike, a project reads only the buckets
granted to it (`dcs-migration buckets grant`). A bucket that is not granted, not there,
or (a folder) a link or outside `buckets/` answers exactly as a bucket that does not
exist, so that no answer tells a project about another's buckets. It is checked when a
task is created and again whenever it runs, so a revoked grant stops what has not
started reading yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dcs_migration.config import S3Settings
from dcs_migration.sources.bucket import BucketNotFound, bucket_dir
from dcs_migration.sources.keys import bucket_name_problem
from dcs_migration.sources.s3 import RetryPolicy, S3Client, bucket_exists, make_s3_client
from dcs_migration.sources.specs import LocalObject, S3Object
from dcs_migration.store import Store

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

    def __init__(self, store: Store, data_dir: Path, *, object_store: S3Settings | None) -> None:
        """`object_store`: the store the buckets are in (`Settings.object_store`); None,
        folders of `<data_dir>/buckets`."""
        self.store = store
        self.data_dir = data_dir
        self.object_store = object_store
        self._client: S3Client | None = None

    def open(self, project_id: str, name: str, *, retry: RetryPolicy = CHECK_RETRY) -> Bucket:
        """The bucket `name` of the project; BucketNotFound when the project may not read
        it or it is not there; S3SourceError when the object store cannot say."""
        if bucket_name_problem(name) is not None or not self.store.bucket_granted(project_id, name):
            raise BucketNotFound(name)
        if self.object_store is not None:
            if self._client is None:
                self._client = make_s3_client(self.object_store)
            if not bucket_exists(name, client=self._client, retry=retry):
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
