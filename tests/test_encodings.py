"""The compact encodings, on hand-built blobs covering every entry encoding."""

from __future__ import annotations

import struct

import pytest

from dcs_migration.formats import FormatError
from dcs_migration.formats.intset import intset_members
from dcs_migration.formats.listpack import listpack_entries
from dcs_migration.formats.ziplist import ziplist_entries
from dcs_migration.formats.zipmap import zipmap_pairs


def lp(*encoded: bytes) -> bytes:
    body = b"".join(encoded)
    return struct.pack("<IH", 6 + len(body) + 1, len(encoded)) + body + b"\xff"


def test_listpack_integer_and_string_encodings() -> None:
    blob = lp(
        b"\x05\x01",  # 7-bit uint 5
        b"\xdf\xff\x02",  # 13-bit -1
        b"\xf1" + struct.pack("<h", -300) + b"\x03",
        b"\xf2" + (-(2**23)).to_bytes(3, "little", signed=True) + b"\x04",
        b"\xf3" + struct.pack("<i", 2**31 - 1) + b"\x05",
        b"\xf4" + struct.pack("<q", -(2**63)) + b"\x09",
        b"\x83abc\x04",
        b"\xe1\x00" + b"x" * 256 + b"\x82\x02",
        b"\xf0" + struct.pack("<I", 5000) + b"y" * 5000 + b"\x8d\x27",
    )
    assert listpack_entries(blob) == [
        5,
        -1,
        -300,
        -(2**23),
        2**31 - 1,
        -(2**63),
        b"abc",
        b"x" * 256,
        b"y" * 5000,
    ]


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x00\x00", "shorter than its header"),
        (lp(b"\x83ab"), "runs past the end"),
        (lp(b"\xf5\x00"), "unknown encoding"),
        (struct.pack("<IH", 8, 1) + b"\x01\x01\xff", "header says 8 bytes"),
        (struct.pack("<IH", 9, 2) + b"\x01\x01\xff", "counts 2 elements"),
    ],
)
def test_bad_listpacks(blob: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        listpack_entries(blob)


def zl(*encoded: bytes) -> bytes:
    body = b"".join(b"\x00" + e for e in encoded)
    return struct.pack("<IIH", 10 + len(body) + 1, 10, len(encoded)) + body + b"\xff"


def test_ziplist_integer_and_string_encodings() -> None:
    blob = zl(
        b"\x03abc",
        b"\x41\x00" + b"s" * 256,
        b"\x80" + struct.pack(">I", 3) + b"big",
        b"\xc0" + struct.pack("<h", -2),
        b"\xd0" + struct.pack("<i", 70000),
        b"\xe0" + struct.pack("<q", 2**40),
        b"\xf0" + (-5).to_bytes(3, "little", signed=True),
        b"\xfe\x80",
        b"\xf1",
        b"\xfd",
    )
    assert ziplist_entries(blob) == [
        b"abc",
        b"s" * 256,
        b"big",
        b"-2",
        b"70000",
        b"1099511627776",
        b"-5",
        b"-128",
        b"0",
        b"12",
    ]


def test_intset_widths_and_order() -> None:
    assert intset_members(struct.pack("<II3h", 2, 3, -1, 0, 7)) == [b"-1", b"0", b"7"]
    assert intset_members(struct.pack("<II2q", 8, 2, -(2**63), 2**63 - 1)) == [
        b"-9223372036854775808",
        b"9223372036854775807",
    ]
    with pytest.raises(FormatError, match="ascending"):
        intset_members(struct.pack("<II2i", 4, 2, 5, 5))
    with pytest.raises(FormatError, match="width 3"):
        intset_members(struct.pack("<II", 3, 0))
    with pytest.raises(FormatError, match="says 100 elements"):
        intset_members(struct.pack("<II", 2, 100) + b"\x00\x00")


def test_zipmap_with_big_lengths_and_free_bytes() -> None:
    value = b"v" * 300
    blob = (
        b"\x02"
        + b"\x01a\x02\x00xy"
        + b"\x01b\xfe"
        + struct.pack("<I", 300)
        + b"\x02"
        + value
        + b"\x00\x00"
        + b"\xff"
    )
    assert zipmap_pairs(blob) == [(b"a", b"xy"), (b"b", value)]
    with pytest.raises(FormatError):
        zipmap_pairs(b"\x01\x01a\x05\x00xy\xff")
