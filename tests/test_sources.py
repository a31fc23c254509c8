"""Local backups as inputs: files, folders, multi-part AOFs, gzip, zip and tar archives."""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import stat
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Literal

import pytest

from dcs_migration.formats.crc64 import crc64
from dcs_migration.formats.errors import FormatError
from dcs_migration.formats.records import AofCommand, AofTruncated, KeyRecord, Record
from dcs_migration.reading import read_input
from dcs_migration.sources import ArchiveLimits, Input, InputKind, find_inputs
from tests.support.corpus import CORPUS, case_params


def resp(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def rdb(*pairs: tuple[bytes, bytes]) -> bytes:
    body = b"REDIS0009\xfe\x00"
    for key, value in pairs:
        body += b"\x00" + bytes([len(key)]) + key + bytes([len(value)]) + value
    body += b"\xff"
    return body + crc64(body).to_bytes(8, "little")


MANIFEST = (
    b"file appendonly.aof.2.base.rdb seq 2 type b\nfile appendonly.aof.2.incr.aof seq 2 type i\n"
)


def write_multipart(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "appendonly.aof.manifest").write_bytes(MANIFEST)
    (folder / "appendonly.aof.2.base.rdb").write_bytes(rdb((b"base", b"1")))
    (folder / "appendonly.aof.2.incr.aof").write_bytes(resp(b"SET", b"incr", b"2"))
    (folder / "appendonly.aof.1.base.rdb").write_bytes(b"an old file the manifest no longer names")
    return folder


def keys(source: Input) -> list[bytes]:
    return [r.key for r in read_input(source) if isinstance(r, KeyRecord)]


def commands(source: Input) -> list[list[bytes]]:
    return [r.args for r in read_input(source) if isinstance(r, AofCommand)]


def comparable(records: list[Record]) -> list[Any]:
    return [
        (r.db, r.key, r.rdb_type, r.payload, r.expire_at_ms, r.offset)
        if isinstance(r, KeyRecord)
        else r
        for r in records
    ]


def write_zip(path: Path, members: dict[str, bytes], **options: Any) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, **options) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def tar_member(tf: tarfile.TarFile, name: str, data: bytes = b"", **fields: Any) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tf.addfile(info, io.BytesIO(data))


def write_tar(path: Path, members: dict[str, bytes], mode: Literal["w", "w:gz"] = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            tar_member(tf, name, data)
    return path


# -- files and folders ------------------------------------------------------------------


def test_an_rdb_file_is_one_input(tmp_path: Path) -> None:
    path = tmp_path / "backup.bin"
    path.write_bytes(rdb((b"a", b"1"), (b"b", b"2")))
    [source] = find_inputs(path)
    assert (source.kind, source.name, source.size) == (
        InputKind.RDB,
        str(path),
        path.stat().st_size,
    )
    assert source.size_exact
    assert keys(source) == [b"a", b"b"]


def test_an_aof_file_is_one_input(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"#TS:1700000000\r\n" + resp(b"SET", b"k", b"v"))
    [source] = find_inputs(path)
    assert source.kind is InputKind.AOF
    assert commands(source) == [[b"SET", b"k", b"v"]]


def test_a_gzip_file_is_read_decompressed(tmp_path: Path) -> None:
    data = rdb((b"a", b"1"))
    path = tmp_path / "dump.rdb.gz"
    path.write_bytes(gzip.compress(data))
    [source] = find_inputs(path)
    assert source.kind is InputKind.RDB
    assert source.size == len(data) and not source.size_exact
    assert keys(source) == [b"a"]


def test_a_folder_with_a_manifest_is_one_multipart_aof(tmp_path: Path) -> None:
    folder = write_multipart(tmp_path / "appendonlydir")
    [source] = find_inputs(folder)
    assert source.kind is InputKind.AOF_MULTIPART
    assert source.name == str(folder)
    assert [Path(p.name).name for p in source.parts] == [
        "appendonly.aof.2.base.rdb",
        "appendonly.aof.2.incr.aof",
    ]
    assert keys(source) == [b"base"]
    assert commands(source) == [[b"SET", b"incr", b"2"]]


def test_a_manifest_file_stands_for_its_folder(tmp_path: Path) -> None:
    folder = write_multipart(tmp_path / "appendonlydir")
    [by_file] = find_inputs(folder / "appendonly.aof.manifest")
    [by_folder] = find_inputs(folder)
    assert (by_file.name, by_file.kind) == (by_folder.name, by_folder.kind)
    assert [p.name for p in by_file.parts] == [p.name for p in by_folder.parts]


def test_a_folder_walk_finds_every_backup_and_leaves_other_files_out(tmp_path: Path) -> None:
    (tmp_path / "shard-b").mkdir()
    (tmp_path / "shard-b" / "dump.rdb").write_bytes(rdb((b"b", b"1")))
    (tmp_path / "a.aof").write_bytes(resp(b"SET", b"a", b"1"))
    (tmp_path / "README.md").write_bytes(b"# Backups\n\nTaken nightly.\n")
    (tmp_path / "empty.aof").write_bytes(b"")
    write_multipart(tmp_path / "c" / "appendonlydir")
    write_zip(tmp_path / "d.zip", {"dump.rdb": rdb((b"d", b"1"))})
    os.symlink(tmp_path / "a.aof", tmp_path / "link.aof")
    found = find_inputs(tmp_path)
    assert [(s.name, s.kind) for s in found] == [
        (str(tmp_path / "a.aof"), InputKind.AOF),
        (str(tmp_path / "c" / "appendonlydir"), InputKind.AOF_MULTIPART),
        (f"{tmp_path / 'd.zip'}:dump.rdb", InputKind.RDB),
        (str(tmp_path / "shard-b" / "dump.rdb"), InputKind.RDB),
    ]


def test_an_rdb_dump_may_have_bytes_after_its_image(tmp_path: Path) -> None:
    path = tmp_path / "dump.rdb"
    path.write_bytes(rdb((b"a", b"1")) + b"\x00\x01 some padding")
    [source] = find_inputs(path)
    assert keys(source) == [b"a"]


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"", "empty"), (b"hello world\n", "not an RDB or AOF")],
)
def test_a_file_that_is_no_backup_is_refused(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=words) as info:
        find_inputs(path)
    assert info.value.source == str(path)


def test_a_folder_without_backups_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_bytes(b"nothing here")
    with pytest.raises(FormatError, match="no RDB or AOF backup"):
        find_inputs(tmp_path)


def test_a_manifest_naming_a_missing_file_is_refused(tmp_path: Path) -> None:
    folder = write_multipart(tmp_path / "appendonlydir")
    (folder / "appendonly.aof.2.incr.aof").unlink()
    with pytest.raises(FormatError, match=re.escape("appendonly.aof.2.incr.aof")) as info:
        find_inputs(folder)
    assert info.value.source == str(folder / "appendonly.aof.manifest")


def test_two_manifests_in_one_folder_are_refused(tmp_path: Path) -> None:
    folder = write_multipart(tmp_path / "appendonlydir")
    (folder / "other.manifest").write_bytes(MANIFEST)
    with pytest.raises(FormatError, match="more than one AOF manifest"):
        find_inputs(folder)


def test_a_bad_manifest_names_its_file(tmp_path: Path) -> None:
    folder = write_multipart(tmp_path / "appendonlydir")
    (folder / "appendonly.aof.manifest").write_bytes(MANIFEST + b"file x seq 1 type q\n")
    with pytest.raises(FormatError, match="line 3") as info:
        find_inputs(folder)
    assert info.value.source == str(folder / "appendonly.aof.manifest")


def test_errors_while_reading_name_the_part(tmp_path: Path) -> None:
    folder = write_multipart(tmp_path / "appendonlydir")
    (folder / "appendonly.aof.2.incr.aof").write_bytes(b"?" + resp(b"SET", b"k", b"v"))
    [source] = find_inputs(folder)
    with pytest.raises(FormatError, match="expected '\\*'") as info:
        list(read_input(source))
    assert info.value.source == str(folder / "appendonly.aof.2.incr.aof")
    assert info.value.offset == 0


def test_the_last_file_of_an_aof_may_end_inside_a_command_as_redis_loads_it(
    tmp_path: Path,
) -> None:
    folder = write_multipart(tmp_path / "appendonlydir")
    whole = resp(b"SET", b"incr", b"2")
    (folder / "appendonly.aof.2.incr.aof").write_bytes(whole + resp(b"SET", b"k", b"v")[:-3])
    [source] = find_inputs(folder)
    records = list(read_input(source))
    assert [r.args for r in records if isinstance(r, AofCommand)] == [[b"SET", b"incr", b"2"]]
    assert records[-1] == AofTruncated(
        len(whole), len(resp(b"SET", b"k", b"v")) - 3, str(folder / "appendonly.aof.2.incr.aof")
    )


def test_an_earlier_file_of_an_aof_cut_short_is_refused_as_redis_refuses_it(
    tmp_path: Path,
) -> None:
    folder = write_multipart(tmp_path / "appendonlydir")
    (folder / "appendonly.aof.manifest").write_bytes(
        MANIFEST + b"file appendonly.aof.3.incr.aof seq 3 type i\n"
    )
    (folder / "appendonly.aof.2.incr.aof").write_bytes(resp(b"SET", b"k", b"v")[:-3])
    (folder / "appendonly.aof.3.incr.aof").write_bytes(resp(b"SET", b"k", b"w"))
    [source] = find_inputs(folder)
    with pytest.raises(FormatError, match="truncated") as info:
        list(read_input(source))
    assert info.value.source == str(folder / "appendonly.aof.2.incr.aof")


def test_a_truncated_gzip_file_fails_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "dump.rdb.gz"
    path.write_bytes(gzip.compress(rdb((b"a", b"1")) + os.urandom(5000))[:-2000])
    [source] = find_inputs(path)
    with pytest.raises(FormatError) as info:
        list(read_input(source))
    assert info.value.source == str(path)


# -- archives ---------------------------------------------------------------------------


def test_a_zip_of_one_rdb_is_one_input(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "b.zip", {"dump.rdb": rdb((b"a", b"1")), "notes.txt": b"hi"})
    [source] = find_inputs(path)
    assert (source.name, source.kind) == (f"{path}:dump.rdb", InputKind.RDB)
    assert source.size == len(rdb((b"a", b"1")))
    assert keys(source) == [b"a"]


def test_a_zip_of_two_rdbs_is_two_inputs(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "cluster.zip",
        {"shard-2/dump.rdb": rdb((b"two", b"2")), "shard-1/dump.rdb": rdb((b"one", b"1"))},
    )
    found = find_inputs(path)
    assert [s.name for s in found] == [f"{path}:shard-1/dump.rdb", f"{path}:shard-2/dump.rdb"]
    assert [keys(s) for s in found] == [[b"one"], [b"two"]]


def test_a_tar_holds_an_rdb_and_an_aof(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "b.tar", {"x/dump.rdb": rdb((b"a", b"1")), "y.aof": resp(b"DEL", b"a")}
    )
    found = find_inputs(path)
    assert [(s.name, s.kind) for s in found] == [
        (f"{path}:x/dump.rdb", InputKind.RDB),
        (f"{path}:y.aof", InputKind.AOF),
    ]
    assert keys(found[0]) == [b"a"]
    assert commands(found[1]) == [[b"DEL", b"a"]]


def test_a_tar_gz_members_read_in_any_order(tmp_path: Path) -> None:
    members = {f"shard-{i}/dump.rdb": rdb((b"k%d" % i, os.urandom(40))) for i in range(4)}
    path = write_tar(tmp_path / "cluster.tar.gz", members, "w:gz")
    found = find_inputs(path)
    assert len(found) == 4
    expected = [[b"k%d" % i] for i in range(4)]
    assert [keys(s) for s in found] == expected
    assert [keys(s) for s in reversed(found)] == expected[::-1]
    assert [keys(s) for s in found] == expected


def test_a_tar_gz_of_a_multipart_folder_is_one_input(tmp_path: Path) -> None:
    folder = write_multipart(tmp_path / "src" / "appendonlydir")
    path = tmp_path / "aof.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(folder, arcname="appendonlydir")
    [source] = find_inputs(path)
    assert (source.name, source.kind) == (f"{path}:appendonlydir", InputKind.AOF_MULTIPART)
    assert [p.name for p in source.parts] == [
        f"{path}:appendonlydir/appendonly.aof.2.base.rdb",
        f"{path}:appendonlydir/appendonly.aof.2.incr.aof",
    ]
    [direct] = find_inputs(folder)
    assert comparable(list(read_input(source))) == comparable(list(read_input(direct)))


def test_gzipped_members_inside_an_archive_are_decompressed(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "b.zip", {"dump.rdb.gz": gzip.compress(rdb((b"a", b"1")))})
    [source] = find_inputs(path)
    assert not source.size_exact
    assert keys(source) == [b"a"]


def test_errors_inside_an_archive_name_the_member(tmp_path: Path) -> None:
    bad = bytearray(rdb((b"a", b"1")))
    bad[-1] ^= 0xFF  # the checksum no longer matches
    path = write_zip(tmp_path / "b.zip", {"dir/dump.rdb": bytes(bad)})
    [source] = find_inputs(path)
    with pytest.raises(FormatError, match="checksum") as info:
        list(read_input(source))
    assert info.value.source == f"{path}:dir/dump.rdb"


def test_an_archive_without_backups_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "b.zip", {"notes.txt": b"hi"})
    with pytest.raises(FormatError, match="no RDB or AOF file"):
        find_inputs(path)


def test_an_archive_inside_an_archive_is_refused(tmp_path: Path) -> None:
    inner = write_zip(tmp_path / "inner.zip", {"dump.rdb": rdb()})
    path = write_zip(tmp_path / "outer.zip", {"inner.zip": inner.read_bytes()})
    with pytest.raises(FormatError, match="inside an archive"):
        find_inputs(path)


def test_a_corrupt_tar_is_refused(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "b.tar", {"a.rdb": rdb(), "b.rdb": rdb(), "c.rdb": rdb()})
    data = bytearray(path.read_bytes())
    data[1024:1100] = os.urandom(76)  # the second member's header
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError):
        find_inputs(path)


@pytest.mark.parametrize("case", case_params("aof-multipart"))
def test_every_corpus_multipart_aof_reads_the_same_from_a_tar_gz(
    tmp_path: Path, case: dict[str, Any]
) -> None:
    folder = CORPUS / case["path"]
    path = tmp_path / "backup.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(folder, arcname="appendonlydir")
    [packed] = find_inputs(path)
    [direct] = find_inputs(folder)
    assert packed.kind is direct.kind is InputKind.AOF_MULTIPART
    assert packed.size == direct.size
    assert comparable(list(read_input(packed))) == comparable(list(read_input(direct)))


def test_the_corpus_folder_is_one_input_per_case(tmp_path: Path) -> None:
    cases = case_params()
    if cases[0].values[0] is None:
        pytest.skip("corpus not found")
    found = {s.name: s.kind for s in find_inputs(CORPUS)}
    kinds = {"rdb": "rdb", "aof-preamble": "rdb", "aof": "aof", "aof-multipart": "aof-multipart"}
    expected = {str(CORPUS / c.values[0]["path"]): kinds[c.values[0]["format"]] for c in cases}
    assert found == expected


# -- malicious archives -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["/etc/dump.rdb", "../dump.rdb", "a/../../dump.rdb", "C:/x.rdb"])
def test_a_zip_member_escaping_the_archive_is_refused(tmp_path: Path, name: str) -> None:
    path = write_zip(tmp_path / "b.zip", {name: rdb()})
    with pytest.raises(FormatError, match=r"absolute path|'\.\.'") as info:
        find_inputs(path)
    assert info.value.source == str(path)


@pytest.mark.parametrize("name", ["/etc/dump.rdb", "../dump.rdb", "a/../../dump.rdb"])
def test_a_tar_member_escaping_the_archive_is_refused(tmp_path: Path, name: str) -> None:
    path = write_tar(tmp_path / "b.tar", {name: rdb()})
    with pytest.raises(FormatError, match=r"absolute path|'\.\.'"):
        find_inputs(path)


@pytest.mark.parametrize(
    "fields",
    [
        {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
        {"type": tarfile.LNKTYPE, "linkname": "other.rdb"},
        {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3},
        {"type": tarfile.FIFOTYPE},
    ],
)
def test_a_tar_link_or_device_is_refused(tmp_path: Path, fields: dict[str, Any]) -> None:
    path = tmp_path / "b.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tar_member(tf, "dump.rdb", rdb())
        tar_member(tf, "evil.rdb", **fields)
    with pytest.raises(FormatError, match=re.escape("'evil.rdb' is a link or special file")):
        find_inputs(path)


def test_a_zip_symlink_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("link.rdb")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(FormatError, match="link or special file"):
        find_inputs(path)


def test_an_encrypted_zip_member_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "b.zip", {"dump.rdb": rdb()})
    data = bytearray(path.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + flags_at
        data[at] |= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="encrypted"):
        find_inputs(path)


def test_a_zip_with_a_name_twice_is_refused(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = tmp_path / "b.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("dump.rdb", rdb((b"a", b"1")))
            zf.writestr("dump.rdb", rdb((b"b", b"1")))
    with pytest.raises(FormatError, match="appears twice"):
        find_inputs(path)


BOMB = b"*1\r\n$20000000\r\n" + bytes(20_000_000) + b"\r\n"


def test_a_zip_bomb_is_refused_before_decompressing(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "bomb.zip", {"a.aof": BOMB})
    assert path.stat().st_size < 100_000
    with pytest.raises(FormatError, match=re.escape("'a.aof' decompresses to more than")) as info:
        find_inputs(path)
    assert info.value.source == str(path)


def test_a_zip_over_the_total_limit_is_refused(tmp_path: Path) -> None:
    members = {f"{i}.aof": resp(b"SET", b"k", os.urandom(300_000)) for i in range(4)}
    path = write_zip(tmp_path / "big.zip", members)
    limits = ArchiveLimits(max_total_bytes=1_000_000)
    with pytest.raises(FormatError, match=re.escape("at member '3.aof'")):
        find_inputs(path, limits=limits)
    assert len(find_inputs(path)) == 4


def test_a_tar_gz_bomb_is_refused_before_decompressing(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "bomb.tar.gz", {"a.aof": BOMB}, "w:gz")
    with pytest.raises(FormatError, match="decompresses to more than") as info:
        find_inputs(path)
    assert "'a.aof'" in info.value.message


def test_a_gzip_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.aof.gz"
    path.write_bytes(gzip.compress(BOMB))
    [source] = find_inputs(path)
    with pytest.raises(FormatError, match="decompresses to more than") as info:
        list(read_input(source))
    assert info.value.source == str(path)


def test_a_gzip_member_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "b.tar", {"a.aof.gz": gzip.compress(BOMB)})
    [source] = find_inputs(path)
    with pytest.raises(FormatError, match="decompresses to more than") as info:
        list(read_input(source))
    assert info.value.source == f"{path}:a.aof.gz"


def test_inputs_can_be_read_again(tmp_path: Path) -> None:
    folder = write_multipart(tmp_path / "appendonlydir")
    shutil.make_archive(str(tmp_path / "aof"), "gztar", tmp_path, "appendonlydir")
    [source] = find_inputs(tmp_path / "aof.tar.gz")
    first = comparable(list(read_input(source)))
    assert comparable(list(read_input(source))) == first
    assert [(p.name.split(":")[-1], p.size) for p in source.parts] == [
        (
            "appendonlydir/appendonly.aof.2.base.rdb",
            (folder / "appendonly.aof.2.base.rdb").stat().st_size,
        ),
        (
            "appendonlydir/appendonly.aof.2.incr.aof",
            (folder / "appendonly.aof.2.incr.aof").stat().st_size,
        ),
    ]


def test_a_zip_of_a_multipart_folder_with_an_empty_incr_file(tmp_path: Path) -> None:
    manifest = MANIFEST + b"file appendonly.aof.3.incr.aof seq 3 type i\n"
    path = write_zip(
        tmp_path / "aof.zip",
        {
            "data/appendonlydir/appendonly.aof.manifest": manifest,
            "data/appendonlydir/appendonly.aof.2.base.rdb": rdb((b"base", b"1")),
            "data/appendonlydir/appendonly.aof.2.incr.aof": resp(b"SET", b"incr", b"2"),
            "data/appendonlydir/appendonly.aof.3.incr.aof": b"",
        },
    )
    [source] = find_inputs(path)
    assert source.name == f"{path}:data/appendonlydir"
    assert [p.name.split("appendonly.aof.")[-1] for p in source.parts] == [
        "2.base.rdb",
        "2.incr.aof",
        "3.incr.aof",
    ]
    assert keys(source) == [b"base"]
    assert commands(source) == [[b"SET", b"incr", b"2"]]
