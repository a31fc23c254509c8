"""How a value too big to hold is cut into pieces: its head, its units, its tail.

A big value (a 200 MB string, a hash of millions of fields) is handed out by the reader
as it arrives, never held whole. Each type's `Layout` (in `formats.types`) says where the
value's head ends and how many units follow it, how to step over whole units, and what
comes after them:

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

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.primitives import (
    RDB_ENCVAL_LZF,
    Incomplete,
    Skipper,
    read_length,
    skip_length,
    skip_string,
)

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


def string_head(buf: bytes, pos: int, end: int) -> tuple[int, int]:
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


def count_head(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    return read_length(buf, pos, end)


def after(width: int, head: HeadReader) -> HeadReader:
    """A head that starts with `width` fixed bytes (a minimum field expiry)."""

    def read(buf: bytes, pos: int, end: int) -> tuple[int, int]:
        if pos + width > end:
            raise Incomplete()
        return head(buf, pos + width, end)

    return read


# The unit loops step over short strings inline, as the types' skip loops do; reading
# past the buffer (IndexError) or a step past `end` means the unit is not all there yet,
# and the loop returns what it finished before it.


def strings(per_unit: int) -> UnitsSkipper:
    """Units of `per_unit` strings each (an element, a field and its value)."""

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


def steps(*parts: Skipper) -> UnitsSkipper:
    """Units made of the given steps, one after the other."""

    def skip(buf: bytes, pos: int, end: int, n: int, stop: int) -> tuple[int, int]:
        done = 0
        try:
            while done < n and pos < stop:
                p = pos
                for step in parts:
                    p = step(buf, p, end)
                if p > end:
                    break
                pos = p
                done += 1
        except (IndexError, Incomplete):
            pass
        return pos, done

    return skip


def fixed(width: int) -> Skipper:
    """A step over `width` raw bytes (checked against `end` by the unit loop)."""

    def skip(buf: bytes, pos: int, end: int) -> int:
        return pos + width

    return skip


ONE_STRING = Layout(string_head, None)
STRINGS = Layout(count_head, strings(1))


def split_value(
    layout: Layout, payload: bytes, piece_bytes: int
) -> tuple[bytes, list[bytes], bytes]:
    """A whole value cut as the reader cuts a big one: head, pieces of whole units of
    about `piece_bytes`, tail; so that decoding it a piece at a time holds one piece's
    elements at once. Only for layouts of units (not single strings)."""
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
