"""A key as the commands that write it: one RESTORE, or ordinary commands in chunks.

RESTORE carries the value's bytes from the file re-framed as a DUMP payload: no decoding.
The rewrite builds the value under a temporary key (in the same hash slot) with bounded
commands, then RENAMEs it over the real key, so a key is replaced whole and never merged
into what the target held; with the `skip`/`fail` policies RENAMENX keeps an existing key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from dcs_migration.client.capabilities import restore_version
from dcs_migration.client.resp import restore_frame
from dcs_migration.client.slots import slot_tag
from dcs_migration.formats.crc64 import crc64
from dcs_migration.formats.dump import dump_payload
from dcs_migration.formats.records import BigKeyRecord, KeyRecord

# The commands that build a value, shared with the AOF writer (formats/ is pure).
from dcs_migration.formats.rewrite import Rewrite as Rewrite

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
