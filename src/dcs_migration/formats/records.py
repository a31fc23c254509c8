"""What the readers produce: one record per key, and records for everything else a backup holds.

A key record keeps the value exactly as it stands in the file (`payload`, what a RESTORE
needs); `formats.values.decode_value` decodes it when a caller needs it, so an import
that passes values through never pays for decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from dcs_migration.formats.types import type_name as _type_name
from dcs_migration.formats.types.modules import module_type_name


class KeyRecord(NamedTuple):
    """A key of an RDB image: where it lives, its value bytes, and its expiry.

    `payload` is the serialized value exactly as in the file (without the type byte).
    `expire_at_ms` is absolute Unix milliseconds or None. `offset` is the file offset
    of the record, for error messages. `lru_idle` / `lfu_freq` carry the eviction hints
    of the IDLE and FREQ opcodes when the file has them.

    A tuple, because a reader makes millions of them: building one is the cheapest way
    to carry ten fields (the reader builds them with `tuple.__new__`).
    """

    db: int
    key: bytes
    rdb_type: int
    payload: bytes
    expire_at_ms: int | None
    offset: int
    rdb_version: int
    lru_idle: int | None = None
    lfu_freq: int | None = None
    valkey: bool = False

    @property
    def type_name(self) -> str:
        """The Redis type as TYPE answers it: string, list, set, zset, hash, stream or module."""
        return _type_name(self.rdb_type, self.valkey)

    @property
    def module_name(self) -> str | None:
        """For a module key, the module type's name (e.g. ReJSON-RL); otherwise None."""
        if self.type_name != "module":
            return None
        return module_type_name(self.payload)

    @property
    def size(self) -> int:
        """The serialized value's size in bytes."""
        return len(self.payload)

    def __repr__(self) -> str:
        return (
            f"KeyRecord(db={self.db}, key={self.key!r}, type={self.type_name}, "
            f"rdb_type={self.rdb_type}, expire_at_ms={self.expire_at_ms}, "
            f"payload={len(self.payload)} bytes)"
        )


# -- big values ---------------------------------------------------------------------------
#
# A value of at least the reader's `big_value_bytes` is never held whole: the reader hands
# it out as a BigValueStart, BigValuePieces and a BigValueEnd, in that order, with nothing
# between them. The I/O layer that reads an input joins them into one BigKeyRecord whose
# pieces wait outside memory, so that everything after it sees one record per key.


@dataclass(frozen=True, slots=True)
class BigValueStart:
    """A key whose value follows in pieces. `head` is the value's first bytes, before its
    first piece: a string's length prefix, or an aggregate's element count (after the
    fixed prefix some types have). `size` is the whole value's size when its head tells
    it (strings and other single-string layouts), None otherwise."""

    db: int
    key: bytes
    rdb_type: int
    head: bytes
    size: int | None
    expire_at_ms: int | None
    offset: int
    rdb_version: int
    lru_idle: int | None = None
    lfu_freq: int | None = None
    valkey: bool = False


@dataclass(frozen=True, slots=True)
class BigValuePiece:
    """The next bytes of a big value: whole elements (an aggregate's members, pairs or
    nodes), or a slice of raw bytes (a value that is one string)."""

    data: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class BigValueEnd:
    """The end of a big value; `tail` holds its bytes after the last element (a stream's
    metadata and consumer groups; empty for other types)."""

    tail: bytes
    offset: int


PieceSource = Callable[[], Iterator[bytes]]


class BigKeyRecord:
    """A key whose value is too big to hold: what a KeyRecord says of it, with the value's
    bytes as `head`, then what `pieces()` yields in order, then `tail`.

    `pieces` is None when the reader of the input was asked to keep only sizes.
    """

    __slots__ = (
        "db",
        "expire_at_ms",
        "head",
        "key",
        "lfu_freq",
        "lru_idle",
        "offset",
        "piece_source",
        "rdb_type",
        "rdb_version",
        "size",
        "tail",
        "valkey",
    )

    def __init__(self, start: BigValueStart, tail: bytes, size: int, pieces: PieceSource | None):
        self.db = start.db
        self.key = start.key
        self.rdb_type = start.rdb_type
        self.expire_at_ms = start.expire_at_ms
        self.offset = start.offset
        self.rdb_version = start.rdb_version
        self.lru_idle = start.lru_idle
        self.lfu_freq = start.lfu_freq
        self.valkey = start.valkey
        self.head = start.head
        self.tail = tail
        self.size = size
        self.piece_source = pieces

    def pieces(self) -> Iterator[bytes]:
        """The value's bytes between `head` and `tail`, a piece at a time (again on each call)."""
        if self.piece_source is None:
            raise ValueError(f"the pieces of key {self.key!r} were not kept")
        return self.piece_source()

    @property
    def type_name(self) -> str:
        return _type_name(self.rdb_type, self.valkey)

    module_name = None  # module values are never handed out in pieces

    def __repr__(self) -> str:
        return (
            f"BigKeyRecord(db={self.db}, key={self.key!r}, type={self.type_name}, "
            f"rdb_type={self.rdb_type}, expire_at_ms={self.expire_at_ms}, size={self.size})"
        )


@dataclass(frozen=True, slots=True)
class RdbHeader:
    """The first bytes of an RDB image: its magic (REDIS or VALKEY) and format version."""

    magic: str
    rdb_version: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class AuxField:
    """An AUX field: redis-ver, ctime, used-mem, repl-id, lua scripts and the like."""

    name: bytes
    value: bytes
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ResizeDb:
    """A RESIZEDB hint: how many keys (and keys with expiry) the next database holds."""

    db: int
    db_size: int
    expires_size: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SelectDb:
    """The database number of the keys that follow."""

    db: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """A cluster slot hint: a slot and how many keys (and keys with expiry) it holds."""

    slot: int
    slot_size: int
    expires_slot_size: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class FunctionLibrary:
    """A Redis function library (FUNCTION2 opcode): its code, which names it."""

    code: bytes
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ModuleAux:
    """Module auxiliary data (MODULE_AUX opcode), kept whole: only the module can read it."""

    module_id: int
    module_name: str
    when: int
    payload: bytes
    offset: int = 0


@dataclass(frozen=True, slots=True)
class RdbEnd:
    """The end of an RDB image: EOF opcode and checksum (0 when the writer did not compute one)."""

    checksum: int | None
    checksum_verified: bool
    offset: int = 0


@dataclass(frozen=True, slots=True)
class AofTruncated:
    """The last file of an AOF ends inside a command. Redis loads the commands before it
    and drops the rest (`aof-load-truncated`, on by default); so does the reader, which
    says so with this record. `source` names the file, `dropped` the bytes left out."""

    offset: int
    dropped: int
    source: str = ""


class AofCommand:
    """One command of an AOF log, with its arguments, the db it runs in and its #TS annotation.

    A plain slots class rather than a dataclass: a log holds millions of them.
    """

    __slots__ = ("args", "db", "offset", "timestamp")

    def __init__(
        self, args: list[bytes], db: int, offset: int = 0, timestamp: int | None = None
    ) -> None:
        self.args = args
        self.db = db
        self.offset = offset
        self.timestamp = timestamp

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AofCommand):
            return NotImplemented
        return (self.args, self.db, self.offset, self.timestamp) == (
            other.args,
            other.db,
            other.offset,
            other.timestamp,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"AofCommand(args={self.args!r}, db={self.db}, offset={self.offset})"

    @property
    def name(self) -> bytes:
        return self.args[0].upper() if self.args else b""


Record = (
    KeyRecord
    | BigValueStart
    | BigValuePiece
    | BigValueEnd
    | BigKeyRecord
    | RdbHeader
    | AuxField
    | ResizeDb
    | SelectDb
    | SlotInfo
    | FunctionLibrary
    | ModuleAux
    | RdbEnd
    | AofCommand
    | AofTruncated
)
