"""The RDB reader: records from bytes fed in any chunking, and clear errors on bad input."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import lzf
import pytest

from dcs_migration.formats import (
    AuxField,
    FormatError,
    FunctionLibrary,
    KeyRecord,
    RdbEnd,
    RdbHeader,
    RdbReader,
    Record,
    ResizeDb,
    SelectDb,
)
from dcs_migration.formats import rdb_types as T
from dcs_migration.formats.crc64 import crc64, crc64_short
from dcs_migration.formats.types import is_empty
from dcs_migration.formats.types.hashes import HashValue
from dcs_migration.formats.values import decode_value
from dcs_migration.reading import read_input
from dcs_migration.sources import find_inputs
from tests.support import rdbgen as g
from tests.support.corpus import CORPUS, case_params


def read_all(data: bytes, chunk: int | None = None, **kwargs: Any) -> list[Record]:
    reader = RdbReader(**kwargs)
    out: list[Record] = []
    step = chunk or max(len(data), 1)
    for i in range(0, len(data), step):
        out += reader.feed(data[i : i + step])
    out += reader.close()
    return out


def keys(records: list[Record]) -> list[KeyRecord]:
    return [r for r in records if isinstance(r, KeyRecord)]


def signature(records: list[Record]) -> list[Any]:
    return [
        (r.db, r.key, r.rdb_type, r.payload, r.expire_at_ms, r.offset)
        if isinstance(r, KeyRecord)
        else r
        for r in records
    ]


def test_crc64_is_redis_jones_variant() -> None:
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    assert crc64(b"6789", crc64(b"12345")) == 0xE9C6D914C4B8D9CA
    assert crc64_short(b"123456789") == 0xE9C6D914C4B8D9CA
    for data in (b"", b"\x00", b"x" * 17 + b"\x09\x00", bytes(range(256)) * 16):
        assert crc64_short(data) == crc64(data)


@pytest.mark.parametrize("case", case_params("rdb", where=lambda c: not c["expect_error"]))
def test_every_chunking_gives_the_same_records(case: dict[str, Any]) -> None:
    data = (CORPUS / case["path"]).read_bytes()
    whole = signature(read_all(data))
    for chunk in (1, 2, 3, 7, 64, 4093):
        assert signature(read_all(data, chunk)) == whole


def test_records_of_a_small_image() -> None:
    data = g.rdb(
        b"\xfa" + g.string(b"redis-ver") + g.string(b"7.2.4"),
        b"\xfe\x02",
        b"\xfb\x02\x01",
        g.key(b"k", g.string(b"v"), expire_ms=4102444800000),
        g.key(b"n", b"\xc0\x7b"),
    )
    records = read_all(data)
    assert isinstance(records[0], RdbHeader) and records[0].rdb_version == 11
    assert records[1] == AuxField(b"redis-ver", b"7.2.4", 9)
    assert isinstance(records[2], SelectDb) and records[2].db == 2
    assert isinstance(records[3], ResizeDb) and (records[3].db_size, records[3].expires_size) == (
        2,
        1,
    )
    k, n = keys(records)
    assert (k.db, k.key, decode_value(k), k.expire_at_ms, k.type_name) == (
        2,
        b"k",
        b"v",
        4102444800000,
        "string",
    )
    assert k.payload == b"\x01v"
    assert (decode_value(n), n.expire_at_ms) == (b"123", None)
    end = records[-1]
    assert isinstance(end, RdbEnd) and end.checksum_verified


def test_expiry_in_seconds_becomes_milliseconds() -> None:
    data = g.rdb(b"\xfd" + struct.pack("<i", 2000000000) + g.key(b"k", g.string(b"v")))
    assert keys(read_all(data))[0].expire_at_ms == 2000000000000


def test_checksum_mismatch_is_an_error_with_offset() -> None:
    data = bytearray(g.rdb(g.key(b"k", g.string(b"v"))))
    data[-1] ^= 0xFF
    with pytest.raises(FormatError, match="checksum mismatch") as exc:
        read_all(bytes(data))
    assert exc.value.offset == len(data) - 8


def test_a_checksum_of_zero_means_not_computed() -> None:
    records = read_all(g.rdb(g.key(b"k", g.string(b"v")), checksum=False))
    end = records[-1]
    assert isinstance(end, RdbEnd) and not end.checksum_verified


def test_flipped_byte_in_content_fails_the_checksum() -> None:
    data = bytearray(g.rdb(g.key(b"key", g.string(b"value"))))
    data[data.index(b"value")] ^= 0x01
    with pytest.raises(FormatError, match="checksum"):
        read_all(bytes(data))


def test_truncated_file_names_the_key_being_read() -> None:
    data = g.rdb(g.key(b"first", g.string(b"1")), g.key(b"second", g.string(b"x" * 100)))
    cut = data[: data.index(b"x" * 100) + 10]
    with pytest.raises(FormatError, match="ends inside") as exc:
        read_all(cut, 16)
    assert exc.value.key == b"second"
    assert exc.value.offset == data.index(b"\x00\x06second")


def test_a_lying_length_does_not_allocate_and_fails_at_the_end() -> None:
    four_gb = b"\x80" + struct.pack(">I", 4_000_000_000)
    data = g.rdb(g.key(b"k", four_gb + b"tiny"))
    with pytest.raises(FormatError, match="ends inside"):
        read_all(data, 100)


def test_one_item_larger_than_the_limit_is_refused() -> None:
    data = g.rdb(g.key(b"big", g.string(b"x" * 5000)))
    with pytest.raises(FormatError, match="larger than the 1000-byte limit") as exc:
        read_all(data, 500, max_item_bytes=1000)
    assert exc.value.key == b"big"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"NOTREDIS0009", "not an RDB image"),
        (b"REDIS00x9", "not a number"),
        (b"REDIS0099\xff", "not one this reader knows"),
        (b"VALKEY012\xff", "not one this reader knows"),
        (b"REDIS0011\xf0", "unknown RDB opcode 240"),
        (b"REDIS0011\x1f\x01k\x01v", "unknown RDB object type 31"),
        (b"REDIS0011\x00\x01k\xc7", "unknown string encoding"),
        (b"REDIS0011\x00\x01k\xbf", "expected a length"),
        (b"REDIS0011\xf6\x00", "inside a function library"),
        (b"REDIS0011", "before the RDB EOF opcode"),
        (b"REDIS", "inside the RDB header"),
        (b"REDIS0011\xff\x00\x00", "inside the RDB checksum"),
    ],
)
def test_bad_input_raises_format_error(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        read_all(data)


def test_unknown_type_in_redis_file_is_an_error_but_valkey_hash_2_reads() -> None:
    field = g.string(b"f") + g.string(b"v") + struct.pack("<q", 4102444800000)
    plain = g.string(b"g") + g.string(b"w") + struct.pack("<q", -1)
    data = g.rdb(g.key(b"h", g.length(2) + field + plain, rdb_type=22), magic=b"VALKEY", version=80)
    (record,) = keys(read_all(data))
    assert record.type_name == "hash"
    assert decode_value(record) == HashValue({b"f": b"v", b"g": b"w"}, {b"f": 4102444800000})


def test_function_library_record() -> None:
    code = b"#!lua name=lib\nredis.register_function('f', function() return 1 end)"
    records = read_all(g.rdb(b"\xf5" + g.string(code)))
    assert next(r for r in records if isinstance(r, FunctionLibrary)).code == code


def test_empty_collections_are_dropped_as_redis_drops_them() -> None:
    reader_records = read_all(
        g.rdb(
            g.key(b"empty-list", g.length(0), rdb_type=T.RDB_TYPE_LIST),
            g.key(b"empty-lp", g.string(g.listpack()), rdb_type=T.RDB_TYPE_SET_LISTPACK),
            g.key(b"full-lp", g.string(g.listpack(b"a")), rdb_type=T.RDB_TYPE_SET_LISTPACK),
        )
    )
    assert [k.key for k in keys(reader_records)] == [b"full-lp"]


def _lzf(raw: bytes) -> bytes:
    packed = lzf.compress(raw, len(raw) + 16)
    return b"\xc3" + g.length(len(packed)) + g.length(len(raw)) + packed


_EMPTY_LP = g.listpack()
_EMPTY_INTSET = b"\x02\x00\x00\x00" + b"\x00" * 4
_EMPTY_ZL = b"\x0b\x00\x00\x00\x0a\x00\x00\x00\x00\x00\xff"
_PACKED = g.length(T.QUICKLIST_NODE_CONTAINER_PACKED)
_PLAIN = g.length(T.QUICKLIST_NODE_CONTAINER_PLAIN)


@pytest.mark.parametrize(
    ("rdb_type", "value", "empty"),
    [
        (T.RDB_TYPE_SET_LISTPACK, g.string(_EMPTY_LP), True),
        (T.RDB_TYPE_SET_LISTPACK, _lzf(_EMPTY_LP), True),
        (T.RDB_TYPE_SET_LISTPACK, g.string(g.listpack(b"a")), False),
        (T.RDB_TYPE_SET_LISTPACK, _lzf(g.listpack(b"a" * 40)), False),
        (T.RDB_TYPE_HASH_LISTPACK, _lzf(_EMPTY_LP), True),
        (T.RDB_TYPE_ZSET_LISTPACK, g.string(_EMPTY_LP), True),
        (T.RDB_TYPE_SET_INTSET, g.string(_EMPTY_INTSET), True),
        (T.RDB_TYPE_SET_INTSET, _lzf(_EMPTY_INTSET), True),
        (T.RDB_TYPE_LIST_ZIPLIST, g.string(_EMPTY_ZL), True),
        (T.RDB_TYPE_HASH_ZIPMAP, g.string(b"\x00\xff"), True),
        (T.RDB_TYPE_HASH_LISTPACK_EX, b"\x00" * 8 + g.string(_EMPTY_LP), True),
        (T.RDB_TYPE_LIST_QUICKLIST_2, g.length(1) + _PACKED + g.string(_EMPTY_LP), True),
        (T.RDB_TYPE_LIST_QUICKLIST_2, g.length(1) + _PACKED + _lzf(_EMPTY_LP), True),
        (T.RDB_TYPE_LIST_QUICKLIST_2, g.length(2) + (_PACKED + g.string(_EMPTY_LP)) * 2, True),
        (T.RDB_TYPE_LIST_QUICKLIST_2, g.length(1) + _PACKED + g.string(g.listpack(b"x")), False),
        (T.RDB_TYPE_LIST_QUICKLIST_2, g.length(1) + _PLAIN + g.string(b"x"), False),
        (T.RDB_TYPE_LIST_QUICKLIST, g.length(1) + g.string(_EMPTY_ZL), True),
    ],
)
def test_every_form_of_an_empty_value_is_dropped(rdb_type: int, value: bytes, empty: bool) -> None:
    """The reader rules out most values from their first bytes before asking is_empty:
    each form an empty value can take (plain, LZF, one node or several) must still be
    asked, in the records and in the count of keys alike."""
    data = g.rdb(g.key(b"k", value, rdb_type=rdb_type))
    assert len(keys(read_all(data))) == (0 if empty else 1)
    counter = RdbReader(count_keys_only=True)
    counter.feed(data)
    counter.close()
    assert sum(counter.key_counts.values()) == (0 if empty else 1)
    assert is_empty(rdb_type, value, 0, len(value)) == empty


def test_module_key_is_reported_by_module_name() -> None:
    charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    name = "ReJSON-RL"
    module_id = (sum(charset.index(c) << (6 * (8 - i)) for i, c in enumerate(name)) << 10) | 3
    value = (
        b"\x81" + struct.pack(">Q", module_id) + b"\x02\x05" + b"\x05" + g.string(b"x") + b"\x00"
    )
    (record,) = keys(read_all(g.rdb(g.key(b"m", value, rdb_type=T.RDB_TYPE_MODULE_2))))
    assert record.type_name == "module"
    assert record.module_name == "ReJSON-RL"
    with pytest.raises(FormatError, match="module value of type 'ReJSON-RL'"):
        _ = decode_value(record)


def test_value_errors_name_the_key_and_offset() -> None:
    bad_listpack = g.string(b"\x10\x00\x00\x00\x01\x00\x81a\x02\xff")  # header says 16 bytes
    data = g.rdb(g.key(b"broken", bad_listpack, rdb_type=T.RDB_TYPE_SET_LISTPACK))
    (record,) = keys(read_all(data))
    with pytest.raises(FormatError, match="listpack header says 16 bytes") as exc:
        _ = decode_value(record)
    assert exc.value.key == b"broken"
    assert exc.value.offset == 9


def test_bytes_after_the_image_are_kept_for_the_caller() -> None:
    reader = RdbReader()
    reader.feed(g.rdb(g.key(b"k", g.string(b"v"))) + b"*1\r\n$4\r\nPING\r\n")
    reader.feed(b"more")
    reader.close()
    assert reader.done
    assert reader.take_unused() == b"*1\r\n$4\r\nPING\r\nmore"


def test_reading_an_input_names_the_source(tmp_path: Path) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(b"REDIS0011\xf0")
    with pytest.raises(FormatError) as exc:
        list(read_input(find_inputs(path)[0]))
    assert exc.value.source == str(path)
    assert f"file {path}, offset 9" in str(exc.value)


@pytest.mark.parametrize("rdb_type", [T.RDB_TYPE_SET, T.RDB_TYPE_HASH, T.RDB_TYPE_ZSET_2])
def test_element_loops_cut_anywhere_wait_or_fail_cleanly(rdb_type: int) -> None:
    """Short elements are stepped over inline, long ones by skip_string: a value cut at
    any byte waits for more (fed a byte at a time) or, at the end, fails as truncated."""
    elements = [b"m%d" % i if i % 3 else b"long-%d-" % i + b"x" * 70 for i in range(30)]
    if rdb_type == T.RDB_TYPE_SET:
        value = g.length(30) + b"".join(map(g.string, elements))
    elif rdb_type == T.RDB_TYPE_HASH:
        value = g.length(15) + b"".join(map(g.string, elements))
    else:
        value = g.length(30) + b"".join(g.string(e) + g.binary_double(1.5) for e in elements)
    data = g.rdb(g.key(b"k", value, rdb_type=rdb_type))
    reader = RdbReader()
    records = [r for byte in range(len(data)) for r in reader.feed(data[byte : byte + 1])]
    records += reader.close()
    assert [k.key for k in keys(records)] == [b"k"]
    for cut in range(len(data)):
        truncated = RdbReader()
        with pytest.raises(FormatError):
            truncated.feed(data[:cut])
            truncated.close()
