"""A key as the commands that write it: one RESTORE, or ordinary commands in chunks.

RESTORE carries the value's bytes from the file re-framed as a DUMP payload: no decoding.
The rewrite builds the value under a temporary key (in the same hash slot) with bounded
commands, then RENAMEs it over the real key, so a key is replaced whole and never merged
into what the target held; with the `skip`/`fail` policies RENAMENX keeps an existing key.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import cast

from dcs_migration.client.capabilities import Capabilities, restore_version
from dcs_migration.client.resp import restore_frame
from dcs_migration.client.slots import slot_tag
from dcs_migration.formats.crc64 import crc64
from dcs_migration.formats.dump import dump_payload
from dcs_migration.formats.records import BigKeyRecord, KeyRecord
from dcs_migration.formats.stream import StreamEntry, StreamId, StreamValue, format_id
from dcs_migration.formats.values import HashValue, decode_parts, stream_parts

Args = list[bytes]


def restore_command(record: KeyRecord, replace: bool) -> bytes:
    """RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ n], as bytes."""
    payload = dump_payload(record.rdb_type, record.payload, restore_version(record.rdb_type))
    head, tail = _restore_frame(record, replace, len(payload))
    return b"".join((head, payload, tail))


def restore_pieces(record: BigKeyRecord, replace: bool) -> Iterator[bytes]:
    """The RESTORE of a big value, as `restore_command` builds it, a piece at a time: the
    value's pieces pass through and its checksum is chained over them."""
    t = record.rdb_type
    head, tail = _restore_frame(record, replace, record.size + 11)
    first = bytes((t,)) + record.head
    crc = crc64(first)
    yield head + first
    for piece in record.pieces():
        crc = crc64(piece, crc)
        yield piece
    last = record.tail + restore_version(t).to_bytes(2, "little")
    crc = crc64(last, crc)
    yield last + crc.to_bytes(8, "little") + tail


def _restore_frame(
    record: KeyRecord | BigKeyRecord, replace: bool, payload_len: int
) -> tuple[bytes, bytes]:
    """What goes before and after a RESTORE's payload."""
    return restore_frame(
        record.key,
        record.expire_at_ms,
        payload_len,
        replace=replace,
        idle=record.lru_idle,
        freq=record.lfu_freq,
    )


# Stream options of Redis 7.0 (XSETID, XGROUP CREATE / SETID): where a command's options
# start, and the option names an older server refuses, each followed by one value.
_STREAM_METADATA_OPTIONS = {
    b"XSETID": (3, (b"ENTRIESADDED", b"MAXDELETEDID")),
    b"XGROUP CREATE": (5, (b"ENTRIESREAD",)),
    b"XGROUP SETID": (5, (b"ENTRIESREAD",)),
}


def without_stream_metadata(args: Args) -> Args:
    """An AOF command as a server before 7.0 takes it: XSETID without ENTRIESADDED and
    MAXDELETEDID, XGROUP CREATE / SETID without ENTRIESREAD. A 7.0 AOF writes a stream's
    groups and last id with them; sent as they are, an older target refuses them and the
    groups are lost, where the same stream in an RDB is rewritten without them."""
    name = args[0].upper()
    if name == b"XGROUP" and len(args) > 1:
        name += b" " + args[1].upper()
    found = _STREAM_METADATA_OPTIONS.get(name)
    if found is None:
        return args
    start, dropped = found
    out = args[:start]
    i = start
    while i < len(args):
        if args[i].upper() in dropped and i + 1 < len(args):
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def temporary_key(key: bytes) -> bytes:
    """A fresh key in the same hash slot as `key`, to build a rewritten value under."""
    return b"{%s}dcs-migration:tmp:%s" % (slot_tag(key), os.urandom(8).hex().encode())


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

    def __init__(self, caps: Capabilities, chunk_bytes: int, now_ms: int) -> None:
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
