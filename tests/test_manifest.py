"""The multi-part AOF manifest: which files Redis loads, and in what order."""

from __future__ import annotations

from typing import Any

import pytest

from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.manifest import parse_manifest, split_args
from tests.support.corpus import CORPUS, case_params


def names(data: bytes) -> list[str]:
    return [f.name for f in parse_manifest(data).load_order]


@pytest.mark.parametrize("case", case_params("aof-multipart"))
def test_every_corpus_manifest_names_its_files(case: dict[str, Any]) -> None:
    folder = CORPUS / case["path"]
    manifest = parse_manifest((folder / case["aof_manifest_file"]).read_bytes())
    assert manifest.base is not None
    assert manifest.base.name.endswith(
        ".base." + ("rdb" if case["aof_base_format"] == "rdb" else "aof")
    )
    for f in manifest.load_order:
        assert f.name in case["aof_files"]


def test_the_base_comes_first_then_incr_files_by_seq() -> None:
    data = (
        b"file appendonly.aof.3.incr.aof seq 3 type i\n"
        b"file appendonly.aof.1.incr.aof seq 1 type i\n"
        b"file appendonly.aof.2.base.rdb seq 2 type b\n"
        b"file appendonly.aof.2.incr.aof seq 2 type i\n"
    )
    assert names(data) == [
        "appendonly.aof.2.base.rdb",
        "appendonly.aof.1.incr.aof",
        "appendonly.aof.2.incr.aof",
        "appendonly.aof.3.incr.aof",
    ]


def test_history_files_are_not_loaded() -> None:
    data = (
        b"file a.1.base.aof seq 1 type h\n"
        b"file a.1.incr.aof seq 1 type h\n"
        b"file a.2.base.aof seq 2 type b\n"
        b"file a.2.incr.aof seq 2 type i\n"
    )
    manifest = parse_manifest(data)
    assert names(data) == ["a.2.base.aof", "a.2.incr.aof"]
    assert [f.name for f in manifest.history] == ["a.1.base.aof", "a.1.incr.aof"]


def test_keys_come_in_any_order_and_unknown_keys_are_ignored() -> None:
    data = b"type b seq 4 future yes file x.base.rdb\r\nTYPE i FILE x.incr.aof SEQ 5\r\n"
    assert names(data) == ["x.base.rdb", "x.incr.aof"]


def test_blank_and_comment_lines_are_skipped() -> None:
    data = b"# written by redis\n\n   \nfile b seq 1 type b\n#file c seq 2 type i\n"
    assert names(data) == ["b"]


def test_a_manifest_may_have_incr_files_only() -> None:
    assert names(b"file i seq 1 type i\n") == ["i"]


def test_quoted_names_are_unquoted_as_redis_quotes_them() -> None:
    data = b"file \"my aof\\x41.base.rdb\" seq 1 type b\nfile 'it\\'s.incr' seq 1 type i\n"
    assert names(data) == ["my aofA.base.rdb", "it's.incr"]


def test_split_args_follows_redis() -> None:
    assert split_args(b'  a  "b c"  \'d\'  "\\n\\t\\\\"  e"f"') == [
        b"a",
        b"b c",
        b"d",
        b"\n\t\\",
        b"ef",
    ]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"file a seq 1 type b\nfile b seq 2\n", "line 2"),
        (b"file a seq 1 type b\nfile b seq 2 type\n", "line 2"),
        (b'file a seq 1 type b\nfile "b seq 2 type i\n', "line 2"),
        (b'file a seq 1 type b\nfile "b"x seq 2 type i\n', "line 2"),
        (b"file a seq 1 type x\n", "unknown file type"),
        (b"file a seq 0 type b\n", "seq"),
        (b"file a seq -1 type b\n", "seq"),
        (b"file a seq x type b\n", "seq"),
        (b"file a seq 1 type b\nfile b seq 2 type b\n", "second base"),
        (b"file a seq 1 type b\nfile a seq 2 type i\n", "a second time"),
        (b"file a seq 1 type i\nfile b seq 1 type i\n", "has seq 1"),
        (b"file ../a seq 1 type b\n", "not a plain name"),
        (b"file dir/a seq 1 type b\n", "not a plain name"),
        (b"file .. seq 1 type b\n", "not a plain name"),
        (b'file "\\x00" seq 1 type b\n', "not a plain name"),
        (b"file a seq 1 type h\n", "no base file and no incremental file"),
        (b"", "no base file and no incremental file"),
        (b"# nothing\n", "no base file and no incremental file"),
        (b"file " + b"a" * 1100 + b" seq 1 type b\n", "longer than"),
    ],
)
def test_a_bad_manifest_says_what_and_which_line(data: bytes, words: str) -> None:
    with pytest.raises(FormatError, match=words):
        parse_manifest(data)


def test_a_bad_line_error_carries_its_offset() -> None:
    with pytest.raises(FormatError, match="line 3") as info:
        parse_manifest(b"file a seq 1 type b\n\nfile b\n")
    assert info.value.offset == 21
