"""Buckets of the embedded default: a bucket is a folder of the data dir, an object key a
path inside it that can never escape it."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


class BadObjectKey(ValueError):
    """An object key that is empty, absolute, has a `..` segment or a NUL byte."""


class BadBucketName(ValueError):
    pass


def bucket_dir(data_dir: Path, bucket: str) -> Path:
    if not bucket or "/" in bucket or "\x00" in bucket or bucket in (".", ".."):
        raise BadBucketName(f"bucket name {bucket!r} is not a valid bucket name")
    return data_dir / "buckets" / bucket


def object_path(data_dir: Path, bucket: str, key: str) -> Path:
    """The file of object `key` in `bucket`; BadObjectKey if the key would leave it."""
    if not key or "\x00" in key or len(key) > 1024:
        raise BadObjectKey(f"object key {key!r} is empty, too long or has a NUL byte")
    pure = PurePosixPath(key)
    if pure.is_absolute() or ".." in pure.parts:
        raise BadObjectKey(f"object key {key!r} leaves its bucket")
    root = bucket_dir(data_dir, bucket).resolve()
    path = (root / pure).resolve()
    if root not in path.parents and path != root:
        raise BadObjectKey(f"object key {key!r} leaves its bucket")
    return path
