"""Source specs: plain data that round-trips through JSON, found with the finder's own
settings, each input carrying the fingerprint its source had when it was found."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dcs_migration.config import Settings
from dcs_migration.formats.errors import FormatError
from dcs_migration.sources import (
    BackupObject,
    LocalObject,
    LocalPath,
    S3Object,
    SourceError,
    SourceSpec,
    find,
    find_all,
    spec_from_json,
    spec_of,
)
from dcs_migration.sources.bucket import BadObjectKey, BucketNotFound
from dcs_migration.sources.fingerprint import describe_change, fingerprint, inputs_fingerprint
from dcs_migration.sources.keys import KeyProblem, object_key_problem
from dcs_migration.sources.s3 import S3SourceError

RDB = b"REDIS0009\xff" + bytes(8)  # an empty RDB without a checksum
AOF = b"*1\r\n$4\r\nPING\r\n"


@pytest.mark.parametrize(
    "spec",
    [
        LocalPath("/backups/dump.rdb"),
        LocalObject(Path("/data/buckets/b1"), "b1", "dir/dump.rdb"),
        S3Object("bucket", "prefix/"),
        S3Object("bucket", ""),
        BackupObject("proj/inst/backup-1/127.0.0.1_6379.rdb"),
    ],
)
def test_a_spec_round_trips_through_json(spec: SourceSpec) -> None:
    text = spec.to_json()
    assert json.loads(text)["kind"] == spec.kind
    assert spec_from_json(text) == spec


def test_json_that_is_no_spec_is_refused() -> None:
    for text in ('{"kind": "ftp", "url": "x"}', "[1]", '"s3://b/k"'):
        with pytest.raises(ValueError, match="not a source spec"):
            spec_from_json(text)


def test_text_as_typed_becomes_a_spec() -> None:
    assert spec_of("s3://bucket/dir/") == S3Object("bucket", "dir/")
    assert spec_of("S3://bucket") == S3Object("bucket", "")
    assert spec_of("dump.rdb") == LocalPath("dump.rdb")
    assert spec_of(BackupObject("k")) == BackupObject("k")
    assert S3Object("b", "k").name == "s3://b/k"


def test_inputs_carry_the_fingerprint_of_their_source(tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    folder.mkdir()
    (folder / "a.rdb").write_bytes(RDB)
    (folder / "b.aof").write_bytes(AOF)
    (folder / "notes.txt").write_text("not a backup, but part of the folder")
    settings = Settings(data_dir=tmp_path)
    inputs = find(LocalPath(str(folder)), settings)
    assert [i.name for i in inputs] == [f"{folder}/a.rdb", f"{folder}/b.aof"]
    assert inputs[0].fingerprint == inputs[1].fingerprint
    assert [e[0] for e in inputs[0].fingerprint] == [
        f"{folder}/a.rdb",
        f"{folder}/b.aof",
        f"{folder}/notes.txt",
    ]
    # What the inputs carry is what a look without finding them says.
    taken = inputs_fingerprint(inputs)
    assert taken == fingerprint([str(folder)], settings)
    assert describe_change(taken, fingerprint([str(folder)], settings)) is None
    (folder / "b.aof").write_bytes(AOF + AOF)
    change = describe_change(taken, fingerprint([str(folder)], settings))
    assert change == f"{folder}/b.aof changed size ({len(AOF)} bytes, now {2 * len(AOF)})"


def test_a_backup_object_is_found_where_the_settings_keep_backups(tmp_path: Path) -> None:
    key = "proj/inst/backup-1/127.0.0.1_6379.rdb"
    (tmp_path / "backups" / key).parent.mkdir(parents=True)
    (tmp_path / "backups" / key).write_bytes(RDB)
    settings = Settings(data_dir=tmp_path, backup_bucket="kept")
    [found] = find(BackupObject(key), settings)
    assert found.name == f"kept/{key}"
    assert found.fingerprint[0][0] == f"kept/{key}"


def test_a_source_that_went_away_is_told_by_a_fresh_look(tmp_path: Path) -> None:
    """Finding it fails (the task's run says why); the resume check names the file."""
    settings = Settings(data_dir=tmp_path)
    path = tmp_path / "dump.rdb"
    path.write_bytes(RDB)
    taken = inputs_fingerprint(find_all([str(path)], settings))
    path.unlink()
    with pytest.raises(FormatError, match="no such file or folder"):
        find_all([str(path)], settings)
    change = describe_change(taken, fingerprint([str(path)], settings))
    assert change == f"{path} changed size ({len(RDB)} bytes, now -1)"


def test_sources_fail_with_errors_of_their_own(tmp_path: Path) -> None:
    root = tmp_path / "buckets" / "b1"
    root.mkdir(parents=True)
    with pytest.raises(BadObjectKey, match=r"leaves its bucket \(file b1/\.\./x\)"):
        find(LocalObject(root, "b1", "../x"), Settings(data_dir=tmp_path))
    for error in (BadObjectKey, BucketNotFound, S3SourceError):
        assert issubclass(error, SourceError) and not issubclass(error, FormatError)
    half = Settings.from_env({"DCS_MIGRATION_OBS_ACCESS_KEY": "ak"}, data_dir=tmp_path)
    with pytest.raises(S3SourceError, match="DCS_MIGRATION_OBS_SECRET_KEY is not"):
        find(S3Object("bucket", "dump.rdb"), half)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", KeyProblem.EMPTY),
        ("a\x00b", KeyProblem.NUL),
        ("k" * 1025, KeyProblem.TOO_LONG),
        ("é" * 513, KeyProblem.TOO_LONG),  # bytes of UTF-8, as S3 counts
        ("/etc/passwd", KeyProblem.ABSOLUTE),
        ("\\share\\x", KeyProblem.ABSOLUTE),
        ("a/../../b", KeyProblem.PARENT),
        ("a\\..\\b", KeyProblem.PARENT),
        ("dir/dump.rdb", None),
        ("..rdb", None),
    ],
)
def test_one_set_of_object_key_rules(key: str, problem: KeyProblem | None) -> None:
    assert object_key_problem(key) is problem


def test_a_folder_bucket_applies_the_same_rules(tmp_path: Path) -> None:
    root = tmp_path / "b1"
    root.mkdir()
    with pytest.raises(BadObjectKey, match="leaves its bucket"):
        LocalObject(root, "b1", "a\\..\\..\\b").path()
    with pytest.raises(BadObjectKey, match="empty, too long or has a NUL byte"):
        LocalObject(root, "b1", "é" * 513).path()
    os.symlink(tmp_path, root / "out")
    with pytest.raises(BadObjectKey, match="leaves its bucket"):
        LocalObject(root, "b1", "out/x").path()
