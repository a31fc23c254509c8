"""Buckets of the embedded default: a bucket is a folder of `<data dir>/buckets/`, an
object key a path inside it that can never escape it.

A bucket's folder must be a real folder right under `buckets/`: a symbolic link (or a
folder that resolves anywhere else) is no bucket, since whoever made the link chose
what it reads, not the operator who grants buckets. An object may be a link only when
it stays inside its bucket.

Objects are named to users as `bucket/key` (`LocalObject.name`), never by their path on
the server: that name is what errors, logs and resume checks show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dcs_migration.formats.errors import FormatError

MAX_BUCKET_NAME = 255
MAX_OBJECT_KEY = 1024


class BadBucketName(ValueError):
    """A bucket name that cannot name a bucket (empty, `..`, a slash, ...)."""


class BucketNotFound(LookupError):
    """No such bucket, as far as the asker may know: it is not there, not granted to the
    project, or its folder is no bucket folder. One message for all of them, so that an
    answer tells nothing of other projects' buckets."""

    def __init__(self, bucket: str) -> None:
        super().__init__(f"bucket {bucket} does not exist")
        self.bucket = bucket


class BadObjectKey(FormatError):
    """An object key that is empty, absolute, has a `..` segment or a NUL byte, or whose
    file lies outside its bucket (a link leading out of it)."""


def bucket_name_problem(name: str) -> str | None:
    """Why `name` cannot name a bucket (for a message), or None when it can."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_BUCKET_NAME:
        return f"must be at most {MAX_BUCKET_NAME} characters"
    if name in (".", "..") or any(ch in name for ch in "/\\") or not name.isprintable():
        return "must be a bucket name, without '/', '\\' or control characters"
    return None


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


@dataclass(frozen=True, slots=True)
class LocalObject:
    """An object of a folder bucket (a file, or a folder of files): the bucket's folder,
    the bucket's name as users know it, and the key. Plain data: nothing is checked or
    opened until `path()`."""

    root: Path
    bucket: str
    key: str

    @property
    def name(self) -> str:
        """How errors and logs name the object: `bucket/key`."""
        return f"{self.bucket}/{self.key}"

    def path(self) -> Path:
        """The object's file or folder, resolved; BadObjectKey if the key would leave
        the bucket, by its spelling or through a link."""
        key = self.key
        if not key or "\x00" in key or len(key) > MAX_OBJECT_KEY:
            raise BadObjectKey(
                f"object key {key!r} is empty, too long or has a NUL byte", source=self.name
            )
        pure = PurePosixPath(key)
        if pure.is_absolute() or ".." in pure.parts:
            raise BadObjectKey(f"object key {key!r} leaves its bucket", source=self.name)
        root = self.root.resolve()
        path = (root / pure).resolve()
        if root not in path.parents and path != root:
            raise BadObjectKey(f"object key {key!r} leaves its bucket", source=self.name)
        return path


Source = str | LocalObject
"""Where a task's or an import's backups are: a local path or `s3://bucket/key` as
given, or an object of a folder bucket (named to users as `bucket/key`)."""
