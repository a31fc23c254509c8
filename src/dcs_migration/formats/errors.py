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
        where = []
        if self.source is not None:
            where.append(f"file {self.source}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        return f"{self.message} ({', '.join(where)})" if where else self.message
