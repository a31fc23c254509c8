"""The replica's side of a Redis replication link: the handshake, PSYNC, and its bytes.

As a Redis replica does (replication.c, `syncWithMaster`): log in, `REPLCONF
listening-port`, `REPLCONF capa eof capa psync2`, then `PSYNC <replid> <offset + 1>` to
continue where the applied offset stands, or `PSYNC ? -1` for a full copy. The master
answers `+CONTINUE [<replid>]` (the stream goes on from that offset) or `+FULLRESYNC
<replid> <offset>` (a snapshot follows, as `$<length>` or, diskless, `$EOF:<mark>`).

This module moves bytes and reads those few lines only; the snapshot is read by the RDB
reader and the stream by the RESP reader, elsewhere. Offsets count stream bytes as
Redis counts them: after a full resync at offset N, the stream's first byte is N + 1.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from dcs_migration.client.connection import Connection, ConnectionLost
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.resp import encode_command

RECV_BYTES = 256 << 10
EOF_MARK_BYTES = 40
HANDSHAKE_SECONDS = 30.0


@dataclass(frozen=True)
class FullResync:
    """A snapshot follows: it holds the source as it stood at `offset`."""

    replication_id: str
    offset: int


@dataclass(frozen=True)
class Continue:
    """The stream goes on from the offset asked for. `replication_id` is the source's
    current id: a new one after a failover (the old one is its second id)."""

    replication_id: str


class SourceRefused(TargetError):
    """The source refused to serve a replica (LOADING, NOMASTERLINK, a bad password ...)."""


class Throttle:
    """At most `rate` bytes a second on average, a tenth of a second's worth at once."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.burst = rate / 10
        self._allowed = self.burst
        self._at = time.monotonic()

    def take(self, n: int) -> None:
        now = time.monotonic()
        self._allowed = min(self.burst, self._allowed + (now - self._at) * self.rate)
        self._at = now
        self._allowed -= n
        if self._allowed < 0:
            time.sleep(-self._allowed / self.rate)


class ReplicaLink:
    """One replication link to a source. `receive` and `send_ack` may run on two threads."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float,
        bytes_per_second: int | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._conn = Connection(endpoint, timeout=HANDSHAKE_SECONDS)
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._send_lock = threading.Lock()
        self._throttle = Throttle(bytes_per_second) if bytes_per_second else None
        self.received = 0  # bytes read from the source, whatever they were
        self.snapshot_size: int | None = None

    def open(
        self, replication_id: str | None, offset: int | None, *, rdb_only: bool = False
    ) -> FullResync | Continue:
        """Connect and ask for the stream after `offset` of `replication_id` (a full copy
        when either is None; `rdb_only`: the snapshot alone, no stream after it, which a
        source before 7.0 ignores). TargetError when the source cannot be reached or
        refuses."""
        conn = self._conn
        try:
            conn.connect()
            conn.call(b"REPLCONF", b"listening-port", b"0")  # a replica with no port of its own
            conn.call_checked(b"REPLCONF", b"capa", b"eof", b"capa", b"psync2")
            if rdb_only:
                conn.call(b"REPLCONF", b"rdb-only", b"1")
            sock = conn.raw_socket()
            conn.take_buffered()
            self._sock = sock
            if replication_id is None or offset is None:
                asked = [b"PSYNC", b"?", b"-1"]
            else:
                asked = [b"PSYNC", replication_id.encode(), b"%d" % (offset + 1)]
            sock.sendall(encode_command(asked))
            line = self._line()
            while line == b"":  # newlines keep the link alive while the source gets ready
                line = self._line()
        except ConnectionLost as exc:
            raise TargetError(f"the source {self._where}: {exc}") from None
        except OSError as exc:
            raise TargetError(f"the source {self._where}: {exc}") from None
        sock.settimeout(self.timeout)
        if line.startswith(b"+FULLRESYNC"):
            parts = line.split(b" ")
            if len(parts) < 3:
                raise SourceRefused(f"the source {self._where} answered PSYNC with {line!r}")
            return FullResync(parts[1].decode(), int(parts[2]))
        if line.startswith(b"+CONTINUE"):
            parts = line.split(b" ")
            new_id = parts[1].decode() if len(parts) > 1 and parts[1] else replication_id
            assert new_id is not None
            return Continue(new_id)
        raise SourceRefused(
            f"the source {self._where} refused to serve a replica: "
            f"{line[:200].decode(errors='replace')}"
        )

    def snapshot(self) -> Iterator[bytes]:
        """After a FullResync: the snapshot's bytes, in chunks. `snapshot_size` is set
        before the first (None: diskless, its end told by a mark). What follows the
        snapshot (the stream) is left for `receive`. ConnectionLost when the link ends
        first."""
        header = self._snapshot_header()
        if isinstance(header, int):
            self.snapshot_size = left = header
            while left:
                data = self.receive(min(left, RECV_BYTES))
                left -= len(data)
                yield data
            return
        # Diskless: as a replica does, the mark (40 random characters) ends the image; a
        # mark that was really data fails the RDB reader as a truncated image.
        self.snapshot_size = None
        held = b""
        while True:
            held += self.receive()
            at = held.find(header)
            if at >= 0:
                self._buffer = held[at + EOF_MARK_BYTES :] + self._buffer
                if at:
                    yield held[:at]
                return
            if len(held) > EOF_MARK_BYTES:
                yield held[:-EOF_MARK_BYTES]
                held = held[-EOF_MARK_BYTES:]

    def _snapshot_header(self) -> int | bytes:
        """The snapshot's length, or (diskless) the mark ending it."""
        header = self._line()
        while header == b"":  # newlines, while the source saves its snapshot
            header = self._line()
        if header.startswith(b"$EOF:"):
            mark = header[5:]
            if len(mark) != EOF_MARK_BYTES:
                raise ConnectionLost("the source sent a malformed end-of-snapshot mark")
            return mark
        if header.startswith(b"$"):
            return int(header[1:])
        raise ConnectionLost(f"the source sent {header[:80]!r} where the snapshot starts")

    def receive(self, most: int = RECV_BYTES) -> bytes:
        """The next bytes from the source (those left over from a line first);
        ConnectionLost when the link ends, TargetError when the source is silent past
        the timeout (a master pings its replicas every 10 s by default)."""
        if self._buffer:
            data, self._buffer = self._buffer[:most], self._buffer[most:]
            return data
        sock = self._sock
        if sock is None:
            raise ConnectionLost("the link is closed")
        if self._throttle is not None:  # reads no bigger than a burst: the pace stays even
            most = max(1024, min(most, int(self._throttle.burst)))
        try:
            data = sock.recv(most)
        except TimeoutError:
            raise TargetError(
                f"the source {self._where} sent nothing for {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise ConnectionLost(f"the link to the source {self._where} broke: {exc}") from None
        if not data:
            raise ConnectionLost(f"the source {self._where} closed the link")
        self.received += len(data)
        if self._throttle is not None:
            self._throttle.take(len(data))
        return data

    def send_ack(self, offset: int) -> None:
        """Tell the source how far its stream is applied (`REPLCONF ACK`); a broken
        link is left to `receive` to report."""
        sock = self._sock
        if sock is None:
            return
        with self._send_lock, contextlib.suppress(OSError):
            sock.sendall(encode_command([b"REPLCONF", b"ACK", b"%d" % offset]))

    def close(self) -> None:
        """End the link, from any thread (a `receive` waiting on it returns at once)."""
        self._conn.shut_down()
        self._conn.close()
        self._sock = None

    @property
    def _where(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.port}"

    def _line(self) -> bytes:
        while b"\n" not in self._buffer:
            assert self._sock is not None
            data = self._sock.recv(RECV_BYTES)
            if not data:
                raise ConnectionLost(f"the source {self._where} closed the link")
            self.received += len(data)
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.rstrip(b"\r")
