"""Each RDB object type's layout, one module per Redis type, as RedisShake keeps them:
strings, lists, sets, zsets, hashes, streams, modules. The encodings they share (listpack,
ziplist, intset, zipmap) are codecs of their own in `formats`.

Here the types' `Encoding`s are gathered into tables by type byte, one per flavour of
file: Redis's, and Valkey's (files starting VALKEY), which gives 22 and up other
meanings. The reader and the decoder look a type up once and call what it holds.
"""

from __future__ import annotations

from typing import NamedTuple

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.primitives import Skipper
from dcs_migration.formats.rdb_pieces import Layout
from dcs_migration.formats.types import hashes, lists, modules, sets, streams, strings, zsets
from dcs_migration.formats.types.encoding import EmptyCheck, Encoding
from dcs_migration.formats.types.hashes import HashValue
from dcs_migration.formats.types.streams import StreamValue

Value = bytes | list[bytes] | list[tuple[bytes, float]] | HashValue | StreamValue
"""What a value decodes to: a string's bytes; a list's elements, head to tail; a set's
members (file order); a sorted set's (member, score) pairs; a HashValue; a StreamValue."""

REDIS_ENCODINGS: dict[int, Encoding[Value]] = {
    **strings.ENCODINGS,
    **lists.ENCODINGS,
    **sets.ENCODINGS,
    **zsets.ENCODINGS,
    **hashes.ENCODINGS,
    **modules.ENCODINGS,
    **streams.ENCODINGS,
}
# Types a Valkey file may hold: Redis's up to 21, and its own.
VALKEY_ENCODINGS: dict[int, Encoding[Value]] = {
    **{t: e for t, e in REDIS_ENCODINGS.items() if t <= T.RDB_TYPE_STREAM_LISTPACKS_3},
    **hashes.VALKEY_ENCODINGS,
}


class Flavour(NamedTuple):
    """The tables of one flavour of file, by type byte, for the reader's hot loop."""

    encodings: dict[int, Encoding[Value]]
    skip: dict[int, Skipper]
    layouts: dict[int, Layout]
    is_empty: dict[int, EmptyCheck]
    # A `types.empty` code per (type, first byte of the value), at type * 256 + byte.
    maybe_empty: bytes


def _flavour(encodings: dict[int, Encoding[Value]]) -> Flavour:
    maybe_empty = bytearray(256 * 256)
    for t, e in encodings.items():
        maybe_empty[t * 256 : (t + 1) * 256] = e.maybe_empty
    return Flavour(
        encodings,
        {t: e.skip for t, e in encodings.items()},
        {t: e.layout for t, e in encodings.items() if e.layout is not None},
        {t: e.is_empty for t, e in encodings.items() if e.is_empty is not None},
        bytes(maybe_empty),
    )


REDIS = _flavour(REDIS_ENCODINGS)
VALKEY = _flavour(VALKEY_ENCODINGS)

_TYPE_NAMES = {
    **{(False, t): e.type_name for t, e in REDIS_ENCODINGS.items()},
    **{(True, t): e.type_name for t, e in VALKEY_ENCODINGS.items()},
}


def encoding_of(rdb_type: int, valkey: bool) -> Encoding[Value] | None:
    """The encoding of a type byte in a Redis or Valkey file (None: an unknown type)."""
    if valkey:
        return VALKEY_ENCODINGS.get(rdb_type) or REDIS_ENCODINGS.get(rdb_type)
    return REDIS_ENCODINGS.get(rdb_type)


def type_name(rdb_type: int, valkey: bool) -> str:
    """The Redis type as TYPE answers it: string, list, set, zset, hash, stream or module."""
    return _TYPE_NAMES.get((valkey, rdb_type)) or _TYPE_NAMES[(False, rdb_type)]


def is_empty(rdb_type: int, buf: bytes, vstart: int, vend: int, valkey: bool = False) -> bool:
    """Whether the value in buf[vstart:vend] holds no element (decided from headers)."""
    check = (VALKEY if valkey else REDIS).is_empty.get(rdb_type)
    return check is not None and check(buf, vstart, vend)


__all__ = [
    "REDIS",
    "REDIS_ENCODINGS",
    "VALKEY",
    "VALKEY_ENCODINGS",
    "Encoding",
    "Flavour",
    "Value",
    "encoding_of",
    "is_empty",
    "type_name",
]
