"""A first-in, first-out byte buffer between a thread that receives and one that applies.

A live source's replication stream arrives at the source's pace and is applied at the
target's. What the target has not taken yet waits here: in memory up to `memory_bytes`,
then in a temporary file, up to `max_bytes` in all. Past that the receiving side gets
SpoolFull, so that a target that cannot keep up ends the sync clearly instead of filling
the disk. The file is emptied (truncated) whenever the reader catches up with it.
"""

from __future__ import annotations

import collections
import os
import tempfile
import threading
from typing import IO

DEFAULT_MEMORY_BYTES = 32 << 20


class SpoolFull(Exception):
    """More bytes wait than the spool may hold."""


class Spool:
    def __init__(
        self,
        max_bytes: int,
        *,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        directory: str | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.memory_bytes = min(memory_bytes, max_bytes)
        self.directory = directory
        self._memory: collections.deque[bytes] = collections.deque()
        self._in_memory = 0
        self._file: IO[bytes] | None = None
        self._file_written = 0  # where the next write goes
        self._file_read = 0  # where the next read starts
        self._closed = False  # no more bytes will come
        self._cond = threading.Condition()
        self.peak_bytes = 0  # the most that ever waited
        self.spilled_bytes = 0  # bytes that went through the file

    @property
    def waiting(self) -> int:
        """Bytes put and not yet taken."""
        with self._cond:
            return self._waiting()

    def _waiting(self) -> int:
        return self._in_memory + self._file_written - self._file_read

    def put(self, data: bytes) -> None:
        """Add bytes at the end; SpoolFull when they would pass `max_bytes`."""
        if not data:
            return
        with self._cond:
            waiting = self._waiting() + len(data)
            if waiting > self.max_bytes:
                raise SpoolFull(
                    f"{waiting} bytes of the replication stream wait for the target, more "
                    f"than the {self.max_bytes}-byte spool holds"
                )
            # Once bytes went to the file, later ones follow them there: order is kept.
            if self._file_written > self._file_read or self._in_memory + len(data) > (
                self.memory_bytes
            ):
                self._spill(data)
            else:
                self._memory.append(data)
                self._in_memory += len(data)
            self.peak_bytes = max(self.peak_bytes, waiting)
            self._cond.notify_all()

    def close(self) -> None:
        """No more bytes will be put: `take` answers b"" once the rest is taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, most: int, timeout: float) -> bytes | None:
        """Up to `most` bytes from the front, waiting up to `timeout` seconds for some;
        None when nothing came in time, b"" when the spool is closed and empty."""
        with self._cond:
            if not self._waiting() and not self._closed:
                self._cond.wait(timeout)
            if self._memory:
                return self._from_memory(most)
            if self._file_written > self._file_read:
                return self._from_file(most)
            return b"" if self._closed else None

    def discard(self) -> None:
        """Drop every byte waiting, and the file."""
        with self._cond:
            self._memory.clear()
            self._in_memory = 0
            self._file_written = self._file_read = 0
            if self._file is not None:
                self._file.close()
                self._file = None

    def _from_memory(self, most: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while self._memory and size < most:
            chunk = self._memory.popleft()
            if size + len(chunk) > most:
                cut = most - size
                self._memory.appendleft(chunk[cut:])
                chunk = chunk[:cut]
            parts.append(chunk)
            size += len(chunk)
        self._in_memory -= size
        return b"".join(parts)

    def _from_file(self, most: int) -> bytes:
        assert self._file is not None
        n = min(most, self._file_written - self._file_read)
        data = os.pread(self._file.fileno(), n, self._file_read)
        if len(data) != n:
            raise OSError(f"the spool file lost {n - len(data)} bytes")
        self._file_read += n
        if self._file_read == self._file_written:  # caught up: the file starts over
            self._file.truncate(0)
            self._file_read = self._file_written = 0
        return data

    def _spill(self, data: bytes) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="dcs-spool-", dir=self.directory)  # noqa: SIM115
        os.pwrite(self._file.fileno(), data, self._file_written)
        self._file_written += len(data)
        self.spilled_bytes += len(data)
