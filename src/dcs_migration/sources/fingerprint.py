"""What a task's sources are, to tell whether they changed before a resume.

A resume skips what its checkpoint says was written, which is only right if the bytes are
the ones read before. Each source is described by what changes when its content does: a
local file by its size and modification time, an object by its size and ETag; a folder
or a key prefix by all it holds. `find` takes the description when it finds a source's
inputs and each input carries it (`inputs_fingerprint` joins them); `fingerprint` takes
it without finding anything (a stat or a listing only), for a check that reads nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from dcs_migration.config import Settings
from dcs_migration.formats.errors import FormatError
from dcs_migration.sources.backup_store import backup_location
from dcs_migration.sources.inputs import FingerprintEntry, Input
from dcs_migration.sources.s3 import S3Client, make_s3_client, s3_url
from dcs_migration.sources.specs import (
    BackupObject,
    LocalObject,
    LocalPath,
    S3Object,
    Source,
    SourceSpec,
    spec_of,
)

Entry = FingerprintEntry
ClientOf = Callable[[], S3Client]  # the S3 client to list with, made when first needed


def fingerprint(sources: Sequence[Source], settings: Settings) -> str:
    """The sources' description, as JSON text (to store and compare). Files are named as
    the import names them (an object of a folder bucket as `bucket/key`); links inside a
    folder are left out, as the import leaves them out."""
    client = _lazy_client(settings)
    entries: list[Entry] = []
    for source in sources:
        entries += spec_entries(spec_of(source), settings, client)
    return json.dumps(entries)


def inputs_fingerprint(inputs: Sequence[Input]) -> str:
    """The description the inputs carry from when they were found, as `fingerprint`
    writes it (a source that gave several inputs is described once)."""
    entries: list[Entry] = []
    previous: tuple[Entry, ...] = ()
    for found in inputs:
        if found.fingerprint != previous:  # the inputs of one source are found together
            entries += found.fingerprint
            previous = found.fingerprint
    return json.dumps(entries)


def describe_change(before: str, now: str) -> str | None:
    """None when the two descriptions agree, else what changed, naming the file."""
    old = {e[0]: (e[1], e[2]) for e in json.loads(before)}
    new = {e[0]: (e[1], e[2]) for e in json.loads(now)}
    for where, (size, version) in old.items():
        if where not in new:
            return f"{where} is gone"
        if new[where][0] != size:
            return f"{where} changed size ({size} bytes, now {new[where][0]})"
        if new[where][1] != version:
            return f"{where} was rewritten since"
    for where in new:
        if where not in old:
            return f"{where} is new"
    return None


def spec_entries(spec: SourceSpec, settings: Settings, client: ClientOf) -> list[Entry]:
    """The description of one source."""
    match spec:
        case BackupObject():
            return spec_entries(backup_location(settings, spec.key), settings, client)
        case LocalObject():
            return _local_entries(spec.path(), spec.name)
        case S3Object():
            return _s3_entries(spec, client())
        case LocalPath():
            return _local_entries(Path(spec.path), spec.path)


def _lazy_client(settings: Settings) -> ClientOf:
    made: list[S3Client] = []

    def client() -> S3Client:
        if not made:
            made.append(make_s3_client(settings.s3))
        return made[0]

    return client


def _local_entries(path: Path, shown: str) -> list[Entry]:
    try:
        return _stat_entries(path, shown)
    except OSError as exc:  # named as the import names it, not by its path here
        raise FormatError(exc.strerror or type(exc).__name__, source=shown) from exc


def _stat_entries(path: Path, shown: str) -> list[Entry]:
    if path.is_dir():
        files = [(f, _name(shown, f.relative_to(path))) for f in _files_under(path)]
    elif path.exists():
        files = [(path, shown)]
    else:
        return [(shown, -1, "missing")]
    out: list[Entry] = []
    for f, name in files:
        st = f.stat()
        out.append((name, st.st_size, str(st.st_mtime_ns)))
    return out


def _files_under(folder: Path) -> list[Path]:
    """Every regular file under `folder`, in name order, without following links."""
    found: list[Path] = []
    for top, _, names in os.walk(folder):  # os.walk does not enter linked folders
        for name in names:
            path = Path(top, name)
            if not path.is_symlink() and path.is_file():
                found.append(path)
    return sorted(found)


def _name(shown: str, rel: Path) -> str:
    return str(PurePosixPath(shown).joinpath(*rel.parts))


def _s3_entries(spec: S3Object, client: Any) -> list[Entry]:
    bucket, key = spec.bucket, spec.key
    out: list[Entry] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
        if token:
            kwargs["ContinuationToken"] = token
        page = client.list_objects_v2(**kwargs)
        for obj in page.get("Contents", ()):
            name = str(obj["Key"])
            if name == key or not key or key.endswith("/") or name.startswith(key + "/"):
                out.append((s3_url(bucket, name), int(obj["Size"]), str(obj.get("ETag"))))
        token = page.get("NextContinuationToken")
        if not token:
            break
    return out or [(spec.name, -1, "missing")]
