"""One input, read to its end: the records of every part, in order.

Every part goes through an `AofReader`, which picks the reader by content as Redis'
loader does: an RDB image (a dump, an AOF preamble, the RDB base of a multi-part AOF),
then RESP commands. Each part is a new reader, so the commands of each file start in
db 0, as when Redis loads them. For an input of kind `rdb` (a plain dump), bytes after
the RDB image that are not RESP are ignored, as Redis' RDB loader ignores them.
Errors carry the part's name (the file, or the archive and member) in `source`.
The last part of an AOF may end inside a command: as Redis (`aof-load-truncated`, its
default), the commands before it are read, and an `AofTruncated` record says what was
left out. An earlier part cut short is an error, as it is for Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from dcs_migration.formats.aof import AofReader
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import AofTruncated, Record
from dcs_migration.sources.inputs import Input, InputKind

CHUNK_SIZE = 1 << 20


def read_input(
    source: Input,
    *,
    chunk_size: int = CHUNK_SIZE,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Record]:
    """Every record of `source`, part after part; `on_bytes(n)` hears of each chunk read."""
    for batch in read_batches(source, chunk_size=chunk_size, on_bytes=on_bytes):
        yield from batch


def read_batches(
    source: Input,
    *,
    chunk_size: int = CHUNK_SIZE,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Sequence[Record]]:
    """The records of `source` in the batches each chunk completes (what a writer that
    works a batch at a time wants)."""
    parts = source.parts
    for part in parts:
        reader = AofReader(
            ignore_non_resp_tail=source.kind is InputKind.RDB,
            load_truncated=part is parts[-1],
        )
        try:
            size = 0
            with part.open() as stream:
                while chunk := stream.read(chunk_size):
                    size += len(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
                    yield reader.feed(chunk)
                last = reader.close()
            cut = reader.truncated_at
            if cut is not None:
                last = [*last, AofTruncated(cut, size - cut, part.name)]
            yield last
        except FormatError as exc:
            if exc.source is None:
                exc.source = part.name
            raise
