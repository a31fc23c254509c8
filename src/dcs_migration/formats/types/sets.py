"""Sets: a hash table of strings (RDB_TYPE_SET), an intset (small sets of integers) and
a listpack (7.2+).

A set decodes to its members, in file order.
"""

from __future__ import annotations

from collections.abc import Iterable

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.intset import intset_members
from dcs_migration.formats.listpack import listpack_strings
from dcs_migration.formats.primitives import Cursor, skip_string
from dcs_migration.formats.rdb_pieces import ONE_STRING, STRINGS
from dcs_migration.formats.types.common import no_duplicates, skip_strings
from dcs_migration.formats.types.empty import EMPTY_LISTPACK, blob_is_one_of
from dcs_migration.formats.types.encoding import Encoding, counted

_EMPTY_INTSETS = frozenset(
    w + b"\x00\x00\x00\x00" for w in (b"\x02\x00\x00\x00", b"\x04\x00\x00\x00", b"\x08\x00\x00\x00")
)


def _members(c: Cursor, count: Iterable[None], base: int) -> list[bytes]:
    members = [c.string() for _ in count]
    no_duplicates(members, "set")
    return members


def _intset(c: Cursor) -> list[bytes]:
    return intset_members(c.string())


def _listpack(c: Cursor) -> list[bytes]:
    members = listpack_strings(c.string())
    no_duplicates(members, "set")
    return members


_intset_empty, _intset_row = blob_is_one_of(_EMPTY_INTSETS)
_listpack_empty, _listpack_row = blob_is_one_of(frozenset({EMPTY_LISTPACK}))

ENCODINGS = {
    T.RDB_TYPE_SET: counted("set", skip_strings, STRINGS, _members),
    T.RDB_TYPE_SET_INTSET: Encoding(
        "set", skip_string, _intset, ONE_STRING, None, _intset_empty, _intset_row
    ),
    T.RDB_TYPE_SET_LISTPACK: Encoding(
        "set", skip_string, _listpack, ONE_STRING, None, _listpack_empty, _listpack_row
    ),
}
