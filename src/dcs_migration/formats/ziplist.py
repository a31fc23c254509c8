"""Ziplist: the compact encoding of small lists, hashes and sorted sets before Redis 7.

Layout: total bytes (u32 LE), offset of the last entry (u32 LE), entry count (u16 LE),
entries, 0xFF. An entry is the previous entry's length (1 or 5 bytes), an encoding
byte, and the data.
"""

from __future__ import annotations

import struct

from dcs_migration.formats.errors import FormatError

ZIP_END = 0xFF
_HEADER = struct.Struct("<IIH")
_I16 = struct.Struct("<h")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_U32_BE = struct.Struct(">I")


def ziplist_entries(blob: bytes) -> list[bytes]:
    """Every element of a ziplist as bytes (integers as their decimal text)."""
    size = len(blob)
    if size < 11:
        raise FormatError(f"ziplist of {size} bytes is shorter than its header")
    total, _tail, count = _HEADER.unpack_from(blob, 0)
    if total != size:
        raise FormatError(f"ziplist header says {total} bytes, the string holds {size}")
    out: list[bytes] = []
    append = out.append
    pos = 10
    end = size - 1
    while pos < end:
        p = blob[pos]
        pos += 5 if p == 254 else 1
        if pos >= end:
            break
        e = blob[pos]
        kind = e >> 6
        if kind == 0:
            start = pos + 1
            stop = start + (e & 0x3F)
        elif kind == 1:
            if pos + 2 > end:
                break
            start = pos + 2
            stop = start + (((e & 0x3F) << 8) | blob[pos + 1])
        elif kind == 2:
            if e != 0x80 or pos + 5 > end:
                raise FormatError(f"ziplist entry at byte {pos} has unknown encoding 0x{e:02x}")
            start = pos + 5
            stop = start + _U32_BE.unpack_from(blob, pos + 1)[0]
        else:
            if e == 0xC0:
                width = 2
            elif e == 0xD0:
                width = 4
            elif e == 0xE0:
                width = 8
            elif e == 0xF0:
                width = 3
            elif e == 0xFE:
                width = 1
            elif 0xF1 <= e <= 0xFD:
                append(str((e & 0x0F) - 1).encode())
                pos += 1
                continue
            else:
                raise FormatError(f"ziplist entry at byte {pos} has unknown encoding 0x{e:02x}")
            if pos + 1 + width > end:
                break
            raw = blob[pos + 1 : pos + 1 + width]
            append(str(int.from_bytes(raw, "little", signed=True)).encode())
            pos += 1 + width
            continue
        if stop > end:
            break
        append(blob[start:stop])
        pos = stop
    if pos != end or blob[end] != ZIP_END:
        raise FormatError(f"ziplist entry at byte {pos} runs past the end of the ziplist")
    if count != 65535 and count != len(out):
        raise FormatError(f"ziplist header counts {count} elements, it holds {len(out)}")
    return out
