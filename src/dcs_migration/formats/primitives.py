"""The building blocks of RDB: lengths, strings, doubles, millisecond times.

Every function takes the buffer, a position and the end of the readable bytes, and
returns what it read with the position after it. Running past `end` raises
`Incomplete`: for the streaming reader that means "feed me more", for a value that is
already whole it means the value is cut short. Nothing here allocates from a length
before checking that the bytes are there.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import lzf

from dcs_migration.formats.errors import FormatError

RDB_ENCVAL_INT8 = 0
RDB_ENCVAL_INT16 = 1
RDB_ENCVAL_INT32 = 2
RDB_ENCVAL_LZF = 3

_I16 = struct.Struct("<h")
_I32 = struct.Struct("<i")
_U32_BE = struct.Struct(">I")
_U64_BE = struct.Struct(">Q")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")


# What every skip function is: (buffer, position, end of the readable bytes) -> the
# position after what it stepped over.
Skipper = Callable[[bytes, int, int], int]


class Incomplete(Exception):
    """The bytes end before the item does.

    Raised as a new instance each time: a shared instance would keep, through its
    traceback, every frame it was ever raised from, and their buffers with them.
    """


def read_length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A plain length (a special string encoding here is an error)."""
    if pos >= end:
        raise Incomplete()
    b = buf[pos]
    kind = b >> 6
    if kind == 0:
        return b, pos + 1
    if kind == 1:
        if pos + 2 > end:
            raise Incomplete()
        return ((b & 0x3F) << 8) | buf[pos + 1], pos + 2
    if b == 0x80:
        if pos + 5 > end:
            raise Incomplete()
        return _U32_BE.unpack_from(buf, pos + 1)[0], pos + 5
    if b == 0x81:
        if pos + 9 > end:
            raise Incomplete()
        return _U64_BE.unpack_from(buf, pos + 1)[0], pos + 9
    raise FormatError(f"expected a length, found encoding byte 0x{b:02x}", offset=pos)


# How many bytes a length takes, by its first byte (0: that byte starts no length, but a
# special string encoding or nothing valid).
LENGTH_SIZE = bytes(
    1 if b < 0x40 else 2 if b < 0x80 else 5 if b == 0x80 else 9 if b == 0x81 else 0
    for b in range(256)
)


def skip_length(buf: bytes, pos: int, end: int) -> int:
    """The position after a length, without building its value."""
    if pos >= end:
        raise Incomplete()
    b = buf[pos]
    if b < 0x40:
        return pos + 1
    if b < 0x80:
        nxt = pos + 2
    elif b == 0x80:
        nxt = pos + 5
    elif b == 0x81:
        nxt = pos + 9
    else:
        raise FormatError(f"expected a length, found encoding byte 0x{b:02x}", offset=pos)
    if nxt > end:
        raise Incomplete()
    return nxt


def skip_string(buf: bytes, pos: int, end: int) -> int:
    """The position after a string, without copying it."""
    if pos >= end:
        raise Incomplete()
    b = buf[pos]
    if b < 0x40:
        nxt = pos + 1 + b
    elif b < 0x80:  # a 14-bit length: most listpacks and ziplists
        if pos + 2 > end:
            raise Incomplete()
        nxt = pos + 2 + (((b & 0x3F) << 8) | buf[pos + 1])
    elif b >= 0xC0:
        enc = b & 0x3F
        if enc == RDB_ENCVAL_INT8:
            nxt = pos + 2
        elif enc == RDB_ENCVAL_INT16:
            nxt = pos + 3
        elif enc == RDB_ENCVAL_INT32:
            nxt = pos + 5
        elif enc == RDB_ENCVAL_LZF:
            clen, p = read_length(buf, pos + 1, end)
            nxt = skip_length(buf, p, end) + clen  # after the uncompressed length
        else:
            raise FormatError(f"unknown string encoding 0x{b:02x}", offset=pos)
    else:
        n, p = read_length(buf, pos, end)
        nxt = p + n
    if nxt > end:
        raise Incomplete()
    return nxt


def read_string(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """A string: plain, integer-encoded (as its decimal text) or LZF-compressed."""
    if pos >= end:
        raise Incomplete()
    b = buf[pos]
    if b < 0x40:
        nxt = pos + 1 + b
        if nxt > end:
            raise Incomplete()
        return buf[pos + 1 : nxt], nxt
    if b < 0xC0:
        n, p = read_length(buf, pos, end)
        nxt = p + n
        if nxt > end:
            raise Incomplete()
        return buf[p:nxt], nxt
    enc = b & 0x3F
    if enc == RDB_ENCVAL_INT8:
        if pos + 2 > end:
            raise Incomplete()
        v = buf[pos + 1]
        return str(v - 256 if v > 127 else v).encode(), pos + 2
    if enc == RDB_ENCVAL_INT16:
        if pos + 3 > end:
            raise Incomplete()
        return str(_I16.unpack_from(buf, pos + 1)[0]).encode(), pos + 3
    if enc == RDB_ENCVAL_INT32:
        if pos + 5 > end:
            raise Incomplete()
        return str(_I32.unpack_from(buf, pos + 1)[0]).encode(), pos + 5
    if enc == RDB_ENCVAL_LZF:
        clen, p = read_length(buf, pos + 1, end)
        ulen, p = read_length(buf, p, end)
        nxt = p + clen
        if nxt > end:
            raise Incomplete()
        return lzf_decompress(buf[p:nxt], ulen, pos), nxt
    raise FormatError(f"unknown string encoding 0x{b:02x}", offset=pos)


def lzf_decompress(data: bytes, expected_len: int, offset: int) -> bytes:
    """LZF data that must expand to exactly `expected_len` bytes."""
    if expected_len == 0:
        raise FormatError("LZF string with a length of 0", offset=offset)
    # The output can be at most a bounded multiple of the input; a larger claim is a lie
    # that would otherwise make us allocate it.
    if expected_len > len(data) * 300 + 64:
        raise FormatError(
            f"LZF string claims {expected_len} bytes from {len(data)} compressed bytes",
            offset=offset,
        )
    try:
        out = lzf.decompress(data, expected_len)
    except Exception as exc:
        raise FormatError(f"LZF string does not decompress: {exc}", offset=offset) from None
    if out is None or len(out) != expected_len:
        raise FormatError(
            f"LZF string does not decompress to its stated {expected_len} bytes", offset=offset
        )
    return bytes(out)


def read_i64_le(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A millisecond time as rdbLoadMillisecondTime stores it: 8 bytes, little-endian."""
    if pos + 8 > end:
        raise Incomplete()
    return _I64.unpack_from(buf, pos)[0], pos + 8


def read_binary_double(buf: bytes, pos: int, end: int) -> tuple[float, int]:
    """A double in 8 bytes, little-endian IEEE 754 (ZSET_2)."""
    if pos + 8 > end:
        raise Incomplete()
    return _F64.unpack_from(buf, pos)[0], pos + 8


def read_text_double(buf: bytes, pos: int, end: int) -> tuple[float, int]:
    """A double as text with a one-byte length; 253, 254, 255 stand for nan, inf, -inf."""
    if pos >= end:
        raise Incomplete()
    n = buf[pos]
    if n == 253:
        return math.nan, pos + 1
    if n == 254:
        return math.inf, pos + 1
    if n == 255:
        return -math.inf, pos + 1
    nxt = pos + 1 + n
    if nxt > end:
        raise Incomplete()
    return parse_double(buf[pos + 1 : nxt], pos), nxt


def skip_text_double(buf: bytes, pos: int, end: int) -> int:
    if pos >= end:
        raise Incomplete()
    n = buf[pos]
    nxt = pos + 1 if n >= 253 else pos + 1 + n
    if nxt > end:
        raise Incomplete()
    return nxt


def parse_double(text: bytes, offset: int) -> float:
    """A score written as text (strtod's syntax as Redis writes it)."""
    try:
        return float(text)
    except ValueError:
        raise FormatError(f"expected a number, found {text[:40]!r}", offset=offset) from None


class Cursor:
    """A position in a whole value, read primitive by primitive (for decoding what the
    streaming reader has already cut out). Running past the end raises Incomplete, which
    the decoder reports as a value cut short."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)

    def length(self) -> int:
        n, self.pos = read_length(self.buf, self.pos, self.end)
        return n

    def string(self) -> bytes:
        s, self.pos = read_string(self.buf, self.pos, self.end)
        return s

    def text_double(self) -> float:
        d, self.pos = read_text_double(self.buf, self.pos, self.end)
        return d

    def binary_double(self) -> float:
        d, self.pos = read_binary_double(self.buf, self.pos, self.end)
        return d

    def millis(self) -> int:
        t, self.pos = read_i64_le(self.buf, self.pos, self.end)
        return t

    def raw(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise Incomplete()
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def finish(self) -> None:
        if self.pos != self.end:
            raise FormatError(f"{self.end - self.pos} unexpected bytes after the value")
