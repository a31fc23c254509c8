"""Where backup bytes come from, as inputs: one logical backup each, opened as streams.

`find_inputs(path)` finds the backups at a local file or folder (archives included),
`find_s3_inputs(bucket, key_or_prefix)` those in an S3-compatible object store;
`dcs_migration.reading.read_input` reads one input to records.
"""

from __future__ import annotations

from dcs_migration.sources.guard import DEFAULT_LIMITS, ArchiveLimits
from dcs_migration.sources.inputs import ByteStream, Input, InputKind, InputPart, Opener
from dcs_migration.sources.local import find_inputs
from dcs_migration.sources.s3 import (
    RetryPolicy,
    S3Settings,
    S3SourceError,
    find_s3_inputs,
    is_s3_url,
    make_s3_client,
    parse_s3_url,
)

__all__ = [
    "DEFAULT_LIMITS",
    "ArchiveLimits",
    "ByteStream",
    "Input",
    "InputKind",
    "InputPart",
    "Opener",
    "RetryPolicy",
    "S3Settings",
    "S3SourceError",
    "find_inputs",
    "find_s3_inputs",
    "is_s3_url",
    "make_s3_client",
    "parse_s3_url",
]
