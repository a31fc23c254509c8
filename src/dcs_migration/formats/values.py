"""A key's value decoded, from the bytes the reader kept: the one place a record's value
is decoded, by its type's `Encoding` (see `formats.types` for what each type decodes to).

`decode_value` decodes a value whole. A big value (a BigKeyRecord) is decoded a piece
at a time by `decode_parts` (and a stream by `stream_parts`): each part holds some of the
elements, in file order, so that a caller never holds it whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from dcs_migration.formats import rdb_pieces
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.primitives import Cursor, Incomplete
from dcs_migration.formats.records import BigKeyRecord, KeyRecord
from dcs_migration.formats.types import Encoding, Value, encoding_of
from dcs_migration.formats.types.hashes import HashValue
from dcs_migration.formats.types.streams import (
    StreamEntry,
    StreamValue,
    check_stream_nodes,
    decode_stream_metadata,
    decode_stream_nodes,
)

__all__ = ["Value", "decode_parts", "decode_value", "stream_parts"]


def decode_value(record: KeyRecord | BigKeyRecord) -> Value:
    """A record's value, decoded whole (a big value is then held whole: for callers that
    need it so, such as the oracle); errors name the key and the record's file offset."""
    if isinstance(record, BigKeyRecord):
        return _decode_big(record)
    with _naming(record):
        return _decode(_encoding(record), record.payload)


@contextmanager
def _naming(record: KeyRecord | BigKeyRecord) -> Iterator[None]:
    """Errors while decoding a value name its key and its record's offset."""
    try:
        yield
    except Incomplete:
        raise FormatError(
            "value ends before its content does", offset=record.offset, key=record.key
        ) from None
    except FormatError as exc:
        raise FormatError(exc.message, offset=record.offset, key=record.key) from None


def _encoding(record: KeyRecord | BigKeyRecord) -> Encoding[Value]:
    encoding = encoding_of(record.rdb_type, record.valkey)
    if encoding is None:
        raise FormatError(f"unknown RDB object type {record.rdb_type}")
    return encoding


def _decode(encoding: Encoding[Value], payload: bytes) -> Value:
    c = Cursor(payload)
    value = encoding.decode(c)
    c.finish()
    return value


def decode_parts(record: KeyRecord | BigKeyRecord) -> Iterator[Value]:
    """The value in parts of whole elements, in file order: a KeyRecord's in one part
    (an aggregate's a piece of elements at a time), a big value's a piece at a time (a
    string's bytes, decompressed, in slices). Streams are decoded by `stream_parts`.
    Errors name the key and the record's offset."""
    with _naming(record):
        encoding = _encoding(record)
    if isinstance(record, BigKeyRecord):
        with _naming(record):
            if encoding.decode_pieces is not None:
                yield from encoding.decode_pieces(record.head, record.pieces())
            elif encoding.type_name == "stream":
                raise ValueError("streams are decoded by stream_parts")
            else:  # a value that is one blob (a listpack, a ziplist): read whole
                whole = record.head + b"".join(record.pieces()) + record.tail
                yield _decode(encoding, whole)
        return
    layout = encoding.layout
    if encoding.decode_pieces is None or layout is None or layout.raw:
        yield decode_value(record)
        return
    with _naming(record):
        head, pieces, _ = rdb_pieces.split_value(layout, record.payload, rdb_pieces.PIECE_BYTES)
        yield from encoding.decode_pieces(head, pieces)


def _head_and_pieces(record: KeyRecord | BigKeyRecord) -> tuple[bytes, Iterable[bytes], bytes]:
    """A value's head, pieces and tail: a big value's as read, a whole one's cut as the
    reader cuts a big one, so that it is decoded a piece of elements at a time too."""
    if isinstance(record, BigKeyRecord):
        return record.head, record.pieces(), record.tail
    layout = _encoding(record).layout
    assert layout is not None
    return rdb_pieces.split_value(layout, record.payload, rdb_pieces.PIECE_BYTES)


def stream_parts(
    record: KeyRecord | BigKeyRecord,
) -> tuple[StreamValue, Iterator[list[StreamEntry]]]:
    """A stream as its metadata and groups (with no entries), then its entries in parts,
    in ID order: what rebuilding it needs first (the pending entries) comes first."""
    with _naming(record):
        if isinstance(record, BigKeyRecord):
            head, tail = record.head, record.tail
        else:
            head, _, tail = _head_and_pieces(record)
        meta = decode_stream_metadata(record.rdb_type, Cursor(tail))
        check_stream_nodes(meta, Cursor(head).length())
    return meta, _stream_entries(record)


def _stream_entries(record: KeyRecord | BigKeyRecord) -> Iterator[list[StreamEntry]]:
    with _naming(record):
        for piece in _head_and_pieces(record)[1]:
            entries: list[StreamEntry] = []
            decode_stream_nodes(Cursor(piece), None, entries)
            yield entries


def _decode_big(record: BigKeyRecord) -> Value:
    """A big value decoded whole, from its parts."""
    with _naming(record):
        is_stream = _encoding(record).type_name == "stream"
    if is_stream:
        meta, entry_parts = stream_parts(record)
        for entries in entry_parts:
            meta.entries.extend(entries)
        return meta
    parts = list(decode_parts(record))
    first = parts[0] if parts else b""
    if isinstance(first, bytes):
        return b"".join(p for p in parts if isinstance(p, bytes))
    if isinstance(first, HashValue):
        whole = HashValue({})
        for part in parts:
            assert isinstance(part, HashValue)
            if whole.fields.keys() & part.fields.keys():
                raise FormatError(
                    "hash holds the same field twice", offset=record.offset, key=record.key
                )
            whole.fields.update(part.fields)
            whole.field_expire_at_ms.update(part.field_expire_at_ms)
        return whole
    elements: list[Any] = []
    for part in parts:
        assert isinstance(part, list)
        elements.extend(part)
    return elements
