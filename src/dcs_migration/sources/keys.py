"""Object keys: the one set of rules for what may name an object in a bucket.

The API checks a task's file names with them (answering 400 with the rule broken) and a
folder bucket checks them again before it opens anything, since a key must never name
a file outside its bucket: not absolute, no `..` segment (with either slash, as some
clients write them), no NUL, at most `MAX_OBJECT_KEY_BYTES` bytes of UTF-8 as S3 allows.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Final

from dcs_migration.sources.errors import SourceError

MAX_OBJECT_KEY_BYTES: Final = 1024
_SEGMENTS: Final = re.compile(r"[/\\]")


class KeyProblem(StrEnum):
    """Why a key names no object, as the API's messages say it."""

    EMPTY = "must not be empty"
    NUL = "must not contain a NUL character"
    TOO_LONG = f"must be at most {MAX_OBJECT_KEY_BYTES} bytes long"
    ABSOLUTE = "must be an object key in the bucket, not an absolute path"
    PARENT = "must not contain a '..' segment"

    @property
    def leaves_bucket(self) -> bool:
        """Whether the key points out of its bucket (rather than being no key at all)."""
        return self in (KeyProblem.ABSOLUTE, KeyProblem.PARENT)


class BadObjectKey(SourceError):
    """An object key that is empty, absolute, has a `..` segment or a NUL byte, or whose
    file lies outside its bucket (a link leading out of it)."""


def object_key_problem(key: str) -> KeyProblem | None:
    """Why `key` cannot name an object in a bucket, or None when it can."""
    if not key:
        return KeyProblem.EMPTY
    if "\x00" in key:
        return KeyProblem.NUL
    if len(key.encode("utf-8", "surrogatepass")) > MAX_OBJECT_KEY_BYTES:
        return KeyProblem.TOO_LONG
    if key.startswith(("/", "\\")):
        return KeyProblem.ABSOLUTE
    if ".." in _SEGMENTS.split(key):
        return KeyProblem.PARENT
    return None


def key_part_problem(text: str) -> KeyProblem | None:
    """Why `text` cannot be a listing's prefix or marker, or None when it can: a part of
    a key, which may be empty, that only filters keys (it opens nothing)."""
    if "\x00" in text:
        return KeyProblem.NUL
    if len(text.encode("utf-8", "surrogatepass")) > MAX_OBJECT_KEY_BYTES:
        return KeyProblem.TOO_LONG
    return None


MAX_BUCKET_NAME = 255


def bucket_name_problem(name: str) -> str | None:
    """Why `name` cannot name a bucket (for a message), or None when it can."""
    if not name:
        return "must not be empty"
    if len(name) > MAX_BUCKET_NAME:
        return f"must be at most {MAX_BUCKET_NAME} characters"
    if name in (".", "..") or any(ch in name for ch in "/\\") or not name.isprintable():
        return "must be a bucket name, without '/', '\\' or control characters"
    return None
