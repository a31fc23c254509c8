"""Inputs: the logical backups found at a source, each a sequence of byte streams.

An input is one RDB file, one AOF file, or one multi-part AOF (its base and incremental
files, in load order). Each part knows its display name (the file, or the archive and
the member), its size, and how to open it as a stream of the bytes a reader must see
(already decompressed). Nothing is read until a part is opened. An input found by
`dcs_migration.sources.find` also carries the fingerprint of its source taken when it was
found (`fingerprint.py`), for a resume to tell whether the bytes are still those.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class ByteStream(Protocol):
    """What a part opens to: something to read bytes from."""

    def read(self, size: int = -1, /) -> bytes: ...


Opener = Callable[[], AbstractContextManager[ByteStream]]
FingerprintEntry = tuple[str, int, str]  # (where, size, version: mtime or ETag)


class InputKind(StrEnum):
    RDB = "rdb"  # starts with an RDB image: a dump, or a single AOF with an RDB preamble
    AOF = "aof"  # a single AOF file of RESP commands
    AOF_MULTIPART = "aof-multipart"  # a Redis 7 AOF directory: manifest, base, incr files


@dataclass(frozen=True, slots=True)
class InputPart:
    """One file of an input.

    `size` is the number of bytes its stream yields; for a gzip-compressed file it is
    an estimate and `size_exact` is False.
    """

    name: str
    size: int
    open: Opener
    size_exact: bool = True


@dataclass(frozen=True, slots=True)
class Input:
    """One logical backup: its display name, kind, and parts in the order to read them;
    `fingerprint`, the description of its source when it was found (empty when it was
    found without one, by `find_inputs` or `find_s3_inputs` alone)."""

    name: str
    kind: InputKind
    parts: tuple[InputPart, ...]
    fingerprint: tuple[FingerprintEntry, ...] = ()
    # False for a stream read as it arrives (a live source's snapshot): read once only.
    rereadable: bool = True

    @property
    def size(self) -> int:
        """Total bytes of all parts (an estimate when `size_exact` is False)."""
        return sum(p.size for p in self.parts)

    @property
    def size_exact(self) -> bool:
        return all(p.size_exact for p in self.parts)
