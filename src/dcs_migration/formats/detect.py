"""What a file is, from its first bytes: never from its name.

`detect_format` looks at up to `SNIFF_BYTES` bytes (a tar header needs 512). An AOF is
told from a text file that merely starts with `*` or `#` (a README): its first line
that is not an annotation must start a RESP command (`*` and a digit), or, when the
head holds annotations only, one of them must be a `#TS:` timestamp.
"""

from __future__ import annotations

from enum import StrEnum

from dcs_migration.formats.rdb_header import looks_like_rdb

SNIFF_BYTES = 512


class FileKind(StrEnum):
    RDB = "rdb"  # an RDB image (a dump, or an AOF with an RDB preamble)
    AOF = "aof"  # RESP commands
    MANIFEST = "manifest"  # a multi-part AOF manifest
    GZIP = "gzip"
    ZIP = "zip"
    TAR = "tar"
    EMPTY = "empty"
    UNKNOWN = "unknown"


ARCHIVE_KINDS = frozenset({FileKind.GZIP, FileKind.ZIP, FileKind.TAR})

_TAR_MAGIC_AT = 257
_TAR_HEADER = 512
_TAR_CHECKSUM = slice(148, 156)


def detect_format(head: bytes) -> FileKind:
    """The kind of a file whose first bytes are `head` (at least SNIFF_BYTES when it has them)."""
    if not head:
        return FileKind.EMPTY
    if head.startswith(b"\x1f\x8b"):
        return FileKind.GZIP
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return FileKind.ZIP
    if looks_like_rdb(head):
        return FileKind.RDB
    if _is_tar(head):
        return FileKind.TAR
    first = head[0]
    if first == 0x2A and len(head) > 1 and head[1:2].isdigit():
        return FileKind.AOF
    if first == 0x23 or _is_manifest_line(head):
        return _after_annotations(head)
    return FileKind.UNKNOWN


def _is_tar(head: bytes) -> bool:
    if len(head) < _TAR_HEADER or head[_TAR_MAGIC_AT : _TAR_MAGIC_AT + 5] != b"ustar":
        return False
    field = head[_TAR_CHECKSUM].strip(b" \x00")
    if not field or any(c not in b"01234567" for c in field):
        return False
    header = head[:_TAR_HEADER]
    unsigned = sum(header) - sum(header[_TAR_CHECKSUM]) + 8 * 0x20
    return int(field, 8) == unsigned


def _is_manifest_line(line: bytes) -> bool:
    word = line[:5].lower()
    return word[:4] == b"file" and len(word) == 5 and word[4] in b" \t"


def _after_annotations(head: bytes) -> FileKind:
    """Skip `#` lines; the first other line tells an AOF from a manifest from anything else."""
    lines = head.split(b"\n")
    complete, last = lines[:-1], lines[-1]
    timestamps = False
    for line in complete:
        if line.startswith(b"#"):
            timestamps = timestamps or line.startswith(b"#TS:")
            continue
        return _first_line_kind(line)
    if last.startswith(b"#"):
        timestamps = timestamps or last.startswith(b"#TS:")
    elif last == b"*":  # the head ends just after a command's first byte
        return FileKind.AOF
    elif last:
        return _first_line_kind(last)
    return FileKind.AOF if timestamps else FileKind.UNKNOWN


def _first_line_kind(line: bytes) -> FileKind:
    if line.startswith(b"*") and line[1:2].isdigit():
        return FileKind.AOF
    if _is_manifest_line(line):
        return FileKind.MANIFEST
    return FileKind.UNKNOWN
