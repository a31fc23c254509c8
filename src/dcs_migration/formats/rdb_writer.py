"""The RDB writer: records in, a valid RDB byte stream out, no I/O.

It is what lets one stream carry several input files, a db mapping, and only the keys
that should arrive, to a server that loads it natively. Values pass through as the
reader kept them (no re-encoding); the CRC64 footer covers the whole stream.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.crc64 import crc64
from dcs_migration.formats.records import BigKeyRecord, KeyRecord

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_TYPE_BYTE = [bytes((t,)) for t in range(256)]
_SHORT_LENGTH = [bytes((n,)) for n in range(64)]


def encode_length(n: int) -> bytes:
    if n < 0x40:
        return bytes((n,))
    if n < 0x4000:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def encode_string(s: bytes) -> bytes:
    """A plain (uncompressed, not integer-encoded) RDB string."""
    return encode_length(len(s)) + s


class RdbWriter:
    """Builds an RDB image piece by piece; each method returns the bytes to send next.

    `keys_by_db` counts what was written, so that a receiver's key count can be checked.
    """

    def __init__(self, rdb_version: int, aux: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.rdb_version = rdb_version
        self.keys_by_db: dict[int, int] = {}
        self._aux = aux
        self._crc = 0
        self._db: int | None = None
        self._started = False
        self._ended = False

    def _out(self, data: bytes) -> bytes:
        self._crc = crc64(data, self._crc)
        return data

    def header(self) -> bytes:
        """The magic, the version and the AUX fields."""
        assert not self._started
        self._started = True
        parts = [b"REDIS%04d" % self.rdb_version]
        for name, value in self._aux:
            parts.append(bytes((T.RDB_OPCODE_AUX,)) + encode_string(name) + encode_string(value))
        return self._out(b"".join(parts))

    def keys(self, records: Sequence[KeyRecord], db: int | None = None) -> bytes:
        """Key records as RDB bytes: each in its own db, or all in `db` when given."""
        parts: list[bytes] = []
        append = parts.append
        counts = self.keys_by_db
        current = self._db
        written = 0
        type_byte = _TYPE_BYTE
        short_length = _SHORT_LENGTH
        for r in records:
            target, key, t, payload, expire = r[0], r[1], r[2], r[3], r[4]
            if db is not None:
                target = db
            if target != current:
                if current is not None:
                    counts[current] = counts.get(current, 0) + written
                written = 0
                append(bytes((T.RDB_OPCODE_SELECTDB,)) + encode_length(target))
                current = target
            if expire is not None:
                append(b"\xfc" + _I64.pack(expire))
            n = len(key)
            append(type_byte[t] + short_length[n] if n < 64 else type_byte[t] + encode_length(n))
            append(key)
            append(payload)
            written += 1
        if current is not None and written:
            counts[current] = counts.get(current, 0) + written
        self._db = current
        return self._out(b"".join(parts))

    def big_key(self, record: BigKeyRecord, db: int | None = None) -> Iterator[bytes]:
        """A big key record as RDB bytes, a piece at a time (in its own db, or in `db`)."""
        target = record.db if db is None else db
        parts = []
        if target != self._db:
            parts.append(bytes((T.RDB_OPCODE_SELECTDB,)) + encode_length(target))
            self._db = target
        if record.expire_at_ms is not None:
            parts.append(b"\xfc" + _I64.pack(record.expire_at_ms))
        parts += [_TYPE_BYTE[record.rdb_type], encode_string(record.key), record.head]
        yield self._out(b"".join(parts))
        for piece in record.pieces():
            yield self._out(piece)
        yield self._out(record.tail)
        self.keys_by_db[target] = self.keys_by_db.get(target, 0) + 1

    def function(self, code: bytes) -> bytes:
        return self._out(bytes((T.RDB_OPCODE_FUNCTION2,)) + encode_string(code))

    def end(self) -> bytes:
        """The EOF opcode and the CRC64 of everything before it."""
        assert self._started and not self._ended
        self._ended = True
        eof = self._out(bytes((T.RDB_OPCODE_EOF,)))
        return eof + _U64.pack(self._crc)
