"""RESP commands: the command part of an AOF file read (bytes in, commands out), and the
one RESP encoder of the project (`encode_command`: the AOF writer's, and the client's).

An AOF holds commands as RESP multibulks (`*<n>\\r\\n` then n times `$<len>\\r\\n<bytes>\\r\\n`),
with annotation lines starting with `#` between them. Redis 7 writes `#TS:<unix-seconds>`
annotations; the timestamp applies to every command after it until the next one. Other
annotations are skipped, as Redis skips them when it loads the file.

Databases: every AOF file starts in db 0 (Redis loads each file with a fresh client).
`SELECT n` switches the db; its own command record already carries the new db, so `db`
is always the database that is current once the command has run.

The buffer: a command is parsed only once all of its bytes are there. When a chunk
ends inside a command, parsing resumes from the command's start once at least twice
as many bytes are buffered, so a large command is re-scanned O(log n) times and the
total work stays O(bytes). Lengths read from the input are checked against the limits
before anything waits for them, and only move a position within bytes actually fed:
nothing is ever allocated from a length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import AofCommand

DEFAULT_MAX_BULK_BYTES = 512 << 20  # Redis' proto-max-bulk-len default
DEFAULT_MAX_ARGS = 1 << 20
DEFAULT_MAX_COMMAND_BYTES = 1 << 30
# Longest "*<n>\r\n" / "$<n>\r\n" line accepted: room for a 20-digit number.
_MAX_HEADER_LINE = 24
# Redis reads annotation lines into a 1024-byte buffer.
MAX_ANNOTATION_LINE = 1024

_MAX_DB_DIGITS = 10

_STAR = 0x2A
_DOLLAR = 0x24
_HASH = 0x23
_CR = 0x0D
_LF = 0x0A


class _Incomplete(Exception):
    """The buffered bytes end inside the item being parsed."""


class RespReader:
    """Reads the RESP commands of one AOF file (or the tail after its RDB preamble).

    `offset` is the file offset of the first byte fed (the end of the RDB preamble when
    there is one), so that every offset reported is a file offset. `db` is the database
    current at that point. With `load_truncated`, input that ends inside a command loses
    that command instead of being an error, as Redis loads the last file of an AOF
    (`aof-load-truncated`): `truncated_at` is then where the dropped bytes start.
    """

    def __init__(
        self,
        *,
        offset: int = 0,
        db: int = 0,
        max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES,
        max_args: int = DEFAULT_MAX_ARGS,
        max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES,
        load_truncated: bool = False,
    ) -> None:
        self.load_truncated = load_truncated
        self.truncated_at: int | None = None
        self.max_bulk_bytes = max_bulk_bytes
        self.max_args = max_args
        self.max_command_bytes = max_command_bytes
        self.db = db
        self.timestamp: int | None = None
        self.commands = 0  # commands parsed so far
        self._buf = b""
        self._pos = 0
        self._base = offset  # file offset of self._buf[0]
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._need = 0  # bytes wanted after self._pos before parsing again
        self._closed = False

    @property
    def offset(self) -> int:
        """File offset of the first byte not yet parsed (the start of the next command)."""
        return self._base + self._pos

    def feed(self, data: bytes) -> list[AofCommand]:
        """Take the next chunk of input; return the commands it completes."""
        if not data:
            return []
        if self._closed:
            raise FormatError("data fed after close()", offset=self.offset)
        self._pending.append(bytes(data))
        self._pending_len += len(data)
        if self._need and len(self._buf) - self._pos + self._pending_len < self._need:
            return []
        self._join()
        out: list[AofCommand] = []
        self._parse(out, final=False)
        return out

    def close(self) -> list[AofCommand]:
        """Signal the end of the input; raise FormatError if it ends inside a command."""
        self._closed = True
        self._join()
        out: list[AofCommand] = []
        self._parse(out, final=True)
        return out

    # -- buffer ---------------------------------------------------------------------------

    def _join(self) -> None:
        parts = self._pending
        self._pending = []
        self._pending_len = 0
        self._need = 0
        rest = self._buf[self._pos :] if self._pos else self._buf
        self._base += self._pos
        self._pos = 0
        if not parts:
            self._buf = rest
        elif not rest and len(parts) == 1:
            self._buf = parts[0]
        else:
            self._buf = b"".join([rest, *parts])

    def _wait_for_more(self, start: int) -> None:
        avail = len(self._buf) - start
        if avail > self.max_command_bytes:
            raise FormatError(
                f"a command larger than the {self.max_command_bytes}-byte limit",
                offset=self._base + start,
            ) from None
        self._pos = start
        self._need = max(2 * avail, avail + 1)

    # -- parsing --------------------------------------------------------------------------

    def _parse(self, out: list[AofCommand], *, final: bool) -> None:
        buf = self._buf
        end = len(buf)
        pos = self._pos
        base = self._base
        find = buf.find
        append = out.append
        max_bulk = self.max_bulk_bytes
        max_args = self.max_args
        db = self.db
        ts = self.timestamp
        start = pos
        try:
            while pos < end:
                start = pos
                first = buf[pos]
                if first == _STAR:
                    nl = find(b"\r\n", pos + 1, pos + _MAX_HEADER_LINE)
                    if nl < 0:
                        _no_crlf(buf, pos, end, base, "the argument count")
                    text = buf[pos + 1 : nl]
                    if not text.isdigit():
                        raise FormatError(
                            f"expected an argument count after '*', found {text[:32]!r}",
                            offset=base + pos,
                        )
                    argc = int(text)
                    if argc == 0 or argc > max_args:
                        raise FormatError(
                            f"argument count {argc} is out of range (1 to {max_args})",
                            offset=base + pos,
                        )
                    pos = nl + 2
                    args: list[bytes] = []
                    for _ in range(argc):
                        if pos >= end:
                            raise _Incomplete()
                        if buf[pos] != _DOLLAR:
                            raise FormatError(
                                f"expected '$' and an argument length, found "
                                f"{buf[pos : pos + 16]!r} (in the command at offset "
                                f"{base + start})",
                                offset=base + pos,
                            )
                        nl = find(b"\r\n", pos + 1, pos + _MAX_HEADER_LINE)
                        if nl < 0:
                            _no_crlf(buf, pos, end, base, "an argument length")
                        text = buf[pos + 1 : nl]
                        if not text.isdigit():
                            raise FormatError(
                                f"expected an argument length after '$', found {text[:32]!r} "
                                f"(in the command at offset {base + start})",
                                offset=base + pos,
                            )
                        n = int(text)
                        if n > max_bulk:
                            raise FormatError(
                                f"argument length {n} is over the {max_bulk}-byte limit "
                                f"(in the command at offset {base + start})",
                                offset=base + pos,
                            )
                        data = nl + 2
                        stop = data + n
                        if stop + 2 > end:
                            raise _Incomplete()
                        if buf[stop] != _CR or buf[stop + 1] != _LF:
                            raise FormatError(
                                f"expected CRLF after a {n}-byte argument, found "
                                f"{buf[stop : stop + 2]!r} (in the command at offset "
                                f"{base + start})",
                                offset=base + stop,
                            )
                        args.append(buf[data:stop])
                        pos = stop + 2
                    name = args[0]
                    if len(name) == 6 and name.upper() == b"SELECT":
                        db = _select(args, base + start)
                    append(AofCommand(args, db, base + start, ts))
                elif first == _HASH:
                    nl = find(b"\n", pos + 1, pos + MAX_ANNOTATION_LINE)
                    if nl < 0:
                        if end - pos >= MAX_ANNOTATION_LINE:
                            raise FormatError(
                                f"annotation line longer than {MAX_ANNOTATION_LINE} bytes",
                                offset=base + pos,
                            )
                        if not final:
                            raise _Incomplete()
                        nl = end  # the last line of the file may lack its newline
                    if buf.startswith(b"#TS:", pos):
                        stamp = buf[pos + 4 : nl].rstrip(b"\r")
                        if stamp.isdigit():
                            ts = int(stamp)
                    pos = nl + 1
                else:
                    raise FormatError(
                        f"expected '*' (a command) or '#' (an annotation), "
                        f"found {buf[pos : pos + 16]!r}",
                        offset=base + pos,
                    )
            self._pos = end
        except _Incomplete:
            self._pos = start
            if final and self.load_truncated:
                self.truncated_at = base + start
            elif final:
                raise FormatError(
                    "the input ends inside a command (truncated file)", offset=base + start
                ) from None
            else:
                self._wait_for_more(start)
        finally:
            self.commands += len(out)
            self.db = db
            self.timestamp = ts


def _no_crlf(buf: bytes, pos: int, end: int, base: int, what: str) -> NoReturn:
    """A header line without CRLF: more bytes may bring it, unless it is already wrong."""
    partial = buf[pos + 1 : end]
    if partial.endswith(b"\r"):
        partial = partial[:-1]
    if end - pos < _MAX_HEADER_LINE and (not partial or partial.isdigit()):
        raise _Incomplete()
    raise FormatError(
        f"expected {what} and CRLF, found {buf[pos : pos + _MAX_HEADER_LINE]!r}",
        offset=base + pos,
    )


def _select(args: list[bytes], offset: int) -> int:
    if len(args) != 2 or not args[1].isdigit() or len(args[1]) > _MAX_DB_DIGITS:
        shown = b" ".join(a[:32] for a in args)
        raise FormatError(f"SELECT without a valid database index: {shown!r}", offset=offset)
    return int(args[1])


def encode_command(args: Sequence[bytes]) -> bytes:
    """`*<n>` and each argument as a bulk string."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n" % len(arg))
        parts.append(arg)
        parts.append(b"\r\n")
    return b"".join(parts)
