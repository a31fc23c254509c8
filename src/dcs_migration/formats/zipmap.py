"""Zipmap: the compact encoding of small hashes before Redis 2.6.

Layout: a count byte, then entries (key length, key, value length, a free-bytes count,
value, free bytes), then 0xFF. A length under 254 is one byte; 254 announces 4 bytes LE.
"""

from __future__ import annotations

import struct

from dcs_migration.formats.errors import FormatError

ZIPMAP_BIGLEN = 254
ZIPMAP_END = 255


def _length(blob: bytes, pos: int) -> tuple[int, int]:
    b = blob[pos]
    if b < ZIPMAP_BIGLEN:
        return b, pos + 1
    if b == ZIPMAP_BIGLEN and pos + 5 <= len(blob):
        return struct.unpack_from("<I", blob, pos + 1)[0], pos + 5
    raise FormatError(f"zipmap length at byte {pos} is malformed")


def zipmap_pairs(blob: bytes) -> list[tuple[bytes, bytes]]:
    """Every field and value of a zipmap, in order."""
    if len(blob) < 2:
        raise FormatError("zipmap is shorter than its header")
    out = []
    pos = 1
    end = len(blob) - 1
    while pos < end and blob[pos] != ZIPMAP_END:
        klen, pos = _length(blob, pos)
        field = blob[pos : pos + klen]
        pos += klen
        if pos >= end:
            raise FormatError("zipmap entry runs past the end of the zipmap")
        vlen, pos = _length(blob, pos)
        if pos >= end:
            raise FormatError("zipmap entry runs past the end of the zipmap")
        free = blob[pos]
        pos += 1
        value = blob[pos : pos + vlen]
        pos += vlen + free
        if pos > end:
            raise FormatError("zipmap entry runs past the end of the zipmap")
        out.append((field, value))
    if pos != end or blob[end] != ZIPMAP_END:
        raise FormatError("zipmap does not end where its entries do")
    return out
