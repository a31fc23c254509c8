"""One input, read to its end: the records of every part, in order.

Every part goes through an `AofReader`, which picks the reader by content as Redis'
loader does: an RDB image (a dump, an AOF preamble, the RDB base of a multi-part AOF),
then RESP commands. Each part is a new reader, so the commands of each file start in
db 0, as when Redis loads them. For an input of kind `rdb` (a plain dump), bytes after
the RDB image that are not RESP are ignored, as Redis' RDB loader ignores them.
Errors carry the part's name (the file, or the archive and member) in `source`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from dcs_migration.formats.aof import AofReader
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import Record
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
    on_part: Callable[[str], None] | None = None,
) -> Iterator[Sequence[Record]]:
    """The records of `source` in the batches each chunk completes (what a writer that
    works a batch at a time wants); `on_part(name)` hears of each part as it starts
    (the offsets of records count from the start of their part)."""
    for part in source.parts:
        if on_part is not None:
            on_part(part.name)
        reader = AofReader(ignore_non_resp_tail=source.kind is InputKind.RDB)
        try:
            with part.open() as stream:
                while chunk := stream.read(chunk_size):
                    if on_bytes is not None:
                        on_bytes(len(chunk))
                    yield reader.feed(chunk)
                yield reader.close()
        except FormatError as exc:
            if exc.source is None:
                exc.source = part.name
            raise
