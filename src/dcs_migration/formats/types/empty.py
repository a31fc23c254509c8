"""Values that hold no element: Redis drops such a key when it loads a file, and so
does the reader (counted in `empty_keys_dropped`).

The reader asks a type's `is_empty` only when the type's `maybe_empty` row, indexed by
the value's first byte, does not rule the value out: one byte per (type, first byte)
pair, so that almost every value costs one index, and most of the rest a look at the
next few bytes (the ASK_IF_ codes, which the reader checks inline).
"""

from __future__ import annotations

from collections.abc import Callable

from dcs_migration.formats.primitives import read_length, read_string

# What a `maybe_empty` row says of a value by its first byte.
NOT_EMPTY = 0
ASK = 1  # is_empty decides
ASK_IF_TINY_LZF = 2  # an LZF blob: only one of at most 11 bytes could be empty
ASK_IF_ONE_TINY_NODE = 3  # a quicklist of one node: only a tiny listpack could be empty

NEVER_EMPTY = bytes(256)
ALWAYS_ASK = bytes([ASK]) * 256
COUNT_IS_ZERO = bytes([ASK]) + bytes(255)  # a count of 0 is the single byte 0x00

EMPTY_ZIPLIST = b"\x0b\x00\x00\x00\x0a\x00\x00\x00\x00\x00\xff"
EMPTY_LISTPACK = b"\x07\x00\x00\x00\x00\x00\xff"
_LARGEST_EMPTY_BLOB = 11


def count_is_zero(buf: bytes, vstart: int, vend: int) -> bool:
    return buf[vstart] == 0


def tiny_lzf(buf: bytes, at: int) -> bool:
    """For ASK_IF_ codes: whether the string at `at` is LZF-compressed from at most 11
    bytes (an empty container's size); its value was skipped whole, so the bytes are there."""
    return buf[at] == 0xC3 and buf[at + 1] < 0x40 and buf[at + 2] <= _LARGEST_EMPTY_BLOB


def is_empty_blob(buf: bytes, pos: int, end: int, empties: frozenset[bytes]) -> bool:
    """Whether the string at `pos` is one of `empties`, reading its header first so that
    only a blob of an empty one's size is ever decompressed."""
    b = buf[pos]
    if b < 0x40:
        return b <= _LARGEST_EMPTY_BLOB and buf[pos + 1 : pos + 1 + b] in empties
    if b == 0xC3:
        _, p = read_length(buf, pos + 1, end)
        size, _ = read_length(buf, p, end)
        if size <= _LARGEST_EMPTY_BLOB:
            blob, _ = read_string(buf, pos, end)
            return blob in empties
    return False


def blob_is_one_of(
    empties: frozenset[bytes], at: int = 0
) -> tuple[Callable[[bytes, int, int], bool], bytes]:
    """The empty check and `maybe_empty` row of a value that is one blob (after `at`
    fixed bytes): empty when the blob is one of `empties`."""

    def is_empty(buf: bytes, vstart: int, vend: int) -> bool:
        return is_empty_blob(buf, vstart + at, vend, empties)

    if at:
        return is_empty, ALWAYS_ASK  # a prefix comes first
    sizes = {len(e) for e in empties}
    row = bytes(
        ASK if b in sizes else ASK_IF_TINY_LZF if b == 0xC3 else NOT_EMPTY for b in range(256)
    )
    return is_empty, row
