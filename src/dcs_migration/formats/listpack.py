"""Listpack: the compact encoding of small lists, sets, hashes, sorted sets and stream nodes.

Layout: total bytes (u32 LE), element count (u16 LE, 65535 when unknown), entries, 0xFF.
An entry is an encoding byte with its data, then its own length backwards in 1-5 bytes.
"""

from __future__ import annotations

import struct

from dcs_migration.formats.errors import FormatError

LP_EOF = 0xFF
_HEADER = struct.Struct("<IH")
_I16 = struct.Struct("<h")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")


def _backlen_size(entry_len: int) -> int:
    if entry_len <= 127:
        return 1
    if entry_len < 16383:
        return 2
    if entry_len < 2097151:
        return 3
    if entry_len < 268435455:
        return 4
    return 5


def listpack_entries(blob: bytes) -> list[bytes | int]:
    """Every element of a listpack, strings as bytes and integers as int."""
    size = len(blob)
    if size < 7:
        raise FormatError(f"listpack of {size} bytes is shorter than its header")
    total, count = _HEADER.unpack_from(blob, 0)
    if total != size:
        raise FormatError(f"listpack header says {total} bytes, the string holds {size}")
    out: list[bytes | int] = []
    append = out.append
    pos = 6
    end = size - 1  # the 0xFF terminator
    while pos < end:
        b = blob[pos]
        if b < 0x80:  # 7-bit unsigned integer
            append(b)
            pos += 2
            continue
        if b < 0xC0:  # string up to 63 bytes
            n = b & 0x3F
            start = pos + 1
            stop = start + n
            if stop > end:
                break
            append(blob[start:stop])
            pos = stop + _backlen_size(1 + n)
            continue
        if b < 0xE0:  # 13-bit signed integer
            if pos + 2 > end:
                break
            v = ((b & 0x1F) << 8) | blob[pos + 1]
            append(v - 8192 if v >= 4096 else v)
            pos += 3
            continue
        if b < 0xF0:  # string up to 4095 bytes
            if pos + 2 > end:
                break
            n = ((b & 0x0F) << 8) | blob[pos + 1]
            start = pos + 2
            stop = start + n
            if stop > end:
                break
            append(blob[start:stop])
            pos = stop + _backlen_size(2 + n)
            continue
        if b == 0xF0:  # string with a 32-bit length
            if pos + 5 > end:
                break
            n = _U32.unpack_from(blob, pos + 1)[0]
            start = pos + 5
            stop = start + n
            if stop > end:
                break
            append(blob[start:stop])
            pos = stop + _backlen_size(5 + n)
            continue
        if b == 0xF1:
            if pos + 3 > end:
                break
            append(_I16.unpack_from(blob, pos + 1)[0])
            pos += 4
            continue
        if b == 0xF2:
            if pos + 4 > end:
                break
            v = blob[pos + 1] | (blob[pos + 2] << 8) | (blob[pos + 3] << 16)
            append(v - (1 << 24) if v >= (1 << 23) else v)
            pos += 5
            continue
        if b == 0xF3:
            if pos + 5 > end:
                break
            append(_I32.unpack_from(blob, pos + 1)[0])
            pos += 6
            continue
        if b == 0xF4:
            if pos + 9 > end:
                break
            append(_I64.unpack_from(blob, pos + 1)[0])
            pos += 10
            continue
        raise FormatError(f"listpack entry at byte {pos} has unknown encoding 0x{b:02x}")
    if pos != end or blob[end] != LP_EOF:
        raise FormatError(f"listpack entry at byte {pos} runs past the end of the listpack")
    if count != 65535 and count != len(out):
        raise FormatError(f"listpack header counts {count} elements, it holds {len(out)}")
    return out


def listpack_strings(blob: bytes) -> list[bytes]:
    """Every element of a listpack as the bytes Redis would reply with."""
    return [e if type(e) is bytes else str(e).encode() for e in listpack_entries(blob)]
