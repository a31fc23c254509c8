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

from dcs_migration.formats.dump import dump_payload
from dcs_migration.formats.records import KeyRecord
from dcs_migration.formats.stream import StreamValue, format_id
from dcs_migration.formats.values import HashValue
from dcs_migration.target.capabilities import Capabilities, restore_version
from dcs_migration.target.slots import slot_tag

Args = list[bytes]


def restore_command(record: KeyRecord, replace: bool) -> bytes:
    """RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ n], as bytes."""
    payload = dump_payload(record.rdb_type, record.payload, restore_version(record.rdb_type))
    key = record.key
    expire = record.expire_at_ms
    ttl = b"0" if expire is None else b"%d" % expire
    n = 4 + replace + (expire is not None)
    tail = b""
    if replace:
        tail += b"$7\r\nREPLACE\r\n"
    if expire is not None:
        tail += b"$6\r\nABSTTL\r\n"
    if record.lru_idle is not None:
        n += 2
        idle = b"%d" % record.lru_idle
        tail += b"$8\r\nIDLETIME\r\n$%d\r\n%s\r\n" % (len(idle), idle)
    elif record.lfu_freq is not None:
        n += 2
        freq = b"%d" % record.lfu_freq
        tail += b"$4\r\nFREQ\r\n$%d\r\n%s\r\n" % (len(freq), freq)
    return b"".join(
        (
            b"*%d\r\n$7\r\nRESTORE\r\n$%d\r\n" % (n, len(key)),
            key,
            b"\r\n$%d\r\n%s\r\n$%d\r\n" % (len(ttl), ttl, len(payload)),
            payload,
            b"\r\n",
            tail,
        )
    )


def temporary_key(key: bytes) -> bytes:
    """A fresh key in the same hash slot as `key`, to build a rewritten value under."""
    return b"{%s}dcs-migration:tmp:%s" % (slot_tag(key), os.urandom(8).hex().encode())


def score_arg(score: float) -> bytes:
    if math.isinf(score):
        return b"+inf" if score > 0 else b"-inf"
    return repr(score).encode()


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

    def build(self, record: KeyRecord, key: bytes) -> Iterator[Args]:
        """Commands that write `record`'s value (not its expiry) under `key`."""
        self.stream_length = None
        value = record.value
        kind = record.type_name
        if kind == "string":
            assert isinstance(value, bytes)
            if len(value) <= self.chunk_bytes:
                yield [b"SET", key, value]
            else:
                yield [b"SET", key, value[: self.chunk_bytes]]
                for at in range(self.chunk_bytes, len(value), self.chunk_bytes):
                    yield [b"APPEND", key, value[at : at + self.chunk_bytes]]
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
        elif kind == "hash":
            assert isinstance(value, HashValue)
            yield from self._hash(value, key)
        elif kind == "stream":
            assert isinstance(value, StreamValue)
            yield from self._stream(value, key)
        else:
            raise ValueError(f"no rewrite for a {kind} value")

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

    def _stream(self, s: StreamValue, key: bytes) -> Iterator[Args]:
        """XADD every entry with its ID; entries that only pending lists still point to
        (deleted ones) are added and deleted again, so XCLAIM can restore those pending
        entries; then XSETID restores the last ID and counters."""
        if s.length != len(s.entries):
            self.stream_length = (s.length, len(s.entries))
        pending_ids = {p.entry_id for g in s.groups for p in g.pending}
        live_ids = {eid for eid, _ in s.entries}
        ghosts = sorted(pending_ids - live_ids)
        merged = sorted(
            [(eid, fields, False) for eid, fields in s.entries]
            + [(eid, [(b"dcs-migration", b"deleted")], True) for eid in ghosts]
        )
        made = False
        for eid, fields, _ in merged:
            args = [b"XADD", key, format_id(eid).encode()]
            for f, v in fields:
                args += [f, v]
            yield args
            made = True
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
            entries_added = max(entries_added, len(s.entries))  # XSETID refuses less
            max_deleted = s.max_deleted_id if s.max_deleted_id is not None else (0, 0)
            args += [
                b"ENTRIESADDED",
                b"%d" % entries_added,
                b"MAXDELETEDID",
                format_id(max_deleted).encode(),
            ]
        yield args
