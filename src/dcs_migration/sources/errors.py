"""The one error type of sources: where backup bytes should come from cannot be read.

Not a FormatError: a missing bucket, a refused access or an object key that leaves its
bucket says nothing of the backup's bytes, which were never reached. It names what it
could not read the way a FormatError does (`file ...`, with the offset when a read
broke off part way), so that a task's error reads the same whichever layer failed.
"""

from __future__ import annotations

from dcs_migration.formats.errors import located


class SourceError(Exception):
    """A source that cannot be found, reached or read; `source` names it as users know
    it (`bucket/key`, `s3://bucket/key`), `offset` where a read broke off."""

    def __init__(
        self, message: str, *, source: str | None = None, offset: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.offset = offset

    def __str__(self) -> str:
        return located(self.message, self.source, self.offset)
