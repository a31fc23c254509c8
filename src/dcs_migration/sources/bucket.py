"""Buckets of the embedded default: a bucket is a folder of `<data dir>/buckets/`, an
object key a path inside it that can never escape it.

A bucket's folder must be a real folder right under `buckets/`: a symbolic link (or a
folder that resolves anywhere else) is no bucket, since whoever made the link chose
what it reads, not the operator who grants buckets. An object may be a link only when
it stays inside its bucket.

Objects are named to users as `bucket/key` (`LocalObject.name`, in `specs`), never by
their path on the server: that name is what errors, logs and resume checks show. What
an object key may be is `keys`' to say.
"""

from __future__ import annotations

from pathlib import Path

from dcs_migration.sources.errors import SourceError
from dcs_migration.sources.keys import MAX_BUCKET_NAME, BadObjectKey, bucket_name_problem
from dcs_migration.sources.specs import LocalObject, Source

__all__ = [
    "MAX_BUCKET_NAME",
    "BadBucketName",
    "BadObjectKey",
    "BucketNotFound",
    "LocalObject",
    "Source",
    "bucket_dir",
    "bucket_name_problem",
]


class BadBucketName(ValueError):
    """A bucket name that cannot name a bucket (empty, `..`, a slash, ...)."""


class BucketNotFound(SourceError):
    """No such bucket, as far as the asker may know: it is not there, not granted to the
    project, or its folder is no bucket folder. One message for all of them, so that an
    answer tells nothing of other projects' buckets."""

    def __init__(self, bucket: str) -> None:
        super().__init__(f"bucket {bucket} does not exist")
        self.bucket = bucket


def bucket_dir(data_dir: Path, bucket: str) -> Path:
    """The folder of `bucket`, resolved; BadBucketName for a name that is no bucket name,
    BucketNotFound when there is no such folder, or when it is a link or lies outside
    `buckets/`."""
    problem = bucket_name_problem(bucket)
    if problem is not None:
        raise BadBucketName(f"bucket name {bucket!r} {problem}")
    buckets = data_dir / "buckets"
    folder = buckets / bucket
    if folder.is_symlink() or not folder.is_dir():
        raise BucketNotFound(bucket)
    resolved = folder.resolve()
    if resolved.parent != buckets.resolve():
        raise BucketNotFound(bucket)
    return resolved
