"""DUMP payloads: a value as RESTORE takes it.

Layout: the type byte, the serialized value, the RDB version as 2 bytes little-endian,
and the CRC64 of all that as 8 bytes little-endian. A value read from a file becomes a
payload without being decoded.
"""

from __future__ import annotations

import struct

from dcs_migration.formats.crc64 import crc64

_VERSION = struct.Struct("<H")
_CRC = struct.Struct("<Q")


def dump_payload(rdb_type: int, value: bytes, rdb_version: int) -> bytes:
    body = bytes([rdb_type]) + value + _VERSION.pack(rdb_version)
    return body + _CRC.pack(crc64(body))
