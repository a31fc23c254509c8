"""The AOF reader: one AOF file, with or without an RDB preamble, bytes in, records out.

A file that starts with an RDB magic (`REDIS`, or Valkey's `VALKEY`) holds an RDB image
first (the preamble of a rewritten AOF, or the RDB base file of a multi-part AOF): its
records come from an `RdbReader`, and the bytes after the image go to a `RespReader`
with their file offsets. Any other file is RESP commands from its first byte.

Redis loads every file of an AOF, preamble or not, with a fresh client in db 0, so the
commands of each file start in db 0 whatever the RDB part or a previous file selected.
"""

from __future__ import annotations

from enum import Enum

from dcs_migration.formats.rdb import DEFAULT_MAX_ITEM_BYTES, RdbReader
from dcs_migration.formats.rdb_header import may_start_rdb, rdb_magic
from dcs_migration.formats.records import Record
from dcs_migration.formats.resp import DEFAULT_MAX_BULK_BYTES, RespReader

_RESP_STARTS = frozenset(b"*#")


class _State(Enum):
    SNIFF = 1  # not enough bytes yet to tell an RDB preamble from RESP
    RDB = 2
    TAIL = 3  # the RDB image ended; the first byte after it decides what follows
    RESP = 4
    IGNORE = 5


class AofReader:
    """Reads one AOF file: the records of its RDB preamble, if any, then its commands.

    `db` is the database current when the commands start (0, as Redis loads them).
    With `ignore_non_resp_tail`, bytes after an RDB image that do not start like RESP
    are dropped (counted in `ignored_tail_bytes`) instead of being an error: that is how
    Redis treats a plain RDB dump, which may be read through this reader too.
    `max_item_bytes` and `verify_checksum` go to the RDB reader, `max_bulk_bytes` and
    `load_truncated` (for the last file of an AOF: see `RespReader`) to the RESP reader.
    """

    def __init__(
        self,
        *,
        db: int = 0,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES,
        ignore_non_resp_tail: bool = False,
        verify_checksum: bool = True,
        load_truncated: bool = False,
    ) -> None:
        self.load_truncated = load_truncated
        self.max_item_bytes = max_item_bytes
        self.verify_checksum = verify_checksum
        self.max_bulk_bytes = max_bulk_bytes
        self.ignore_non_resp_tail = ignore_non_resp_tail
        self.ignored_tail_bytes = 0
        self.rdb: RdbReader | None = None
        self.resp: RespReader | None = None
        self._db = db
        self._state = _State.SNIFF
        self._head = b""

    @property
    def big_records(self) -> int:
        """Big-value records handed out so far (see RdbReader.big_records)."""
        return self.rdb.big_records if self.rdb is not None else 0

    def feed(self, data: bytes) -> list[Record]:
        """Take the next chunk of input; return the records it completes."""
        if not data:
            return []
        state = self._state
        if state is _State.RESP:
            assert self.resp is not None
            return list(self.resp.feed(data))
        if state is _State.RDB:
            assert self.rdb is not None
            out = self.rdb.feed(data)
            if self.rdb.done:
                self._state = _State.TAIL
                self._tail(self.rdb.take_unused(), out)
            return out
        if state is _State.TAIL:
            out = []
            self._tail(data, out)
            return out
        if state is _State.IGNORE:
            self.ignored_tail_bytes += len(data)
            return []
        self._head += data
        head = self._head
        if rdb_magic(head) is not None:
            self._head = b""
            self.rdb = self._rdb_reader()
            self._state = _State.RDB
            return self.feed(head)
        if may_start_rdb(head):
            return []  # could still be an RDB magic
        self._head = b""
        self._start_resp(0)
        return self.feed(head)

    def close(self) -> list[Record]:
        """Signal the end of the file; raise FormatError if it ends inside an item."""
        out: list[Record] = []
        if self._state is _State.SNIFF:
            if not self._head:
                return out  # an empty AOF holds no commands
            head, self._head = self._head, b""
            self.rdb = self._rdb_reader()
            self._state = _State.RDB
            out += self.rdb.feed(head)  # a cut-short magic: close() below says so
        if self._state is _State.RDB:
            assert self.rdb is not None
            out += self.rdb.close()
            self._state = _State.TAIL
            self._tail(self.rdb.take_unused(), out)
        if self._state is _State.RESP:
            assert self.resp is not None
            out += self.resp.close()
        return out

    @property
    def truncated_at(self) -> int | None:
        """Where the dropped end of a truncated file starts (see `load_truncated`)."""
        return self.resp.truncated_at if self.resp is not None else None

    def _rdb_reader(self) -> RdbReader:
        return RdbReader(max_item_bytes=self.max_item_bytes, verify_checksum=self.verify_checksum)

    def _start_resp(self, offset: int) -> None:
        self.resp = RespReader(
            offset=offset,
            db=self._db,
            max_bulk_bytes=self.max_bulk_bytes,
            load_truncated=self.load_truncated,
        )
        self._state = _State.RESP

    def _tail(self, data: bytes, out: list[Record]) -> None:
        """Route the first bytes after the RDB image: RESP commands, or an ignored tail."""
        if not data:
            return
        assert self.rdb is not None
        if self.ignore_non_resp_tail and data[0] not in _RESP_STARTS:
            self._state = _State.IGNORE
            self.ignored_tail_bytes += len(data)
            return
        self._start_resp(self.rdb.offset)
        assert self.resp is not None
        out.extend(self.resp.feed(data))
