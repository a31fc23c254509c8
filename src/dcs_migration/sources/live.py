"""A live Redis as a source: its snapshot, then its replication stream, as a replica gets them.

A thread of its own reads the link (`ReplicaLink`) all the time, so that the source never
waits on the target: the snapshot's bytes go through a short queue (the snapshot is read
at the pace the target takes it, as a replica loading without a disk does; the source
keeps the commands of that time in its replica buffer), and the stream's bytes go to a
`Spool` (memory, then a temporary file, up to a bound). What the receiving thread meets
(the link dropped, the spool full) reaches the applying side once it has taken every
byte received before, so that nothing received is lost to an error.

Every second the receiving thread also acknowledges the applied offset (`REPLCONF ACK`),
as a replica does: a source counts a replica that stops acknowledging as gone.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

from dcs_migration.client.connection import ConnectionLost
from dcs_migration.client.endpoint import Endpoint, TargetError
from dcs_migration.client.replica import Continue, FullResync, ReplicaLink
from dcs_migration.sources.inputs import Input, InputKind, InputPart
from dcs_migration.sources.spool import Spool, SpoolFull

SNAPSHOT_QUEUE_CHUNKS = 16  # of up to 256 KiB: what of the snapshot waits for the target
ACK_SECONDS = 1.0
STREAM_TAKE_BYTES = 4 << 20


class LinkLost(Exception):
    """The link to the source ended (after every byte received before was taken).
    `final`: linking again cannot help (the spool overflowed: the target is too slow)."""

    def __init__(self, message: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


class LiveSource:
    """One run of a replication link: `start`, then the snapshot (after a FullResync),
    then `take` the stream until the link ends or `close`."""

    def __init__(
        self,
        endpoint: Endpoint,
        spool: Spool,
        *,
        timeout: float,
        bytes_per_second: int | None = None,
        applied: Callable[[], int] = lambda: 0,
    ) -> None:
        self.endpoint = endpoint
        self.spool = spool
        self.link = ReplicaLink(endpoint, timeout=timeout, bytes_per_second=bytes_per_second)
        self.applied = applied  # the offset acknowledged to the source
        self.snapshot_size: int | None = None  # None: diskless, unknown until its end
        self._snapshot: queue.Queue[bytes | BaseException | None] = queue.Queue(
            SNAPSHOT_QUEUE_CHUNKS
        )
        self._error: BaseException | None = None
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def failed(self) -> bool:
        """Did the link end on its own (dropped, silent, the spool full)?"""
        return self._error is not None and not self._closing.is_set()

    @property
    def received(self) -> int:
        return self.link.received

    def start(self, replication_id: str | None, offset: int | None) -> FullResync | Continue:
        """The handshake, then the receiving thread. TargetError as `ReplicaLink.open`."""
        answer = self.link.open(replication_id, offset)
        snapshot = isinstance(answer, FullResync)
        for target, name in ((self._receive, "receive"), (self._acknowledge, "ack")):
            thread = threading.Thread(
                target=target, args=(snapshot,) if name == "receive" else (), daemon=True
            )
            thread.name = f"live-source-{name}"
            thread.start()
            self._threads.append(thread)
        return answer

    def snapshot_input(self) -> Input:
        """The snapshot as an input of one part, read once, for the importer."""
        name = f"snapshot of {self.endpoint.host}:{self.endpoint.port}"
        first = self._snapshot.get()  # the receiving thread learnt the size first
        size = self.snapshot_size
        opened = False

        def open_once() -> contextlib.AbstractContextManager[_Chunks]:
            nonlocal opened
            if opened:
                raise TargetError("the snapshot of a live source can be read only once")
            opened = True
            return contextlib.nullcontext(_Chunks(self._chunks(first)))

        return Input(
            name,
            InputKind.RDB,
            (InputPart(name, size or 0, open_once, size_exact=size is not None),),
            rereadable=False,
        )

    def take(self, timeout: float) -> bytes | None:
        """Stream bytes, in order: None when none came within `timeout`; LinkLost (with
        why) once the link ended and everything received before was taken."""
        data = self.spool.take(STREAM_TAKE_BYTES, timeout)
        if data:
            return data
        if data == b"":
            error = self._error
            if error is None:
                raise LinkLost("the link was closed")
            raise LinkLost(str(error), final=isinstance(error, SpoolFull))
        return None

    def close(self) -> None:
        self._closing.set()
        self.link.close()
        self.spool.close()
        for thread in self._threads:
            thread.join(5.0)

    # -- the receiving thread --------------------------------------------------------------

    def _chunks(self, first: bytes | BaseException | None) -> Iterator[bytes]:
        item = first
        while item is not None:
            if isinstance(item, BaseException):
                raise TargetError(f"the snapshot could not be received: {item}")
            yield item
            item = self._snapshot.get()

    def _put_snapshot(self, item: bytes | BaseException | None) -> None:
        while not self._closing.is_set():
            try:
                self._snapshot.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _receive(self, snapshot: bool) -> None:
        link = self.link
        try:
            if snapshot:
                self._receive_snapshot()
            while True:
                self.spool.put(link.receive())
        except (ConnectionLost, TargetError, SpoolFull, OSError) as exc:
            error: BaseException = exc
            if self._closing.is_set():
                error = ConnectionLost("the link was closed")
            self._error = error
            self._put_snapshot(error)  # a snapshot reader waiting hears it too
        finally:
            self.spool.close()

    def _receive_snapshot(self) -> None:
        link = self.link
        first = True
        for data in link.snapshot():
            if first:  # the size is known (or known to be unknown): the reader may start
                self.snapshot_size, first = link.snapshot_size, False
            self._put_snapshot(data)
        if first:
            self.snapshot_size = link.snapshot_size
            self._put_snapshot(b"")
        self._put_snapshot(None)
        # As a replica does once loaded: a source sends the stream after the first ACK.
        link.send_ack(self.applied())

    def _acknowledge(self) -> None:
        while not self._closing.wait(ACK_SECONDS):
            self.link.send_ack(self.applied())


class _Chunks:
    """A byte stream over chunks, for a reader that asks for `size` bytes at a time."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def read(self, size: int = -1, /) -> bytes:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._rest = chunk
        if size < 0 or size >= len(self._rest):
            data, self._rest = self._rest, b""
        else:
            data, self._rest = self._rest[:size], self._rest[size:]
        return data
