"""Decoding a key's value, from the bytes the reader kept, into Python values.

What each type decodes to:
- string: bytes
- list: list of bytes, head to tail
- set: list of bytes (file order)
- zset: list of (member, score)
- hash: HashValue (fields in file order, and per-field expire times)
- stream: StreamValue

A big value (a BigKeyRecord) is decoded a piece at a time by `decode_parts`: each part
holds some of the elements, in file order, so that a caller never holds it whole.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dcs_migration.formats import rdb_pieces
from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.intset import intset_members
from dcs_migration.formats.listpack import listpack_entries, listpack_strings
from dcs_migration.formats.lzf import LzfStream
from dcs_migration.formats.primitives import RDB_ENCVAL_LZF, Cursor, Incomplete, parse_double
from dcs_migration.formats.records import BigKeyRecord
from dcs_migration.formats.stream import (
    StreamEntry,
    StreamValue,
    check_stream_nodes,
    decode_stream,
    decode_stream_metadata,
    decode_stream_nodes,
)
from dcs_migration.formats.ziplist import ziplist_entries
from dcs_migration.formats.zipmap import zipmap_pairs

if TYPE_CHECKING:
    from dcs_migration.formats.records import KeyRecord

HASH_LP_NO_TTL = 0
VALKEY_EXPIRY_NONE = -1


@dataclass
class HashValue:
    """A hash: its fields and values, and the expire time of fields that have one (7.4+)."""

    fields: dict[bytes, bytes]
    field_expire_at_ms: dict[bytes, int] = field(default_factory=dict)


Value = bytes | list[bytes] | list[tuple[bytes, float]] | HashValue | StreamValue


def decode_value(record: KeyRecord) -> Value:
    """Decode a record's payload; errors name the key and the record's file offset."""
    with _naming(record):
        return _decode(record.rdb_type, record.payload, record.valkey)


@contextmanager
def _naming(record: KeyRecord | BigKeyRecord) -> Iterator[None]:
    """Errors while decoding a value name its key and its record's offset."""
    try:
        yield
    except Incomplete:
        raise FormatError(
            "value ends before its content does", offset=record.offset, key=record.key
        ) from None
    except FormatError as exc:
        raise FormatError(exc.message, offset=record.offset, key=record.key) from None


# Types whose value is a count, then that many elements (pairs, nodes, triplets).
_COUNTED = frozenset(
    {
        T.RDB_TYPE_LIST,
        T.RDB_TYPE_SET,
        T.RDB_TYPE_ZSET,
        T.RDB_TYPE_ZSET_2,
        T.RDB_TYPE_HASH,
        T.RDB_TYPE_LIST_QUICKLIST,
        T.RDB_TYPE_LIST_QUICKLIST_2,
        T.RDB_TYPE_HASH_METADATA_PRE_GA,
        T.RDB_TYPE_HASH_METADATA,
    }
)


def _decode(t: int, payload: bytes, valkey: bool) -> Value:
    p = Cursor(payload)
    value: Value
    if valkey and t == T.VALKEY_RDB_TYPE_HASH_2:
        value = _elements(t, p, p.length(), valkey, 0)
    elif t == T.RDB_TYPE_HASH_METADATA:
        min_expire = p.millis()  # field TTLs are stored relative to it
        value = _elements(t, p, p.length(), valkey, min_expire)
    elif t in _COUNTED:
        value = _elements(t, p, p.length(), valkey, 0)
    elif t == T.RDB_TYPE_STRING:
        value = p.string()
    elif t == T.RDB_TYPE_HASH_ZIPMAP:
        value = _hash(zipmap_pairs(p.string()))
    elif t == T.RDB_TYPE_LIST_ZIPLIST:
        value = ziplist_entries(p.string())
    elif t == T.RDB_TYPE_SET_INTSET:
        value = intset_members(p.string())
    elif t == T.RDB_TYPE_SET_LISTPACK:
        value = listpack_strings(p.string())
        _no_duplicates(value, "set")
    elif t == T.RDB_TYPE_ZSET_ZIPLIST:
        value = _zset_pairs(ziplist_entries(p.string()))
    elif t == T.RDB_TYPE_ZSET_LISTPACK:
        value = _zset_pairs(listpack_strings(p.string()))
    elif t == T.RDB_TYPE_HASH_ZIPLIST:
        value = _hash(_pairs(ziplist_entries(p.string()), "hash"))
    elif t == T.RDB_TYPE_HASH_LISTPACK:
        value = _hash(_pairs(listpack_strings(p.string()), "hash"))
    elif t in T.STREAM_TYPES:
        value = decode_stream(t, p.buf)
        p.pos = p.end
    elif t == T.RDB_TYPE_HASH_LISTPACK_EX or t == T.RDB_TYPE_HASH_LISTPACK_EX_PRE_GA:
        if t == T.RDB_TYPE_HASH_LISTPACK_EX:
            p.millis()  # the smallest field expire time: a hint, derived again on load
        value = _hash_listpack_ex(listpack_entries(p.string()))
    elif t == T.RDB_TYPE_MODULE_2 or t == T.RDB_TYPE_MODULE_PRE_GA:
        module = T.module_type_name(payload)
        raise FormatError(f"module value of type {module!r}: only that module can read it")
    else:
        raise FormatError(f"unknown RDB object type {t}")
    p.finish()
    return value


def _elements(t: int, p: Cursor, n: int | None, valkey: bool, min_expire: int) -> Value:
    """The elements of a counted type: `n` of them, or (None) up to the cursor's end, as
    a piece of a big value holds. `min_expire` is the base of relative field TTLs."""
    count = itertools.repeat(None, n) if n is not None else _until_end(p)
    value: Value
    if valkey and t == T.VALKEY_RDB_TYPE_HASH_2:
        value = _valkey_hash_2(p, count)
    elif t == T.RDB_TYPE_LIST or t == T.RDB_TYPE_SET:
        value = [p.string() for _ in count]
        if t == T.RDB_TYPE_SET:
            _no_duplicates(value, "set")
    elif t == T.RDB_TYPE_ZSET:
        value = [(p.string(), p.text_double()) for _ in count]
        _no_duplicates([m for m, _ in value], "sorted set")
    elif t == T.RDB_TYPE_ZSET_2:
        value = [(p.string(), p.binary_double()) for _ in count]
        _no_duplicates([m for m, _ in value], "sorted set")
    elif t == T.RDB_TYPE_HASH:
        value = _hash([(p.string(), p.string()) for _ in count])
    elif t == T.RDB_TYPE_LIST_QUICKLIST:
        items: list[bytes] = []
        for _ in count:
            items.extend(ziplist_entries(p.string()))
        value = items
    elif t == T.RDB_TYPE_LIST_QUICKLIST_2:
        value = items = []
        for _ in count:
            container = p.length()
            node = p.string()
            if container == T.QUICKLIST_NODE_CONTAINER_PLAIN:
                items.append(node)
            elif container == T.QUICKLIST_NODE_CONTAINER_PACKED:
                items.extend(listpack_strings(node))
            else:
                raise FormatError(f"quicklist node has unknown container {container}")
    elif t == T.RDB_TYPE_HASH_METADATA or t == T.RDB_TYPE_HASH_METADATA_PRE_GA:
        value = _hash_metadata(p, count, t == T.RDB_TYPE_HASH_METADATA, min_expire)
    else:
        raise FormatError(f"RDB object type {t} holds no element count")
    return value


def _until_end(p: Cursor) -> Iterator[None]:
    while p.pos < p.end:
        yield None


# -- big values ---------------------------------------------------------------------------


def decode_parts(record: KeyRecord | BigKeyRecord) -> Iterator[Value]:
    """The value in parts of whole elements, in file order: a KeyRecord's in one part, a
    big value's a piece at a time (a string's bytes, decompressed, in slices). Streams
    are decoded by `stream_parts`. Errors name the key and the record's offset."""
    t = record.rdb_type
    counted = t in _COUNTED or (record.valkey and t == T.VALKEY_RDB_TYPE_HASH_2)
    if not isinstance(record, BigKeyRecord) and not counted:
        yield decode_value(record)
        return
    with _naming(record):
        if counted:
            head, pieces = _head_and_pieces(record)
            c = Cursor(head)
            min_expire = c.millis() if t == T.RDB_TYPE_HASH_METADATA else 0
            for piece in pieces:
                yield _elements(t, Cursor(piece), None, record.valkey, min_expire)
        elif not isinstance(record, BigKeyRecord):
            raise AssertionError("a whole value of a single string is decoded above")
        elif t == T.RDB_TYPE_STRING:
            first = record.head[0]
            if first >= 0xC0 and first & 0x3F == RDB_ENCVAL_LZF:
                _, size = _lzf_lengths(record.head)
                lzf = LzfStream(size)
                for piece in record.pieces():
                    yield from lzf.feed(piece)
                lzf.close()
            else:
                yield from record.pieces()
        elif t in T.STREAM_TYPES:
            raise ValueError("streams are decoded by stream_parts")
        else:  # a value that is one blob (a listpack, a ziplist): read whole
            yield _decode(t, record.head + b"".join(record.pieces()) + record.tail, record.valkey)


def _head_and_pieces(record: KeyRecord | BigKeyRecord) -> tuple[bytes, Iterable[bytes]]:
    """A value's head and pieces: a big value's as read, a whole one's cut as the reader
    cuts a big one, so that it is decoded a piece of elements at a time too."""
    if isinstance(record, BigKeyRecord):
        return record.head, record.pieces()
    head, pieces, _ = rdb_pieces.split_value(
        record.rdb_type, record.payload, record.valkey, rdb_pieces.PIECE_BYTES
    )
    return head, pieces


def _lzf_lengths(head: bytes) -> tuple[int, int]:
    """An LZF string's compressed and uncompressed lengths, from its header bytes."""
    c = Cursor(head)
    c.pos = 1
    return c.length(), c.length()


def stream_parts(
    record: KeyRecord | BigKeyRecord,
) -> tuple[StreamValue, Iterator[list[StreamEntry]]]:
    """A stream as its metadata and groups (with no entries), then its entries in parts,
    in ID order: what rebuilding it needs first (the pending entries) comes first."""
    with _naming(record):
        if isinstance(record, BigKeyRecord):
            head, tail = record.head, record.tail
        else:
            head, _, tail = rdb_pieces.split_value(
                record.rdb_type, record.payload, record.valkey, rdb_pieces.PIECE_BYTES
            )
        meta = decode_stream_metadata(record.rdb_type, Cursor(tail))
        check_stream_nodes(meta, Cursor(head).length())
    return meta, _stream_entries(record)


def _stream_entries(record: KeyRecord | BigKeyRecord) -> Iterator[list[StreamEntry]]:
    with _naming(record):
        for piece in _head_and_pieces(record)[1]:
            entries: list[StreamEntry] = []
            decode_stream_nodes(Cursor(piece), None, entries)
            yield entries


def decode_big_value(record: BigKeyRecord) -> Value:
    """A big value decoded whole (for callers that need it so, such as the oracle)."""
    if record.rdb_type in T.STREAM_TYPES:
        meta, entry_parts = stream_parts(record)
        for entries in entry_parts:
            meta.entries.extend(entries)
        return meta
    parts = list(decode_parts(record))
    first = parts[0] if parts else b""
    if isinstance(first, bytes):
        return b"".join(p for p in parts if isinstance(p, bytes))
    if isinstance(first, HashValue):
        whole = HashValue({})
        for part in parts:
            assert isinstance(part, HashValue)
            if whole.fields.keys() & part.fields.keys():
                raise FormatError(
                    "hash holds the same field twice", offset=record.offset, key=record.key
                )
            whole.fields.update(part.fields)
            whole.field_expire_at_ms.update(part.field_expire_at_ms)
        return whole
    elements: list[Any] = []
    for part in parts:
        assert isinstance(part, list)
        elements.extend(part)
    return elements


def _no_duplicates(members: list[bytes], what: str) -> None:
    if len(set(members)) != len(members):
        raise FormatError(f"{what} holds the same member twice")


def _pairs(items: list[bytes], what: str) -> list[tuple[bytes, bytes]]:
    if len(items) % 2:
        raise FormatError(f"{what} encoding holds an odd number of elements")
    it = iter(items)
    return list(zip(it, it, strict=True))


def _zset_pairs(items: list[bytes]) -> list[tuple[bytes, float]]:
    pairs = [(m, parse_double(s, 0)) for m, s in _pairs(items, "sorted set")]
    _no_duplicates([m for m, _ in pairs], "sorted set")
    return pairs


def _hash(pairs: list[tuple[bytes, bytes]]) -> HashValue:
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise FormatError("hash holds the same field twice")
    return HashValue(fields)


def _hash_metadata(p: Cursor, count: Iterator[None], relative: bool, min_expire: int) -> HashValue:
    fields: dict[bytes, bytes] = {}
    expires: dict[bytes, int] = {}
    for _ in count:
        ttl = p.length()
        name = p.string()
        if name in fields:
            raise FormatError("hash holds the same field twice")
        fields[name] = p.string()
        if ttl:
            expires[name] = ttl + min_expire - 1 if relative else ttl
    return HashValue(fields, expires)


def _hash_listpack_ex(items: list[bytes | int]) -> HashValue:
    if len(items) % 3:
        raise FormatError("hash listpack with TTLs does not hold field, value, TTL triplets")
    fields: dict[bytes, bytes] = {}
    expires: dict[bytes, int] = {}
    for i in range(0, len(items), 3):
        name, value, ttl = items[i], items[i + 1], items[i + 2]
        name = name if type(name) is bytes else str(name).encode()
        if name in fields:
            raise FormatError("hash holds the same field twice")
        fields[name] = value if type(value) is bytes else str(value).encode()
        if type(ttl) is not int or ttl < 0:
            raise FormatError(f"hash field TTL {ttl!r} is not a time in milliseconds")
        if ttl != HASH_LP_NO_TTL:
            expires[name] = ttl
    return HashValue(fields, expires)


def _valkey_hash_2(p: Cursor, count: Iterator[None]) -> HashValue:
    fields: dict[bytes, bytes] = {}
    expires: dict[bytes, int] = {}
    for _ in count:
        name = p.string()
        if name in fields:
            raise FormatError("hash holds the same field twice")
        fields[name] = p.string()
        expire = p.millis()
        if expire < VALKEY_EXPIRY_NONE:
            raise FormatError(f"hash field expire time {expire} is negative")
        if expire != VALKEY_EXPIRY_NONE:
            expires[name] = expire
    return HashValue(fields, expires)
