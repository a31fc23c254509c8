"""Sorted sets: a skiplist with scores as text (RDB_TYPE_ZSET) or as binary doubles
(ZSET_2, 4.0+), a ziplist (before 7.0) and a listpack (7.0+).

A sorted set decodes to its (member, score) pairs, in file order.
"""

from __future__ import annotations

from collections.abc import Iterable

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.listpack import listpack_strings
from dcs_migration.formats.primitives import (
    Cursor,
    Incomplete,
    parse_double,
    read_length,
    skip_string,
    skip_text_double,
)
from dcs_migration.formats.rdb_pieces import ONE_STRING, Layout, count_head, fixed, steps
from dcs_migration.formats.types.common import no_duplicates, pairs
from dcs_migration.formats.types.empty import EMPTY_LISTPACK, EMPTY_ZIPLIST, blob_is_one_of
from dcs_migration.formats.types.encoding import Encoding, counted
from dcs_migration.formats.ziplist import ziplist_entries


def _skip_zset(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    for _ in range(n):
        pos = skip_text_double(buf, skip_string(buf, pos, end), end)
    return pos


def _skip_zset_2(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    try:
        for _ in range(n):
            b = buf[pos]
            pos = (pos + 1 + b if b < 0x40 else skip_string(buf, pos, end)) + 8  # the score
    except IndexError:
        raise Incomplete() from None
    if pos > end:
        raise Incomplete()
    return pos


def _text_scored(c: Cursor, count: Iterable[None], base: int) -> list[tuple[bytes, float]]:
    value = [(c.string(), c.text_double()) for _ in count]
    no_duplicates([m for m, _ in value], "sorted set")
    return value


def _binary_scored(c: Cursor, count: Iterable[None], base: int) -> list[tuple[bytes, float]]:
    value = [(c.string(), c.binary_double()) for _ in count]
    no_duplicates([m for m, _ in value], "sorted set")
    return value


def _scored_pairs(items: list[bytes]) -> list[tuple[bytes, float]]:
    scored = [(m, parse_double(s, 0)) for m, s in pairs(items, "sorted set")]
    no_duplicates([m for m, _ in scored], "sorted set")
    return scored


def _ziplist(c: Cursor) -> list[tuple[bytes, float]]:
    return _scored_pairs(ziplist_entries(c.string()))


def _listpack(c: Cursor) -> list[tuple[bytes, float]]:
    return _scored_pairs(listpack_strings(c.string()))


_ziplist_empty, _ziplist_row = blob_is_one_of(frozenset({EMPTY_ZIPLIST}))
_listpack_empty, _listpack_row = blob_is_one_of(frozenset({EMPTY_LISTPACK}))

ENCODINGS = {
    T.RDB_TYPE_ZSET: counted(
        "zset",
        _skip_zset,
        Layout(count_head, steps(skip_string, skip_text_double)),
        _text_scored,
    ),
    T.RDB_TYPE_ZSET_2: counted(
        "zset", _skip_zset_2, Layout(count_head, steps(skip_string, fixed(8))), _binary_scored
    ),
    T.RDB_TYPE_ZSET_ZIPLIST: Encoding(
        "zset", skip_string, _ziplist, ONE_STRING, None, _ziplist_empty, _ziplist_row
    ),
    T.RDB_TYPE_ZSET_LISTPACK: Encoding(
        "zset", skip_string, _listpack, ONE_STRING, None, _listpack_empty, _listpack_row
    ),
}
