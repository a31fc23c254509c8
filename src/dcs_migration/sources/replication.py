"""A live Redis as a source: its RDB snapshot, taken the way a replica takes it.

No access to the server's disk is needed: this connects as a replica would (AUTH,
REPLCONF, PSYNC), receives the full-sync payload (`$<length>` or, diskless, `$EOF:<mark>`)
and hands it on in chunks while an RDB reader checks it (structure and CRC64), so what
is kept is known to be a whole, valid image. `REPLCONF rdb-only` asks the server not to
follow the snapshot with its replication stream.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from dcs_migration.client.connection import Connection, ConnectionLost
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.resp import encode_command
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.rdb import RdbReader

CHUNK = 1 << 20
MARK_LENGTH = 40


@dataclass
class Snapshot:
    """What a snapshot held: its size, RDB version and keys per db."""

    size: int = 0
    rdb_version: int = 0
    key_counts: dict[int, int] = field(default_factory=dict)
    replication_id: str = ""
    offset: int = 0


def take_snapshot(
    endpoint: Endpoint,
    sink: Callable[[bytes], None],
    *,
    timeout: float = 300.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> Snapshot:
    """Stream the server's RDB snapshot into `sink`; raise TargetError (the server) or
    FormatError (the image) when it cannot be taken whole. `on_progress` hears the bytes
    and the keys received so far, after every chunk."""
    conn = Connection(endpoint, timeout=timeout)
    try:
        conn.connect()
    except ConnectionLost as exc:
        raise TargetError(str(exc)) from None
    try:
        conn.call_checked(b"REPLCONF", b"capa", b"eof", b"capa", b"psync2")
        conn.call(b"REPLCONF", b"rdb-only", b"1")  # 7.0+; older servers ignore it
        sock = conn.raw_socket()
        sock.sendall(encode_command([b"PSYNC", b"?", b"-1"]))
        stream = _SocketLines(sock, conn.take_buffered())
        line = stream.line()
        while line == b"":  # newlines keep the link alive while the server gets ready
            line = stream.line()
        if not line.startswith(b"+FULLRESYNC"):
            raise TargetError(f"the server answered PSYNC with {line[:80]!r}")
        _, replid, offset = line.split(b" ")[:3]
        snapshot = Snapshot(replication_id=replid.decode(), offset=int(offset))
        header = stream.line()
        while header == b"":  # newlines keep the link alive while the server saves
            header = stream.line()
        reader = RdbReader(count_keys_only=True)
        if header.startswith(b"$EOF:"):
            mark = header[5:]
            if len(mark) != MARK_LENGTH:
                raise TargetError("the server sent a malformed EOF mark")
            _copy_until_mark(stream, mark, reader, sink, snapshot, on_progress)
        elif header.startswith(b"$"):
            _copy_length(stream, int(header[1:]), reader, sink, snapshot, on_progress)
        else:
            raise TargetError(f"the server sent {header[:80]!r} where the snapshot starts")
        reader.close()
        if not reader.done:
            raise FormatError("the snapshot ended before its RDB image did")
        snapshot.rdb_version = reader.rdb_version
        snapshot.key_counts = dict(reader.key_counts)
        return snapshot
    except ConnectionLost as exc:
        raise TargetError(f"the server dropped the snapshot: {exc}") from None
    except OSError as exc:
        raise TargetError(f"the server dropped the snapshot: {exc}") from None
    finally:
        conn.close()


class _SocketLines:
    """Lines and raw chunks from the replication socket."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self.buf = buffered

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def chunk(self, most: int) -> bytes:
        if not self.buf:
            self._more()
        data, self.buf = self.buf[:most], self.buf[most:]
        return data

    def _more(self) -> None:
        data = self.sock.recv(CHUNK)
        if not data:
            raise ConnectionLost("the server closed the connection")
        self.buf += data


def _emit(
    data: bytes,
    reader: RdbReader,
    sink: Callable[[bytes], None],
    snapshot: Snapshot,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    if data:
        reader.feed(data)
        sink(data)
        snapshot.size += len(data)
        if on_progress is not None:
            on_progress(snapshot.size, sum(reader.key_counts.values()))


def _copy_length(
    stream: _SocketLines,
    length: int,
    reader: RdbReader,
    sink: Callable[[bytes], None],
    snapshot: Snapshot,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    left = length
    while left:
        data = stream.chunk(min(left, CHUNK))
        left -= len(data)
        _emit(data, reader, sink, snapshot, on_progress)


def _copy_until_mark(
    stream: _SocketLines,
    mark: bytes,
    reader: RdbReader,
    sink: Callable[[bytes], None],
    snapshot: Snapshot,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    # As a replica does: the mark ends the image when a read ends with it (it is 40 random
    # characters and the server sends nothing after it). The reader's close() then proves
    # the image whole, so a mark that was really data fails as a truncated image.
    held = b""  # the last bytes, which may be the start of the mark
    while True:
        held += stream.chunk(CHUNK)
        if held.endswith(mark):
            _emit(held[:-MARK_LENGTH], reader, sink, snapshot, on_progress)
            return
        _emit(held[:-MARK_LENGTH], reader, sink, snapshot, on_progress)
        held = held[-MARK_LENGTH:]
