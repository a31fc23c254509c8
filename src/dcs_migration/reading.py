"""One input, read to its end: the records of every part, in order.

`read_batches` is the one driver of the readers (the import, inspect and the bench read
through it); `read_input` is the same records one at a time.

Every part goes through an `AofReader`, which picks the reader by content as Redis'
loader does: an RDB image (a dump, an AOF preamble, the RDB base of a multi-part AOF),
then RESP commands. Each part is a new reader, so the commands of each file start in
db 0, as when Redis loads them. For an input of kind `rdb` (a plain dump), bytes after
the RDB image that are not RESP are ignored, as Redis' RDB loader ignores them.
Errors carry the part's name (the file, or the archive and member) in `source`.
The last part of an AOF may end inside a command: as Redis (`aof-load-truncated`, its
default), the commands before it are read, and an `AofTruncated` record says what was
left out. An earlier part cut short is an error, as it is for Redis.

A value too big to hold (see `formats.rdb_pieces`) comes out of the reader in pieces;
here they become one `BigKeyRecord` whose pieces wait in a temporary file, so that
everything downstream sees one record per key and memory stays flat.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import IO

from dcs_migration.formats.aof import AofReader
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import (
    AofTruncated,
    BigKeyRecord,
    BigValueEnd,
    BigValuePiece,
    BigValueStart,
    Record,
)
from dcs_migration.sources.inputs import Input, InputKind

# A reader parses one chunk in one call, and a stop is heard between calls: a quarter of
# a megabyte of tiny keys is about 0.04 s of parsing (a megabyte took 0.15 s, and a task
# among twenty on two cores gets a tenth of one), and reads no slower than a megabyte.
CHUNK_SIZE = 256 << 10


def read_input(
    source: Input,
    *,
    chunk_size: int = CHUNK_SIZE,
    on_bytes: Callable[[int], None] | None = None,
    keep_big_values: bool = True,
) -> Iterator[Record]:
    """Every record of `source`, part after part; `on_bytes(n)` hears of each chunk read."""
    for batch in read_batches(
        source, chunk_size=chunk_size, on_bytes=on_bytes, keep_big_values=keep_big_values
    ):
        yield from batch


def read_batches(
    source: Input,
    *,
    chunk_size: int = CHUNK_SIZE,
    on_bytes: Callable[[int], None] | None = None,
    keep_big_values: bool = True,
    on_part: Callable[[str], None] | None = None,
    on_empty_keys: Callable[[int], None] | None = None,
) -> Iterator[Sequence[Record]]:
    """The records of `source` in the batches each chunk completes (what a writer that
    works a batch at a time wants); `on_part(name)` hears of each part as it starts (the
    offsets of records count from the start of their part), `on_empty_keys(n)` of the
    empty keys its RDB image held once it is read (left out, as Redis leaves them out).
    With `keep_big_values` False, a big value's record keeps only its size, for callers
    that never look inside it."""
    parts = source.parts
    for part in parts:
        if on_part is not None:
            on_part(part.name)
        reader = AofReader(
            ignore_non_resp_tail=source.kind is InputKind.RDB,
            load_truncated=part is parts[-1],
        )
        big = BigValues(keep_pieces=keep_big_values)
        seen = 0
        try:
            size = 0
            with part.open() as stream:
                while chunk := stream.read(chunk_size):
                    size += len(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
                    batch = reader.feed(chunk)
                    if reader.big_records != seen:
                        seen = reader.big_records
                        batch = big.join(batch)
                    yield batch
                last = reader.close()
                if reader.big_records != seen:
                    last = big.join(last)
            if on_empty_keys is not None and reader.rdb is not None:
                on_empty_keys(reader.rdb.empty_keys_dropped)
            cut = reader.truncated_at
            if cut is not None:
                last = [*last, AofTruncated(cut, size - cut, part.name)]
            yield last
        except FormatError as exc:
            if exc.source is None:
                exc.source = part.name
            raise


class BigValues:
    """Joins a reader's BigValueStart, pieces and BigValueEnd into one BigKeyRecord, the
    pieces kept in a temporary file (removed once the record is let go)."""

    def __init__(self, *, keep_pieces: bool = True) -> None:
        self.keep_pieces = keep_pieces
        self._start: BigValueStart | None = None
        self._file: IO[bytes] | None = None
        self._lengths: list[int] = []
        self._size = 0

    def join(self, records: Sequence[Record]) -> list[Record]:
        out: list[Record] = []
        for r in records:
            kind = type(r)
            if kind is BigValuePiece:
                assert isinstance(r, BigValuePiece)
                self._piece(r.data)
            elif kind is BigValueStart:
                assert isinstance(r, BigValueStart)
                self._start = r
                self._size = len(r.head)
                self._lengths = []
                # Closed (and gone) with the record that reads it back.
                self._file = tempfile.TemporaryFile() if self.keep_pieces else None  # noqa: SIM115
            elif kind is BigValueEnd:
                assert isinstance(r, BigValueEnd) and self._start is not None
                pieces = _Spilled(self._file, self._lengths) if self._file is not None else None
                out.append(BigKeyRecord(self._start, r.tail, self._size + len(r.tail), pieces))
                self._start = self._file = None
            else:
                out.append(r)
        return out

    def _piece(self, data: bytes) -> None:
        self._size += len(data)
        if self._file is not None:
            self._file.write(data)
            self._lengths.append(len(data))


class _Spilled:
    """A big value's pieces in a temporary file, read back in the order they came."""

    def __init__(self, file: IO[bytes], lengths: list[int]) -> None:
        file.flush()
        self._file = file
        self._lengths = lengths

    def __call__(self) -> Iterator[bytes]:
        fd = self._file.fileno()
        at = 0
        for n in self._lengths:
            data = os.pread(fd, n, at)
            if len(data) != n:
                raise OSError(f"a temporary file lost {n - len(data)} bytes of a big value")
            at += n
            yield data
