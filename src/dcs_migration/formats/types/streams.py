"""Streams (5.0+, in four versions of the layout): listpack nodes of entries, then the
stream's metadata and consumer groups.

A node is keyed by its master ID (16 bytes, big-endian ms and seq). Its listpack starts
with the master entry (live count, deleted count, the master field names, a 0), then
holds entries: flags, ms and seq deltas from the master ID, the values (when the entry
has the master's fields) or a field count and field/value pairs, and an element count.

A stream decodes to a StreamValue. A big one is handed out as its node count, its nodes
and its metadata (the tail); `formats.values.stream_parts` decodes it a piece at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.listpack import listpack_entries
from dcs_migration.formats.primitives import (
    LENGTH_SIZE,
    Cursor,
    Incomplete,
    Skipper,
    read_length,
    skip_length,
    skip_string,
)
from dcs_migration.formats.rdb_pieces import Layout, count_head, strings
from dcs_migration.formats.types.common import skip_string_pairs
from dcs_migration.formats.types.encoding import Encoding

STREAM_ITEM_FLAG_DELETED = 1
STREAM_ITEM_FLAG_SAMEFIELDS = 2

StreamId = tuple[int, int]
StreamEntry = tuple[StreamId, list[tuple[bytes, bytes]]]


@dataclass
class StreamPending:
    """A delivered, unacknowledged entry of a consumer group."""

    entry_id: StreamId
    consumer: bytes
    delivery_time: int
    delivery_count: int


@dataclass
class StreamConsumer:
    name: bytes
    seen_time: int
    active_time: int | None
    pending: list[StreamId] = field(default_factory=list)


@dataclass
class StreamGroup:
    name: bytes
    last_delivered_id: StreamId
    entries_read: int | None  # None when the file predates it (RDB < 10)
    pending: list[StreamPending] = field(default_factory=list)
    consumers: list[StreamConsumer] = field(default_factory=list)


@dataclass
class StreamValue:
    """A stream. `length` is the recorded length, what XLEN answers, which may differ
    from the entries its nodes hold. `first_id`, `max_deleted_id` and `entries_added` are
    None when the file predates them (stream listpacks version 1)."""

    entries: list[StreamEntry]
    length: int
    last_id: StreamId
    first_id: StreamId | None
    max_deleted_id: StreamId | None
    entries_added: int | None
    groups: list[StreamGroup]


def format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


def _raw_id(c: Cursor) -> StreamId:
    raw = c.raw(16)
    return (int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big"))


def _stream_id(c: Cursor) -> StreamId:
    return (c.length(), c.length())


def decode_stream(t: int, c: Cursor) -> StreamValue:
    """A whole stream, from a cursor at its first byte to the end of its bytes."""
    entries: list[StreamEntry] = []
    nodes = c.length()
    decode_stream_nodes(c, nodes, entries)
    stream = decode_stream_metadata(t, c)
    check_stream_nodes(stream, nodes)
    stream.entries = entries
    return stream


def check_stream_nodes(stream: StreamValue, nodes: int) -> None:
    """Redis keeps the recorded length whatever the nodes hold (early Redis 5 wrote streams
    whose length outgrew their entries after XTRIM/XDEL): XLEN answers it. It refuses only
    a length with no node at all."""
    if stream.length and not nodes:
        raise FormatError(f"stream says it holds {stream.length} entries but has no node")


def decode_stream_nodes(c: Cursor, n: int | None, out: list[StreamEntry]) -> None:
    """The entries of `n` nodes (None: up to the cursor's end, a piece of a big stream)."""
    while c.pos < c.end if n is None else n > 0:
        node_key = c.string()
        if len(node_key) != 16:
            raise FormatError(f"stream node key is {len(node_key)} bytes, expected 16")
        master = (int.from_bytes(node_key[:8], "big"), int.from_bytes(node_key[8:], "big"))
        _node_entries(master, listpack_entries(c.string()), out)
        if n is not None:
            n -= 1


def decode_stream_metadata(t: int, c: Cursor) -> StreamValue:
    """What follows a stream's nodes: its length, IDs, counters and consumer groups (the
    value returned holds no entries)."""
    length = c.length()
    last_id = _stream_id(c)
    first_id = max_deleted_id = None
    entries_added = None
    if t >= T.RDB_TYPE_STREAM_LISTPACKS_2:
        first_id = _stream_id(c)
        max_deleted_id = _stream_id(c)
        entries_added = c.length()
    groups = []
    for _ in range(c.length()):
        name = c.string()
        last_delivered = _stream_id(c)
        entries_read = c.length() if t >= T.RDB_TYPE_STREAM_LISTPACKS_2 else None
        pending: dict[StreamId, StreamPending] = {}
        for _ in range(c.length()):
            entry_id = _raw_id(c)
            delivery_time = c.millis()
            if entry_id in pending:
                raise FormatError(f"stream group {name!r} lists entry {format_id(entry_id)} twice")
            pending[entry_id] = StreamPending(entry_id, b"", delivery_time, c.length())
        consumers = []
        for _ in range(c.length()):
            consumer = StreamConsumer(c.string(), c.millis(), None)
            if t >= T.RDB_TYPE_STREAM_LISTPACKS_3:
                consumer.active_time = c.millis()
            for _ in range(c.length()):
                entry_id = _raw_id(c)
                nack = pending.get(entry_id)
                if nack is None or nack.consumer:
                    raise FormatError(
                        f"stream consumer {consumer.name!r} owns entry {format_id(entry_id)} "
                        f"that group {name!r} does not list as pending to it alone"
                    )
                nack.consumer = consumer.name
                consumer.pending.append(entry_id)
            consumers.append(consumer)
        for nack in pending.values():
            if not nack.consumer:
                raise FormatError(
                    f"stream group {name!r} has pending entry {format_id(nack.entry_id)} "
                    "that no consumer owns"
                )
        groups.append(
            StreamGroup(name, last_delivered, entries_read, list(pending.values()), consumers)
        )
    if t >= T.RDB_TYPE_STREAM_LISTPACKS_4:
        _skip_idempotency(c)
    if c.pos != c.end:
        raise FormatError(f"{c.end - c.pos} unexpected bytes after the stream")
    return StreamValue([], length, last_id, first_id, max_deleted_id, entries_added, groups)


def _skip_idempotency(c: Cursor) -> None:
    c.length()
    c.length()
    for _ in range(c.length()):
        c.string()
        for _ in range(c.length()):
            c.string()
            _stream_id(c)
    c.length()
    c.length()


def _as_int(item: bytes | int, what: str) -> int:
    if type(item) is int:
        return item
    try:
        return int(item)
    except ValueError:
        raise FormatError(f"stream node {what} is not an integer") from None


def _as_bytes(item: bytes | int) -> bytes:
    return item if type(item) is bytes else str(item).encode()


def _node_entries(
    master: StreamId,
    items: list[bytes | int],
    out: list[StreamEntry],
) -> None:
    n = len(items)
    try:
        live = _as_int(items[0], "entry count")
        deleted = _as_int(items[1], "deleted count")
        nfields = _as_int(items[2], "master field count")
        if nfields < 0 or 3 + nfields >= n:
            raise FormatError("stream node master entry runs past the node")
        master_fields = [_as_bytes(f) for f in items[3 : 3 + nfields]]
        if items[3 + nfields] != 0:
            raise FormatError("stream node master entry does not end with 0")
        i = 4 + nfields
        seen_live = seen_deleted = 0
        while i < n:
            flags = _as_int(items[i], "entry flags")
            entry_id = (
                master[0] + _as_int(items[i + 1], "entry ID"),
                master[1] + _as_int(items[i + 2], "entry ID"),
            )
            i += 3
            if flags & STREAM_ITEM_FLAG_SAMEFIELDS:
                values = items[i : i + nfields]
                if len(values) != nfields:
                    raise FormatError("stream entry runs past the node")
                pairs = [(f, _as_bytes(v)) for f, v in zip(master_fields, values, strict=True)]
                i += nfields
            else:
                count = _as_int(items[i], "entry field count")
                flat = items[i + 1 : i + 1 + 2 * count]
                if count < 0 or len(flat) != 2 * count:
                    raise FormatError("stream entry runs past the node")
                pairs = [
                    (_as_bytes(flat[j]), _as_bytes(flat[j + 1])) for j in range(0, len(flat), 2)
                ]
                i += 1 + 2 * count
            i += 1  # the entry's element count, for walking backwards
            if i > n:
                raise FormatError("stream entry runs past the node")
            if flags & STREAM_ITEM_FLAG_DELETED:
                seen_deleted += 1
            else:
                seen_live += 1
                if out and entry_id <= out[-1][0]:
                    raise FormatError(f"stream entry {format_id(entry_id)} is out of order")
                out.append((entry_id, pairs))
    except IndexError:
        raise FormatError("stream node ends inside an entry") from None
    if (live, deleted) != (seen_live, seen_deleted):
        raise FormatError(
            f"stream node says {live} live and {deleted} deleted entries, "
            f"holds {seen_live} and {seen_deleted}"
        )


# -- skipping ----------------------------------------------------------------------------


def _bad_length(buf: bytes, pos: int, end: int) -> int:
    """Raise skip_length's error for the byte at `pos`, which starts no length."""
    skip_length(buf, pos, end)
    raise AssertionError(f"byte 0x{buf[pos]:02x} was taken for no length")


def tail_skipper(t: int) -> Skipper:
    """A skip function for what follows a stream's nodes: its metadata and consumer groups."""
    v2 = t >= T.RDB_TYPE_STREAM_LISTPACKS_2
    v3 = t >= T.RDB_TYPE_STREAM_LISTPACKS_3
    v4 = t >= T.RDB_TYPE_STREAM_LISTPACKS_4
    metadata_lengths = 8 if v2 else 3  # length, last id (and first id, max deleted, added)
    group_lengths = 3 if v2 else 2  # last delivered id (and entries read)
    consumer_times = 16 if v3 else 8  # seen time (and active time)

    def skip(buf: bytes, pos: int, end: int) -> int:
        # Inline steps as in the element loops of `types.common`: most lengths and counts
        # are short.
        try:
            for _ in range(metadata_lengths):
                pos += LENGTH_SIZE[buf[pos]] or _bad_length(buf, pos, end)
            b = buf[pos]
            groups, pos = (b, pos + 1) if b < 0x40 else read_length(buf, pos, end)
            for _ in range(groups):
                b = buf[pos]
                pos = pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)
                for _ in range(group_lengths):
                    pos += LENGTH_SIZE[buf[pos]] or _bad_length(buf, pos, end)
                b = buf[pos]
                pel, pos = (b, pos + 1) if b < 0x40 else read_length(buf, pos, end)
                for _ in range(pel):
                    pos += 24  # raw id, delivery time, then the delivery count
                    pos += LENGTH_SIZE[buf[pos]] or _bad_length(buf, pos, end)
                b = buf[pos]
                consumers, pos = (b, pos + 1) if b < 0x40 else read_length(buf, pos, end)
                for _ in range(consumers):
                    b = buf[pos]
                    pos = pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)
                    pos += consumer_times
                    owned, pos = read_length(buf, pos, end)
                    pos += 16 * owned
        except IndexError:
            raise Incomplete() from None
        if pos > end:
            raise Incomplete()
        if v4:  # idempotent producers: settings, then per producer its recent ids
            pos = skip_length(buf, skip_length(buf, pos, end), end)
            producers, pos = read_length(buf, pos, end)
            for _ in range(producers):
                pos = skip_string(buf, pos, end)
                iids, pos = read_length(buf, pos, end)
                for _ in range(iids):
                    pos = skip_string(buf, pos, end)
                    pos = skip_length(buf, skip_length(buf, pos, end), end)
            pos = skip_length(buf, skip_length(buf, pos, end), end)
        return pos

    return skip


def _encoding(t: int) -> Encoding[StreamValue]:
    tail = tail_skipper(t)

    def skip(buf: bytes, pos: int, end: int) -> int:
        # The nodes: a master ID (16 bytes) and a listpack each, then the tail.
        return tail(buf, skip_string_pairs(buf, pos, end), end)

    def decode(c: Cursor) -> StreamValue:
        return decode_stream(t, c)

    return Encoding("stream", skip, decode, Layout(count_head, strings(2), tail))


ENCODINGS = {t: _encoding(t) for t in T.STREAM_TYPES}
