"""The RDB reader: bytes in, records out, no I/O (the h11 way).

Feed it chunks of any size with `feed()`; each call returns the records completed by
that chunk. Call `close()` at the end of the input: it raises if the image is cut short.

The buffer: an item (an opcode with its operands, or a key with its whole value) is
parsed only once all of its bytes are there. When a chunk ends inside an item, parsing
resumes from the item's start once at least twice as many bytes are buffered, so a large
value is re-scanned O(log n) times and the total work stays O(bytes). Nothing is ever
allocated from a length read in the file: a length only moves a position, checked
against the bytes actually buffered, and `max_item_bytes` bounds what one item may hold.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.crc64 import crc64
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.functions_pre_ga import read_pre_ga_library
from dcs_migration.formats.primitives import (
    Incomplete,
    read_i64_le,
    read_length,
    read_string,
    skip_string,
)
from dcs_migration.formats.rdb_skip import (
    ASK,
    ASK_IF_ONE_TINY_NODE,
    ASK_IF_TINY_LZF,
    MAYBE_EMPTY,
    SKIP_VALUE,
    VALKEY_SKIP_VALUE,
    is_empty,
    skip_module_opcodes,
    tiny_lzf,
)
from dcs_migration.formats.records import (
    AuxField,
    FunctionLibrary,
    KeyRecord,
    ModuleAux,
    RdbEnd,
    RdbHeader,
    Record,
    ResizeDb,
    SelectDb,
    SlotInfo,
)

DEFAULT_MAX_ITEM_BYTES = 1 << 30
HIGHEST_REDIS_RDB_VERSION = 13
_U32_LEN = 4


class _State(Enum):
    HEADER = 1
    BODY = 2
    CHECKSUM = 3
    DONE = 4


class RdbReader:
    """Reads one RDB image (a dump file, an AOF preamble, a replication stream)."""

    def __init__(
        self,
        *,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        verify_checksum: bool = True,
        count_keys_only: bool = False,
        expired_before_ms: int | None = None,
    ) -> None:
        self.max_item_bytes = max_item_bytes
        self.verify_checksum = verify_checksum
        # Count keys per db (`key_counts`) instead of producing their records: for a
        # caller that forwards the image's bytes as they are and only checks them.
        self.count_keys_only = count_keys_only
        self.key_counts: dict[int, int] = {}
        self.module_keys = 0
        # With count_keys_only: how many keys expire at or before this time.
        self.expired_before_ms = expired_before_ms
        self.expired_keys = 0
        self.rdb_version = 0
        self.valkey = False
        self.empty_keys_dropped = 0
        self._state = _State.HEADER
        self._buf = b""
        self._pos = 0
        self._base = 0  # file offset of self._buf[0]
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._need = 0  # bytes wanted in the buffer before parsing again
        self._crc = 0
        self._crc_pos = 0  # self._buf[:_crc_pos] is already in self._crc
        self._db = 0
        self._stuck: tuple[int, str, bytes | None] | None = None
        self._unused: list[bytes] = []

    # -- public ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once the EOF opcode and checksum have been read."""
        return self._state is _State.DONE

    @property
    def offset(self) -> int:
        """Bytes of the input consumed so far (where the next item starts)."""
        return self._base + self._pos

    def take_unused(self) -> bytes:
        """The bytes fed after the end of the image (the RESP tail of an AOF preamble)."""
        data = b"".join(self._unused)
        self._unused = []
        return data

    def feed(self, data: bytes) -> list[Record]:
        """Take the next chunk of input; return the records it completes."""
        if not data:
            return []
        if self._state is _State.DONE:
            self._unused.append(bytes(data))
            return []
        if self._need:
            self._pending.append(bytes(data))
            self._pending_len += len(data)
            if len(self._buf) - self._pos + self._pending_len < self._need:
                return []
            parts = self._pending
            self._pending = []
            self._pending_len = 0
            self._need = 0
        else:
            parts = [bytes(data)]
        self._compact(parts)
        del parts, data  # joined into the buffer: not held twice while parsing
        out: list[Record] = []
        self._run(out)
        return out

    def close(self) -> list[Record]:
        """Signal the end of the input; raise FormatError if the image is incomplete."""
        if self._pending:
            parts = self._pending
            self._pending = []
            self._pending_len = 0
            self._need = 0
            self._compact(parts)
            del parts
        out: list[Record] = []
        if self._state is not _State.DONE:
            self._run(out)
        if self._state is not _State.DONE:
            raise self._truncated()
        return out

    # -- buffer ---------------------------------------------------------------------------

    def _compact(self, parts: list[bytes]) -> None:
        pos = self._pos
        if pos and self._state is not _State.DONE and self._crc_pos < pos:
            self._crc = crc64(memoryview(self._buf)[self._crc_pos : pos], self._crc)
        buf = self._buf
        self._base += pos
        if pos < len(buf):  # a view, not a copy: a big value's bytes are held once less
            self._buf = b"".join([memoryview(buf)[pos:], *parts])
        else:
            self._buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self._pos = 0
        self._crc_pos = 0

    def _wait_for_more(self, start: int, what: str, key: bytes | None) -> None:
        avail = len(self._buf) - start
        if avail > self.max_item_bytes:
            raise FormatError(
                f"{what} is larger than the {self.max_item_bytes}-byte limit for one item",
                offset=self._base + start,
                key=key,
            )
        self._pos = start
        self._need = max(2 * avail, avail + 1)
        self._stuck = (self._base + start, what, key)

    def _truncated(self) -> FormatError:
        if self._state is _State.HEADER:
            return FormatError("the input ends inside the RDB header", offset=self.offset)
        if self._state is _State.CHECKSUM:
            return FormatError("the input ends inside the RDB checksum", offset=self.offset)
        at_end = self._base + len(self._buf) == self.offset
        if self._stuck is not None and self._stuck[0] == self.offset and not at_end:
            offset, what, key = self._stuck
            return FormatError(
                f"the input ends inside {what} (truncated file or a length that lies)",
                offset=offset,
                key=key,
            )
        return FormatError(
            "the input ends before the RDB EOF opcode (truncated file)", offset=self.offset
        )

    # -- states ---------------------------------------------------------------------------

    def _run(self, out: list[Record]) -> None:
        if self._state is _State.HEADER and not self._header(out):
            return
        if self._state is _State.BODY and not self._body(out):
            return
        if self._state is _State.CHECKSUM:
            self._checksum(out)

    def _header(self, out: list[Record]) -> bool:
        buf = self._buf
        if len(buf) < 9:
            self._need = 9
            return False
        if buf.startswith(b"REDIS"):
            digits = buf[5:9]
            magic = "REDIS"
        elif buf.startswith(b"VALKEY"):
            digits = buf[6:9]
            magic = "VALKEY"
        else:
            raise FormatError(f"not an RDB image: it starts with {buf[:9]!r}", offset=0)
        if not digits.isdigit():
            raise FormatError(f"RDB version {digits!r} is not a number", offset=len(magic))
        version = int(digits)
        if magic == "REDIS" and not 1 <= version <= HIGHEST_REDIS_RDB_VERSION:
            raise FormatError(
                f"RDB version {version} is not one this reader knows "
                f"(REDIS 1 to {HIGHEST_REDIS_RDB_VERSION})",
                offset=5,
            )
        if magic == "VALKEY" and not 80 <= version <= 81:
            raise FormatError(
                f"Valkey RDB version {version} is not one this reader knows (80 to 81)", offset=6
            )
        self.rdb_version = version
        self.valkey = magic == "VALKEY"
        self._pos = 9
        self._state = _State.BODY
        out.append(RdbHeader(magic, version, 0))
        return True

    def _checksum(self, out: list[Record]) -> None:
        start = self._pos
        eof_offset = self._base + start - 1
        if self.rdb_version < 5:
            out.append(RdbEnd(None, False, eof_offset))
        else:
            if len(self._buf) - start < 8:
                self._need = 8
                self._pos = start
                return
            stored = int.from_bytes(self._buf[start : start + 8], "little")
            self._pos = start + 8
            if stored and self.verify_checksum and stored != self._crc:
                raise FormatError(
                    f"RDB checksum mismatch: the file says {stored:#018x}, "
                    f"its content gives {self._crc:#018x}",
                    offset=self._base + start,
                )
            out.append(RdbEnd(stored, bool(stored), eof_offset))
        self._state = _State.DONE
        rest = self._buf[self._pos :]
        if rest:
            self._unused.append(rest)

    def _body(self, out: list[Record]) -> bool:
        """Parse whole items; return True at the EOF opcode, False when more bytes are needed.

        Expiry, IDLE and FREQ opcodes belong to the key that follows them: they are kept in
        locals and, when the bytes run out before that key is whole, parsed again with it.
        """
        buf = self._buf
        end = len(buf)
        pos = self._pos
        base = self._base
        db = self._db
        version = self.rdb_version
        valkey = self.valkey
        skippers = VALKEY_SKIP_VALUE if valkey else SKIP_VALUE
        maybe_empty = MAYBE_EMPTY
        count_only = self.count_keys_only
        expired_before = (
            self.expired_before_ms if self.expired_before_ms is not None else -(1 << 63)
        )
        counts = self.key_counts
        append = out.append
        new_key = tuple.__new__
        expire: int | None = None
        idle: int | None = None
        freq: int | None = None
        prefix_start = -1  # where the pending expiry/IDLE/FREQ opcodes of the next key start
        while True:
            start = pos
            key: bytes | None = None
            try:
                if pos >= end:
                    raise Incomplete()
                op = buf[pos]
                if op == 0 and prefix_start < 0 and not count_only:
                    # A run of short strings without expiry, the commonest items, in a
                    # loop of its own; it leaves anything else to the code below.
                    while op == 0 and pos + 2 < end:
                        kend = pos + 2 + buf[pos + 1]
                        if buf[pos + 1] >= 64 or kend >= end or buf[kend] >= 64:
                            break
                        nxt = kend + 1 + buf[kend]
                        if nxt > end:
                            break
                        append(
                            new_key(
                                KeyRecord,
                                (
                                    db,
                                    buf[pos + 2 : kend],
                                    0,
                                    buf[kend:nxt],
                                    None,
                                    base + pos,
                                    version,
                                    None,
                                    None,
                                    valkey,
                                ),
                            )
                        )
                        pos = nxt
                        if pos >= end:
                            break
                        op = buf[pos]
                    start = pos
                    if pos >= end:
                        raise Incomplete()
                if op < 0xF0:
                    if op == 0 and pos + 2 < end and buf[pos + 1] < 64:
                        # The common case, inline: a short key whose value is a string.
                        kend = pos + 2 + buf[pos + 1]
                        key = buf[pos + 2 : kend]
                        if kend < end and buf[kend] < 64:
                            pos = kend + 1 + buf[kend]
                            if pos > end:
                                raise Incomplete()
                        else:
                            pos = skip_string(buf, kend, end)
                        vstart = kend
                    else:
                        skip = skippers.get(op)
                        if skip is None:
                            raise FormatError(f"unknown RDB object type {op}", offset=start)
                        b = buf[pos + 1] if pos + 1 < end else 0xFF
                        if b < 64:  # a short key, inline
                            vstart = pos + 2 + b
                            if vstart > end:
                                raise Incomplete()
                            key = buf[pos + 2 : vstart]
                        else:
                            key, vstart = read_string(buf, pos + 1, end)
                        pos = skip(buf, vstart, end)
                        maybe = maybe_empty[op * 256 + buf[vstart]]
                        if (
                            maybe
                            and (
                                maybe == ASK
                                or (maybe == ASK_IF_TINY_LZF and tiny_lzf(buf, vstart))
                                or (
                                    maybe == ASK_IF_ONE_TINY_NODE
                                    and buf[vstart + 1] == T.QUICKLIST_NODE_CONTAINER_PACKED
                                    and (buf[vstart + 2] < 12 or tiny_lzf(buf, vstart + 2))
                                )
                            )
                            and is_empty(op, buf, vstart, pos)
                        ):
                            self.empty_keys_dropped += 1
                            expire = idle = freq = None
                            prefix_start = -1
                            continue
                    if count_only:
                        counts[db] = counts.get(db, 0) + 1
                        if op == T.RDB_TYPE_MODULE_2:
                            self.module_keys += 1
                        if expire is not None and expired_before >= expire:
                            self.expired_keys += 1
                    else:
                        append(
                            new_key(
                                KeyRecord,
                                (
                                    db,
                                    key,
                                    op,
                                    buf[vstart:pos],
                                    expire,
                                    base + (start if prefix_start < 0 else prefix_start),
                                    version,
                                    idle,
                                    freq,
                                    valkey,
                                ),
                            )
                        )
                    if prefix_start >= 0:
                        expire = idle = freq = None
                        prefix_start = -1
                elif op == T.RDB_OPCODE_EXPIRETIME_MS:
                    expire, pos = read_i64_le(buf, pos + 1, end)
                    if prefix_start < 0:
                        prefix_start = start
                    continue
                elif op == T.RDB_OPCODE_SELECTDB:
                    db, pos = read_length(buf, pos + 1, end)
                    self._db = db
                    append(SelectDb(db, base + start))
                elif op == T.RDB_OPCODE_RESIZEDB:
                    size, pos = read_length(buf, pos + 1, end)
                    expires, pos = read_length(buf, pos, end)
                    append(ResizeDb(db, size, expires, base + start))
                elif op == T.RDB_OPCODE_AUX:
                    name, pos = read_string(buf, pos + 1, end)
                    value, pos = read_string(buf, pos, end)
                    append(AuxField(name, value, base + start))
                elif op == T.RDB_OPCODE_EXPIRETIME:
                    if pos + 5 > end:
                        raise Incomplete()
                    expire = int.from_bytes(buf[pos + 1 : pos + 5], "little", signed=True) * 1000
                    pos += 5
                    if prefix_start < 0:
                        prefix_start = start
                    continue
                elif op == T.RDB_OPCODE_IDLE:
                    idle, pos = read_length(buf, pos + 1, end)
                    if prefix_start < 0:
                        prefix_start = start
                    continue
                elif op == T.RDB_OPCODE_FREQ:
                    if pos + 2 > end:
                        raise Incomplete()
                    freq = buf[pos + 1]
                    pos += 2
                    if prefix_start < 0:
                        prefix_start = start
                    continue
                elif prefix_start >= 0:
                    raise FormatError(
                        f"opcode {op} follows an expiry, IDLE or FREQ opcode instead of a key",
                        offset=start,
                    )
                elif op == T.RDB_OPCODE_FUNCTION2:
                    code, pos = read_string(buf, pos + 1, end)
                    append(FunctionLibrary(code, base + start))
                elif op == T.RDB_OPCODE_MODULE_AUX:
                    pos = self._module_aux(buf, pos + 1, end, start, append)
                elif op == T.RDB_OPCODE_SLOT_INFO:
                    slot, pos = read_length(buf, pos + 1, end)
                    size, pos = read_length(buf, pos, end)
                    expires, pos = read_length(buf, pos, end)
                    append(SlotInfo(slot, size, expires, base + start))
                elif op == T.RDB_OPCODE_KEY_META and not valkey:
                    pos = _skip_key_meta(buf, pos + 1, end)
                elif op == T.VALKEY_RDB_OPCODE_SLOT_IMPORT and valkey:
                    pos = _skip_slot_import(buf, pos + 1, end)
                elif op == T.RDB_OPCODE_EOF:
                    if self._crc_pos < pos + 1:
                        self._crc = crc64(memoryview(buf)[self._crc_pos : pos + 1], self._crc)
                    self._crc_pos = pos + 1
                    self._pos = pos + 1
                    self._state = _State.CHECKSUM
                    return True
                elif op == T.RDB_OPCODE_FUNCTION_PRE_GA:
                    # As Redis 7.0.x loads it: the library in its GA form.
                    code, pos = read_pre_ga_library(buf, pos + 1, end)
                    append(FunctionLibrary(code, base + start))
                else:
                    raise FormatError(f"unknown RDB opcode {op}", offset=start)
            except Incomplete:
                item_start = start if prefix_start < 0 else prefix_start
                self._wait_for_more(item_start, _describe_item(buf, start, end), key)
                return False
            except FormatError as exc:
                if exc.offset is None or exc.offset < start:
                    exc.offset = start
                exc.offset += base
                if exc.key is None:
                    exc.key = key
                raise

    # -- opcodes with a structure of their own ---------------------------------------

    def _module_aux(
        self, buf: bytes, pos: int, end: int, start: int, append: Callable[[Record], None]
    ) -> int:
        module_id, pos = read_length(buf, pos, end)
        when_opcode, pos = read_length(buf, pos, end)
        if when_opcode != T.RDB_MODULE_OPCODE_UINT:
            raise FormatError(f"module AUX data has a bad 'when' opcode {when_opcode}")
        when, pos = read_length(buf, pos, end)
        data_start = pos
        pos = skip_module_opcodes(buf, pos, end)
        record = ModuleAux(
            module_id, T.module_id_name(module_id), when, buf[data_start:pos], self._base + start
        )
        append(record)
        return pos


_OPCODE_NAMES = {
    T.RDB_OPCODE_EXPIRETIME_MS: "an expire time",
    T.RDB_OPCODE_EXPIRETIME: "an expire time",
    T.RDB_OPCODE_SELECTDB: "a SELECTDB opcode",
    T.RDB_OPCODE_RESIZEDB: "a RESIZEDB opcode",
    T.RDB_OPCODE_AUX: "an AUX field",
    T.RDB_OPCODE_IDLE: "an IDLE opcode",
    T.RDB_OPCODE_FREQ: "a FREQ opcode",
    T.RDB_OPCODE_FUNCTION2: "a function library",
    T.RDB_OPCODE_FUNCTION_PRE_GA: "a function library",
    T.RDB_OPCODE_MODULE_AUX: "module AUX data",
    T.RDB_OPCODE_SLOT_INFO: "a SLOT_INFO opcode",
    T.RDB_OPCODE_KEY_META: "key metadata",
}


def _describe_item(buf: bytes, start: int, end: int) -> str:
    """What the item starting at `start` is, for an error message."""
    if start >= end:
        return "an opcode"
    op = buf[start]
    if op < 0xF0:
        return f"a key record (type {op})"
    return _OPCODE_NAMES.get(op, f"opcode {op}")


def _skip_key_meta(buf: bytes, pos: int, end: int) -> int:
    classes, pos = read_length(buf, pos, end)
    for _ in range(classes):
        pos += _U32_LEN
        if pos > end:
            raise Incomplete()
        pos = skip_module_opcodes(buf, pos, end)
    return pos


def _skip_slot_import(buf: bytes, pos: int, end: int) -> int:
    pos = skip_string(buf, pos, end)
    ranges, pos = read_length(buf, pos, end)
    for _ in range(ranges):
        _, pos = read_length(buf, pos, end)
        _, pos = read_length(buf, pos, end)
    return pos
