"""Telling formats apart by their first bytes."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from typing import Any

import pytest

from dcs_migration.formats.detect import SNIFF_BYTES, FileKind, detect_format
from tests.support.corpus import CORPUS, case_params


def tar_bytes() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        info = tarfile.TarInfo("*looks-like-resp")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    return out.getvalue()


def zip_bytes(members: int = 1) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for i in range(members):
            zf.writestr(f"m{i}", b"x")
    return out.getvalue()


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"REDIS0011\xfa", FileKind.RDB),
        (b"REDIS", FileKind.RDB),
        (b"VALKEY080\xfa", FileKind.RDB),
        (b"REDIS is a database", FileKind.UNKNOWN),
        (b"*2\r\n$6\r\nSELECT\r\n", FileKind.AOF),
        (b"#TS:1700000000\r\n*1\r\n$4\r\nPING\r\n", FileKind.AOF),
        (b"#TS:1700000000\r\n", FileKind.AOF),
        (b"#TS:1700000000\r\n*", FileKind.AOF),
        (b"# A README\n\nSome text\n", FileKind.UNKNOWN),
        (b"*emphasis*\n", FileKind.UNKNOWN),
        (b"file appendonly.aof.1.base.rdb seq 1 type b\n", FileKind.MANIFEST),
        (b"# comment\nfile a seq 1 type b\n", FileKind.MANIFEST),
        (b"filename: x\n", FileKind.UNKNOWN),
        (gzip.compress(b"REDIS0011"), FileKind.GZIP),
        (zip_bytes(), FileKind.ZIP),
        (zip_bytes(0), FileKind.ZIP),
        (tar_bytes(), FileKind.TAR),
        (b"", FileKind.EMPTY),
        (b"\x00\x01\x02", FileKind.UNKNOWN),
        (b'{"format": "redis-corpus-oracle/1"}', FileKind.UNKNOWN),
    ],
)
def test_the_kind_comes_from_the_first_bytes(head: bytes, kind: FileKind) -> None:
    assert detect_format(head[:SNIFF_BYTES]) is kind


def test_a_tar_header_with_a_bad_checksum_is_not_a_tar() -> None:
    data = bytearray(tar_bytes())
    data[0] ^= 0x01
    assert detect_format(bytes(data[:SNIFF_BYTES])) is not FileKind.TAR


@pytest.mark.parametrize("case", case_params())
def test_every_corpus_file_is_told_by_content(case: dict[str, Any]) -> None:
    path = CORPUS / case["path"]
    expected = {
        "rdb": FileKind.RDB,
        "aof": FileKind.AOF,
        "aof-preamble": FileKind.RDB,
        "aof-multipart": FileKind.MANIFEST,
    }[case["format"]]
    if case["format"] == "aof-multipart":
        path = path / case["aof_manifest_file"]
    with path.open("rb") as f:
        assert detect_format(f.read(SNIFF_BYTES)) is expected
