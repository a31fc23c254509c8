"""The AOF reader: RESP files, RDB preambles, every file of a multi-part AOF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcs_migration.formats.aof import AofReader
from dcs_migration.formats.crc64 import crc64
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.manifest import parse_manifest
from dcs_migration.formats.records import (
    AofCommand,
    KeyRecord,
    RdbEnd,
    RdbHeader,
    Record,
)
from tests.support.corpus import CORPUS, case_params

AOF_FORMATS = ("aof", "aof-preamble", "aof-multipart")


def resp(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def rdb(*pairs: tuple[bytes, bytes], db: int = 0) -> bytes:
    """A small RDB image of string keys, with its checksum."""
    body = b"REDIS0009\xfe" + bytes([db])
    for key, value in pairs:
        body += b"\x00" + bytes([len(key)]) + key + bytes([len(value)]) + value
    body += b"\xff"
    return body + crc64(body).to_bytes(8, "little")


def comparable(records: list[Record]) -> list[Any]:
    """Records as plain values (a KeyRecord has no equality of its own)."""
    out: list[Any] = []
    for r in records:
        if isinstance(r, KeyRecord):
            out.append(("key", r.db, r.key, r.rdb_type, r.payload, r.expire_at_ms, r.offset))
        else:
            out.append(r)
    return out


def read(data: bytes, chunk: int | None = None, **options: Any) -> list[Record]:
    reader = AofReader(**options)
    out: list[Record] = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        out += reader.feed(data[i : i + step])
    out += reader.close()
    return out


def case_files(case: dict[str, Any]) -> list[Path]:
    """The files of a case in load order (a multi-part AOF's per its manifest)."""
    path = CORPUS / case["path"]
    if case["format"] != "aof-multipart":
        return [path]
    manifest = parse_manifest((path / case["aof_manifest_file"]).read_bytes())
    return [path / f.name for f in manifest.load_order]


@pytest.mark.parametrize("case", case_params(*AOF_FORMATS))
def test_every_corpus_aof_reads_the_same_in_any_chunk_size(case: dict[str, Any]) -> None:
    for path in case_files(case):
        data = path.read_bytes()
        whole = comparable(read(data))
        for chunk in (1, 7, 4096):
            assert comparable(read(data, chunk)) == whole, f"{path.name} in {chunk}-byte chunks"


@pytest.mark.parametrize("case", case_params(*AOF_FORMATS))
def test_every_corpus_aof_has_commands_at_their_file_offsets(case: dict[str, Any]) -> None:
    total = 0
    for path in case_files(case):
        data = path.read_bytes()
        records = read(data)
        commands = [r for r in records if isinstance(r, AofCommand)]
        total += len(commands)
        for cmd in commands:
            assert data.startswith(resp(*cmd.args), cmd.offset)
            assert cmd.db >= 0
        has_rdb = data.startswith(b"REDIS")
        assert isinstance(records[0], RdbHeader) == has_rdb if records else not data
        if has_rdb:
            ends = [r for r in records if isinstance(r, RdbEnd)]
            assert len(ends) == 1
    assert total > 0


@pytest.mark.parametrize(
    "case", case_params("aof-multipart", where=lambda c: bool(c.get("aof_timestamp_annotations")))
)
def test_timestamp_annotations_reach_the_commands(case: dict[str, Any]) -> None:
    for path in case_files(case):
        data = path.read_bytes()
        commands = [r for r in read(data) if isinstance(r, AofCommand)]
        assert commands
        if data.startswith(b"#TS:"):
            assert all(c.timestamp is not None for c in commands)
        stamps = [c.timestamp for c in commands if c.timestamp is not None]
        assert stamps and all(1_500_000_000 < t < 4_000_000_000 for t in stamps)
        assert stamps == sorted(stamps)


def test_a_preamble_is_followed_by_commands_at_file_offsets() -> None:
    image = rdb((b"k1", b"v1"), db=3)
    tail = resp(b"SET", b"k2", b"v2") + resp(b"SELECT", b"1") + resp(b"DEL", b"k1")
    records = read(image + tail)
    assert isinstance(records[0], RdbHeader)
    keys = [r for r in records if isinstance(r, KeyRecord)]
    assert [(k.db, k.key) for k in keys] == [(3, b"k1")]
    commands = [r for r in records if isinstance(r, AofCommand)]
    assert [c.offset for c in commands] == [
        len(image),
        len(image) + len(resp(b"SET", b"k2", b"v2")),
        len(image) + len(tail) - len(resp(b"DEL", b"k1")),
    ]
    assert [c.db for c in commands] == [0, 1, 1]  # commands start in db 0, as Redis loads them


@pytest.mark.parametrize("chunk", [1, 2, 5, 11])
def test_the_magic_may_arrive_in_pieces(chunk: int) -> None:
    data = rdb((b"k", b"v")) + resp(b"PING")
    assert comparable(read(data, chunk)) == comparable(read(data))


def test_a_plain_resp_file_starts_in_the_given_db() -> None:
    commands = read(resp(b"SET", b"a", b"b"), db=7)
    assert [(c.db, c.offset) for c in commands if isinstance(c, AofCommand)] == [(7, 0)]


def test_an_empty_file_holds_nothing() -> None:
    assert read(b"") == []


def test_a_valkey_magic_is_an_rdb_preamble_too() -> None:
    with pytest.raises(FormatError, match="RDB"):
        read(b"VALKEY080\xff")  # an RDB image (cut short), not RESP


@pytest.mark.parametrize("data", [b"R", b"REDI", b"REDIS00", b"VALK"])
def test_a_file_cut_inside_the_magic_is_truncated(data: bytes) -> None:
    with pytest.raises(FormatError):
        read(data)


def test_a_preamble_cut_short_is_truncated() -> None:
    image = rdb((b"k", b"v"))
    with pytest.raises(FormatError, match="ends"):
        read(image[:-3])


def test_a_tail_that_is_not_resp_is_an_error_with_its_file_offset() -> None:
    image = rdb((b"k", b"v"))
    with pytest.raises(FormatError) as info:
        read(image + b"garbage")
    assert info.value.offset == len(image)


def test_a_dump_may_have_a_non_resp_tail_ignored() -> None:
    image = rdb((b"k", b"v"))
    reader = AofReader(ignore_non_resp_tail=True)
    records = reader.feed(image + b"\x00trailing") + reader.feed(b"more") + reader.close()
    assert comparable(records) == comparable(read(image))
    assert reader.ignored_tail_bytes == len(b"\x00trailing") + 4


def test_a_command_cut_short_after_a_preamble_is_truncated() -> None:
    image = rdb((b"k", b"v"))
    with pytest.raises(FormatError, match="truncated") as info:
        read(image + resp(b"SET", b"k", b"v")[:-1], 3)
    assert info.value.offset == len(image)


# -- properties -------------------------------------------------------------------------

pairs_st = st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=30)), max_size=5)
tail_st = st.lists(
    st.lists(st.binary(max_size=20), min_size=1, max_size=4)
    .filter(lambda a: a[0].upper() != b"SELECT")
    .map(lambda a: resp(*a)),
    max_size=5,
).map(b"".join)
aof_st = st.one_of(
    tail_st,
    st.tuples(pairs_st, tail_st).map(lambda t: rdb(*t[0]) + t[1]),
)


def pieces_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def read_pieces(pieces: list[bytes]) -> list[Any]:
    reader = AofReader(max_item_bytes=1 << 20, max_bulk_bytes=1 << 16)
    out: list[Record] = []
    for piece in pieces:
        out += reader.feed(piece)
    out += reader.close()
    return comparable(out)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(data=aof_st, cuts=st.lists(st.integers(0, 600), max_size=20))
def test_a_valid_aof_split_anywhere_reads_identically(data: bytes, cuts: list[int]) -> None:
    assert read_pieces(pieces_of(data, cuts)) == read_pieces([data])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=200).map(lambda b: b"REDIS0009" + b),
        st.tuples(aof_st, st.integers(0, 10**6), st.integers(0, 255)).map(
            lambda t: (
                t[0][: t[1] % (len(t[0]) + 1)] + bytes([t[2]]) + t[0][t[1] % (len(t[0]) + 1) + 1 :]
            )
        ),
    ),
    cuts=st.lists(st.integers(0, 600), max_size=20),
)
def test_any_bytes_raise_nothing_but_format_error(data: bytes, cuts: list[int]) -> None:
    results = []
    for pieces in ([data], pieces_of(data, cuts)):
        try:
            results.append(read_pieces(pieces))
        except FormatError:
            results.append(None)
    assert results[0] == results[1]
