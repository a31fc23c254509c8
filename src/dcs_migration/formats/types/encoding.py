"""What each RDB object type says of its values: the one interface of `formats.types`.

Every type module (strings, lists, sets, zsets, hashes, streams, modules) describes each of its
encodings with an `Encoding`: how to step over a value without decoding it (`skip`, the
reader's hot path), how a big one is cut (`layout`), how to decode it whole or a piece
at a time, and whether it holds no element (Redis drops such a key when it loads a file).
`formats.types` gathers them in tables by type byte.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, NamedTuple, TypeVar

from dcs_migration.formats.primitives import Cursor, Skipper
from dcs_migration.formats.rdb_pieces import Layout
from dcs_migration.formats.types.empty import COUNT_IS_ZERO, NEVER_EMPTY, count_is_zero

V = TypeVar("V", covariant=True)  # what a type's values decode to
E = TypeVar("E")

# (buf, value start, value end) -> whether the value holds no element.
EmptyCheck = Callable[[bytes, int, int], bool]
# What a value's head says of all its elements (a hash's minimum field expiry), 0 for most.
HeadBase = Callable[[Cursor], int]


class Encoding(NamedTuple, Generic[V]):
    """One RDB object type, as a reader and a decoder need it.

    `decode` reads a whole value from a cursor at its first byte (the caller checks that
    the value ends where the cursor stops).
    `layout` is None for a value that is never handed out in pieces (a module's: only the
    module knows its structure). `decode_pieces` decodes a big value a piece at a time;
    None when it cannot (a stream has its own `stream_parts`; a value of one blob is
    decoded whole). `maybe_empty` holds a code (see `types.empty`) per first byte of the
    value: it rules out almost every value before `is_empty` is asked.
    """

    type_name: str
    skip: Skipper
    decode: Callable[[Cursor], V]
    layout: Layout | None
    # A big value's head and its pieces -> a part of its elements per piece, in file order.
    decode_pieces: Callable[[bytes, Iterable[bytes]], Iterator[V]] | None = None
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
    elements: Callable[[Cursor, Iterable[None], int], E],
    *,
    head_base: HeadBase = _no_base,
    is_empty: EmptyCheck = count_is_zero,
    maybe_empty: bytes = COUNT_IS_ZERO,
) -> Encoding[E]:
    """An encoding whose value is an element count (after the fixed prefix `head_base`
    reads), then that many elements, pairs or nodes: decoded whole, or a piece at a time.
    `elements` decodes the elements a cursor holds (`count` of them), given the base."""

    def decode(c: Cursor) -> E:
        base = head_base(c)
        return elements(c, itertools.repeat(None, c.length()), base)

    def decode_pieces(head: bytes, pieces: Iterable[bytes]) -> Iterator[E]:
        base = head_base(Cursor(head))
        for piece in pieces:
            c = Cursor(piece)
            yield elements(c, until_end(c), base)

    return Encoding(type_name, skip, decode, layout, decode_pieces, is_empty, maybe_empty)
