"""Sans-I/O readers of Redis backups: bytes in, records out.

Nothing here opens a file or a socket. `feed_stream` is the one helper that drives a
reader from any binary stream a caller has opened.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import BinaryIO, Protocol

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.rdb import RdbReader
from dcs_migration.formats.records import (
    AofCommand,
    AofTruncated,
    AuxField,
    FunctionLibrary,
    KeyRecord,
    ModuleAux,
    RdbEnd,
    RdbHeader,
    Record,
    ResizeDb,
    SelectDb,
    SlotInfo,
)

CHUNK_SIZE = 1 << 20


class Reader(Protocol):
    """What every reader offers: feed chunks, then close."""

    def feed(self, data: bytes) -> Sequence[Record]: ...

    def close(self) -> Sequence[Record]: ...


def feed_stream(
    reader: Reader, stream: BinaryIO, *, source: str | None = None, chunk_size: int = CHUNK_SIZE
) -> Iterator[Record]:
    """Every record of `stream`, read in chunks; errors carry the `source` name."""
    try:
        while True:
            chunk = stream.read(chunk_size)
            if not chunk:
                break
            yield from reader.feed(chunk)
        yield from reader.close()
    except FormatError as exc:
        if exc.source is None:
            exc.source = source
        raise


__all__ = [
    "CHUNK_SIZE",
    "AofCommand",
    "AofTruncated",
    "AuxField",
    "FormatError",
    "FunctionLibrary",
    "KeyRecord",
    "ModuleAux",
    "RdbEnd",
    "RdbHeader",
    "RdbReader",
    "Reader",
    "Record",
    "ResizeDb",
    "SelectDb",
    "SlotInfo",
    "feed_stream",
]
