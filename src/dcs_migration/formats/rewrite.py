"""A value as the ordinary commands that build it, in chunks of bounded size: no I/O.

What both the importer's rewrite (a key too big for one RESTORE, or in an encoding the
target cannot restore) and the AOF writer send. A big value is decoded a piece at a
time, as the commands are taken, so that it is never held whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol, cast

from dcs_migration.formats.records import BigKeyRecord, KeyRecord
from dcs_migration.formats.types.hashes import HashValue
from dcs_migration.formats.types.streams import StreamEntry, StreamId, StreamValue, format_id
from dcs_migration.formats.values import decode_parts, stream_parts

Args = list[bytes]


class CommandFeatures(Protocol):
    """What the server that runs the commands supports (`client.Capabilities` is one)."""

    @property
    def field_ttls(self) -> bool:
        """HPEXPIREAT: hash field TTLs (7.4+)."""
        ...

    @property
    def stream_metadata(self) -> bool:
        """XSETID ENTRIESADDED/MAXDELETEDID and XGROUP ENTRIESREAD (7.0+)."""
        ...


def score_arg(score: float) -> bytes:
    if math.isinf(score):
        return b"+inf" if score > 0 else b"-inf"
    return repr(score).encode()


_GHOST_FIELDS = [(b"dcs-migration", b"deleted")]


def _with_ghosts(
    entry_parts: Iterator[list[StreamEntry]], pending: set[StreamId], ghosts: list[StreamId]
) -> Iterator[StreamEntry]:
    """The entries in ID order, with a stand-in for every pending entry that the stream
    no longer holds (its ID is appended to `ghosts`, to be deleted again)."""
    waiting = sorted(pending)
    at = 0
    for entries in entry_parts:
        for entry in entries:
            eid = entry[0]
            while at < len(waiting) and waiting[at] < eid:
                ghosts.append(waiting[at])
                yield waiting[at], _GHOST_FIELDS
                at += 1
            if at < len(waiting) and waiting[at] == eid:
                at += 1
            yield entry
    for eid in waiting[at:]:
        ghosts.append(eid)
        yield eid, _GHOST_FIELDS


def _chunks(items: Iterator[list[bytes]], chunk_bytes: int) -> Iterator[list[bytes]]:
    """Group argument groups (an element, a pair, a triplet) into chunks of bounded size."""
    chunk: list[bytes] = []
    size = 0
    for group in items:
        chunk.extend(group)
        size += sum(len(a) for a in group) + 16 * len(group)
        if size >= chunk_bytes:
            yield chunk
            chunk = []
            size = 0
    if chunk:
        yield chunk


class Rewrite:
    """The commands that build one key's value on a target, in bounded chunks.

    `field_ttls_dropped` counts hash field TTLs that the target cannot hold (< 7.4);
    `stream_length` is (recorded, rebuilt) for the last stream built whose recorded length
    differs from its entries: commands can only make XLEN count the entries.
    """

    def __init__(self, caps: CommandFeatures, chunk_bytes: int, now_ms: int) -> None:
        self.caps = caps
        self.chunk_bytes = chunk_bytes
        self.now_ms = now_ms
        self.field_ttls_dropped = 0
        self.stream_length: tuple[int, int] | None = None

    def build(self, record: KeyRecord | BigKeyRecord, key: bytes) -> Iterator[Args]:
        """Commands that write `record`'s value (not its expiry) under `key`. A big value
        is decoded a piece at a time, as the commands are taken."""
        self.stream_length = None
        kind = record.type_name
        if kind == "stream":
            meta, entries = stream_parts(record)
            yield from self._stream(meta, entries, key)
            return
        if kind not in ("string", "list", "set", "zset", "hash"):
            raise ValueError(f"no rewrite for a {kind} value")
        verb = b"SET"
        for value in decode_parts(record):
            if kind == "string":
                assert isinstance(value, bytes)
                for at in range(0, max(len(value), 1), self.chunk_bytes):
                    yield [verb, key, value[at : at + self.chunk_bytes]]
                    verb = b"APPEND"
            elif kind in ("list", "set"):
                elements = cast(list[bytes], value)
                verb = b"RPUSH" if kind == "list" else b"SADD"
                for chunk in _chunks(([e] for e in elements), self.chunk_bytes):
                    yield [verb, key, *chunk]
            elif kind == "zset":
                members = cast(list[tuple[bytes, float]], value)
                pairs = ([score_arg(s), m] for m, s in members)
                for chunk in _chunks(pairs, self.chunk_bytes):
                    yield [b"ZADD", key, *chunk]
            else:
                assert isinstance(value, HashValue)
                yield from self._hash(value, key)

    def _hash(self, value: HashValue, key: bytes) -> Iterator[Args]:
        live = {
            f: v
            for f, v in value.fields.items()
            if value.field_expire_at_ms.get(f, self.now_ms + 1) > self.now_ms
        }
        for chunk in _chunks(([f, v] for f, v in live.items()), self.chunk_bytes):
            yield [b"HSET", key, *chunk]
        ttls = {f: t for f, t in value.field_expire_at_ms.items() if f in live}
        if not ttls:
            return
        if not self.caps.field_ttls:
            self.field_ttls_dropped += len(ttls)
            return
        by_time: dict[int, list[bytes]] = {}
        for f, t in ttls.items():
            by_time.setdefault(t, []).append(f)
        for t, fields in by_time.items():
            for chunk in _chunks(([f] for f in fields), self.chunk_bytes):
                yield [b"HPEXPIREAT", key, b"%d" % t, b"FIELDS", b"%d" % len(chunk), *chunk]

    def _stream(
        self, s: StreamValue, entry_parts: Iterator[list[StreamEntry]], key: bytes
    ) -> Iterator[Args]:
        """XADD every entry with its ID; entries that only pending lists still point to
        (deleted ones) are added and deleted again, so XCLAIM can restore those pending
        entries; then XSETID restores the last ID and counters. `s` holds the metadata
        and groups; the entries come from `entry_parts`, in ID order."""
        pending = {p.entry_id for g in s.groups for p in g.pending}
        ghosts: list[StreamId] = []
        made = False
        entries = 0
        for eid, fields in _with_ghosts(entry_parts, pending, ghosts):
            entries += fields is not _GHOST_FIELDS
            args = [b"XADD", key, format_id(eid).encode()]
            for f, v in fields:
                args += [f, v]
            yield args
            made = True
        if s.length != entries:
            self.stream_length = (s.length, entries)
        for g in s.groups:
            args = [b"XGROUP", b"CREATE", key, g.name, format_id(g.last_delivered_id).encode()]
            if not made:
                args.append(b"MKSTREAM")
                made = True
            entries_read = g.entries_read
            if self.caps.stream_metadata and entries_read is not None and entries_read < 1 << 63:
                args += [b"ENTRIESREAD", b"%d" % entries_read]
            yield args
            for c in g.consumers:
                yield [b"XGROUP", b"CREATECONSUMER", key, g.name, c.name]
            for p in g.pending:
                yield [
                    b"XCLAIM",
                    key,
                    g.name,
                    p.consumer,
                    b"0",
                    format_id(p.entry_id).encode(),
                    b"TIME",
                    b"%d" % p.delivery_time,
                    b"RETRYCOUNT",
                    b"%d" % p.delivery_count,
                    b"FORCE",
                    b"JUSTID",
                ]
        if not made:  # an empty stream without groups: create it, then drop the entry
            yield [b"XADD", key, b"0-1", b"dcs-migration", b"created"]
            ghosts = [(0, 1)]
        for chunk in _chunks(([format_id(g).encode()] for g in ghosts), self.chunk_bytes):
            yield [b"XDEL", key, *chunk]
        args = [b"XSETID", key, format_id(s.last_id).encode()]
        if self.caps.stream_metadata:
            entries_added = s.entries_added if s.entries_added is not None else s.length
            entries_added = max(entries_added, entries)  # XSETID refuses less
            max_deleted = s.max_deleted_id if s.max_deleted_id is not None else (0, 0)
            args += [
                b"ENTRIESADDED",
                b"%d" % entries_added,
                b"MAXDELETEDID",
                format_id(max_deleted).encode(),
            ]
        yield args
