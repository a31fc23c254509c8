"""Streams with guard rails: bounded decompression, member slices, one error type.

A compressed source can claim (or produce) far more bytes than it holds: a zip bomb.
`ArchiveLimits` bounds what one archive or gzip file may yield, both in total and as a
ratio to its compressed size (with a little slack so that tiny files pass). Archive
listings check the sizes members declare before reading anything; `GuardedStream`
counts what a decompressor actually yields and stops at the limit. Decompression and
archive errors become FormatError naming the file.
"""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
import zipfile
import zlib
from dataclasses import dataclass

from dcs_migration.formats.errors import FormatError
from dcs_migration.sources.inputs import ByteStream

DECODE_ERRORS: tuple[type[Exception], ...] = (
    zlib.error,
    EOFError,
    gzip.BadGzipFile,
    zipfile.BadZipFile,
    tarfile.TarError,
    lzma.LZMAError,
    NotImplementedError,  # zipfile: a compression method it cannot read
)


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Bounds on decompressed bytes: total, ratio to the compressed size, member count."""

    max_total_bytes: int = 1 << 40
    max_ratio: float = 200.0
    ratio_slack_bytes: int = 1 << 20
    max_members: int = 100_000

    def budget(self, compressed_size: int) -> int:
        """The most bytes `compressed_size` bytes of compressed data may yield."""
        by_ratio = int(self.max_ratio * compressed_size) + self.ratio_slack_bytes
        return min(self.max_total_bytes, by_ratio)


DEFAULT_LIMITS = ArchiveLimits()


def over_budget(name: str, source: str, limit: int) -> FormatError:
    return FormatError(
        f"{name} decompresses to more than {limit} bytes, over the archive limits "
        "(a zip bomb, or raise the limits)",
        source=source,
    )


class GuardedStream:
    """Reads from `raw`, turning decoding errors into FormatError and stopping at `limit`."""

    def __init__(self, raw: ByteStream, name: str, limit: int | None = None) -> None:
        self._raw = raw
        self._name = name
        self._limit = limit
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        if self._limit is not None:
            room = self._limit - self.count + 1
            size = room if size is None or size < 0 else min(size, room)
        try:
            data = self._raw.read(size)
        except DECODE_ERRORS as exc:
            raise FormatError(
                f"cannot read the compressed data: {exc}", offset=self.count, source=self._name
            ) from exc
        self.count += len(data)
        if self._limit is not None and self.count > self._limit:
            raise over_budget("the file", self._name, self._limit)
        return data

    def seek(self, offset: int, /) -> int:
        """Only forward reading: a gzip layer on top never needs to rewind."""
        raise io.UnsupportedOperation("seek")


class SliceReader:
    """The next `size` bytes of `raw` (an archive member in a tar stream)."""

    def __init__(self, raw: ByteStream, size: int, name: str) -> None:
        self._raw = raw
        self._left = size
        self._name = name

    def read(self, size: int = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = self._raw.read(want)
        if not data and want:
            raise FormatError(
                f"{self._name} is cut short: the archive ends {self._left} bytes early",
                source=self._name,
            )
        self._left -= len(data)
        return data

    def seek(self, offset: int, /) -> int:
        """Only forward reading: a gzip layer on top never needs to rewind."""
        raise io.UnsupportedOperation("seek")


def read_at_most(stream: ByteStream, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        data = stream.read(left)
        if not data:
            break
        parts.append(data)
        left -= len(data)
    return b"".join(parts)
