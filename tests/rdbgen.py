"""Hand-built RDB images for tests of what real servers never write (bad input, edge cases)."""

from __future__ import annotations

import struct

from dcs_migration.formats.crc64 import crc64


def length(n: int) -> bytes:
    if n < 64:
        return bytes([n])
    if n < 16384:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    if n < 1 << 32:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def string(s: bytes) -> bytes:
    return length(len(s)) + s


def key(name: bytes, value: bytes, *, expire_ms: int | None = None, rdb_type: int = 0) -> bytes:
    """A key record: optional EXPIRETIME_MS, type byte, key, value bytes (already encoded)."""
    prefix = b"\xfc" + struct.pack("<q", expire_ms) if expire_ms is not None else b""
    return prefix + bytes([rdb_type]) + string(name) + value


def rdb(*body: bytes, version: int = 11, checksum: bool = True, magic: bytes = b"REDIS") -> bytes:
    digits = b"%04d" % version if magic == b"REDIS" else b"%03d" % version
    data = magic + digits + b"".join(body) + b"\xff"
    if version >= 5:
        data += struct.pack("<Q", crc64(data) if checksum else 0)
    return data


def listpack(*items: bytes) -> bytes:
    """A listpack of short strings (each under 64 bytes)."""
    entries = b"".join(bytes([0x80 | len(i)]) + i + bytes([1 + len(i)]) for i in items)
    total = 6 + len(entries) + 1
    return struct.pack("<IH", total, len(items)) + entries + b"\xff"


def binary_double(d: float) -> bytes:
    return struct.pack("<d", d)
