"""Strings (RDB_TYPE_STRING): one RDB string, plain, integer-encoded or LZF-compressed.

A whole string decodes to its bytes. A big one is handed out as its header and raw
bytes; decoding it a piece at a time decompresses an LZF string as it goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.lzf import LzfStream
from dcs_migration.formats.primitives import RDB_ENCVAL_LZF, Cursor, skip_string
from dcs_migration.formats.rdb_pieces import ONE_STRING
from dcs_migration.formats.types.encoding import Encoding


def _decode(c: Cursor) -> bytes:
    return c.string()


def _lzf_lengths(head: bytes) -> tuple[int, int]:
    """An LZF string's compressed and uncompressed lengths, from its header bytes."""
    c = Cursor(head)
    c.pos = 1
    return c.length(), c.length()


def _decode_pieces(head: bytes, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The string's bytes, decompressed, in slices."""
    first = head[0]
    if first >= 0xC0 and first & 0x3F == RDB_ENCVAL_LZF:
        _, size = _lzf_lengths(head)
        lzf = LzfStream(size)
        for piece in pieces:
            yield from lzf.feed(piece)
        lzf.close()
    else:
        yield from pieces


ENCODINGS = {
    T.RDB_TYPE_STRING: Encoding("string", skip_string, _decode, ONE_STRING, _decode_pieces),
}
