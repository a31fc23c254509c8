"""Hashes: a hash table of field/value pairs (RDB_TYPE_HASH), a zipmap (before 2.6), a
ziplist (before 7.0), a listpack (7.0+), and the encodings with field TTLs: Redis 7.4's
metadata hash and listpack-ex (and their release-candidate forms), Valkey's hash 2.

A hash decodes to a HashValue: fields in file order, and the expire time of each field
that has one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.listpack import listpack_entries, listpack_strings
from dcs_migration.formats.primitives import (
    Cursor,
    Incomplete,
    read_length,
    skip_length,
    skip_string,
)
from dcs_migration.formats.rdb_pieces import (
    ONE_STRING,
    Layout,
    after,
    count_head,
    fixed,
    steps,
    string_head,
    strings,
)
from dcs_migration.formats.types.common import pairs, prefixed, skip_string_pairs
from dcs_migration.formats.types.empty import (
    ALWAYS_ASK,
    EMPTY_LISTPACK,
    EMPTY_ZIPLIST,
    blob_is_one_of,
)
from dcs_migration.formats.types.encoding import Encoding, counted
from dcs_migration.formats.ziplist import ziplist_entries
from dcs_migration.formats.zipmap import zipmap_pairs

HASH_LP_NO_TTL = 0
VALKEY_EXPIRY_NONE = -1
_MIN_EXPIRE_BYTES = 8  # 7.4's hashes with field TTLs start with their smallest expiry


@dataclass
class HashValue:
    """A hash: its fields and values, and the expire time of fields that have one (7.4+)."""

    fields: dict[bytes, bytes]
    field_expire_at_ms: dict[bytes, int] = field(default_factory=dict)


def _hash(field_pairs: list[tuple[bytes, bytes]]) -> HashValue:
    fields = dict(field_pairs)
    if len(fields) != len(field_pairs):
        raise FormatError("hash holds the same field twice")
    return HashValue(fields)


# -- skipping ----------------------------------------------------------------------------


def _skip_metadata_fields(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    for _ in range(n):
        pos = skip_length(buf, pos, end)  # the field's TTL
        pos = skip_string(buf, skip_string(buf, pos, end), end)
    return pos


def _skip_valkey_hash_2(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    for _ in range(n):
        pos = skip_string(buf, skip_string(buf, pos, end), end) + 8  # field, value, expiry
        if pos > end:
            raise Incomplete()
    return pos


# -- decoding ----------------------------------------------------------------------------


def _pairs(c: Cursor, count: Iterable[None], base: int) -> HashValue:
    return _hash([(c.string(), c.string()) for _ in count])


def _zipmap(c: Cursor) -> HashValue:
    return _hash(zipmap_pairs(c.string()))


def _ziplist(c: Cursor) -> HashValue:
    return _hash(pairs(ziplist_entries(c.string()), "hash"))


def _listpack(c: Cursor) -> HashValue:
    return _hash(pairs(listpack_strings(c.string()), "hash"))


def _metadata_fields(relative: bool) -> Callable[[Cursor, Iterable[None], int], HashValue]:
    """Fields with a TTL each (0: none); in 7.4 relative to the hash's smallest expiry."""

    def decode(c: Cursor, count: Iterable[None], min_expire: int) -> HashValue:
        fields: dict[bytes, bytes] = {}
        expires: dict[bytes, int] = {}
        for _ in count:
            ttl = c.length()
            name = c.string()
            if name in fields:
                raise FormatError("hash holds the same field twice")
            fields[name] = c.string()
            if ttl:
                expires[name] = ttl + min_expire - 1 if relative else ttl
        return HashValue(fields, expires)

    return decode


def _min_expire(c: Cursor) -> int:
    return c.millis()  # field TTLs are stored relative to it


def _listpack_ex(items: list[bytes | int]) -> HashValue:
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


def _listpack_ex_pre_ga(c: Cursor) -> HashValue:
    return _listpack_ex(listpack_entries(c.string()))


def _listpack_ex_ga(c: Cursor) -> HashValue:
    c.millis()  # the smallest field expire time: a hint, derived again on load
    return _listpack_ex(listpack_entries(c.string()))


def _valkey_fields(c: Cursor, count: Iterable[None], base: int) -> HashValue:
    fields: dict[bytes, bytes] = {}
    expires: dict[bytes, int] = {}
    for _ in count:
        name = c.string()
        if name in fields:
            raise FormatError("hash holds the same field twice")
        fields[name] = c.string()
        expire = c.millis()
        if expire < VALKEY_EXPIRY_NONE:
            raise FormatError(f"hash field expire time {expire} is negative")
        if expire != VALKEY_EXPIRY_NONE:
            expires[name] = expire
    return HashValue(fields, expires)


def _metadata_is_empty(buf: bytes, vstart: int, vend: int) -> bool:
    return buf[vstart + _MIN_EXPIRE_BYTES] == 0


_EMPTY_LISTPACKS = frozenset({EMPTY_LISTPACK})
_zipmap_empty, _zipmap_row = blob_is_one_of(frozenset({b"\x00\xff"}))
_ziplist_empty, _ziplist_row = blob_is_one_of(frozenset({EMPTY_ZIPLIST}))
_listpack_empty, _listpack_row = blob_is_one_of(_EMPTY_LISTPACKS)
_listpack_ex_empty, _listpack_ex_row = blob_is_one_of(_EMPTY_LISTPACKS, _MIN_EXPIRE_BYTES)
_METADATA_FIELDS = steps(skip_length, skip_string, skip_string)

ENCODINGS = {
    T.RDB_TYPE_HASH: counted("hash", skip_string_pairs, Layout(count_head, strings(2)), _pairs),
    T.RDB_TYPE_HASH_ZIPMAP: Encoding(
        "hash", skip_string, _zipmap, ONE_STRING, None, _zipmap_empty, _zipmap_row
    ),
    T.RDB_TYPE_HASH_ZIPLIST: Encoding(
        "hash", skip_string, _ziplist, ONE_STRING, None, _ziplist_empty, _ziplist_row
    ),
    T.RDB_TYPE_HASH_LISTPACK: Encoding(
        "hash", skip_string, _listpack, ONE_STRING, None, _listpack_empty, _listpack_row
    ),
    T.RDB_TYPE_HASH_METADATA_PRE_GA: counted(
        "hash",
        _skip_metadata_fields,
        Layout(count_head, _METADATA_FIELDS),
        _metadata_fields(relative=False),
    ),
    T.RDB_TYPE_HASH_LISTPACK_EX_PRE_GA: Encoding(
        "hash", skip_string, _listpack_ex_pre_ga, ONE_STRING, None, _listpack_empty, _listpack_row
    ),
    T.RDB_TYPE_HASH_METADATA: counted(
        "hash",
        prefixed(_MIN_EXPIRE_BYTES, _skip_metadata_fields),
        Layout(after(_MIN_EXPIRE_BYTES, count_head), _METADATA_FIELDS),
        _metadata_fields(relative=True),
        head_base=_min_expire,
        is_empty=_metadata_is_empty,
        maybe_empty=ALWAYS_ASK,
    ),
    T.RDB_TYPE_HASH_LISTPACK_EX: Encoding(
        "hash",
        prefixed(_MIN_EXPIRE_BYTES, skip_string),
        _listpack_ex_ga,
        Layout(after(_MIN_EXPIRE_BYTES, string_head), None),
        None,
        _listpack_ex_empty,
        _listpack_ex_row,
    ),
}

# Valkey (files starting VALKEY) gives type 22 a meaning of its own.
VALKEY_ENCODINGS = {
    T.VALKEY_RDB_TYPE_HASH_2: counted(
        "hash",
        _skip_valkey_hash_2,
        Layout(count_head, steps(skip_string, skip_string, fixed(8))),
        _valkey_fields,
    ),
}
