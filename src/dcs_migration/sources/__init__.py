"""Where backup bytes come from, as inputs: one logical backup each, opened as streams.

A source is a spec (`specs.py`: a local path, an object of a folder bucket, an S3 object,
a backup of this service), plain data; `find(spec, settings)` turns it into inputs, each
carrying its source's fingerprint. Below it, `find_inputs(path)` finds the backups at a
local file or folder (archives included), `find_s3_inputs(bucket, key_or_prefix)` those
in an S3-compatible object store; `dcs_migration.reading.read_input` reads one input to
records. A source that cannot be reached raises a `SourceError`; bytes that are no
backup, a FormatError.
"""

from __future__ import annotations

from dcs_migration.config import S3Settings
from dcs_migration.sources.errors import SourceError
from dcs_migration.sources.find import find, find_all
from dcs_migration.sources.guard import DEFAULT_LIMITS, ArchiveLimits
from dcs_migration.sources.inputs import ByteStream, Input, InputKind, InputPart, Opener
from dcs_migration.sources.local import find_inputs
from dcs_migration.sources.retry import RetryPolicy
from dcs_migration.sources.s3 import (
    S3SourceError,
    find_s3_inputs,
    is_s3_url,
    make_s3_client,
    parse_s3_url,
)
from dcs_migration.sources.specs import (
    BackupObject,
    LocalObject,
    LocalPath,
    S3Object,
    Source,
    SourceSpec,
    spec_from_json,
    spec_of,
)

__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveLimits",
    "BackupObject",
    "ByteStream",
    "Input",
    "InputKind",
    "InputPart",
    "LocalObject",
    "LocalPath",
    "Opener",
    "RetryPolicy",
    "S3Object",
    "S3Settings",
    "S3SourceError",
    "Source",
    "SourceError",
    "SourceSpec",
    "find",
    "find_all",
    "find_inputs",
    "find_s3_inputs",
    "is_s3_url",
    "make_s3_client",
    "parse_s3_url",
    "spec_from_json",
    "spec_of",
]
