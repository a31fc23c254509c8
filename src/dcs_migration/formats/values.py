"""Decoding a key's value, from the bytes the reader kept, into Python values.

What each type decodes to:
- string: bytes
- list: list of bytes, head to tail
- set: list of bytes (file order)
- zset: list of (member, score)
- hash: HashValue (fields in file order, and per-field expire times)
- stream: StreamValue
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.intset import intset_members
from dcs_migration.formats.listpack import listpack_entries, listpack_strings
from dcs_migration.formats.primitives import Cursor, Incomplete, parse_double
from dcs_migration.formats.stream import StreamValue, decode_stream
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
    try:
        return _decode(record.rdb_type, record.payload, record.valkey)
    except Incomplete:
        raise FormatError(
            "value ends before its content does", offset=record.offset, key=record.key
        ) from None
    except FormatError as exc:
        raise FormatError(exc.message, offset=record.offset, key=record.key) from None


def _decode(t: int, payload: bytes, valkey: bool) -> Value:
    p = Cursor(payload)
    value: Value
    if t == T.RDB_TYPE_STRING:
        value = p.string()
    elif t == T.RDB_TYPE_LIST or t == T.RDB_TYPE_SET:
        value = [p.string() for _ in range(p.length())]
        if t == T.RDB_TYPE_SET:
            _no_duplicates(value, "set")
    elif t == T.RDB_TYPE_ZSET:
        value = [(p.string(), p.text_double()) for _ in range(p.length())]
        _no_duplicates([m for m, _ in value], "sorted set")
    elif t == T.RDB_TYPE_ZSET_2:
        value = [(p.string(), p.binary_double()) for _ in range(p.length())]
        _no_duplicates([m for m, _ in value], "sorted set")
    elif t == T.RDB_TYPE_HASH:
        value = _hash([(p.string(), p.string()) for _ in range(p.length())])
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
    elif t == T.RDB_TYPE_LIST_QUICKLIST:
        items: list[bytes] = []
        for _ in range(p.length()):
            items.extend(ziplist_entries(p.string()))
        value = items
    elif t == T.RDB_TYPE_LIST_QUICKLIST_2:
        value = items = []
        for _ in range(p.length()):
            container = p.length()
            node = p.string()
            if container == T.QUICKLIST_NODE_CONTAINER_PLAIN:
                items.append(node)
            elif container == T.QUICKLIST_NODE_CONTAINER_PACKED:
                items.extend(listpack_strings(node))
            else:
                raise FormatError(f"quicklist node has unknown container {container}")
    elif t in (
        T.RDB_TYPE_STREAM_LISTPACKS,
        T.RDB_TYPE_STREAM_LISTPACKS_2,
        T.RDB_TYPE_STREAM_LISTPACKS_3,
        T.RDB_TYPE_STREAM_LISTPACKS_4,
    ):
        value = decode_stream(t, p.buf)
        p.pos = p.end
    elif valkey and t == T.VALKEY_RDB_TYPE_HASH_2:
        value = _valkey_hash_2(p)
    elif t == T.RDB_TYPE_HASH_METADATA or t == T.RDB_TYPE_HASH_METADATA_PRE_GA:
        value = _hash_metadata(p, t == T.RDB_TYPE_HASH_METADATA)
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


def _hash_metadata(p: Cursor, relative: bool) -> HashValue:
    min_expire = p.millis() if relative else 0
    fields: dict[bytes, bytes] = {}
    expires: dict[bytes, int] = {}
    for _ in range(p.length()):
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


def _valkey_hash_2(p: Cursor) -> HashValue:
    fields: dict[bytes, bytes] = {}
    expires: dict[bytes, int] = {}
    for _ in range(p.length()):
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
