"""Source specs: where a task's or an import's backups are, as plain data.

A spec names a place and nothing else: no client, no open file, no credential. It is
frozen and round-trips through JSON (`to_json` / `spec_from_json`), so that a task can
be handed to a process, or a machine, that finds its inputs there with its own settings
(`dcs_migration.sources.find`). Which store an object of a bucket or a backup is in is
not part of the spec either: the finder's settings say.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from dcs_migration.sources.keys import BadObjectKey, object_key_problem
from dcs_migration.sources.s3 import is_s3_url, parse_s3_url, s3_url


class _Spec:
    """JSON for every spec: its fields and a `kind` that says which spec it is."""

    __slots__ = ()
    kind: ClassVar[str]

    def to_json(self) -> str:
        doc: dict[str, Any] = {"kind": self.kind}
        for name, value in asdict(self).items():  # type: ignore[call-overload]
            doc[name] = str(value) if isinstance(value, Path) else value
        return json.dumps(doc)


@dataclass(frozen=True, slots=True)
class LocalPath(_Spec):
    """A file or folder of this machine, as an operator names it to `import` or `inspect`."""

    kind: ClassVar[str] = "local_path"
    path: str

    @property
    def name(self) -> str:
        return self.path


@dataclass(frozen=True, slots=True)
class LocalObject(_Spec):
    """An object of a folder bucket (a file, or a folder of files): the bucket's folder,
    the bucket's name as users know it, and the key. Nothing is checked or opened until
    `path()`."""

    kind: ClassVar[str] = "local_object"
    root: Path
    bucket: str
    key: str

    @property
    def name(self) -> str:
        """How errors and logs name the object: `bucket/key`."""
        return f"{self.bucket}/{self.key}"

    def path(self) -> Path:
        """The object's file or folder, resolved; BadObjectKey if the key would leave
        the bucket, by its spelling or through a link."""
        key = self.key
        problem = object_key_problem(key)
        if problem is not None and not problem.leaves_bucket:
            raise BadObjectKey(
                f"object key {key!r} is empty, too long or has a NUL byte", source=self.name
            )
        if problem is not None:
            raise BadObjectKey(f"object key {key!r} leaves its bucket", source=self.name)
        root = self.root.resolve()
        path = (root / key).resolve()
        if root not in path.parents and path != root:
            raise BadObjectKey(f"object key {key!r} leaves its bucket", source=self.name)
        return path


@dataclass(frozen=True, slots=True)
class S3Object(_Spec):
    """An object of an S3-compatible store, or every backup under a prefix (a key that
    ends in `/`, or the empty key)."""

    kind: ClassVar[str] = "s3_object"
    bucket: str
    key: str

    @property
    def name(self) -> str:
        return s3_url(self.bucket, self.key)


@dataclass(frozen=True, slots=True)
class BackupObject(_Spec):
    """A file of a backup this service made, by its key in the backup store (a folder of
    the data dir, or the backup bucket: the settings say which)."""

    kind: ClassVar[str] = "backup_object"
    key: str

    @property
    def name(self) -> str:
        return self.key


SourceSpec = LocalPath | LocalObject | S3Object | BackupObject
Source = SourceSpec | str
"""A spec, or a source as an operator types it: a local path or `s3://bucket/key`."""

_KINDS: dict[str, type[SourceSpec]] = {
    cls.kind: cls for cls in (LocalPath, LocalObject, S3Object, BackupObject)
}


def spec_from_json(text: str) -> SourceSpec:
    """The spec `to_json` wrote; ValueError for anything else."""
    doc = json.loads(text)
    cls = _KINDS.get(str(doc.get("kind"))) if isinstance(doc, dict) else None
    if cls is None:
        raise ValueError(f"not a source spec: {text[:80]!r}")
    values = {f.name: doc[f.name] for f in fields(cls)}
    if cls is LocalObject:
        values["root"] = Path(values["root"])
    return cls(**values)


def spec_of(source: Source) -> SourceSpec:
    """`source` as a spec: `s3://bucket/key` an S3 object, other text a local path."""
    if not isinstance(source, str):
        return source
    if is_s3_url(source):
        return S3Object(*parse_s3_url(source))
    return LocalPath(source)
