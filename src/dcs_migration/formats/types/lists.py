"""Lists: a linked list of strings (RDB_TYPE_LIST), a ziplist (before Redis 3.2), a
quicklist of ziplists (3.2 to 6.2) and a quicklist of listpacks or plain nodes (7.0+).

A list decodes to its elements, head to tail.
"""

from __future__ import annotations

from collections.abc import Iterable

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.listpack import listpack_strings
from dcs_migration.formats.primitives import (
    Cursor,
    Incomplete,
    read_length,
    skip_string,
)
from dcs_migration.formats.rdb_pieces import ONE_STRING, STRINGS, Layout, count_head, steps
from dcs_migration.formats.types.common import skip_strings
from dcs_migration.formats.types.empty import (
    ALWAYS_ASK,
    ASK_IF_ONE_TINY_NODE,
    EMPTY_LISTPACK,
    EMPTY_ZIPLIST,
    blob_is_one_of,
    is_empty_blob,
)
from dcs_migration.formats.types.encoding import Encoding, counted
from dcs_migration.formats.ziplist import ziplist_entries

_CONTAINERS = (T.QUICKLIST_NODE_CONTAINER_PACKED, T.QUICKLIST_NODE_CONTAINER_PLAIN)
_EMPTY_ZIPLISTS = frozenset({EMPTY_ZIPLIST})
_EMPTY_LISTPACKS = frozenset({EMPTY_LISTPACK})


def _skip_quicklist_2(buf: bytes, pos: int, end: int) -> int:
    n, pos = read_length(buf, pos, end)
    try:
        for _ in range(n):
            container = buf[pos]  # 1 or 2: a one-byte length
            if container not in _CONTAINERS:
                container, _ = read_length(buf, pos, end)
                raise FormatError(f"quicklist node has unknown container {container}")
            b = buf[pos + 1]
            pos = pos + 2 + b if b < 0x40 else skip_string(buf, pos + 1, end)
    except IndexError:
        raise Incomplete() from None
    if pos > end:
        raise Incomplete()
    return pos


def _quicklist_container(buf: bytes, pos: int, end: int) -> int:
    container, p = read_length(buf, pos, end)
    if container not in _CONTAINERS:
        raise FormatError(f"quicklist node has unknown container {container}", offset=pos)
    return p


def _elements(c: Cursor, count: Iterable[None], base: int) -> list[bytes]:
    return [c.string() for _ in count]


def _ziplist_nodes(c: Cursor, count: Iterable[None], base: int) -> list[bytes]:
    items: list[bytes] = []
    for _ in count:
        items.extend(ziplist_entries(c.string()))
    return items


def _quicklist_2_nodes(c: Cursor, count: Iterable[None], base: int) -> list[bytes]:
    items: list[bytes] = []
    for _ in count:
        container = c.length()
        node = c.string()
        if container == T.QUICKLIST_NODE_CONTAINER_PLAIN:
            items.append(node)
        elif container == T.QUICKLIST_NODE_CONTAINER_PACKED:
            items.extend(listpack_strings(node))
        else:
            raise FormatError(f"quicklist node has unknown container {container}")
    return items


def _quicklist_is_empty(buf: bytes, pos: int, end: int) -> bool:
    """Whether every node of a quicklist of ziplists is an empty one."""
    nodes, pos = read_length(buf, pos, end)
    for _ in range(nodes):
        if not is_empty_blob(buf, pos, end, _EMPTY_ZIPLISTS):
            return False
        pos = skip_string(buf, pos, end)
    return True


def _quicklist_2_is_empty(buf: bytes, pos: int, end: int) -> bool:
    """Whether every node of a quicklist 2 is an empty listpack."""
    nodes, pos = read_length(buf, pos, end)
    for _ in range(nodes):
        container, pos = read_length(buf, pos, end)
        if container == T.QUICKLIST_NODE_CONTAINER_PLAIN:
            return False
        if not is_empty_blob(buf, pos, end, _EMPTY_LISTPACKS):
            return False
        pos = skip_string(buf, pos, end)
    return True


def _ziplist(c: Cursor) -> list[bytes]:
    return ziplist_entries(c.string())


_ziplist_empty, _ziplist_row = blob_is_one_of(_EMPTY_ZIPLISTS)
# One node: only a tiny packed one could be empty (the reader checks that inline).
_QUICKLIST_2_ROW = ALWAYS_ASK[:1] + bytes([ASK_IF_ONE_TINY_NODE]) + ALWAYS_ASK[2:]

ENCODINGS = {
    T.RDB_TYPE_LIST: counted("list", skip_strings, STRINGS, _elements),
    T.RDB_TYPE_LIST_ZIPLIST: Encoding(
        "list", skip_string, _ziplist, ONE_STRING, None, _ziplist_empty, _ziplist_row
    ),
    T.RDB_TYPE_LIST_QUICKLIST: counted(
        "list",
        skip_strings,
        STRINGS,
        _ziplist_nodes,
        is_empty=_quicklist_is_empty,
        maybe_empty=ALWAYS_ASK,
    ),
    T.RDB_TYPE_LIST_QUICKLIST_2: counted(
        "list",
        _skip_quicklist_2,
        Layout(count_head, steps(_quicklist_container, skip_string)),
        _quicklist_2_nodes,
        is_empty=_quicklist_2_is_empty,
        maybe_empty=_QUICKLIST_2_ROW,
    ),
}
