"""The one error type of the format readers."""

from __future__ import annotations


class FormatError(Exception):
    """A backup that cannot be read: says what was expected, where, and in which key.

    `offset` is the byte offset in the input where the problem lies (the start of the
    item that could not be read); `key` is the key being read, when one was.
    `source` names the file; the helper that feeds a reader from a file fills it in.
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        key: bytes | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.key = key
        self.source = source

    def __str__(self) -> str:
        return located(self.message, self.source, self.offset, self.key)


def located(
    message: str, source: str | None, offset: int | None = None, key: bytes | None = None
) -> str:
    """`message (file F, offset N, key K)`, naming what is known: how every error that
    points into a backup reads, whichever layer raised it."""
    where = []
    if source is not None:
        where.append(f"file {source}")
    if offset is not None:
        where.append(f"offset {offset}")
    if key is not None:
        where.append(f"key {key!r}")
    return f"{message} ({', '.join(where)})" if where else message
