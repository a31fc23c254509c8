"""From source specs to inputs: `find(spec, settings)`, the one way a spec is read.

The settings say what the spec does not: the object store's address and credentials (for
an `S3Object`) and where this service keeps its backups (for a `BackupObject`). Each
input found carries the fingerprint of its source, taken just before it was found, so
that a resume compares against what was read rather than against a second look.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from dcs_migration.config import Settings
from dcs_migration.sources.backup_store import backup_location
from dcs_migration.sources.fingerprint import ClientOf, _lazy_client, spec_entries
from dcs_migration.sources.inputs import Input
from dcs_migration.sources.local import find_inputs
from dcs_migration.sources.s3 import find_s3_inputs
from dcs_migration.sources.specs import (
    BackupObject,
    LocalObject,
    LocalPath,
    S3Object,
    Source,
    SourceSpec,
    spec_of,
)


def find(spec: SourceSpec, settings: Settings, *, client: ClientOf | None = None) -> list[Input]:
    """The backups at `spec`, each one input carrying the source's fingerprint (none
    when the source could not be described: a resume then cannot check it).

    FormatError for a backup that cannot be read as one (or no backup at all); a
    SourceError (BucketNotFound, BadObjectKey, S3SourceError) for a source that cannot
    be reached or read. `client` gives the S3 client to use (one is made from the
    settings when first needed otherwise)."""
    client = client if client is not None else _lazy_client(settings)
    if isinstance(spec, BackupObject):
        return find(backup_location(settings, spec.key), settings, client=client)
    try:
        entries = tuple(spec_entries(spec, settings, client))
    except Exception:  # finding them says what is wrong, in its own words
        entries = ()
    match spec:
        case LocalObject():
            found = find_inputs(spec.path(), name=spec.name)
        case S3Object():
            found = find_s3_inputs(spec.bucket, spec.key, client=client())
        case LocalPath():
            found = find_inputs(Path(spec.path))
    return [dataclasses.replace(i, fingerprint=entries) for i in found]


def find_all(sources: Sequence[Source], settings: Settings) -> list[Input]:
    """The inputs of every source in order (a path or `s3://` text is read as its spec),
    with one S3 client for all of them."""
    client = _lazy_client(settings)
    inputs: list[Input] = []
    for source in sources:
        inputs.extend(find(spec_of(source), settings, client=client))
    return inputs
