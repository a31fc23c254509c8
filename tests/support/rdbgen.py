"""Hand-built RDB images for tests of what real servers never write (bad input, edge cases)."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator
from pathlib import Path

from dcs_migration.formats.crc64 import crc64
from dcs_migration.formats.rdb_writer import RdbWriter, encode_length, encode_string
from dcs_migration.formats.records import BigKeyRecord, BigValueStart


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


def huge_rdb(path: Path, string_bytes: int, hash_bytes: int, seed: int = 1) -> Path:
    """An RDB of one random string and one hash of random 100-byte values, written by the
    project's RDB writer a piece at a time (no server needs to hold it first)."""
    rng = random.Random(seed)
    writer = RdbWriter(10)
    fields = hash_bytes // 116

    def string_pieces() -> Iterator[bytes]:
        for at in range(0, string_bytes, 1 << 20):
            yield rng.randbytes(min(1 << 20, string_bytes - at))

    def hash_pieces() -> Iterator[bytes]:
        for start in range(0, fields, 8_000):
            yield b"".join(
                encode_string(b"field:%010d" % i) + encode_string(rng.randbytes(100))
                for i in range(start, min(start + 8_000, fields))
            )

    with path.open("wb") as out:
        out.write(writer.header())
        for key, rdb_type, head, pieces in (
            (b"string", 0, encode_length(string_bytes), string_pieces),
            (b"hash", 4, encode_length(fields), hash_pieces),
        ):
            start = BigValueStart(0, key, rdb_type, head, None, None, 0, 10)
            for data in writer.big_key(BigKeyRecord(start, b"", 0, pieces)):
                out.write(data)
        out.write(writer.end())
    return path
