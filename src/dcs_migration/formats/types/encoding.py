"""What each RDB object type says of its values: the one interface of `formats.types`.

Every type module (string, list, set, zset, hash, stream, module) describes each of its
encodings with an `Encoding`: how to step over a value without decoding it (`skip`, the
reader's hot path), how a big one is cut (`layout`), how to decode it whole or a piece
at a time, and whether it holds no element (Redis drops such a key when it loads a file).
`formats.types` gathers them in tables by type byte.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

from dcs_migration.formats.primitives import Cursor, Skipper
from dcs_migration.formats.rdb_pieces import Layout
from dcs_migration.formats.types.empty import COUNT_IS_ZERO, NEVER_EMPTY, count_is_zero

if TYPE_CHECKING:
    from dcs_migration.formats.types.hash import HashValue
    from dcs_migration.formats.types.stream import StreamValue

Value: TypeAlias = "bytes | list[bytes] | list[tuple[bytes, float]] | HashValue | StreamValue"
"""What a value decodes to: a string's bytes; a list's elements, head to tail; a set's
members (file order); a sorted set's (member, score) pairs; a HashValue; a StreamValue."""

# A whole value, from a cursor at its first byte (the caller checks that it ends there).
Decoder = Callable[[Cursor], Value]
# A big value's head and its pieces -> its elements, a part per piece, in file order.
PiecesDecoder = Callable[[bytes, Iterable[bytes]], Iterator[Value]]
# (buf, value start, value end) -> whether the value holds no element.
EmptyCheck = Callable[[bytes, int, int], bool]
# The elements a cursor holds (`count` of them) -> a value; the int is what the value's
# head says of them all (a hash's minimum field expiry), 0 for most.
ElementsDecoder = Callable[[Cursor, Iterable[None], int], Value]
HeadBase = Callable[[Cursor], int]


class Encoding(NamedTuple):
    """One RDB object type, as a reader and a decoder need it.

    `layout` is None for a value that is never handed out in pieces (a module's: only the
    module knows its structure). `decode_pieces` decodes a big value a piece at a time;
    None when it cannot (a stream has its own `stream_parts`; a value of one blob is
    decoded whole). `maybe_empty` holds a code (see `types.empty`) per first byte of the
    value: it rules out almost every value before `is_empty` is asked.
    """

    type_name: str
    skip: Skipper
    decode: Decoder
    layout: Layout | None
    decode_pieces: PiecesDecoder | None = None
    is_empty: EmptyCheck | None = None
    maybe_empty: bytes = NEVER_EMPTY


def _no_base(c: Cursor) -> int:
    return 0


def until_end(c: Cursor) -> Iterator[None]:
    """A count for a piece of a big value: its elements run to the cursor's end."""
    while c.pos < c.end:
        yield None


def counted(
    type_name: str,
    skip: Skipper,
    layout: Layout,
    elements: ElementsDecoder,
    *,
    head_base: HeadBase = _no_base,
    is_empty: EmptyCheck = count_is_zero,
    maybe_empty: bytes = COUNT_IS_ZERO,
) -> Encoding:
    """An encoding whose value is an element count (after the fixed prefix `head_base`
    reads), then that many elements, pairs or nodes: decoded whole, or a piece at a time."""

    def decode(c: Cursor) -> Value:
        base = head_base(c)
        return elements(c, itertools.repeat(None, c.length()), base)

    def decode_pieces(head: bytes, pieces: Iterable[bytes]) -> Iterator[Value]:
        base = head_base(Cursor(head))
        for piece in pieces:
            c = Cursor(piece)
            yield elements(c, until_end(c), base)

    return Encoding(type_name, skip, decode, layout, decode_pieces, is_empty, maybe_empty)
