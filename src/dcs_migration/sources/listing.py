"""What a bucket holds, a page at a time: object keys in order, as S3's ListObjectsV2 gives them.

A page is the objects whose keys start with a prefix and come strictly after a marker
(S3's `StartAfter`), at most `limit` of them, with `next_marker` set when more follow.
Only objects a task could import are listed: keys that `keys` accepts, not folder
markers (a key ending in `/`).

A folder bucket is walked without building its whole listing: one folder at a time, in
key order, keeping only the `limit + 1` smallest entries of a folder in memory
(`heapq.nsmallest`), and stopping once the page is full. A folder holding a million
files is scanned, never held: memory is O(limit x depth). A folder's entries sort by
name, a subfolder's name followed by `/`, which is exactly the order of the keys they
hold (`a.rdb` < `a/x`, as `.` < `/`). Folders are opened relative to their parent's
descriptor with `O_NOFOLLOW`, so a link, even one swapped in during the walk, is never
followed out of the bucket; links are not listed either, as the folder walk of an
import (`local`) skips them.
"""

from __future__ import annotations

import heapq
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Final

from dcs_migration.sources.keys import MAX_OBJECT_KEY_BYTES, object_key_problem

MAX_LIST_KEYS: Final = 1000
"""The most objects one page holds (S3's own bound on MaxKeys)."""

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object of a bucket: its key, its size in bytes, when it last changed (UTC)."""

    key: str
    size: int
    modified: datetime


@dataclass(frozen=True, slots=True)
class ObjectQuery:
    """Which page of a bucket's objects: keys under `prefix`, strictly after `marker`,
    at most `limit` (1 to `MAX_LIST_KEYS`)."""

    prefix: str = ""
    marker: str = ""
    limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIST_KEYS:
            raise ValueError(f"limit must be from 1 to {MAX_LIST_KEYS}")


@dataclass(frozen=True, slots=True)
class ObjectPage:
    """A page of objects in key order; `next_marker` is the marker of the next page, or
    empty when the listing ended with this one."""

    objects: tuple[ObjectInfo, ...]
    next_marker: str


def listable(key: str) -> bool:
    """Whether `key` is listed: an object a task can name (UTF-8, within the key rules),
    not a folder marker."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8: no JSON can name it
        return False
    return object_key_problem(key) is None and not key.endswith("/")


def page_of(found: Iterator[ObjectInfo], limit: int) -> ObjectPage:
    """The first `limit` objects of `found` (in key order), taking one more to know
    whether a next page follows. A generator is closed after: the folders or requests it
    holds open are let go at once, not when it is collected."""
    try:
        taken = list(islice(found, limit + 1))
    finally:
        close = getattr(found, "close", None)
        if close is not None:
            close()
    more = len(taken) > limit
    objects = tuple(taken[:limit])
    return ObjectPage(objects, objects[-1].key if more else "")


def folder_page(root: Path, query: ObjectQuery) -> ObjectPage:
    """A page of the objects of the bucket folder `root` (resolved, a real folder:
    `bucket.bucket_dir`). OSError when `root` cannot be opened."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        walk = _walk(fd, "", query.prefix, query.marker, query.limit + 1)
        return page_of(walk, query.limit)
    finally:
        os.close(fd)


# -- the walk -----------------------------------------------------------------------------

_Entry = tuple[str, str, bool]  # (sort key: the key, with `/` after a folder's; name; folder?)


def _walk(fd: int, rel: str, prefix: str, marker: str, batch: int) -> Iterator[ObjectInfo]:
    """The listable files under the folder open as `fd` (whose keys start with `rel`), in
    key order. A folder is scanned again for its next `batch` entries only when the
    caller wants more than the first `batch` gave (folders with nothing listed in them
    count as entries, so one scan may not fill a page)."""
    after: str | None = None
    while True:
        entries = _smallest(fd, rel, prefix, marker, after, batch)
        for sort_key, name, is_dir in entries:
            if is_dir:
                child = _open_folder(fd, name)
                if child is None:
                    continue
                try:
                    yield from _walk(child, sort_key, prefix, marker, batch)
                finally:
                    os.close(child)
            else:
                found = _file(fd, name, sort_key)
                if found is not None:
                    yield found
        if len(entries) < batch:
            return
        after = entries[-1][0]


def _smallest(
    fd: int, rel: str, prefix: str, marker: str, after: str | None, batch: int
) -> list[_Entry]:
    """The `batch` first entries of the folder after `after` that may hold a key of the page."""
    with os.scandir(fd) as scan:
        candidates = (
            entry
            for item in scan
            if (entry := _candidate(item, rel, prefix, marker)) is not None
            and (after is None or entry[0] > after)
        )
        return heapq.nsmallest(batch, candidates)


def _candidate(item: os.DirEntry[str], rel: str, prefix: str, marker: str) -> _Entry | None:
    """`item` as an entry of the walk, or None when it cannot hold a key of the page: a
    link or a special file, a name no key can hold, a file outside the prefix or not
    after the marker, a folder all of whose keys are."""
    try:
        if item.is_symlink():
            return None
        is_dir = item.is_dir(follow_symlinks=False)
        if not is_dir and not item.is_file(follow_symlinks=False):
            return None
    except OSError:  # gone since the scan saw it
        return None
    key = rel + item.name + ("/" if is_dir else "")
    if is_dir:
        if len(key.encode("utf-8", "surrogateescape")) > MAX_OBJECT_KEY_BYTES:
            return None  # every key under it would be too long
        # Its keys all start with `key`: some may start with the prefix, and some may
        # come after the marker (all do when key > marker; none when key < marker and
        # the marker does not lie within it).
        if not (key.startswith(prefix) or prefix.startswith(key)):
            return None
        if key <= marker and not marker.startswith(key):
            return None
    elif key <= marker or not key.startswith(prefix) or not listable(key):
        return None
    return key, item.name, is_dir


def _open_folder(fd: int, name: str) -> int | None:
    """The subfolder `name`, opened without following a link; None when it is not a
    folder any more, or cannot be read (it is left out)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError:
        return None


def _file(fd: int, name: str, key: str) -> ObjectInfo | None:
    """The file `name` as an object, or None when it is no longer a regular file."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
