"""How a value too big to hold is cut into pieces: its head, its elements, its tail.

A big value (a 200 MB string, a hash of millions of fields) is handed out by the reader
as it arrives, never held whole. Each layout says where the value's head ends and how many
units follow it, how to step over whole units, and what comes after them:

- a value that is one string (a plain or LZF string, a ziplist, a listpack, an intset):
  the head is the string's header and the units are its raw bytes;
- an aggregate (a list, set, sorted set or hash in its element-by-element encodings, a
  quicklist): the head is the element count and the units are elements, pairs or nodes;
- a stream: the head is the node count, the units are nodes, and the tail is the
  metadata and consumer groups.

Pieces are cut at unit boundaries once they reach a size, so where they fall depends on
the value alone, never on how its bytes arrived. Module values have no layout: only the
module knows their structure, and they are read whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.primitives import (
    RDB_ENCVAL_LZF,
    Incomplete,
    read_length,
    skip_length,
    skip_string,
    skip_text_double,
)
from dcs_migration.formats.rdb_skip import Skipper, stream_tail_skipper

BIG_VALUE_BYTES = 8 << 20  # values this big or bigger are handed out in pieces
PIECE_BYTES = 1 << 20  # a piece ends at the first unit boundary past this many bytes

# (buf, pos, end) -> (units, position after the head)
HeadReader = Callable[[bytes, int, int], tuple[int, int]]
# (buf, pos, end, at most n units, stop once pos reaches this) -> (position, units done)
UnitsSkipper = Callable[[bytes, int, int, int, int], tuple[int, int]]


@dataclass(frozen=True)
class Layout:
    head: HeadReader
    units: UnitsSkipper | None  # None: the units are raw bytes
    tail: Skipper | None = None

    @property
    def raw(self) -> bool:
        return self.units is None


def _string_head(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A string's header: its raw bytes follow (an LZF string's compressed bytes)."""
    if pos >= end:
        raise Incomplete()
    b = buf[pos]
    if b < 0xC0:
        return read_length(buf, pos, end)
    if b & 0x3F == RDB_ENCVAL_LZF:
        clen, p = read_length(buf, pos + 1, end)
        return clen, skip_length(buf, p, end)
    # An integer-encoded string: a few bytes after its header byte.
    return skip_string(buf, pos, end) - pos - 1, pos + 1


def _count_head(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    return read_length(buf, pos, end)


def _after(width: int, head: HeadReader) -> HeadReader:
    """A head that starts with `width` fixed bytes (a minimum field expiry)."""

    def read(buf: bytes, pos: int, end: int) -> tuple[int, int]:
        if pos + width > end:
            raise Incomplete()
        return head(buf, pos + width, end)

    return read


# The unit loops step over short strings inline, as rdb_skip's element loops do; reading
# past the buffer (IndexError) or a step past `end` means the unit is not all there yet,
# and the loop returns what it finished before it.


def _strings(per_unit: int) -> UnitsSkipper:
    def skip(buf: bytes, pos: int, end: int, n: int, stop: int) -> tuple[int, int]:
        done = 0
        try:
            while done < n and pos < stop:
                p = pos
                for _ in range(per_unit):
                    b = buf[p]
                    p = p + 1 + b if b < 0x40 else skip_string(buf, p, end)
                if p > end:
                    break
                pos = p
                done += 1
        except (IndexError, Incomplete):
            pass
        return pos, done

    return skip


def _steps(*steps: Skipper) -> UnitsSkipper:
    """Units made of the given steps, one after the other."""

    def skip(buf: bytes, pos: int, end: int, n: int, stop: int) -> tuple[int, int]:
        done = 0
        try:
            while done < n and pos < stop:
                p = pos
                for step in steps:
                    p = step(buf, p, end)
                if p > end:
                    break
                pos = p
                done += 1
        except (IndexError, Incomplete):
            pass
        return pos, done

    return skip


def _fixed(width: int) -> Skipper:
    def skip(buf: bytes, pos: int, end: int) -> int:
        return pos + width

    return skip


def _quicklist_container(buf: bytes, pos: int, end: int) -> int:
    container, p = read_length(buf, pos, end)
    if container not in (T.QUICKLIST_NODE_CONTAINER_PACKED, T.QUICKLIST_NODE_CONTAINER_PLAIN):
        raise FormatError(f"quicklist node has unknown container {container}", offset=pos)
    return p


_ONE_STRING = Layout(_string_head, None)
_STRINGS = Layout(_count_head, _strings(1))

LAYOUTS: dict[int, Layout] = {
    T.RDB_TYPE_STRING: _ONE_STRING,
    T.RDB_TYPE_LIST: _STRINGS,
    T.RDB_TYPE_SET: _STRINGS,
    T.RDB_TYPE_ZSET: Layout(_count_head, _steps(skip_string, skip_text_double)),
    T.RDB_TYPE_HASH: Layout(_count_head, _strings(2)),
    T.RDB_TYPE_ZSET_2: Layout(_count_head, _steps(skip_string, _fixed(8))),
    T.RDB_TYPE_HASH_ZIPMAP: _ONE_STRING,
    T.RDB_TYPE_LIST_ZIPLIST: _ONE_STRING,
    T.RDB_TYPE_SET_INTSET: _ONE_STRING,
    T.RDB_TYPE_ZSET_ZIPLIST: _ONE_STRING,
    T.RDB_TYPE_HASH_ZIPLIST: _ONE_STRING,
    T.RDB_TYPE_LIST_QUICKLIST: _STRINGS,
    T.RDB_TYPE_HASH_LISTPACK: _ONE_STRING,
    T.RDB_TYPE_ZSET_LISTPACK: _ONE_STRING,
    T.RDB_TYPE_LIST_QUICKLIST_2: Layout(_count_head, _steps(_quicklist_container, skip_string)),
    T.RDB_TYPE_SET_LISTPACK: _ONE_STRING,
    T.RDB_TYPE_HASH_METADATA_PRE_GA: Layout(
        _count_head, _steps(skip_length, skip_string, skip_string)
    ),
    T.RDB_TYPE_HASH_LISTPACK_EX_PRE_GA: _ONE_STRING,
    T.RDB_TYPE_HASH_METADATA: Layout(
        _after(8, _count_head), _steps(skip_length, skip_string, skip_string)
    ),
    T.RDB_TYPE_HASH_LISTPACK_EX: Layout(_after(8, _string_head), None),
    **{t: Layout(_count_head, _strings(2), stream_tail_skipper(t)) for t in T.STREAM_TYPES},
}
VALKEY_LAYOUTS: dict[int, Layout] = {
    **{t: layout for t, layout in LAYOUTS.items() if t in T.VALKEY_TYPES},
    T.VALKEY_RDB_TYPE_HASH_2: Layout(_count_head, _steps(skip_string, skip_string, _fixed(8))),
}


def split_value(
    rdb_type: int, payload: bytes, valkey: bool, piece_bytes: int
) -> tuple[bytes, list[bytes], bytes]:
    """A whole value cut as the reader cuts a big one: head, pieces of whole units of
    about `piece_bytes`, tail; so that decoding it a piece at a time holds one piece's
    elements at once. Only for layouts of units (not single strings)."""
    layout = (VALKEY_LAYOUTS if valkey else LAYOUTS)[rdb_type]
    assert layout.units is not None
    end = len(payload)
    left, pos = layout.head(payload, 0, end)
    head = payload[:pos]
    pieces = []
    while left:
        nxt, done = layout.units(payload, pos, end, left, pos + piece_bytes)
        if not done:
            raise Incomplete()
        pieces.append(payload[pos:nxt])
        left -= done
        pos = nxt
    tail_end = pos if layout.tail is None else layout.tail(payload, pos, end)
    if tail_end != end:
        raise FormatError(f"{end - tail_end} unexpected bytes after the value")
    return head, pieces, payload[pos:]
