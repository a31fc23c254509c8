"""The RDB reader: bytes in, records out, no I/O (the h11 way).

Feed it chunks of any size with `feed()`; each call returns the records completed by
that chunk. Call `close()` at the end of the input: it raises if the image is cut short.

The buffer: an item (an opcode with its operands, or a key with its whole value) is
parsed only once all of its bytes are there. When a chunk ends inside an item, parsing
resumes from the item's start once at least twice as many bytes are buffered, so a large
value is re-scanned O(log n) times and the total work stays O(bytes). Nothing is ever
allocated from a length read in the file: a length only moves a position, checked
against the bytes actually buffered, and `max_item_bytes` bounds what one item may hold.

A value of `big_value_bytes` or more is not held: the reader hands it out as it arrives,
as a BigValueStart, pieces of about `piece_bytes` cut at element boundaries, and a
BigValueEnd (see `rdb_pieces`). The buffer then holds at most a piece and the element
being read, whatever the value's size; `max_item_bytes` bounds one element.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from dcs_migration.formats import rdb_pieces
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
from dcs_migration.formats.rdb_header import HEADER_BYTES, parse_rdb_header
from dcs_migration.formats.rdb_pieces import Layout
from dcs_migration.formats.records import (
    AuxField,
    BigValueEnd,
    BigValuePiece,
    BigValueStart,
    FunctionLibrary,
    KeyRecord,
    ModuleAux,
    RdbEnd,
    Record,
    ResizeDb,
    SelectDb,
    SlotInfo,
)
from dcs_migration.formats.types import REDIS, VALKEY
from dcs_migration.formats.types.empty import ASK, ASK_IF_ONE_TINY_NODE, ASK_IF_TINY_LZF, tiny_lzf
from dcs_migration.formats.types.modules import module_id_name, skip_module_opcodes

DEFAULT_MAX_ITEM_BYTES = 1 << 30
_U32_LEN = 4


class _State(Enum):
    HEADER = 1
    BODY = 2
    BIG_VALUE = 3
    CHECKSUM = 4
    DONE = 5


class _BigValue:
    """Where the reader is inside a value it hands out in pieces. The buffer position is
    the start of the next piece; `scanned` bytes after it are whole units already stepped
    over, and `left` units (raw bytes, for a single-string layout) follow those."""

    __slots__ = ("db", "expire_at_ms", "key", "layout", "left", "scanned")

    def __init__(self, layout: Layout, left: int, key: bytes, db: int, expire: int | None) -> None:
        self.layout = layout
        self.left = left
        self.scanned = 0
        self.key = key
        self.db = db
        self.expire_at_ms = expire


class RdbReader:
    """Reads one RDB image (a dump file, an AOF preamble, a replication stream)."""

    def __init__(
        self,
        *,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        verify_checksum: bool = True,
        count_keys_only: bool = False,
        expired_before_ms: int | None = None,
        big_value_bytes: int | None = None,
        piece_bytes: int | None = None,
    ) -> None:
        self.max_item_bytes = max_item_bytes
        self.big_value_bytes = big_value_bytes or rdb_pieces.BIG_VALUE_BYTES
        self.piece_bytes = piece_bytes or rdb_pieces.PIECE_BYTES
        # How many big-value records (starts, pieces, ends) this reader has handed out:
        # a caller that joins them looks at a batch only when this moved.
        self.big_records = 0
        self._big: _BigValue | None = None
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
        if self._state is _State.BIG_VALUE:
            assert self._big is not None
            return FormatError(
                "the input ends inside the value (truncated file or a length that lies)",
                offset=self.offset,
                key=self._big.key,
            )
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
        while True:
            if self._state is _State.BODY:
                if not self._body(out):
                    return
            elif self._state is _State.BIG_VALUE:
                if not self._big_value(out):
                    return
            else:
                break
        if self._state is _State.CHECKSUM:
            self._checksum(out)

    def _header(self, out: list[Record]) -> bool:
        if len(self._buf) < HEADER_BYTES:
            self._need = HEADER_BYTES
            return False
        header = parse_rdb_header(self._buf)
        self.rdb_version = header.rdb_version
        self.valkey = header.magic == "VALKEY"
        self._pos = HEADER_BYTES
        self._state = _State.BODY
        out.append(header)
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
        """Parse whole items; return True at the EOF opcode or at a value to hand out in
        pieces, False when more bytes are needed.

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
        flavour = VALKEY if valkey else REDIS
        skippers = flavour.skip
        big = self.big_value_bytes
        maybe_empty = flavour.maybe_empty
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
            vstart = -1
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
                        vstart = kend
                        if kend < end and buf[kend] < 64:
                            pos = kend + 1 + buf[kend]
                            if pos > end:
                                raise Incomplete()
                        else:
                            pos = skip_string(buf, kend, end)
                            if pos - vstart >= big:
                                raise _Big()
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
                        if pos - vstart >= big:
                            raise _Big()
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
                            and flavour.is_empty[op](buf, vstart, pos)
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
            except (Incomplete, _Big) as exc:
                item_start = start if prefix_start < 0 else prefix_start
                layouts = flavour.layouts
                if (
                    key is not None
                    and vstart >= 0
                    and op in layouts
                    and (isinstance(exc, _Big) or end - vstart >= big)
                    and self._start_big_value(
                        out, layouts[op], op, key, db, vstart, item_start, expire, idle, freq
                    )
                ):
                    return True
                self._wait_for_more(item_start, _describe_item(buf, start, end), key)
                return False
            except FormatError as exc:
                if exc.offset is None or exc.offset < start:
                    exc.offset = start
                exc.offset += base
                if exc.key is None:
                    exc.key = key
                raise

    # -- big values --------------------------------------------------------------------

    def _start_big_value(
        self,
        out: list[Record],
        layout: Layout,
        rdb_type: int,
        key: bytes,
        db: int,
        vstart: int,
        item_start: int,
        expire: int | None,
        idle: int | None,
        freq: int | None,
    ) -> bool:
        """Start handing out the value at `vstart` in pieces; False when its head is not
        all there yet."""
        buf = self._buf
        try:
            units, head_end = layout.head(buf, vstart, len(buf))
        except Incomplete:
            return False
        except FormatError as exc:
            exc.offset = self._base + (exc.offset if exc.offset is not None else vstart)
            exc.key = key
            raise
        if not self.count_keys_only:
            size = head_end - vstart + units if layout.raw else None
            out.append(
                BigValueStart(
                    db,
                    key,
                    rdb_type,
                    buf[vstart:head_end],
                    size,
                    expire,
                    self._base + item_start,
                    self.rdb_version,
                    idle,
                    freq,
                    self.valkey,
                )
            )
            self.big_records += 1
        self._big = _BigValue(layout, units, key, db, expire)
        self._pos = head_end
        self._state = _State.BIG_VALUE
        return True

    def _big_value(self, out: list[Record]) -> bool:
        """Hand out the next pieces of a big value; True once it ended, False when more
        bytes are needed."""
        big = self._big
        assert big is not None
        buf = self._buf
        end = len(buf)
        pos = self._pos
        base = self._base
        step = self.piece_bytes
        emit = not self.count_keys_only
        layout = big.layout
        units = layout.units
        try:
            while big.left:
                if units is None:  # raw bytes: pieces of exactly `step` bytes, the last shorter
                    take = min(big.left, step)
                    if pos + take > end:
                        self._pos = pos
                        self._need = take
                        self._stuck = (base + pos, "a value", big.key)
                        return False
                    nxt = pos + take
                    big.left -= take
                else:
                    nxt, done = units(buf, pos + big.scanned, end, big.left, pos + step)
                    big.left -= done
                    big.scanned = nxt - pos
                    if big.scanned < step and big.left:  # the next unit is not all there
                        self._wait_for_more(pos, "an element of a value", big.key)
                        return False
                    big.scanned = 0
                if emit and nxt > pos:
                    out.append(BigValuePiece(buf[pos:nxt], base + pos))
                    self.big_records += 1
                pos = nxt
            tail_end = pos if layout.tail is None else layout.tail(buf, pos, end)
        except Incomplete:
            self._wait_for_more(pos, "the end of a value", big.key)
            return False
        except FormatError as exc:
            exc.offset = base + (exc.offset if exc.offset is not None else pos)
            exc.key = big.key
            raise
        if emit:
            out.append(BigValueEnd(buf[pos:tail_end], base + pos))
            self.big_records += 1
        else:
            self.key_counts[big.db] = self.key_counts.get(big.db, 0) + 1
            expire = big.expire_at_ms
            if expire is not None and self.expired_before_ms is not None:
                self.expired_keys += self.expired_before_ms >= expire
        self._pos = tail_end
        self._big = None
        self._state = _State.BODY
        return True

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
            module_id, module_id_name(module_id), when, buf[data_start:pos], self._base + start
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


class _Big(Exception):
    """A value whose bytes are all there turned out to be big: handed out in pieces too,
    so that how a value is handed out depends on its size alone."""


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
