"""Intset: a sorted array of 16, 32 or 64-bit integers (small sets of integers)."""

from __future__ import annotations

import struct
from itertools import pairwise

from dcs_migration.formats.errors import FormatError

_WIDTH_FORMATS = {2: "h", 4: "i", 8: "q"}


def intset_members(blob: bytes) -> list[bytes]:
    """Every member of an intset as its decimal text."""
    if len(blob) < 8:
        raise FormatError(f"intset of {len(blob)} bytes is shorter than its header")
    width, count = struct.unpack_from("<II", blob, 0)
    fmt = _WIDTH_FORMATS.get(width)
    if fmt is None:
        raise FormatError(f"intset has element width {width}, expected 2, 4 or 8")
    if 8 + width * count != len(blob):
        raise FormatError(
            f"intset says {count} elements of {width} bytes, the string holds {len(blob) - 8}"
        )
    values = struct.unpack_from(f"<{count}{fmt}", blob, 8)
    for a, b in pairwise(values):
        if a >= b:
            raise FormatError("intset members are not in ascending order")
    return [str(v).encode() for v in values]
